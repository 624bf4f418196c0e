"""The ``helm`` v3 CLI and pysentry's chart, for ``dapr init -k`` and ``dapr uninstall -k``.

Dapr's CLI links Helm's library; a Python CLI cannot, so these commands run the ``helm`` binary:
``$DAPR_HELM`` when set (a path), else ``helm`` on ``PATH``. helm gets the kubeconfig file the
CLI itself uses (:func:`pysentry.cli.cluster.kubeconfig_path`) as ``--kubeconfig``, so the
pre-flight checks and the install talk to the same cluster. The chart is the one this package
ships (``pysentry/charts/pysentry``: a link to the repository's ``charts/`` in a source checkout,
package data in a wheel).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pysentry.cli.console import CliError

if TYPE_CHECKING:
    from pysentry.kube.access import Permission

HELM_ENV = "DAPR_HELM"
RELEASE = "dapr"  # Dapr's release name, so the docs' `helm upgrade dapr ...` works
HELM_INSTALL_FIX = (
    "install helm v3 (https://helm.sh/docs/intro/install/) or set DAPR_HELM to the path of a "
    "helm binary"
)
_HELM_PREFIXES = ("INSTALLATION FAILED: ", "UPGRADE FAILED: ", "uninstall: ")


class HelmTimeout(CliError):
    """helm ran longer than allowed (and was killed); ``what`` says which command, without the
    advice (``dapr init -k`` rolls back first, then says what is left)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}; check the cluster and run the command again")
        self.what = what


def helm_binary(env: dict[str, str] | None = None) -> str:
    """``$DAPR_HELM`` or ``helm`` from ``PATH``; :class:`CliError` naming the fix otherwise."""
    env = dict(os.environ) if env is None else env
    configured = env.get(HELM_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise CliError(
                f"{HELM_ENV} {configured!r}: not an executable file; point it at a helm v3 "
                "binary, or unset it to use helm from PATH"
            )
        return str(path)
    found = shutil.which("helm", path=env.get("PATH"))
    if found is None:
        raise CliError(
            "helm not found on PATH: 'dapr init -k' and 'dapr uninstall -k' run the helm CLI "
            f"to install or remove pysentry's Helm chart; {HELM_INSTALL_FIX}"
        )
    return found


def chart_dir() -> Path:
    """pysentry's Helm chart, from the installed package (or the source checkout)."""
    chart = Path(str(resources.files("pysentry") / "charts" / "pysentry")).resolve()
    if not (chart / "Chart.yaml").is_file():
        raise CliError(
            f"pysentry's Helm chart is missing ({str(chart)!r} has no Chart.yaml): reinstall "
            "pysentry (the wheel carries pysentry/charts/pysentry)"
        )
    return chart


def chart_crds(chart: Path) -> list[str]:
    """The names of the CustomResourceDefinitions in the chart's ``crds/``."""
    names = []
    for path in sorted((chart / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                names.append(str(doc["metadata"]["name"]))
    return names


def helm_error(done: subprocess.CompletedProcess[str]) -> str:
    """helm's own error text (``Error: INSTALLATION FAILED: x`` gives ``x``: Dapr's CLI, which
    links Helm's library, prints the bare error)."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    text = lines[-1].removeprefix("Error: ") if lines else done.stderr.strip()
    for prefix in _HELM_PREFIXES:
        text = text.removeprefix(prefix)
    return text or f"helm exited {done.returncode} without a message"


@dataclass(frozen=True, slots=True)
class Helm:
    """``helm`` for one release namespace, with the CLI's kubeconfig."""

    binary: str
    namespace: str
    kubeconfig: Path | None

    def run(
        self, args: Sequence[str], *, timeout_s: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        command = [self.binary, *args, "--namespace", self.namespace]
        if self.kubeconfig is not None:
            command += ["--kubeconfig", str(self.kubeconfig)]
        try:
            return subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise HelmTimeout(f"helm {args[0]} did not finish within {timeout_s:.0f}s") from err
        except OSError as err:
            raise CliError(
                f"cannot run helm {self.binary!r}: {err.strerror}; {HELM_INSTALL_FIX}"
            ) from err

    def release_exists(self) -> bool:
        """True when release ``dapr`` exists in the namespace (in any state)."""
        done = self.run(["status", RELEASE, "-o", "json"])
        if done.returncode == 0:
            return True
        error = helm_error(done)
        if error.endswith("release: not found"):
            return False
        raise CliError(
            f"cannot read Helm release {RELEASE!r} in namespace {self.namespace!r}: {error}"
        )

    def manifest(self) -> list[dict[str, Any]]:
        """The objects of release ``dapr``, as Helm recorded them."""
        done = self.run(["get", "manifest", RELEASE])
        if done.returncode != 0:
            raise CliError(f"cannot read Helm release {RELEASE!r}: {helm_error(done)}")
        return [doc for doc in yaml.safe_load_all(done.stdout) if isinstance(doc, dict)]


_RBAC = "rbac.authorization.k8s.io"
#: (API group, resource) of the kinds the chart renders; cluster-scoped kinds in CLUSTER_KINDS.
_RESOURCES = {
    "ConfigMap": ("", "configmaps"),
    "Secret": ("", "secrets"),
    "Service": ("", "services"),
    "ServiceAccount": ("", "serviceaccounts"),
    "Deployment": ("apps", "deployments"),
    "Role": (_RBAC, "roles"),
    "RoleBinding": (_RBAC, "rolebindings"),
    "ClusterRole": (_RBAC, "clusterroles"),
    "ClusterRoleBinding": (_RBAC, "clusterrolebindings"),
    "MutatingWebhookConfiguration": (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    "Configuration": ("dapr.io", "configurations"),
    "CustomResourceDefinition": ("apiextensions.k8s.io", "customresourcedefinitions"),
}
CLUSTER_KINDS = frozenset(
    {
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "CustomResourceDefinition",
    }
)


def object_permissions(
    objects: Sequence[dict[str, Any]], verb: str, namespace: str
) -> list[Permission]:
    """``verb`` on every object's kind and namespace (once each), in the objects' order."""
    from pysentry.kube.access import Permission  # the Kubernetes client: -k only

    perms: list[Permission] = []
    for obj in objects:
        kind = str(obj.get("kind", ""))
        group, resource = _RESOURCES.get(
            kind, (str(obj.get("apiVersion", "")).rpartition("/")[0], kind.lower() + "s")
        )
        where = (
            ""
            if kind in CLUSTER_KINDS
            else str((obj.get("metadata") or {}).get("namespace") or namespace)
        )
        perm = Permission(verb, resource, group, where)
        if perm not in perms:
            perms.append(perm)
    return perms
