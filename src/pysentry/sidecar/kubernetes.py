"""``daprd --mode kubernetes``: what the sidecar does differently inside a Pod.

- **UID/GID check** (Dapr's ``pkg/security/usergroup.go``): the process must run as
  65532:65532 unless ``DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK=true``.
- **Sentry token**: without ``DAPR_SENTRY_TOKEN_FILE``, the projected token the injector mounts,
  ``/var/run/secrets/dapr.io/sentrytoken/token``; if that is absent, the legacy service-account
  token (with Dapr's warning); if neither exists, a startup error naming both paths.
- **``--config <name>``**: the ``configurations.dapr.io`` object ``<name>`` in ``$NAMESPACE``, read
  from the API server (in-cluster config, or ``$KUBECONFIG``). Dapr asks its operator for it;
  pysentry has no operator, so the Pod's service account needs ``get`` on it (docs/kubernetes.md).
- **Name resolution**: ``kubernetes`` when the Configuration names none.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from pysentry.config.configuration import (
    Configuration,
    NameResolutionSpec,
    parse_configuration,
)
from pysentry.errors import ConfigError
from pysentry.kube.client import KubeApiError, KubeClient, KubeError
from pysentry.sidecar.options import Options

log = logging.getLogger("pysentry.sidecar.kubernetes")

SENTRY_TOKEN_PATH = Path("/var/run/secrets/dapr.io/sentrytoken/token")
LEGACY_TOKEN_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
SKIP_UID_GID_CHECK_ENV = "DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK"
EXPECTED_UID_GID = 65532


def check_uid_gid(
    env: Mapping[str, str], *, uid: int | None = None, gid: int | None = None
) -> None:
    """Dapr's check, with its message: Kubernetes mode runs as 65532:65532 only."""
    if env.get(SKIP_UID_GID_CHECK_ENV) == "true":
        log.warning("Skipping container UID/GID check due to env override.")
        return
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    exp = EXPECTED_UID_GID
    if uid != exp or gid != exp:
        raise ConfigError(
            f"current user UID/GID ({uid}:{gid}) does not match the required UID/GID "
            f"({exp}:{exp}). Dapr must be run as a non-root user {exp}:{exp} in Kubernetes "
            f"environments. To override this check, set the environment variable "
            f"'{SKIP_UID_GID_CHECK_ENV}=true'"
        )
    log.info("Running in Kubernetes environment as user %d:%d", uid, gid)


def with_token_file(
    opts: Options,
    *,
    default: Path = SENTRY_TOKEN_PATH,
    legacy: Path = LEGACY_TOKEN_PATH,
) -> Options:
    """``opts`` with the Sentry token file Dapr would read (``DAPR_SENTRY_TOKEN_FILE`` wins)."""
    if opts.sentry_token_file is not None:
        return opts
    if default.exists():
        return replace(opts, sentry_token_file=default)
    if legacy.exists():
        log.warning(
            "⚠️ daprd is initializing using the legacy service account token with access to "
            "Kubernetes APIs, which is discouraged. This usually happens when daprd is running "
            "against an older version of the Dapr control plane."
        )
        return replace(opts, sentry_token_file=legacy)
    raise ConfigError(
        f"Sentry token: neither {str(default)!r} (the projected token volume "
        f"'dapr-identity-token' the sidecar injector mounts) nor the legacy {str(legacy)!r} "
        "exists; run daprd in a Pod created through the sidecar injector, or set "
        "DAPR_SENTRY_TOKEN_FILE to the path of a service-account token bound to this Pod"
    )


def _where(namespace: str, name: str) -> str:
    return f"configurations.dapr.io {name!r} in namespace {namespace!r}"


async def load_kubernetes_configuration(
    name: str, namespace: str, *, env: Mapping[str, str] | None = None
) -> Configuration:
    """Read ``--config <name>`` from the API server; every failure names the cause and the fix."""
    where = _where(namespace, name)
    path = (
        f"/apis/dapr.io/v1alpha1/namespaces/{quote(namespace, safe='')}/configurations/"
        f"{quote(name, safe='')}"
    )
    try:
        client = await KubeClient.connect(None, env=env)
    except ConfigError as err:
        raise ConfigError(f"--config: cannot load {where}: {err}") from err
    try:
        obj = await client.get(path)
    except KubeApiError as err:
        if err.forbidden:
            raise ConfigError(
                f"--config: {where}: the API server refused to read it: {err.message}; grant "
                "the Pod's service account 'get' on configurations.dapr.io in its namespace "
                "(docs/kubernetes.md)"
            ) from err
        if err.not_found:
            raise ConfigError(
                f"--config: {where} not found: create it in namespace {namespace!r} or fix the "
                "Pod's dapr.io/config annotation"
            ) from err
        raise ConfigError(f"--config: cannot read {where}: {err}") from err
    except KubeError as err:
        raise ConfigError(f"--config: cannot read {where}: {err}") from err
    finally:
        await client.close()
    cfg = parse_configuration(json.dumps(obj), where)
    log.info("Loaded configuration %s", where)
    return cfg


def with_kubernetes_resolver(cfg: Configuration) -> Configuration:
    """Dapr's Kubernetes default: the ``kubernetes`` name resolver when none is configured."""
    nr = cfg.spec.name_resolution
    if nr is not None and nr.component:
        return cfg
    resolver = NameResolutionSpec(
        component="kubernetes", configuration=dict(nr.configuration) if nr else {}
    )
    spec = cfg.spec.model_copy(update={"name_resolution": resolver})
    return cfg.model_copy(update={"spec": spec})


async def prepare(
    opts: Options, env: Mapping[str, str] | None = None
) -> tuple[Options, Configuration]:
    """Everything Kubernetes mode checks and loads before daprd binds its ports."""
    env = os.environ if env is None else env
    check_uid_gid(env)
    cfg = (
        await load_kubernetes_configuration(str(opts.config), opts.namespace, env=env)
        if opts.config is not None
        else Configuration.model_validate({})
    )
    if opts.enable_mtls or cfg.spec.mtls.enabled:
        opts = with_token_file(opts)
    return opts, with_kubernetes_resolver(cfg)
