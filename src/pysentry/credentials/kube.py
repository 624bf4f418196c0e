"""The Kubernetes implementation of the credentials store: Secret + ConfigMap ``dapr-trust-bundle``
(spec §5.4), on :class:`pysentry.kube.client.KubeClient`.

- The Secret holds ``ca.crt``, ``issuer.crt`` and ``issuer.key``; the ConfigMap holds the public
  ``ca.crt`` that other control-plane pods and the injector read. Both must exist (the chart creates
  them); this store only gets and updates them, as the chart's RBAC allows.
- :meth:`KubeTrustBundle.read` takes a :class:`TrustBundleSnapshot` of both; its :attr:`state` is
  none, partial or complete; :meth:`KubeTrustBundle.validate` checks a complete one.
- :meth:`KubeTrustBundle.save` writes a generated bundle with an optimistic update on the
  Secret's resourceVersion: when another writer (another Sentry replica) got there first it
  returns False and writes nothing, and the caller loads the winner's bundle.
- :meth:`KubeTrustBundle.sync_configmap` makes the ConfigMap's ``ca.crt`` equal to a given PEM
  (the Secret's): Sentry repairs a missing or stale ConfigMap instead of re-rooting as Dapr does.

Keys and PEM bodies never appear in messages; key names and object names do.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from pysentry.credentials.base import (
    CA_FILENAME,
    CREDENTIAL_FILENAMES,
    CredentialsUnavailable,
    IncompleteCredentials,
    StoreState,
)
from pysentry.errors import ConfigError, InvalidBundle
from pysentry.kube.client import JsonObject, KubeApiError, KubeClient, KubeError
from pysentry.pki.bundle import CaBundle

log = logging.getLogger(__name__)

TRUST_BUNDLE_NAME = "dapr-trust-bundle"
_CONFLICT_RETRIES = 5


class TrustBundleObjectMissing(ConfigError):
    """The Secret or ConfigMap does not exist (Sentry never creates them)."""


@dataclass(frozen=True, slots=True)
class TrustBundleSnapshot:
    """Both objects as read at one moment. ``items`` holds only the three credential keys."""

    secret: JsonObject = field(repr=False)
    configmap: JsonObject = field(repr=False)
    items: Mapping[str, bytes] = field(repr=False)
    names: tuple[str, str, str]

    @property
    def secret_version(self) -> str:
        return str((self.secret.get("metadata") or {}).get("resourceVersion", ""))

    @property
    def configmap_ca(self) -> bytes | None:
        value = (self.configmap.get("data") or {}).get(CA_FILENAME)
        return value.encode() if isinstance(value, str) else None

    @property
    def state(self) -> StoreState:
        present = [n for n in self.names if self.items.get(n)]
        if not present:
            return StoreState.NONE
        return StoreState.COMPLETE if len(present) == len(self.names) else StoreState.PARTIAL

    @property
    def ca_pem(self) -> bytes:
        return self.items.get(self.names[0], b"")


class KubeTrustBundle:
    """The trust bundle of one control-plane namespace."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        *,
        names: tuple[str, str, str] = CREDENTIAL_FILENAMES,
        name: str = TRUST_BUNDLE_NAME,
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.names = names
        self.name = name
        ns, obj = quote(namespace, safe=""), quote(name, safe="")
        self._secret_path = f"/api/v1/namespaces/{ns}/secrets/{obj}"
        self._configmap_path = f"/api/v1/namespaces/{ns}/configmaps/{obj}"

    @property
    def location(self) -> str:
        return f"Secret {self.namespace}/{self.name}"

    def _missing(self, kind: str) -> TrustBundleObjectMissing:
        return TrustBundleObjectMissing(
            f"{kind} {self.namespace}/{self.name} not found: Sentry only reads and updates it and "
            f"never creates it (Dapr's Helm chart does); install the chart, or create it empty: "
            f"kubectl create {kind.lower()} {'generic ' if kind == 'Secret' else ''}"
            f"{self.name} -n {self.namespace}"
        )

    async def _get(self, path: str, kind: str) -> JsonObject:
        try:
            return await self._client.get(path)
        except KubeApiError as err:
            if err.not_found:
                raise self._missing(kind) from err
            raise

    async def read_secret(self) -> JsonObject:
        return await self._get(self._secret_path, "Secret")

    async def read(self) -> TrustBundleSnapshot:
        """Both objects now; :class:`TrustBundleObjectMissing` or :class:`KubeError` on failure."""
        secret = await self.read_secret()
        configmap = await self._get(self._configmap_path, "ConfigMap")
        return TrustBundleSnapshot(secret, configmap, self._decode(secret), self.names)

    def _decode(self, secret: JsonObject) -> dict[str, bytes]:
        data = secret.get("data") or {}
        items = {}
        for key in self.names:
            raw = data.get(key)
            if not raw:
                continue
            try:
                items[key] = base64.b64decode(str(raw), validate=True)
            except (binascii.Error, ValueError) as err:
                raise CredentialsUnavailable(
                    f"{self.location}: key {key!r} is not valid base64 data"
                ) from err
        return items

    def validate(self, snapshot: TrustBundleSnapshot, *, now: datetime) -> CaBundle:
        """Validate a complete snapshot; partial or invalid ones are errors that name the keys."""
        keys = ", ".join(repr(n) for n in self.names)
        state = snapshot.state
        if state is not StoreState.COMPLETE:
            present = [n for n in self.names if snapshot.items.get(n)]
            missing = [n for n in self.names if not snapshot.items.get(n)]
            found = ("has " + ", ".join(repr(n) for n in present) + " but") if present else "has"
            raise IncompleteCredentials(
                f"incomplete trust bundle: {self.location} {found} no "
                + ", ".join(repr(n) for n in missing)
                + f"; put all of {keys} into it (e.g. kubectl create secret generic {self.name} "
                f"-n {self.namespace} --from-file=... --dry-run=client -o yaml | kubectl apply "
                "-f -), or remove all of them to let Sentry generate a new self-signed CA "
                "(workloads will then need the new trust anchors)"
            )
        key_pem, cert_pem = snapshot.items[self.names[2]], snapshot.items[self.names[1]]
        try:
            return CaBundle.from_pem(snapshot.ca_pem, cert_pem, key_pem, now=now)
        except ValueError as err:  # InvalidBundle included
            raise InvalidBundle(
                f"failed to verify CA bundle in {self.location} (keys {keys}): {err}; "
                "fix the Secret's keys with a matching root, issuer certificate and key"
            ) from err

    async def save(self, bundle: CaBundle, snapshot: TrustBundleSnapshot) -> bool:
        """Write a generated bundle into the empty Secret read in ``snapshot``.

        Returns False (writing nothing) when the Secret changed since the snapshot: another
        writer won, and its bundle is the one to load. Raises if the snapshot is not empty.
        """
        if snapshot.state is not StoreState.NONE:
            raise InvalidBundle(f"refusing to overwrite the trust bundle in {self.location}")
        secret = dict(snapshot.secret)
        data = dict(secret.get("data") or {})
        for key, pem in zip(
            self.names,
            (bundle.anchors_pem(), bundle.issuer_chain_pem(), bundle.issuer_key_pem()),
            strict=True,
        ):
            data[key] = base64.b64encode(pem).decode()
        secret["data"] = data  # metadata keeps the snapshot's resourceVersion: optimistic update
        try:
            await self._client.put(self._secret_path, secret)
        except KubeApiError as err:
            if err.conflict:
                return False
            raise
        return True

    async def sync_configmap(self, ca_pem: bytes) -> bool:
        """Make the ConfigMap's ``ca.crt`` equal ``ca_pem``; True if it had to be written."""
        for _ in range(_CONFLICT_RETRIES):
            configmap = await self._get(self._configmap_path, "ConfigMap")
            current = (configmap.get("data") or {}).get(CA_FILENAME)
            if current == ca_pem.decode():
                return False
            configmap["data"] = {**(configmap.get("data") or {}), CA_FILENAME: ca_pem.decode()}
            try:
                await self._client.put(self._configmap_path, configmap)
            except KubeApiError as err:
                if err.conflict:
                    continue  # someone else wrote it meanwhile: look again
                raise
            return True
        raise KubeError(
            f"ConfigMap {self.namespace}/{self.name}: still conflicting after "
            f"{_CONFLICT_RETRIES} updates; another writer keeps changing it"
        )
