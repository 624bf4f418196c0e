"""The ``kubernetes`` validator (spec §7.5): a Pod's service-account token proves who it is.

In Dapr's order, with Dapr's messages: caches synced (``validator not ready``), the common checks,
a TokenReview with audiences ``["dapr.io/sentry", <Sentry ID>]``, the ``system:serviceaccount:``
username, the token's ``kubernetes.io.pod.name`` claim and that Pod, namespace and service account,
the control-plane annotation, the app ID (``dapr.io/app-id`` or the pod name), then the trust
domain from the Pod's ``dapr.io/config`` Configuration (``spec.accessControl.trustDomain``).

Pods and Configurations come from list+watch caches (a miss is looked up directly, so a Pod
created a moment ago is not refused); the validator is ready once both caches have synced.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import jwt

from pysentry.errors import InvalidSpiffeId, RequestDenied
from pysentry.kube.client import JsonObject, KubeApiError, KubeClient, KubeError
from pysentry.kube.watch import ObjectCache
from pysentry.sentry.validators import SignRequest, TokenValidator, validate_common
from pysentry.spiffe import SpiffeId, TrustDomain

log = logging.getLogger(__name__)

HEALTH_TARGET = "sentry-kubernetes-validator"
AUDIENCE = "dapr.io/sentry"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
CORE_V1 = "/api/v1"
DAPR_V1ALPHA1 = "/apis/dapr.io/v1alpha1"
PODS = f"{CORE_V1}/pods"
CONFIGURATIONS = f"{DAPR_V1ALPHA1}/configurations"
CONTROL_PLANE_ANNOTATION = "dapr.io/control-plane"
APP_ID_ANNOTATION = "dapr.io/app-id"
CONFIG_ANNOTATION = "dapr.io/config"
CONTROL_PLANE_SERVICES = ("operator", "placement", "injector", "sentry", "scheduler")
DEFAULT_TRUST_DOMAIN = TrustDomain("public")


def _pod_view(pod: JsonObject) -> JsonObject:
    meta = pod.get("metadata") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "annotations": meta.get("annotations") or {},
        },
        "spec": {"serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "")},
    }


def _configuration_view(config: JsonObject) -> JsonObject:
    meta = config.get("metadata") or {}
    access = ((config.get("spec") or {}).get("accessControl")) or {}
    return {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": {"accessControl": {"trustDomain": access.get("trustDomain", "")}},
    }


def pod_name_claim(token: str) -> str:
    """The ``kubernetes.io.pod.name`` claim, read without verifying (TokenReview did that)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as err:
        raise RequestDenied(f"failed to parse Kubernetes token: {err}") from err
    kube = claims.get("kubernetes.io")
    pod = kube.get("pod") if isinstance(kube, dict) else None
    name = pod.get("name") if isinstance(pod, dict) else None
    if not isinstance(name, str) or not name:
        raise RequestDenied("kubernetes.io/pod/name claim is missing from Kubernetes token")
    return name


class KubernetesValidator:
    """Dapr's default validator in Kubernetes mode."""

    def __init__(
        self,
        client: KubeClient,
        *,
        sentry_id: SpiffeId,
        control_plane_namespace: str,
        control_plane_trust_domain: TrustDomain,
    ) -> None:
        self._client = client
        self._sentry_id = sentry_id
        self._cp_namespace = control_plane_namespace
        self._cp_trust_domain = control_plane_trust_domain
        self.pods = ObjectCache(client, PODS, project=_pod_view)
        self.configurations = ObjectCache(client, CONFIGURATIONS, project=_configuration_view)

    @property
    def kind(self) -> TokenValidator:
        return TokenValidator.KUBERNETES

    @property
    def health_target(self) -> str | None:
        return HEALTH_TARGET

    def ready(self) -> bool:
        return self.pods.synced and self.configurations.synced

    async def start(self) -> None:
        """List Pods and Configurations once (a 403 here is fatal and names the permission)."""
        await asyncio.gather(self.pods.sync(), self.configurations.sync())

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.pods.run())
            tasks.create_task(self.configurations.run())

    async def _lookup(
        self, cache: ObjectCache, group_path: str, resource: str, namespace: str, name: str
    ) -> JsonObject | None:
        found = cache.get(namespace, name)
        if found is not None:
            return found
        path = (
            f"{group_path}/namespaces/{quote(namespace, safe='')}/{resource}/{quote(name, safe='')}"
        )
        try:  # not (yet) in the cache: ask the API server
            return await self._client.get(path)
        except KubeApiError as err:
            if err.not_found:
                return None
            raise

    async def _review(self, token: str) -> str:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [AUDIENCE, str(self._sentry_id)]},
        }
        try:
            review = await self._client.post(TOKEN_REVIEWS, body)
        except KubeError as err:
            raise RequestDenied(f"token review failed: {err}") from err
        status = review.get("status") or {}
        if status.get("error"):
            raise RequestDenied(f"invalid token: {status['error']}")
        if not status.get("authenticated"):
            raise RequestDenied("authentication failed")
        return str((status.get("user") or {}).get("username", ""))

    async def validate(self, request: SignRequest) -> TrustDomain:
        if not self.ready():
            raise RequestDenied("validator not ready")
        validate_common(request)
        username = await self._review(request.token)
        parts = username.split(":")
        if len(parts) != 4 or parts[0] != "system":
            raise RequestDenied("provided token is not a properly structured service account token")
        sa_namespace, service_account = parts[2], parts[3]
        pod_name = pod_name_claim(request.token)
        try:
            pod = await self._lookup(self.pods, CORE_V1, "pods", sa_namespace, pod_name)
        except KubeError as err:
            log.warning("Failed to get pod %s/%s: %s", sa_namespace, pod_name, err)
            pod = None
        if pod is None:
            raise RequestDenied("failed to get pod of identity")
        if sa_namespace != request.namespace:
            raise RequestDenied(f"namespace mismatch; received namespace: {request.namespace}")
        if (pod.get("spec") or {}).get("serviceAccountName", "") != service_account:
            raise RequestDenied("pod service account mismatch")
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        control_plane = annotations.get(CONTROL_PLANE_ANNOTATION)
        if control_plane is not None:
            expected = self._control_plane_id(str(control_plane), sa_namespace, annotations)
        else:
            expected = str(annotations.get(APP_ID_ANNOTATION) or pod_name)
        if expected != request.app_id:
            raise RequestDenied(
                f"app-id mismatch. expected: {expected}, received: {request.app_id}"
            )
        if control_plane is not None:
            return self._cp_trust_domain
        return await self._trust_domain(request.namespace, annotations.get(CONFIG_ANNOTATION))

    def _control_plane_id(self, service: str, namespace: str, annotations: JsonObject) -> str:
        if namespace != self._cp_namespace:
            raise RequestDenied(f"control plane service in namespace '{namespace}' is not allowed")
        if service not in CONTROL_PLANE_SERVICES:
            raise RequestDenied(f"unknown control plane service '{service}'")
        if APP_ID_ANNOTATION in annotations:
            raise RequestDenied(
                f"control plane service '{service}' cannot have annotation '{APP_ID_ANNOTATION}'"
            )
        return f"dapr-{service}"

    async def _trust_domain(self, namespace: str, config_name: object) -> TrustDomain:
        if not config_name:
            return DEFAULT_TRUST_DOMAIN
        try:
            config = await self._lookup(
                self.configurations, DAPR_V1ALPHA1, "configurations", namespace, str(config_name)
            )
        except KubeError as err:
            log.warning("Failed to get configuration %s/%s: %s", namespace, config_name, err)
            config = None
        if config is None:
            raise RequestDenied("failed to get configuration")
        access = ((config.get("spec") or {}).get("accessControl")) or {}
        raw = str(access.get("trustDomain") or "")
        if not raw:
            return DEFAULT_TRUST_DOMAIN
        try:
            return TrustDomain.parse(raw)
        except InvalidSpiffeId as err:
            raise RequestDenied(f'failed to parse trust domain "{raw}": {err}') from err
