"""List+watch caches (what client-go calls an informer), on :class:`KubeClient`.

:class:`ObjectCache` lists a collection once (:meth:`ObjectCache.sync`: startup fails on a 403,
with the API server's message naming the permission), then :meth:`ObjectCache.run` keeps it
current from a watch stream: it re-watches from the last resourceVersion when the server ends the
stream, re-lists after ``410 Gone``, and retries with a capped backoff when the connection breaks
(the cache stays usable meanwhile). Objects are stored trimmed by ``project`` to what callers need.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from pysentry.kube.client import JsonObject, KubeApiError, KubeClient, KubeError

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Projection = Callable[[JsonObject], JsonObject]
RETRY_INITIAL = timedelta(milliseconds=500)
RETRY_MAX = timedelta(seconds=10)
MIN_WATCH_S = 1.0  # a stream that ends sooner is not re-opened at once (no busy loop)


def object_key(obj: JsonObject) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def keep_all(obj: JsonObject) -> JsonObject:
    return obj


class ObjectCache:
    """Every object of one collection (e.g. ``/api/v1/pods``), by (namespace, name)."""

    def __init__(
        self,
        client: KubeClient,
        collection: str,
        *,
        project: Projection = keep_all,
        retry_max: timedelta = RETRY_MAX,
    ) -> None:
        self._client = client
        self.collection = collection
        self._project = project
        self._retry_max = retry_max
        self._objects: dict[Key, JsonObject] = {}
        self._resource_version = ""
        self.synced = False

    def get(self, namespace: str, name: str) -> JsonObject | None:
        return self._objects.get((namespace, name))

    def __len__(self) -> int:
        return len(self._objects)

    async def sync(self) -> None:
        """(Re-)list the collection; raises :class:`KubeError` (e.g. 403) as it is."""
        listing = await self._client.get(self.collection)
        self._objects = {object_key(o): self._project(o) for o in listing.get("items") or ()}
        self._resource_version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
        self.synced = True

    def _apply(self, kind: str, obj: JsonObject) -> None:
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._resource_version = str(version)
        if kind in ("ADDED", "MODIFIED"):
            self._objects[object_key(obj)] = self._project(obj)
        elif kind == "DELETED":
            self._objects.pop(object_key(obj), None)

    async def run(self) -> None:
        """Keep the cache current until cancelled (lists first when :meth:`sync` was not run)."""
        delay = RETRY_INITIAL
        relist = not self.synced
        while True:
            try:
                if relist:
                    await self.sync()
                    relist = False
                started = time.monotonic()
                async for kind, obj in self._client.watch(
                    self.collection, resource_version=self._resource_version
                ):
                    self._apply(kind, obj)
                delay = RETRY_INITIAL
                if time.monotonic() - started >= MIN_WATCH_S:
                    continue  # the server ended the stream (timeoutSeconds): watch again
                log.debug("watch of %s ended at once: waiting before the next", self.collection)
            except KubeApiError as err:
                relist = True
                if err.gone:
                    log.debug("watch of %s expired (410): re-listing", self.collection)
                    continue
                log.warning(
                    "Watch of %s failed, retrying in %.1fs: %s",
                    self.collection,
                    delay.total_seconds(),
                    err,
                )
            except KubeError as err:
                relist = True
                log.warning(
                    "Watch of %s failed, retrying in %.1fs: %s",
                    self.collection,
                    delay.total_seconds(),
                    err,
                )
            await asyncio.sleep(delay.total_seconds())
            delay = min(delay * 2, self._retry_max)
