"""The ``dapr`` CLI's access to a Kubernetes cluster: connection, ``daprsystem``, trust bundle.

The cluster is the one of ``$KUBECONFIG`` (its first file), else ``~/.kube/config`` (else the
in-cluster service account, as client-go's default rules), like Dapr's CLI. What the commands read
is what Dapr's CLI reads (``cli:pkg/kubernetes/mtls.go``): the Configuration ``daprsystem`` of
``configurations.dapr.io/v1alpha1`` in any namespace (its namespace is the control plane's; no
CRD counts as none), and there the Secret ``dapr-trust-bundle`` (``ca.crt``, ``issuer.crt``,
``issuer.key``) and the ConfigMap of the same name (``ca.crt``).

Every failure is a :class:`CliError` naming the fix: a missing or garbled kubeconfig (named,
never quoted: it holds tokens), an API server that is down, a 401 and a 403 (the verb, resource
and namespace the kubeconfig's user may not use). Dapr's own error texts are kept where it has
them (``system configuration not found``, ``could not find trust chain secret named …``,
``root certificate not loaded yet, please try again in few minutes``).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from cryptography import x509

from pysentry.cli import console
from pysentry.cli.certexpiry import expiry_warning_for
from pysentry.cli.console import CliError
from pysentry.errors import ConfigError
from pysentry.kube.access import Permission, missing_permissions
from pysentry.kube.client import JsonObject, KubeApiError, KubeClient, KubeError, KubeUnreachable
from pysentry.kube.config import in_cluster, load_kube_configuration
from pysentry.pki.pem import PemError, strict_certificates

SYSTEM_CONFIG = "daprsystem"
TRUST_BUNDLE = "dapr-trust-bundle"
CONFIGURATIONS = "/apis/dapr.io/v1alpha1/configurations"
CA_KEY = "ca.crt"
NO_ROOT_YET = "root certificate not loaded yet, please try again in few minutes"
KUBERNETES_WHERE = "Dapr root certificate of your Kubernetes cluster"
RENEW_FIX = "renew it with 'dapr mtls renew-certificate -k'"


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


@dataclass
class TrustBundle:
    """The Secret (values decoded) and ConfigMap ``dapr-trust-bundle`` of one namespace."""

    namespace: str
    secret: dict[str, bytes]
    configmap_ca: bytes | None
    secret_resource_version: str
    configmap_resource_version: str | None

    def label(self, key: str) -> str:
        """How messages name one value: ``ca.crt of Secret 'dapr-system/dapr-trust-bundle'``."""
        return f"{key} of Secret {f'{self.namespace}/{TRUST_BUNDLE}'!r}"


def _decoded(data: JsonObject, namespace: str) -> dict[str, bytes]:
    out = {}
    for key, value in data.items():
        try:
            out[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as err:
            raise CliError(
                f"Secret {f'{namespace}/{TRUST_BUNDLE}'!r}: key {key!r} is not base64; "
                "the API server sent an invalid Secret"
            ) from err
    return out


async def trust_bundle(kube: KubeClient, namespace: str, *, configmap: bool = True) -> TrustBundle:
    """The trust bundle of ``namespace``; ``configmap=False`` reads the Secret alone."""
    base = f"/api/v1/namespaces/{namespace}"
    try:
        secret = await api_get(
            kube,
            f"{base}/secrets/{TRUST_BUNDLE}",
            verb="get",
            resource="secrets",
            namespace=namespace,
        )
    except KubeApiError as err:
        raise CliError(
            f"could not find trust chain secret named {TRUST_BUNDLE} in namespace {namespace}"
        ) from err
    configmap_ca: bytes | None = None
    configmap_version: str | None = None
    if configmap:
        try:
            cm = await api_get(
                kube,
                f"{base}/configmaps/{TRUST_BUNDLE}",
                verb="get",
                resource="configmaps",
                namespace=namespace,
            )
        except KubeApiError:
            cm = None
        if cm is not None:
            configmap_version = str((cm.get("metadata") or {}).get("resourceVersion") or "")
            value = (cm.get("data") or {}).get(CA_KEY)
            configmap_ca = str(value).encode() if value is not None else None
    return TrustBundle(
        namespace=namespace,
        secret=_decoded(secret.get("data") or {}, namespace),
        configmap_ca=configmap_ca,
        secret_resource_version=str((secret.get("metadata") or {}).get("resourceVersion") or ""),
        configmap_resource_version=configmap_version,
    )


def first_root(bundle: TrustBundle) -> x509.Certificate:
    """The first certificate of the Secret's ``ca.crt`` (Dapr's ``Expiry()``); the value must be
    whole: a damaged block anywhere is an error naming it."""
    data = bundle.secret.get(CA_KEY)
    if data is None:
        raise CliError(NO_ROOT_YET)
    try:
        return strict_certificates(data, "value")[0]
    except PemError as err:
        raise CliError(f"{bundle.label(CA_KEY)}: {err.problem}; {RENEW_FIX}") from err


async def root_expiry(kube: KubeClient) -> datetime:
    """``NotAfter`` of the first root in the control plane's Secret."""
    namespace = await control_plane_namespace(kube)
    bundle = await trust_bundle(kube, namespace, configmap=False)
    return first_root(bundle).not_valid_after_utc


async def check_for_cert_expiry(kube: KubeClient, now: datetime) -> None:
    """Dapr's PostRun check (A.6): a warning when the root expires within 30 days. Silent when
    there is no Secret or root yet (as Dapr); a damaged root or a refused read is a warning."""
    try:
        expiry = await root_expiry(kube)
    except CliError as err:
        text = str(err)
        if text == NO_ROOT_YET or text.startswith(("system configuration", "could not find")):
            return
        console.warning(f"cannot check the root certificate's expiry: {text}")
        return
    warning = expiry_warning_for(expiry, now, KUBERNETES_WHERE)
    if warning is not None:
        console.warning(warning)
