"""A stand-in for the Deployment and StatefulSet controllers (the testbed has no
controller-manager, so nothing ever finishes a ``kubectl rollout restart``).

When it sees a Pod template whose ``kubectl.kubernetes.io/restartedAt`` is newer than what it
last observed (``status.observedGeneration`` < ``metadata.generation``), it calls ``on_rollout``
(the test restarts the local process that plays that workload's Pods) and then writes the status
a finished rollout has: ``observedGeneration`` = ``generation``, every replica updated and ready.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.k8s.testbed import Testbed

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
POLL_S = 0.1
LIFETIME_S = 120.0


class RolloutStandIn:
    def __init__(
        self,
        bed: Testbed,
        namespace: str,
        on_rollout: Callable[[str, str], None] | None = None,
    ) -> None:
        self.bed, self.namespace = bed, namespace
        self.on_rollout = on_rollout
        self.finished: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RolloutStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.errors:
            raise AssertionError(f"the rollout stand-in failed: {self.errors[0]!r}")

    def _loop(self) -> None:
        waited = 0.0
        while not self._stop.wait(POLL_S) and waited < LIFETIME_S:
            waited += POLL_S
            try:
                for kind in ("deployments", "statefulsets"):
                    listed = self.bed.must(
                        "GET", f"/apis/apps/v1/namespaces/{self.namespace}/{kind}"
                    )
                    for obj in listed.get("items") or []:
                        self._observe(kind, obj)
            except Exception as err:  # reported by __exit__
                self.errors.append(err)
                return

    def _observe(self, kind: str, obj: dict[str, Any]) -> None:
        meta, status = obj["metadata"], obj.get("status") or {}
        annotations = obj["spec"]["template"]["metadata"].get("annotations") or {}
        if RESTARTED_AT not in annotations:
            return
        if int(status.get("observedGeneration") or 0) >= int(meta["generation"]):
            return
        if self.on_rollout is not None:
            self.on_rollout(kind, meta["name"])
        n = int(obj["spec"].get("replicas", 1))
        obj["status"] = {
            "observedGeneration": meta["generation"],
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        }
        if kind == "statefulsets":
            obj["status"].update(currentReplicas=n, currentRevision="r2", updateRevision="r2")
        path = f"/apis/apps/v1/namespaces/{self.namespace}/{kind}/{meta['name']}/status"
        self.bed.must("PUT", path, obj)
        self.finished.append(f"{kind}/{meta['name']}")
