"""``renew-certificate -k --restart``: ``kubectl rollout restart`` and ``rollout status`` for the
control plane, done with the API directly.

A restart is kubectl's patch: the Pod template's annotation ``kubectl.kubernetes.io/restartedAt``
set to now (RFC 3339), which makes the controller roll out new Pods. The wait is kubectl's
``rollout status`` rule: the controller has seen the new generation, and every replica is
updated and ready (for a Deployment also available, with no old replica left). Dapr's four
objects are restarted; one that does not exist (pysentry's chart has no operator and no
placement) is named and skipped. Unlike Dapr's CLI, which drops the restart errors, every failure
is printed and :func:`restart_control_plane` returns them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pysentry.cli import console
from pysentry.cli.kubebundle import describe
from pysentry.kube.access import Permission
from pysentry.kube.client import JsonObject, KubeApiError, KubeClient, KubeError

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
CONTROL_PLANE = (
    ("deploy/dapr-sentry", "deployments", "dapr-sentry"),
    ("deploy/dapr-sidecar-injector", "deployments", "dapr-sidecar-injector"),
    ("deploy/dapr-operator", "deployments", "dapr-operator"),
    ("statefulsets/dapr-placement-server", "statefulsets", "dapr-placement-server"),
)
POLL_S = 0.2


def restart_permissions(namespace: str) -> list[Permission]:
    return [
        Permission(verb, kind, "apps", namespace, name)
        for _, kind, name in CONTROL_PLANE
        for verb in ("get", "patch")
    ]


def rollout_state(kind: str, obj: JsonObject) -> tuple[bool, str]:
    """(done, what kubectl would say) for a Deployment or StatefulSet."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False, "waiting for the rollout to be observed by its controller"
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    if kind == "deployments":
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == (
                "ProgressDeadlineExceeded"
            ):
                raise RolloutFailed("it exceeded its progress deadline")
        total = int(status.get("replicas") or 0)
        available = int(status.get("availableReplicas") or 0)
        if updated < want:
            return False, f"{updated} out of {want} new replicas have been updated"
        if total > updated:
            return False, f"{total - updated} old replicas are pending termination"
        if available < updated:
            return False, f"{available} of {updated} updated replicas are available"
        return True, "successfully rolled out"
    if ready < want or updated < want:
        return False, f"{min(ready, updated)} of {want} updated pods are ready"
    if status.get("updateRevision") != status.get("currentRevision"):
        return False, "waiting for the statefulset's update to complete"
    return True, "successfully rolled out"


class RolloutFailed(Exception):
    """A rollout that will not complete (its message is the reason)."""


async def _wait(kube: KubeClient, path: str, kind: str, seen: dict[str, str], name: str) -> None:
    while True:
        done, state = rollout_state(kind, await kube.get(path))
        seen[name] = state
        if done:
            return
        await asyncio.sleep(POLL_S)


async def restart_control_plane(kube: KubeClient, namespace: str, *, timeout_s: int) -> list[str]:
    """Restart, then wait (at most ``timeout_s``) for the rollouts; the failures, as text."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    started: list[tuple[str, str, str]] = []
    problems: list[str] = []
    for name, kind, obj in CONTROL_PLANE:
        console.info(f"Restarting {name}..")
        path = f"/apis/apps/v1/namespaces/{namespace}/{kind}/{obj}"
        try:
            await kube.patch(path, patch, content_type="application/strategic-merge-patch+json")
        except KubeApiError as err:
            if err.not_found:
                console.warning(f"{name} does not exist in namespace {namespace!r}: skipped")
                continue
            problems.append(f"error in restarting deployment {name}. Error is {describe(err)}")
            continue
        except KubeError as err:
            problems.append(f"error in restarting deployment {name}. Error is {describe(err)}")
            continue
        started.append((name, path, kind))
    seen: dict[str, str] = {}
    tasks = {
        asyncio.create_task(_wait(kube, path, kind, seen, name)): name
        for name, path, kind in started
    }
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in pending:
            name = tasks[task]
            problems.append(
                f"error in checking status for deployment {name}. Error is its rollout did not "
                f"finish within "
                f"{timeout_s}s (--timeout): {seen.get(name, 'no status read yet')}; see "
                f"'kubectl -n {namespace} rollout status {name}' and its Pods' events"
            )
        for task in done:
            failure = task.exception()
            if failure is None:
                continue
            why = describe(failure) if isinstance(failure, KubeError) else f"{failure}"
            problems.append(
                f"error in checking status for deployment {tasks[task]}. Error is {why}"
            )
    return problems
