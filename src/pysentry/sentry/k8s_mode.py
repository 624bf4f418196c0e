"""What Sentry's startup does differently with ``--mode kubernetes`` (``main.run`` calls these).

:meth:`KubernetesMode.open` checks ``NAMESPACE``, connects (``--kubeconfig``/``KUBECONFIG``, else
the in-cluster service account) and checks RBAC; then the Configuration comes from the CRD, the
bundle from the ``dapr-trust-bundle`` Secret, the ``kubernetes`` validator is added, and a
:class:`~pysentry.sentry.kubernetes.TrustBundleWatcher` replaces the file reloader.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import PurePath

from pysentry.config import Configuration
from pysentry.credentials.kube import TRUST_BUNDLE_NAME, KubeTrustBundle, TrustBundleSnapshot
from pysentry.credentials.kube_store import DEFAULT_POLL_INTERVAL, KubeSecretStore
from pysentry.errors import ConfigError
from pysentry.kube.client import KubeClient
from pysentry.pki.bundle import CaBundle
from pysentry.pki.keys import KeyAlgorithm
from pysentry.sentry.ca import CaSettings, CertificateAuthority
from pysentry.sentry.k8s_validator import KubernetesValidator
from pysentry.sentry.kubernetes import (
    POLL_INTERVAL_ENV,
    TrustBundleWatcher,
    check_permissions,
    connect,
    load_kube_configuration_cr,
    load_or_generate,
)
from pysentry.sentry.monitoring import Health, SentryMetrics


def poll_interval(env: Mapping[str, str]) -> timedelta:
    raw = env.get(POLL_INTERVAL_ENV, "")
    if not raw:
        return DEFAULT_POLL_INTERVAL
    try:
        seconds = float(raw)
    except ValueError as err:
        raise ConfigError(f"{POLL_INTERVAL_ENV}={raw!r}: not a number of seconds") from err
    if seconds <= 0:
        raise ConfigError(f"{POLL_INTERVAL_ENV}={raw!r}: must be more than 0")
    return timedelta(seconds=seconds)


def control_plane_namespace(env: Mapping[str, str]) -> str:
    """``$NAMESPACE``; required in Kubernetes mode, as in Dapr (``CurrentNamespaceOrError``)."""
    namespace = env.get("NAMESPACE", "")
    if not namespace:
        raise ConfigError(
            "NAMESPACE is not set: in Kubernetes mode Sentry needs the namespace it runs in "
            "(Dapr's chart sets it from metadata.namespace); set NAMESPACE=<control-plane "
            "namespace>"
        )
    return namespace


SKIP_UID_CHECK_ENV = "DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK"


def check_not_root(env: Mapping[str, str], uid: int | None = None) -> None:
    """Dapr's ``pkg/security/usergroup.go``: no UID 0 in Kubernetes mode unless overridden."""
    uid = os.getuid() if uid is None else uid
    if uid == 0 and env.get(SKIP_UID_CHECK_ENV, "").lower() != "true":
        raise ConfigError(
            "current user UID(0) is root. Dapr must be run as a non-root user in Kubernetes "
            f"environments. To override this check, set the environment variable "
            f"'{SKIP_UID_CHECK_ENV}=true'"
        )


class KubernetesMode:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        names: tuple[str, str, str],
        env: Mapping[str, str],
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.store = KubeTrustBundle(client, namespace, names=names)
        self._poll = poll_interval(env)
        self._snapshot: TrustBundleSnapshot | None = None

    @classmethod
    async def open(
        cls,
        *,
        kubeconfig: str | None,
        names: tuple[str, str, str],
        env: Mapping[str, str] | None = None,
    ) -> KubernetesMode:
        """Connect and check RBAC. ``names`` are the Secret keys (``filepath.Base`` of the
        ``--issuer-*-filename`` flags, as in Dapr)."""
        env = os.environ if env is None else env
        check_not_root(env)
        namespace = control_plane_namespace(env)
        keys = tuple(PurePath(n).name for n in names)
        client = await connect(kubeconfig)
        try:
            mode = cls(client, namespace, (keys[0], keys[1], keys[2]), env)
            await check_permissions(client, namespace, TRUST_BUNDLE_NAME)
        except BaseException:
            await client.close()
            raise
        return mode

    async def close(self) -> None:
        await self.client.close()

    async def load_config(self, name: str) -> Configuration:
        return await load_kube_configuration_cr(self.client, self.namespace, name)

    async def load_bundle(self, settings: CaSettings, algorithm: KeyAlgorithm) -> CaBundle:
        bundle, self._snapshot = await load_or_generate(self.store, settings, algorithm)
        return bundle

    def validator(self, settings: CaSettings) -> KubernetesValidator:
        return KubernetesValidator(
            self.client,
            sentry_id=settings.sentry_id,
            control_plane_namespace=self.namespace,
            control_plane_trust_domain=settings.trust_domain,
        )

    def watcher(
        self,
        ca: CertificateAuthority,
        *,
        on_swap: Callable[[], Awaitable[object]],
        metrics: SentryMetrics | None,
        health: Health | None,
        quiet_period: timedelta,
    ) -> TrustBundleWatcher:
        if self._snapshot is None:
            raise RuntimeError("load_bundle() must run before watcher()")
        store = KubeSecretStore(
            self.store, loop=asyncio.get_running_loop(), poll_interval=self._poll
        )
        return TrustBundleWatcher(
            store,
            ca,
            self.client,
            loaded=self._snapshot,
            on_swap=on_swap,
            metrics=metrics,
            health=health,
            quiet_period=quiet_period,
            poll_interval=self._poll,
        )
