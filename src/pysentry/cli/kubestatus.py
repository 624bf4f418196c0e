"""``dapr status -k`` and ``dapr list -k``: the control plane and the Dapr Pods of a cluster.

``status -k`` shows Dapr's table (``cli:pkg/kubernetes/status.go``: ``NAME NAMESPACE HEALTHY
STATUS REPLICAS VERSION AGE CREATED``) for the control-plane apps found by label ``app=<name>``
in all namespaces. Where Dapr reads the Pods, this reads their **Deployments and StatefulSets**
(the testbed runs no Pods, and a workload says how many replicas are wanted and ready): one row
per app and namespace, ``REPLICAS`` the desired count, ``HEALTHY`` True when every one is ready,
``STATUS`` ``Running`` then (else ``Pending``, or ``Scaled down`` at 0), ``VERSION`` the image
tag of the first container, Dapr's way (the text after the last ``:``).

``list -k`` is Dapr's (``cli:pkg/kubernetes/list.go``): every Pod with a ``daprd`` container, its
``--app-id`` and ``--app-port`` arguments, sorted by namespace (descending, as Dapr), columns
``NAMESPACE APP ID APP PORT AGE CREATED``; ``--namespace`` limits it to one namespace.
Both end with Dapr's root-expiry warning.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import yaml
from rich.table import Table

from pysentry.cli import cluster, console, trustbundle
from pysentry.cli.age import age, created
from pysentry.cli.console import CliError
from pysentry.cli.kubemtls import run
from pysentry.clock import system_clock
from pysentry.kube.client import JsonObject, KubeApiError, KubeClient

__all__ = ["list_pods", "run", "status"]

CONTROL_PLANE_APPS = (
    "dapr-operator",
    "dapr-sentry",
    "dapr-placement",
    "dapr-placement-server",
    "dapr-sidecar-injector",
    "dapr-scheduler-server",
)
WORKLOADS = (("deployments", "Deployments"), ("statefulsets", "StatefulSets"))
STATUS_COLUMNS = ("NAME", "NAMESPACE", "HEALTHY", "STATUS", "REPLICAS", "VERSION", "AGE", "CREATED")
NO_STATUS = "No status returned. Is Dapr initialized in your cluster?"
LIST_COLUMNS = (
    ("NAMESPACE", "namespace"),
    ("APP ID", "appId"),
    ("APP PORT", "appPort"),
    ("AGE", "age"),
    ("CREATED", "created"),
)
NAMESPACE_NOTICE = (
    'In future releases, this command will only query the "default" namespace by default. '
    "Please use the --namespace flag for a specific namespace, or the --all-namespaces (-A) "
    "flag for all namespaces."
)


def _timestamp(obj: JsonObject) -> datetime:
    text = str((obj.get("metadata") or {}).get("creationTimestamp") or "")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return system_clock()


def image_version(image: str) -> str:
    """Dapr's rule: the text after the last ``:`` (``daprio/dapr:1.16.0`` -> ``1.16.0``)."""
    return image[image.rfind(":") + 1 :]


def workload_row(app: str, obj: JsonObject, now: datetime) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    healthy = desired > 0 and ready >= desired
    state = "Scaled down" if desired == 0 else ("Running" if healthy else "Pending")
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    when = _timestamp(obj)
    return [
        app,
        str((obj.get("metadata") or {}).get("namespace") or ""),
        "True" if healthy else "False",
        state,
        str(desired),
        image_version(str(containers[0].get("image") or "")),
        age(when, now),
        created(when),
    ]


async def _labelled(kube: KubeClient, resource: str) -> list[JsonObject]:
    selector = f"app in ({','.join(CONTROL_PLANE_APPS)})"
    try:
        listing = await cluster.api_get(
            kube,
            f"/apis/apps/v1/{resource}",
            verb="list",
            resource=f"{resource}.apps",
            namespace=None,
            params={"labelSelector": selector},
        )
    except KubeApiError as err:  # api_get turned every other status into a CliError
        raise CliError(
            f"cannot list {resource}.apps: the API server does not serve apps/v1 {resource} "
            f"(HTTP 404: {err.message})"
        ) from err
    return list(listing.get("items") or [])


async def control_plane_rows(kube: KubeClient, now: datetime) -> list[list[str]]:
    found: list[tuple[int, str, str, list[str]]] = []
    for resource, _ in WORKLOADS:
        for obj in await _labelled(kube, resource):
            app = str(((obj.get("metadata") or {}).get("labels") or {}).get("app") or "")
            row = workload_row(app, obj, now)
            found.append((CONTROL_PLANE_APPS.index(app), row[1], resource, row))
    return [row for *_, row in sorted(found, key=lambda f: f[:3])]


def _print_table(columns: tuple[str, ...], rows: list[list[str]]) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title in columns:
        table.add_column(title, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console.table_console().print(table)


async def status() -> None:
    async with await cluster.connect() as kube:
        now = system_clock()
        rows = await control_plane_rows(kube, now)
        if not rows:
            raise CliError(NO_STATUS)
        _print_table(STATUS_COLUMNS, rows)
        await trustbundle.check_for_cert_expiry(kube, now)


def _arg(args: list[Any], name: str) -> str:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return str(args[i + 1])
        if isinstance(arg, str) and arg.startswith(name + "="):
            return arg.partition("=")[2]
    return ""


def dapr_pods(pods: list[JsonObject], now: datetime) -> list[dict[str, str]]:
    """Dapr's ``ListOutput`` of every Pod with a ``daprd`` container."""
    out = []
    for pod in pods:
        for container in (pod.get("spec") or {}).get("containers") or []:
            if container.get("name") != "daprd":
                continue
            args = list(container.get("args") or [])
            when = _timestamp(pod)
            out.append(
                {
                    "namespace": str((pod.get("metadata") or {}).get("namespace") or ""),
                    "appId": _arg(args, "--app-id"),
                    "appPort": _arg(args, "--app-port"),
                    "age": age(when, now),
                    "created": created(when),
                }
            )
    return sorted(out, key=lambda r: r["namespace"], reverse=True)


async def list_pods(namespace: str, output: str) -> None:
    sys.stderr.write(console.WARNING + NAMESPACE_NOTICE + "\n")
    sys.stderr.flush()
    path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
    async with await cluster.connect() as kube:
        now = system_clock()
        try:
            listing = await cluster.api_get(
                kube, path, verb="list", resource="pods", namespace=namespace or None
            )
        except KubeApiError as err:  # api_get turned every other status into a CliError
            raise CliError(
                f"cannot list pods: the API server has no {path!r} (HTTP 404: {err.message})"
            ) from err
        rows = dapr_pods(list(listing.get("items") or []), now)
        if output == "json":
            print(json.dumps(rows, indent=2, ensure_ascii=False))
        elif output == "yaml":
            print(yaml.safe_dump(rows, sort_keys=False, allow_unicode=True), end="")
        else:
            _print_table(
                tuple(t for t, _ in LIST_COLUMNS), [[r[k] for _, k in LIST_COLUMNS] for r in rows]
            )
        await trustbundle.check_for_cert_expiry(kube, now)
