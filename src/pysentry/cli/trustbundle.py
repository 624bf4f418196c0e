"""A cluster's ``dapr-trust-bundle`` as the ``dapr`` CLI reads it, and its root's expiry.

In the control plane's namespace (:func:`pysentry.cli.cluster.control_plane_namespace`): the
Secret ``dapr-trust-bundle`` (``ca.crt``, ``issuer.crt``, ``issuer.key``, base64 values decoded)
and the ConfigMap of the same name (``ca.crt``), as Dapr's CLI reads them
(``cli:pkg/kubernetes/mtls.go``). Writing them is :mod:`pysentry.cli.kubebundle`'s. Dapr's own
texts are kept (``could not find trust chain secret named …``, ``root certificate not loaded
yet, please try again in few minutes``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from pysentry.cli import console
from pysentry.cli.certexpiry import expiry_warning_for
from pysentry.cli.cluster import api_get, control_plane_namespace
from pysentry.cli.console import CliError
from pysentry.kube.client import JsonObject, KubeApiError, KubeClient
from pysentry.pki.pem import PemError, strict_certificates

TRUST_BUNDLE = "dapr-trust-bundle"
CA_KEY = "ca.crt"
NO_ROOT_YET = "root certificate not loaded yet, please try again in few minutes"
KUBERNETES_WHERE = "Dapr root certificate of your Kubernetes cluster"
RENEW_FIX = "renew it with 'dapr mtls renew-certificate -k'"


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
