"""``dapr uninstall -k``: remove pysentry's Helm release ``dapr`` (``cli:cmd/uninstall.go``).

Dapr's flags and texts: ``Removing Dapr from your cluster...``, then ``Dapr has been removed
successfully``; with no release, the warning ``WARNING: dapr release does not exist`` (on stderr)
and the same success line, as Dapr. ``--all`` also deletes the CRDs the chart installs (Helm never
deletes ``crds/``), which deletes every object of them in the cluster, as Dapr's ``--all``.
Unlike Dapr, a failure (``Error removing Dapr: ...``) exits 1, and a cluster that cannot be
reached or read is an error, never "does not exist". Every permission the removal needs is
checked before anything is deleted. Without ``-k`` there is nothing to remove: self-hosted
pysentry installs no binaries or containers.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer

from pysentry.cli import console
from pysentry.cli.console import CliError
from pysentry.cli.helmcli import (
    RELEASE,
    Helm,
    chart_crds,
    chart_dir,
    helm_binary,
    helm_error,
    object_permissions,
)

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _opt(name: str, help_: str, short: str = "") -> Any:
    return typer.Option(f"--{name}", *([f"-{short}"] if short else []), help=help_)


async def _prepare(helm: Helm, crds: list[str]) -> bool:
    """Reach the cluster and check the permissions; False when there is no release."""
    from pysentry.cli.cluster import api_get, connect  # the Kubernetes client: -k only
    from pysentry.cli.kubeinstall import CRD_GROUP, require_permissions
    from pysentry.kube.access import Permission

    ns = helm.namespace
    async with await connect() as kube:
        await api_get(kube, "/version", verb="get", resource="/version", namespace=None)
        records = [Permission("list", "secrets", "", ns), Permission("get", "secrets", "", ns)]
        await require_permissions(kube, records, f"cannot read Helm releases in namespace {ns!r}")
        if not helm.release_exists():
            return False
        perms = object_permissions(helm.manifest(), "delete", ns)
        perms += [Permission("update", "secrets", "", ns), Permission("delete", "secrets", "", ns)]
        perms += [Permission("delete", "customresourcedefinitions", CRD_GROUP, "", n) for n in crds]
        await require_permissions(kube, perms, f"cannot uninstall from namespace {ns!r}")
        return True


async def _delete_crds(names: list[str]) -> None:
    from pysentry.cli.cluster import connect
    from pysentry.kube.client import KubeError

    async with await connect() as kube:
        for name in names:
            try:
                await kube.request("DELETE", f"{CRDS}/{name}")
            except KubeError as err:
                console.warning(f"Failed to remove CRD {name}: {err}")


def uninstall_kubernetes(namespace: str, remove_all: bool, timeout_s: int) -> bool:
    """Remove release ``dapr`` from ``namespace``; False when there is none."""
    from pysentry.cli.cluster import kubeconfig_path

    helm = Helm(helm_binary(), namespace, kubeconfig_path())
    crds = chart_crds(chart_dir()) if remove_all else []
    if not asyncio.run(_prepare(helm, crds)):
        return False
    done = helm.run(["uninstall", RELEASE, "--timeout", f"{timeout_s}s"], timeout_s=timeout_s + 60)
    if done.returncode != 0:
        raise CliError(helm_error(done))
    if crds:
        asyncio.run(_delete_crds(crds))
    return True


def uninstall_command(
    kubernetes: Annotated[
        bool, _opt("kubernetes", "Uninstall Dapr from a Kubernetes cluster", "k")
    ] = False,
    dev: Annotated[
        bool, _opt("dev", "Uninstall Dapr Redis and Zipkin installations from Kubernetes cluster")
    ] = False,
    timeout: Annotated[int, _opt("timeout", "The timeout for the Kubernetes uninstall")] = 300,
    remove_all: Annotated[
        bool,
        _opt("all", "Kubernetes: also remove the CRDs the chart installed (all their objects)"),
    ] = False,
    network: Annotated[str, _opt("network", "Containers only (not used)")] = "",
    namespace: Annotated[
        str, _opt("namespace", "The Kubernetes namespace to uninstall Dapr from", "n")
    ] = "dapr-system",
    container_runtime: Annotated[
        str, _opt("container-runtime", "Containers only (not used)")
    ] = "docker",
) -> None:
    """Uninstall Dapr runtime. Supported platforms: Kubernetes (pysentry's Helm release)."""
    if not kubernetes:
        raise CliError(
            "dapr uninstall: self-hosted pysentry installs no binaries or containers, so there "
            "is nothing to remove; $HOME/.dapr (with the CA's keys in certs/) is kept: delete it "
            "yourself if you mean to, or add -k to remove pysentry from a Kubernetes cluster"
        )
    ignored = [
        flag
        for flag, used in (
            ("--dev", dev),
            ("--network", bool(network)),
            ("--container-runtime", container_runtime != "docker"),
        )
        if used
    ]
    if ignored:
        console.warning(
            f"{', '.join(ignored)}: pysentry installs no Redis, Zipkin or containers; ignored"
        )
    console.info("Removing Dapr from your cluster...")
    try:
        removed = uninstall_kubernetes(namespace, remove_all, timeout)
    except CliError as err:
        raise CliError(f"Error removing Dapr: {err}") from err
    if not removed:
        sys.stdout.flush()
        sys.stderr.write(f"{console.WARNING}WARNING: {RELEASE} release does not exist\n")
        sys.stderr.flush()
    console.success("Dapr has been removed successfully")
