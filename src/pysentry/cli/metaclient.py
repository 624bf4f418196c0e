"""daprd's metadata API on 127.0.0.1, as the Dapr CLI uses it (``pkg/metadata``).

``GET /v1.0/metadata`` gives ``id`` and ``extended``; ``PUT /v1.0/metadata/<key>`` stores a value
there (the CLI keeps ``cliPID``, ``appPID``, ``appCommand``, ``runTemplatePath`` … in it).
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote

TIMEOUT_S = 2.0


class MetadataError(Exception):
    pass


def _request(port: int, method: str, path: str, body: bytes | None = None) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "text/plain"})
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as err:
        raise MetadataError(f"{method} {path} on 127.0.0.1:{port}: {err}") from err
    finally:
        conn.close()
    if not 200 <= resp.status < 300:
        raise MetadataError(
            f"{method} {path} on 127.0.0.1:{port}: HTTP {resp.status} {data[:200]!r}"
        )
    return data


def get_metadata(port: int) -> dict[str, object]:
    raw = _request(port, "GET", "/v1.0/metadata")
    try:
        value = json.loads(raw)
    except ValueError as err:
        raise MetadataError(f"GET /v1.0/metadata on 127.0.0.1:{port}: not JSON: {err}") from err
    if not isinstance(value, dict):
        raise MetadataError(f"GET /v1.0/metadata on 127.0.0.1:{port}: not a JSON object")
    return value


def extended(port: int) -> dict[str, str]:
    """The ``extended`` map, or {} when the sidecar does not answer."""
    try:
        ext = get_metadata(port).get("extended")
    except MetadataError:
        return {}
    if not isinstance(ext, dict):
        return {}
    return {str(k): str(v) for k, v in ext.items()}


def put(port: int, key: str, value: str) -> None:
    _request(port, "PUT", f"/v1.0/metadata/{quote(key, safe='')}", value.encode())
