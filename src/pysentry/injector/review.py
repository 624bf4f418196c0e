"""``AdmissionReview`` in and out (``admission.k8s.io/v1`` and ``v1beta1``), with no I/O."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from pysentry.injector.patch import Patch

VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Review:
    api_version: str
    uid: str
    namespace: str
    operation: str
    kind: str
    pod: dict[str, Any]


def parse_review(body: bytes) -> Review:
    try:
        doc = json.loads(body)
    except ValueError as err:
        raise BadReview(f"admission review: not JSON: {err}") from err
    if not isinstance(doc, dict) or doc.get("kind") != "AdmissionReview":
        kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
        raise BadReview(f"admission review: expected kind 'AdmissionReview', got {kind!r}")
    version = doc.get("apiVersion")
    if version not in VERSIONS:
        raise BadReview(
            f"admission review: unsupported apiVersion {version!r} (expected one of {VERSIONS})"
        )
    request = doc.get("request")
    if not isinstance(request, dict) or not request.get("uid"):
        raise BadReview("admission review: no request or request.uid")
    pod = request.get("object")
    if not isinstance(pod, dict):
        raise BadReview("admission review: request.object is not an object")
    kind = (request.get("kind") or {}).get("kind", "")
    return Review(
        api_version=str(version),
        uid=str(request["uid"]),
        namespace=str(request.get("namespace") or ""),
        operation=str(request.get("operation") or ""),
        kind=str(kind),
        pod=pod,
    )


def allow(review: Review, patch: Patch) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": review.uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": review.api_version, "kind": "AdmissionReview", "response": response}


def deny(review: Review, message: str, code: int = 500) -> dict[str, Any]:
    return {
        "apiVersion": review.api_version,
        "kind": "AdmissionReview",
        "response": {
            "uid": review.uid,
            "allowed": False,
            "status": {"status": "Failure", "message": message, "code": code},
        },
    }
