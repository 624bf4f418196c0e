"""``dapr init -k``: install pysentry's Helm chart as release ``dapr``, with Dapr's flags.

Dapr's values (``cli:pkg/kubernetes/kubernetes.go``): ``global.ha.enabled``,
``global.mtls.enabled``, ``global.tag`` from ``--runtime-version`` (``latest``: the chart's own
tag), ``global.registry`` from ``--image-registry``, the user's ``--set`` values, then the three
certificate files as ``dapr_sentry.tls.{root.certPEM,issuer.certPEM,issuer.keyPEM}``.

Before anything is written: the certificate files are validated as ``renew-certificate`` does
(Sentry's own rules), the chart is rendered locally with every value (a bad ``--set`` fails
here), the cluster is reached, and every permission the install needs is checked
(SelfSubjectAccessReview), all missing ones named. An install that fails part-way (e.g. ``--wait``
timing out, or helm killed :data:`INSTALL_GRACE_S` after its own ``--timeout``) is removed
again, as ``helm install --atomic`` would, so a failed ``dapr init -k`` leaves no release behind.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from pysentry.cli import cluster, console
from pysentry.cli.backend import Credentials
from pysentry.cli.cluster import api_get, connect, kubeconfig_path
from pysentry.cli.console import CliError
from pysentry.cli.helmcli import (
    RELEASE,
    Helm,
    HelmTimeout,
    chart_crds,
    chart_dir,
    helm_binary,
    helm_error,
    object_permissions,
)
from pysentry.cli.renewinputs import RenewInputs, read_provided, renewal_for
from pysentry.clock import system_clock
from pysentry.kube.access import Permission
from pysentry.kube.client import KubeApiError, KubeClient

HELM_NOTE = (
    "Note: To install Dapr using Helm, see here: "
    "https://docs.dapr.io/getting-started/install-dapr-kubernetes/#install-with-helm-advanced\n"
)
CERT_FLAGS = ("ca-root-certificate", "issuer-private-key", "issuer-public-certificate")
NOTHING_INSTALLED = "nothing was installed"
CRD_GROUP = "apiextensions.k8s.io"
INSTALL_GRACE_S = 60  # how long `helm install` may run past its own --timeout before it is killed
_CERT_VALUES = (
    ("dapr_sentry.tls.root.certPEM", "ca.crt"),
    ("dapr_sentry.tls.issuer.certPEM", "issuer.crt"),
    ("dapr_sentry.tls.issuer.keyPEM", "issuer.key"),
)


@dataclass(frozen=True, slots=True)
class InstallOptions:
    namespace: str
    runtime_version: str
    enable_mtls: bool
    enable_ha: bool
    set_values: tuple[str, ...]
    wait: bool
    timeout_s: int
    image_registry: str
    ca_root_certificate: str | None
    issuer_private_key: str | None
    issuer_public_certificate: str | None


def check_cert_flags(ca: str | None, key: str | None, cert: str | None) -> bool:
    """Dapr's rules for the three flags (cobra's required-together group first, then blank
    values); True when they are given."""
    given = dict(zip(CERT_FLAGS, (ca, key, cert), strict=True))
    unset = sorted(name for name, value in given.items() if value is None)
    if unset and len(unset) < len(given):
        raise CliError(
            f"if any flags in the group [{' '.join(CERT_FLAGS)}] are set they must all be set; "
            f"missing [{' '.join(unset)}]"
        )
    for name, value in given.items():
        if value is not None and not value.strip():
            raise CliError(f"non empty value of --{name} must be provided")
    return not unset


def validated_certificates(ca: str, key: str, cert: str) -> Credentials:
    """The three files, read strictly and checked as Sentry loads them (renew-certificate's
    checks: self-signed roots, issuer chain to them, key matching the issuer, validity)."""
    files = read_provided(ca.strip(), key.strip(), cert.strip())
    inputs = RenewInputs(files, None, timedelta(0), None)
    renewal = renewal_for(inputs, (), now=system_clock(), skew=timedelta(0))
    return renewal.credentials


def _write_private(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def helm_values(opts: InstallOptions, certs: Credentials | None, tmp: Path) -> list[str]:
    """Dapr's values, in Dapr's order (helm applies ``--set-file`` after ``--set``)."""
    values = [
        "--set",
        f"global.ha.enabled={str(opts.enable_ha).lower()}",
        "--set",
        f"global.mtls.enabled={str(opts.enable_mtls).lower()}",
    ]
    if opts.runtime_version != "latest":
        values += ["--set-string", f"global.tag={opts.runtime_version}"]
    if opts.image_registry:
        values += ["--set-string", f"global.registry={opts.image_registry}"]
    for value in opts.set_values:
        values += ["--set", value]
    if certs is not None:
        pems = (certs.ca_pem, certs.issuer_pem, certs.key_pem)
        for (key, name), pem in zip(_CERT_VALUES, pems, strict=True):
            values += ["--set-file", f"{key}={_write_private(tmp, name, pem)}"]
    return values


def _render(helm: Helm, chart: Path, values: list[str], kube_version: str) -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(chart), *values]
    done = helm.run([*args, *(["--kube-version", kube_version] if kube_version else [])])
    if done.returncode != 0:
        raise CliError(f"{helm_error(done)}; {NOTHING_INSTALLED}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if isinstance(doc, dict)]


async def _exists(kube: KubeClient, path: str) -> bool | None:
    """True/False, or None when the user may not look."""
    try:
        await kube.get(path)
    except KubeApiError as err:
        if err.not_found:
            return False
        if err.forbidden:
            return None
        raise
    return True


async def require_permissions(kube: KubeClient, perms: list[Permission], action: str) -> None:
    """:class:`CliError` listing every permission of ``perms`` the kubeconfig's user lacks."""
    await cluster.require_permissions(
        kube,
        perms,
        prefix=f"{action}: ",
        joiner="; ",
        fix="nothing was changed: use a kubeconfig with cluster-admin rights, or bind its user "
        "a ClusterRole that allows these",
    )


async def _prepare(helm: Helm, chart: Path, values: list[str]) -> bool:
    """Reach the cluster, render the chart for its version, and check every permission the
    install needs; True when the namespace must be created."""
    namespace = helm.namespace
    async with await connect() as kube:
        version = await api_get(kube, "/version", verb="get", resource="/version", namespace=None)
        objects = _render(helm, chart, values, str(version.get("gitVersion") or ""))
        perms = object_permissions(objects, "create", namespace)
        perms += [Permission("list", "secrets", "", namespace)]  # Helm's release records
        found = await _exists(kube, f"/api/v1/namespaces/{namespace}")
        if found is None:
            perms.append(Permission("get", "namespaces", name=namespace))
        elif not found:
            perms.append(Permission("create", "namespaces"))
        crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        for name in chart_crds(chart):
            if not await _exists(kube, f"{crd_path}/{name}"):  # Helm creates only missing CRDs
                perms.append(Permission("create", "customresourcedefinitions", CRD_GROUP))
        await require_permissions(kube, perms, f"cannot install into namespace {namespace!r}")
        return found is False


def _roll_back(helm: Helm, error: str, created_namespace: bool) -> CliError:
    kept = (
        f" (the namespace {helm.namespace!r} it created is kept, empty)"
        if created_namespace
        else ""
    )
    try:
        if not helm.release_exists():
            return CliError(f"{error}; {NOTHING_INSTALLED}{kept}")
        undone = helm.run(["uninstall", RELEASE, "--wait", "--timeout", "120s"], timeout_s=180)
        why = helm_error(undone) if undone.returncode != 0 else ""
    except CliError as err:  # helm cannot be run or read the release, or timed out again
        why = err.what if isinstance(err, HelmTimeout) else f"{err}"
    if why:
        return CliError(
            f"{error}; removing the partly installed release {RELEASE!r} failed too "
            f"({why}): remove it with 'dapr uninstall -k -n {helm.namespace}'"
        )
    return CliError(f"{error}; the partly installed release was removed, {NOTHING_INSTALLED}{kept}")


def install(opts: InstallOptions) -> None:
    """Validate everything, then ``helm install dapr <chart>``; :class:`CliError` on failure."""
    certs = None
    if check_cert_flags(
        opts.ca_root_certificate, opts.issuer_private_key, opts.issuer_public_certificate
    ):
        certs = validated_certificates(
            str(opts.ca_root_certificate),
            str(opts.issuer_private_key),
            str(opts.issuer_public_certificate),
        )
    helm = Helm(helm_binary(), opts.namespace, kubeconfig_path())
    chart = chart_dir()
    deploying = (
        f"Deploying the Dapr control plane with {opts.runtime_version} version to your cluster..."
    )
    console.pending(deploying)
    with tempfile.TemporaryDirectory(prefix="dapr-init-") as tmp:  # 0700: it may hold a key
        values = helm_values(opts, certs, Path(tmp))
        create_namespace = asyncio.run(_prepare(helm, chart, values))
        if helm.release_exists():
            raise CliError(
                f"cannot re-use a name that is still in use: Helm release {RELEASE!r} already "
                f"exists in namespace {opts.namespace!r}; change it with 'helm upgrade "
                f"{RELEASE} ...', or remove it first with 'dapr uninstall -k -n {opts.namespace}'"
            )
        args = ["install", RELEASE, str(chart), *values, "--timeout", f"{opts.timeout_s}s"]
        args += ["--create-namespace"] if create_namespace else []
        args += ["--wait"] if opts.wait else []
        try:
            done = helm.run(args, timeout_s=opts.timeout_s + INSTALL_GRACE_S)
        except HelmTimeout as err:  # killed part-way: it may have created the release
            raise _roll_back(helm, err.what, create_namespace) from err
        if done.returncode != 0:
            raise _roll_back(helm, helm_error(done), create_namespace)
    console.success(deploying)
