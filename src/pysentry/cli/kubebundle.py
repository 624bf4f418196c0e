"""Writing a cluster's ``dapr-trust-bundle`` Secret and ConfigMap, for ``renew-certificate -k``
and ``drop-old-roots -k``, without Helm.

The two objects cannot change in one transaction, so the order is chosen for the sidecars: first
the ConfigMap's ``ca.crt`` (what sidecars and the control plane trust) gets the new trust bundle,
which still holds every root the Secret's current issuer needs; then the Secret (what Sentry signs
with). Each write is a merge patch that carries the ``resourceVersion`` the command read and
validated, so an object changed in between is a conflict, never overwritten; labels,
annotations and other keys (``jwks.json``) stay. Before the first write the RBAC permissions are
checked (SelfSubjectAccessReview), so a kubeconfig that may read but not patch writes nothing.
After the Secret, the ConfigMap is read again: a running Sentry copies the Secret's ``ca.crt``
into it, and may have copied the old one back between the two writes.

If the Secret's write fails after the ConfigMap's, :class:`CliError` says what the cluster holds
and how to finish or undo.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from pysentry.cli.cluster import require_permissions
from pysentry.cli.console import CliError
from pysentry.cli.trustbundle import CA_KEY, TRUST_BUNDLE, TrustBundle
from pysentry.kube.access import Permission
from pysentry.kube.client import KubeApiError, KubeClient, KubeError, KubeUnreachable

UNCHANGED = "nothing was changed"


def bundle_permissions(namespace: str) -> list[Permission]:
    return [
        Permission("patch", kind, namespace=namespace, name=TRUST_BUNDLE)
        for kind in ("configmaps", "secrets")
    ]


async def require(kube: KubeClient, permissions: list[Permission]) -> None:
    """:class:`CliError` naming every permission the kubeconfig's user lacks."""
    await require_permissions(
        kube,
        permissions,
        prefix="",
        joiner="; nor ",
        fix="bind it a Role that allows this (e.g. 'kubectl -n <namespace> create role <name> "
        "--verb=get,patch --resource=<resource> --resource-name=<object>' and a RoleBinding), "
        f"or use an admin kubeconfig; {UNCHANGED}",
    )


def describe(err: KubeError) -> str:
    """A Kubernetes failure as a reason (no object content in it)."""
    if isinstance(err, KubeApiError):
        if err.conflict:
            return (
                "it was changed by someone else after this command read it (HTTP 409); "
                "run the command again"
            )
        if err.forbidden:
            return f"permission denied (HTTP 403: {err.message})"
        if err.not_found:
            return "it does not exist (HTTP 404); the chart creates it"
        return f"HTTP {err.status} {err.reason}: {err.message}"
    if isinstance(err, KubeUnreachable):
        return f"{err}"
    return f"{type(err).__name__}: {err}"


@dataclass
class Progress:
    """Which writes are done, and which one is under way (for a timeout's message)."""

    done: list[str] = field(default_factory=list)
    current: str | None = None
    uncertain: bool = True  # whether the write under way may have been applied


def _object(kind: str, namespace: str) -> str:
    return f"{kind} {f'{namespace}/{TRUST_BUNDLE}'!r}"


def undo_hint(namespace: str) -> str:
    ca = "{.data.ca\\.crt}"
    return (
        "to undo, copy the Secret's ca.crt back into the ConfigMap (a running pysentry Sentry "
        f"does this by itself):\n    kubectl -n {namespace} get secret {TRUST_BUNDLE} -o "
        f"jsonpath='{ca}' | base64 -d > ca.crt && kubectl -n {namespace} create configmap "
        f"{TRUST_BUNDLE} --from-file=ca.crt --dry-run=client -o yaml | kubectl apply -f -"
    )


def partial_state(namespace: str, progress: Progress, why: str) -> str:
    """What the cluster holds when the writes stopped, and how to finish or undo."""
    cm, secret = _object("ConfigMap", namespace), _object("Secret", namespace)
    if not progress.done:
        if progress.current is None:
            return f"{why}; {UNCHANGED}"
        return (
            f"{why} while writing the {cm}: that write may or may not have been applied; the "
            f"{secret} is unchanged, so Sentry keeps signing as before. Run the command again "
            "to finish, or " + undo_hint(namespace)
        )
    if progress.current == "Secret":
        state = (
            "may or may not have been applied; if not, the Secret still holds"
            if progress.uncertain
            else "was refused, so the Secret still holds"
        )
        return (
            f"the {cm} has the new ca.crt, but writing the {secret} stopped: {why}. That write "
            f"{state} the previous root and issuer: Sentry keeps signing as before, and every "
            "root that issuer needs is still in the ConfigMap. To finish, fix the cause and run "
            "the command again (it starts from the Secret); " + undo_hint(namespace)
        )
    return (
        f"both the {cm} and the {secret} were written, but checking the ConfigMap afterwards "
        f"failed: {why}; check that its ca.crt equals the Secret's ca.crt"
    )


async def write_bundle(
    kube: KubeClient,
    bundle: TrustBundle,
    secret_items: dict[str, bytes],
    progress: Progress,
) -> None:
    """ConfigMap ``ca.crt``, then the Secret's ``secret_items`` (which include ``ca.crt``)."""
    if bundle.configmap_resource_version is None:
        raise CliError(
            f"{_object('ConfigMap', bundle.namespace)} does not exist: the chart creates it "
            f"next to the Secret (it holds the trust bundle sidecars get); {UNCHANGED}"
        )
    ns = bundle.namespace
    base = f"/api/v1/namespaces/{ns}"
    ca_text = secret_items[CA_KEY].decode()
    try:
        progress.current = "ConfigMap"
        await kube.patch(
            f"{base}/configmaps/{TRUST_BUNDLE}",
            {
                "metadata": {"resourceVersion": bundle.configmap_resource_version},
                "data": {CA_KEY: ca_text},
            },
        )
        progress.done.append("ConfigMap")
        progress.current = "Secret"
        await kube.patch(
            f"{base}/secrets/{TRUST_BUNDLE}",
            {
                "metadata": {"resourceVersion": bundle.secret_resource_version},
                "data": {k: base64.b64encode(v).decode() for k, v in secret_items.items()},
            },
        )
        progress.done.append("Secret")
        progress.current = "check"
        await _ensure_configmap(kube, f"{base}/configmaps/{TRUST_BUNDLE}", ca_text)
        progress.current = None
    except KubeError as err:
        if isinstance(err, KubeApiError) and err.conflict and progress.current == "Secret":
            raise CliError(await _lost_race(kube, ns, progress)) from err
        why = describe(err)
        progress.uncertain = not isinstance(err, KubeApiError)
        if not progress.done and isinstance(err, KubeApiError):  # refused: not applied
            why = f"cannot write the {_object('ConfigMap', ns)}: {why}"
            progress.current = None
        raise CliError(partial_state(ns, progress, why)) from err


async def _lost_race(kube: KubeClient, ns: str, progress: Progress) -> str:
    """The Secret changed after it was read (another writer, e.g. a Sentry that generated a
    CA): the ConfigMap goes back to the Secret's ``ca.crt``, so it trusts what signs now."""
    base = f"/api/v1/namespaces/{ns}"
    secret_name = _object("Secret", ns)
    try:
        secret = await kube.get(f"{base}/secrets/{TRUST_BUNDLE}")
        ca = base64.b64decode(str((secret.get("data") or {}).get(CA_KEY, "")))
        await _ensure_configmap(kube, f"{base}/configmaps/{TRUST_BUNDLE}", ca.decode())
    except (KubeError, ValueError) as err:
        why = describe(err) if isinstance(err, KubeError) else f"{err}"
        progress.uncertain = False
        return partial_state(
            ns,
            progress,
            f"the {secret_name} was changed by someone else after this command read it "
            f"(HTTP 409), and setting the ConfigMap back to its ca.crt failed: {why}",
        )
    return (
        f"the {secret_name} was changed by someone else after this command read it (HTTP "
        f"409): the rotation stopped, and the {_object('ConfigMap', ns)} was set back to the "
        f"Secret's current ca.crt, so nothing of this rotation is left; {UNCHANGED} in the "
        "end. Run the command again (it starts from the Secret as it is now)"
    )


async def _ensure_configmap(kube: KubeClient, path: str, ca_text: str) -> None:
    """The ConfigMap's ``ca.crt`` equals the Secret's new one (rewritten if Sentry copied the
    previous one back in between; a second conflict means Sentry is already on it)."""
    for _ in range(2):
        cm = await kube.get(path)
        if (cm.get("data") or {}).get(CA_KEY) == ca_text:
            return
        version = (cm.get("metadata") or {}).get("resourceVersion")
        try:
            await kube.patch(
                path, {"metadata": {"resourceVersion": version}, "data": {CA_KEY: ca_text}}
            )
            return
        except KubeApiError as err:
            if not err.conflict:
                raise
