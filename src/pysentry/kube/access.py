"""Check RBAC permissions up front with SelfSubjectAccessReview, so a missing one is named.

Every authenticated user may create SelfSubjectAccessReviews (the ``system:basic-user`` role), so
the check itself needs no extra permission.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pysentry.kube.client import KubeClient

ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


@dataclass(frozen=True, slots=True)
class Permission:
    """One RBAC rule to check: ``verb`` on ``resource`` in ``group`` (``""`` is the core group),
    in ``namespace`` (``""``: cluster-wide), for object ``name`` (``""``: any)."""

    verb: str
    resource: str
    group: str = ""
    namespace: str = ""
    name: str = ""

    def __str__(self) -> str:
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        text = f"{self.verb} {resource}"
        if self.name:
            text += f" {self.name!r}"
        return text + (
            f" in namespace {self.namespace!r}" if self.namespace else " (all namespaces)"
        )


async def missing_permissions(
    client: KubeClient, permissions: Sequence[Permission]
) -> tuple[Permission, ...]:
    """The permissions the client's user lacks, in the order given."""
    missing = []
    for perm in permissions:
        attributes = {"verb": perm.verb, "resource": perm.resource, "group": perm.group}
        if perm.namespace:
            attributes["namespace"] = perm.namespace
        if perm.name:
            attributes["name"] = perm.name
        review = await client.post(
            ACCESS_REVIEWS,
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            },
        )
        if not (review.get("status") or {}).get("allowed"):
            missing.append(perm)
    return tuple(missing)
