# pysentry's one image: Sentry (`sentry`), the sidecar (`daprd`) and the injector
# (`python -m pysentry.injector`); the chart (charts/pysentry) picks the command per Deployment, and
# the injector puts the same image (SIDECAR_IMAGE) in each Pod's daprd container.
#
#   docker build -t ghcr.io/pysentry/pysentry:0.1.0 .
#
# The build installs the pinned dependencies (constraints.txt) into a virtualenv, compiles the
# bytecode ahead of time (the containers run with a read-only root filesystem), and runs as a
# numeric non-root user, so the chart's `runAsNonRoot: true` can be checked by the kubelet.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY src ./src
COPY charts ./charts
RUN python -m venv /opt/pysentry \
 && /opt/pysentry/bin/pip install -c constraints.txt . \
 && /opt/pysentry/bin/python -m compileall -q /opt/pysentry

FROM python:3.11-slim
COPY --from=build /opt/pysentry /opt/pysentry
ENV PATH=/opt/pysentry/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# Sentry's gRPC port, its /healthz and metrics; daprd's ports are set by the injector's flags.
EXPOSE 50001 8080 9090
ENTRYPOINT []
CMD ["sentry", "--help"]
