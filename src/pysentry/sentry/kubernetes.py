"""Sentry's Kubernetes mode: API connection, RBAC check, ``daprsystem`` Configuration, and the
trust bundle in Secret + ConfigMap ``dapr-trust-bundle`` (spec §5.4), with hot reload.

Startup (:func:`connect`, :func:`check_permissions`, :func:`load_kube_configuration_cr`,
:func:`load_or_generate`):

- the API server must answer (``GET /version``), else a fatal error naming the server and the fix;
- Sentry's user must hold every permission of Dapr's chart (Role + ClusterRole ``dapr-sentry``);
  the missing ones are named, all at once, before anything else fails half-way;
- the Configuration ``--config`` (``daprsystem``) is read from the CRD in ``$NAMESPACE``;
- an empty Secret gets a generated CA: written with an optimistic update, so of several replicas
  racing only one writes and the others load its bundle; then the ConfigMap gets its ``ca.crt``;
- a complete Secret is validated and loaded; a ConfigMap that is missing ``ca.crt`` or differs is
  repaired from the Secret (Dapr would silently generate a new root here: we never re-root);
- a partial or invalid Secret is fatal, naming the keys and the fix.

Hot reload (:class:`TrustBundleWatcher`) is the file store's reloader on the Secret seen as a
:class:`~pysentry.credentials.kube_store.KubeSecretStore`: the Secret's resourceVersion is polled
(the chart's RBAC grants no ``watch`` on Secrets), a valid change is swapped in, an invalid one is
rejected and the last good bundle keeps serving; the ConfigMap is kept equal to the served
``ca.crt``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from urllib.parse import quote

from pysentry.clock import Clock, system_clock
from pysentry.config import Configuration, parse_configuration
from pysentry.credentials.base import StoreState
from pysentry.credentials.kube import KubeTrustBundle, TrustBundleSnapshot
from pysentry.credentials.kube_store import DEFAULT_POLL_INTERVAL, KubeSecretStore
from pysentry.errors import ConfigError
from pysentry.kube.access import Permission, missing_permissions
from pysentry.kube.client import KubeApiError, KubeClient, KubeError
from pysentry.pki.bundle import CaBundle
from pysentry.pki.keys import KeyAlgorithm
from pysentry.sentry.ca import CaSettings, CertificateAuthority
from pysentry.sentry.monitoring import Health, SentryMetrics
from pysentry.sentry.reload import CredentialsReloader

log = logging.getLogger("pysentry.sentry")

POLL_INTERVAL_ENV = "PYSENTRY_TRUST_BUNDLE_POLL"
"""Seconds (float) between two reads of the trust-bundle Secret (default 5)."""
HEALTH_DETAIL_API = "kubernetes-api"
_SAVE_ATTEMPTS = 5


def required_permissions(namespace: str, bundle_name: str) -> tuple[Permission, ...]:
    """Dapr's chart (v1.16 ``dapr_rbac/templates/sentry.yaml``): what Sentry uses, no more."""
    secret = [
        Permission(v, "secrets", namespace=namespace, name=bundle_name) for v in ("get", "update")
    ]
    configmap = [
        Permission(v, "configmaps", namespace=namespace, name=bundle_name)
        for v in ("get", "update")
    ]
    cluster = [Permission("create", "tokenreviews", group="authentication.k8s.io")]
    cluster += [Permission(v, "pods") for v in ("get", "list", "watch")]
    cluster += [Permission(v, "configurations", group="dapr.io") for v in ("get", "list", "watch")]
    return (*secret, *configmap, *cluster)


async def connect(kubeconfig: str | None) -> KubeClient:
    """A client whose API server answered ``/version``; fatal errors name the server and the fix."""
    client = await KubeClient.connect(kubeconfig)
    try:
        version = await client.get("/version")
    except KubeError:
        await client.close()
        raise
    log.info(
        "Connected to the Kubernetes API server %s (%s), version %s",
        client.server,
        client.source.source,
        version.get("gitVersion", "unknown"),
    )
    return client


async def check_permissions(client: KubeClient, namespace: str, bundle_name: str) -> None:
    missing = await missing_permissions(client, required_permissions(namespace, bundle_name))
    if missing:
        raise ConfigError(
            "Sentry's Kubernetes user lacks permissions it needs: "
            + "; ".join(str(p) for p in missing)
            + ". Grant them as Dapr's chart does (Role and ClusterRole 'dapr-sentry' bound to "
            "the ServiceAccount 'dapr-sentry'); see docs/kubernetes.md"
        )


async def load_kube_configuration_cr(
    client: KubeClient, namespace: str, name: str
) -> Configuration:
    """``configurations.dapr.io/v1alpha1`` ``name`` in ``namespace`` (Dapr: fatal if missing)."""
    path = (
        f"/apis/dapr.io/v1alpha1/namespaces/{quote(namespace, safe='')}/configurations/"
        f"{quote(name, safe='')}"
    )
    try:
        obj = await client.get(path)
    except KubeApiError as err:
        if err.not_found:
            raise ConfigError(
                f"config CRD not found: Configuration {namespace}/{name} does not exist; create it "
                "(Dapr's chart installs 'daprsystem') or pass --config with an existing name"
            ) from err
        raise
    return parse_configuration(json.dumps(obj), f"Configuration {namespace}/{name}")


def _generate(settings: CaSettings, algorithm: KeyAlgorithm, clock: Clock) -> CaBundle:
    return CaBundle.generate(
        settings.trust_domain,
        settings.namespace,
        now=clock(),
        algorithm=algorithm,
        skew=settings.clock_skew,
    )


async def load_or_generate(
    store: KubeTrustBundle,
    settings: CaSettings,
    algorithm: KeyAlgorithm,
    clock: Clock = system_clock,
) -> tuple[CaBundle, TrustBundleSnapshot]:
    """The bundle to start with and the snapshot it came from (see the module docstring)."""
    for _ in range(_SAVE_ATTEMPTS):
        snapshot = await store.read()
        if snapshot.state is not StoreState.NONE:
            bundle = store.validate(snapshot, now=clock())
            log.info("Root and issuer certs found: using credentials from store")
            await _repair_configmap(store, snapshot)
            return bundle, snapshot
        log.info("Root and issuer certs not found: generating self signed CA")
        bundle = await asyncio.to_thread(_generate, settings, algorithm, clock)
        log.info("Generating self-signed CA certs and persisting to store")
        if await store.save(bundle, snapshot):
            await store.sync_configmap(bundle.anchors_pem())
            log.info("Self-signed certs and JWT root key generated and persisted successfully")
            return bundle, await store.read()
        log.info(
            "%s was written by another Sentry meanwhile: loading its trust bundle", store.location
        )
    raise KubeError(
        f"{store.location}: changed under every save attempt; is another writer rewriting it?"
    )


async def _repair_configmap(store: KubeTrustBundle, snapshot: TrustBundleSnapshot) -> None:
    current = snapshot.configmap_ca
    if current == snapshot.ca_pem:
        return
    if await store.sync_configmap(snapshot.ca_pem):
        what = "had no ca.crt" if current is None else "had a different ca.crt"
        log.warning(
            "ConfigMap %s/%s %s: repaired it from %s (the trust anchors are unchanged)",
            store.namespace,
            store.name,
            what,
            store.location,
        )


class TrustBundleWatcher:
    """Hot reload in Kubernetes mode: the file store's :class:`CredentialsReloader` on the
    Secret (:class:`KubeSecretStore`), plus the API-server status in ``/healthz``."""

    def __init__(
        self,
        store: KubeSecretStore,
        ca: CertificateAuthority,
        client: KubeClient,
        *,
        loaded: TrustBundleSnapshot,
        on_swap: Callable[[], Awaitable[object]],
        metrics: SentryMetrics | None,
        health: Health | None,
        quiet_period: timedelta,
        poll_interval: timedelta = DEFAULT_POLL_INTERVAL,
    ) -> None:
        store.serving(loaded.ca_pem)
        self.reloader = CredentialsReloader(
            store,
            ca,
            on_swap=on_swap,
            metrics=metrics,
            health=health,
            quiet_period=quiet_period,
            loaded_version=loaded.secret_version,
        )
        self._location = store.location
        self._client = client
        self._health = health
        self._poll = poll_interval

    def _report_api(self) -> None:
        if self._health is None:
            return
        if self._client.connected is False:
            self._health.set_detail(HEALTH_DETAIL_API, f"unreachable: {self._client.last_error}")
        else:
            self._health.set_detail(HEALTH_DETAIL_API, f"connected to {self._client.server}")

    async def wait_ready(self) -> None:
        await self.reloader.wait_ready()

    async def run(self) -> None:
        log.info(
            "Watching %s for changes (every %.1fs)", self._location, self._poll.total_seconds()
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.reloader.run())
            while True:
                self._report_api()
                await asyncio.sleep(self._poll.total_seconds())
