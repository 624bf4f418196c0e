"""The ``dapr`` CLI's access to a Kubernetes cluster: connection, API reads, ``daprsystem``.

The cluster is the one of ``$KUBECONFIG`` (its first file), else ``~/.kube/config`` (else the
in-cluster service account, as client-go's default rules), like Dapr's CLI. What the commands read
is what Dapr's CLI reads (``cli:pkg/kubernetes/mtls.go``): the Configuration ``daprsystem`` of
``configurations.dapr.io/v1alpha1`` in any namespace (its namespace is the control plane's; no
CRD counts as none), and there the trust bundle (:mod:`pysentry.cli.trustbundle`).

Every failure is a :class:`CliError` naming the fix: a missing or garbled kubeconfig (named,
never quoted: it holds tokens), an API server that is down, a 401 and a 403 (the verb, resource
and namespace the kubeconfig's user may not use). Dapr's own error texts are kept where it has
them (``system configuration not found``).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from pysentry.cli.console import CliError
from pysentry.errors import ConfigError
from pysentry.kube.access import Permission, missing_permissions
from pysentry.kube.client import JsonObject, KubeApiError, KubeClient, KubeError, KubeUnreachable
from pysentry.kube.config import in_cluster, load_kube_configuration

SYSTEM_CONFIG = "daprsystem"
CONFIGURATIONS = "/apis/dapr.io/v1alpha1/configurations"


def kubeconfig_path(env: dict[str, str] | None = None) -> Path | None:
    """The kubeconfig file the CLI uses: ``$KUBECONFIG``'s first entry, else ``~/.kube/config``
    when it exists, else None."""
    env = dict(os.environ) if env is None else env
    first = env.get("KUBECONFIG", "").split(os.pathsep)[0]
    if first:
        return Path(first).expanduser()
    home = env.get("HOME")
    default = Path(home) / ".kube" / "config" if home else None
    return default if default is not None and default.is_file() else None


def _garbled(path: Path, err: ConfigError) -> CliError:
    """The loader's complaint without the file's text (a YAML error quotes the bad line)."""
    cause = err.__cause__
    if isinstance(cause, yaml.MarkedYAMLError):
        mark = cause.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        why = f"not valid YAML ({cause.problem or 'syntax error'}{where})"
    elif isinstance(cause, yaml.YAMLError):
        why = "not valid YAML"
    else:
        why = str(cause or err).replace(repr(str(path)), "").strip(": ") or "not a kubeconfig"
    return CliError(
        f"kubeconfig {str(path)!r}: {why}; fix the file (e.g. 'kubectl config view' shows "
        "what kubectl reads) or point KUBECONFIG at a working kubeconfig"
    )


async def connect(kubeconfig: str | None = None) -> KubeClient:
    """A client for the current kubeconfig context (no request is made yet)."""
    env = dict(os.environ)
    path = Path(kubeconfig).expanduser() if kubeconfig else kubeconfig_path(env)
    if path is None:
        if in_cluster(env):
            try:
                return KubeClient(await load_kube_configuration(None, env=env))
            except ConfigError as err:
                raise CliError(f"{err}") from err
        raise CliError(
            "no kubeconfig: KUBECONFIG is not set and ~/.kube/config does not exist; set "
            "KUBECONFIG to your cluster's kubeconfig (or drop -k for self-hosted mode)"
        )
    origin = "" if kubeconfig else (" (from KUBECONFIG)" if env.get("KUBECONFIG") else "")
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise CliError(
            f"kubeconfig {str(path)!r}{origin} {what}; set KUBECONFIG to your cluster's "
            "kubeconfig file (kubectl's, usually ~/.kube/config)"
        )
    try:
        source = await load_kube_configuration(str(path), env=env)
    except ConfigError as err:
        raise _garbled(path, err) from err
    except (TypeError, AttributeError, KeyError, IndexError) as err:  # YAML, but not a kubeconfig
        raise CliError(
            f"kubeconfig {str(path)!r}: not a kubeconfig (expected a mapping with clusters, "
            "users and contexts); fix the file or point KUBECONFIG at a working kubeconfig"
        ) from err
    try:
        return KubeClient(source)
    except (OSError, ValueError) as err:  # e.g. an unreadable client certificate file
        raise CliError(
            f"kubeconfig {str(path)!r}: cannot use its TLS settings ({type(err).__name__}); fix "
            "the certificate entries of its cluster and user"
        ) from err


def _scope(namespace: str | None) -> str:
    return f"in namespace {namespace!r}" if namespace else "in all namespaces"


async def api_get(
    kube: KubeClient,
    path: str,
    *,
    verb: str,
    resource: str,
    namespace: str | None,
    params: dict[str, str] | None = None,
) -> JsonObject:
    """GET ``path``; every failure but 404 becomes a :class:`CliError` naming the fix (a 404
    stays :class:`KubeApiError` for the caller to decide)."""
    try:
        return await kube.get(path, params=params)
    except KubeUnreachable as err:
        raise CliError(
            f"cannot reach the Kubernetes API server {kube.server!r} ({kube.last_error}); "
            "check that the cluster is running and that KUBECONFIG (or ~/.kube/config) "
            "points at it"
        ) from err
    except KubeApiError as err:
        if err.not_found:
            raise
        if err.forbidden:
            raise CliError(
                f"the Kubernetes API server refused to {verb} {resource} {_scope(namespace)}: "
                f"the user of {kube.source.source} lacks the RBAC permission (HTTP 403: "
                f"{err.message}); bind it a Role/ClusterRole that allows it, or use an "
                "admin kubeconfig"
            ) from err
        if err.status == 401:
            raise CliError(
                f"the Kubernetes API server {kube.server!r} did not accept the credentials of "
                f"{kube.source.source} (HTTP 401); renew them (e.g. log in to the cluster "
                "again) or point KUBECONFIG at a valid kubeconfig"
            ) from err
        raise CliError(
            f"cannot {verb} {resource} {_scope(namespace)}: HTTP {err.status} {err.reason}: "
            f"{err.message}"
        ) from err


async def require_permissions(
    kube: KubeClient, perms: list[Permission], *, prefix: str, joiner: str, fix: str
) -> None:
    """:class:`CliError` ``<prefix>the user of <kubeconfig> may not <p1><joiner><p2>; <fix>``
    naming every permission of ``perms`` the user lacks (SelfSubjectAccessReview), or why the
    check itself failed."""
    try:
        missing = await missing_permissions(kube, perms)
    except KubeError as err:
        why = (
            f"HTTP {err.status} {err.reason}: {err.message}"
            if isinstance(err, KubeApiError)
            else f"{err}"
        )
        raise CliError(f"{prefix}cannot check the RBAC permissions: {why}") from err
    if missing:
        raise CliError(
            f"{prefix}the user of {kube.source.source} may not "
            + joiner.join(str(perm) for perm in missing)
            + f"; {fix}"
        )


async def system_config(kube: KubeClient) -> JsonObject:
    """The ``daprsystem`` Configuration of the cluster (the first one listed, as Dapr)."""
    try:
        listing = await api_get(
            kube, CONFIGURATIONS, verb="list", resource="configurations.dapr.io", namespace=None
        )
    except KubeApiError:  # 404: the CRD is not installed, so there is none
        listing = {"items": []}
    for item in listing.get("items") or []:
        if (item.get("metadata") or {}).get("name") == SYSTEM_CONFIG:
            return dict(item)
    raise CliError("system configuration not found")


def namespace_of(config: JsonObject) -> str:
    return str((config.get("metadata") or {}).get("namespace") or "")


async def control_plane_namespace(kube: KubeClient) -> str:
    return namespace_of(await system_config(kube))
