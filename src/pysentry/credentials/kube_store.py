"""The Kubernetes Secret as a :class:`~pysentry.credentials.base.CredentialStore`.

:class:`KubeSecretStore` gives the ``dapr-trust-bundle`` Secret (:class:`KubeTrustBundle`) the
same seam as the file store, so the same reloader serves both. Its blocking methods are meant for
worker threads (as the seam says): each runs its requests on the event loop the store was created
on and waits for them. The API server being unreachable, or the Secret gone, is
:class:`CredentialsUnavailable` (the last good bundle keeps serving).

The change stream polls the Secret's resourceVersion (Dapr's chart grants no ``watch`` on
Secrets) and keeps the ConfigMap's ``ca.crt`` in step with the bundle being served (the last one
:meth:`KubeSecretStore.load` returned): made equal to it once after each load, then repaired only
when it lacks one of the served roots. A ConfigMap that trusts *more* is left alone for
:data:`STAGED_POLLS` polls: that is how ``dapr mtls renew-certificate -k`` stages a new root for
the sidecars before the Secret changes, and a poll between its two writes must not undo the
first. Past that (a renewal that stopped half-way, or a hand edit) it is made equal again, with a
warning: sidecars must not go on trusting roots the Secret does not hold. A poll that sees a new
Secret version leaves the ConfigMap to the load that follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timedelta
from typing import TypeVar

from pysentry.credentials.base import (
    CredentialsUnavailable,
    SaveFailed,
    StoredCredentials,
    StoreEvent,
    StoreState,
)
from pysentry.credentials.kube import KubeTrustBundle, TrustBundleObjectMissing
from pysentry.errors import InvalidBundle
from pysentry.kube.client import KubeError
from pysentry.pki.bundle import CaBundle
from pysentry.pki.pem import load_certificates

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_POLL_INTERVAL = timedelta(seconds=5)
CALL_TIMEOUT = timedelta(seconds=20)
STAGED_POLLS = 12
"""How many polls a ConfigMap holding more roots than the served ``ca.crt`` is left alone (60 s at
the default interval)."""


class KubeSecretStore:
    def __init__(
        self,
        bundle: KubeTrustBundle,
        *,
        loop: asyncio.AbstractEventLoop,
        poll_interval: timedelta = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.bundle = bundle
        self._loop = loop
        self._poll = poll_interval
        self._served_ca: bytes | None = None
        self._exact = True  # the next poll makes the ConfigMap equal to the served ca.crt
        self._staged_polls = 0  # consecutive polls that saw a ConfigMap trusting more

    @property
    def location(self) -> str:
        return self.bundle.location

    def _call(self, make: Callable[[], Awaitable[T]], what: str) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("KubeSecretStore: blocking methods must run off the event loop")

        async def run() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return future.result(CALL_TIMEOUT.total_seconds())
        except FutureTimeout as err:
            future.cancel()
            raise CredentialsUnavailable(
                f"{what} {self.location}: no answer within {CALL_TIMEOUT.total_seconds():g}s"
            ) from err
        except (KubeError, TrustBundleObjectMissing) as err:
            raise CredentialsUnavailable(f"{what} {self.location}: {err}") from err

    def serving(self, ca_pem: bytes) -> None:
        """Tell the store which ``ca.crt`` is served (e.g. after start-up), for the ConfigMap."""
        self._served_ca = ca_pem

    def prepare(self) -> tuple[str, ...]:
        return ()  # a Secret update is atomic: nothing is ever left half-written

    def state(self) -> StoreState:
        return self._call(self.bundle.read, "reading").state

    def version(self) -> str:
        secret = self._call(self.bundle.read_secret, "reading")
        return str((secret.get("metadata") or {}).get("resourceVersion", ""))

    def load(self, *, now: datetime) -> StoredCredentials:
        snapshot = self._call(self.bundle.read, "reading")
        bundle = self.bundle.validate(snapshot, now=now)
        self._served_ca, self._exact = snapshot.ca_pem, True
        return StoredCredentials(bundle, snapshot.secret_version)

    def save(self, bundle: CaBundle) -> None:
        snapshot = self._call(self.bundle.read, "reading")
        if snapshot.state is not StoreState.NONE:
            raise SaveFailed(f"refusing to overwrite the trust bundle in {self.location}")
        if not self._call(lambda: self.bundle.save(bundle, snapshot), "writing"):
            raise SaveFailed(
                f"{self.location} was written by another writer meanwhile; "
                "nothing was saved: load the bundle it holds"
            )
        self._call(lambda: self.bundle.sync_configmap(bundle.anchors_pem()), "writing")

    async def _poll_once(self, last: str | None = None) -> str:
        secret = await self.bundle.read_secret()
        version = str((secret.get("metadata") or {}).get("resourceVersion", ""))
        served = self._served_ca
        if served is None or (last is not None and version != last):
            return version  # a new Secret: the load that follows decides the ConfigMap
        staged = not self._exact and await self._configmap_stages(served)
        self._staged_polls = self._staged_polls + 1 if staged else 0
        if staged and self._staged_polls <= STAGED_POLLS:
            return version
        if await self.bundle.sync_configmap(served):
            log.warning(
                "ConfigMap %s/%s %s: repaired it",
                self.bundle.namespace,
                self.bundle.name,
                f"trusted roots the Secret does not hold for {STAGED_POLLS} polls"
                if staged
                else "did not match the served ca.crt",
            )
        self._exact, self._staged_polls = False, 0
        return version

    async def _configmap_stages(self, served: bytes) -> bool:
        """Whether the ConfigMap's ``ca.crt`` holds every served root and more (and parses)."""
        current = (await self.bundle.read()).configmap_ca
        if current is None:
            return False
        try:
            have = set(load_certificates(current))
            want = set(load_certificates(served))
        except (InvalidBundle, ValueError):
            return False
        return want < have

    async def changes(self) -> AsyncIterator[StoreEvent]:
        last = await self._poll_once()  # before WATCHING: a change after this is seen below
        yield StoreEvent.WATCHING
        while True:
            await asyncio.sleep(self._poll.total_seconds())
            try:
                version = await self._poll_once(last)
            except (KubeError, TrustBundleObjectMissing) as err:
                log.warning(
                    "Reading %s failed, still serving the current CA: %s", self.location, err
                )
                continue
            if version != last:
                last = version
                yield StoreEvent.CHANGED
