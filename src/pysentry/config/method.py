"""Service-invocation method names: the one normalization used at every invocation edge.

An invoked method travels as a URL path: the caller's app writes it percent-encoded into
``/v1.0/invoke/<id>/method/<method>``, sidecars carry it in ``InvokeRequest.method`` and the
callee's sidecar turns it back into the path of an HTTP request to its app. The access-control
decision and the request to the app must see the *same* string, or a path that one of them
resolves differently (``public/%2e%2e/admin``) slips past the ACL (CVE-2026-41491 in Dapr).

So every edge does exactly this (:func:`canonical_method`):

1. decode percent-encoding **once** (``%2e`` → ``.``, ``%2F`` → ``/``); a malformed escape or
   bytes that are not UTF-8 are refused;
2. refuse ``# ? NUL`` and other control characters with Dapr's ``invalid method: ...`` text;
3. resolve ``.``, ``..`` and repeated slashes as Go's ``path.Clean`` does; a leading ``..``
   never climbs above the root; a trailing slash is kept (``foo/bar/`` stays ``foo/bar/``);
   leading slashes are dropped (the method is relative to the app's root).

The result is the *decoded* canonical method: it is what the ACL evaluates. On the wire
(``InvokeRequest.method``, between sidecars) and towards the app it is re-encoded with
:func:`encode_method`, which escapes everything that could be read as a delimiter or an escape
(``%``, ``;``, ``\\``, spaces, non-ASCII) so that the receiver, decoding once, gets back exactly
the string that was checked. Both steps are idempotent: ``canonical(decode(encode(c))) == c``.
"""

from __future__ import annotations

import functools
from urllib.parse import quote, unquote_to_bytes

from pysentry.errors import InvalidMethod

#: Characters left as they are when a canonical method is written as a URL path: RFC 3986
#: ``pchar`` without ``;`` (servlet containers read it as a path parameter) and ``/``.
_PATH_SAFE = "/:@!$&'()*+,=-._~"
_HEX = frozenset("0123456789abcdefABCDEF")


def _go_path_clean(p: str) -> str:
    """Go ``path.Clean``."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    out: list[str] = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def go_strconv_quote(s: str) -> str:
    """Go ``%q`` (``strconv.Quote``) for the characters a method can contain."""
    escapes = {
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
        "\\": "\\\\",
        '"': '\\"',
    }
    out = []
    for ch in s:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def normalize_method(method: str) -> str:
    """Dapr's ``method.NormalizeMethod``: reject ``# ? NUL`` and control characters, resolve
    ``..`` with ``path.Clean``, strip leading ``../`` and turn ``.`` into "".

    This is the form the ACL matches (a trailing slash is dropped, as ``path.Clean`` does).
    Raises :class:`InvalidMethod` with the gRPC InvalidArgument text ``invalid method: ...``.
    """
    if any(c in method for c in "#?\x00"):
        raise InvalidMethod(
            f"invalid method: method contains forbidden character: {go_strconv_quote(method)}"
        )
    for i, ch in enumerate(method.encode("utf-8", "surrogatepass")):
        if ch < 0x20 or ch == 0x7F:
            raise InvalidMethod(
                f"invalid method: method contains control character at position {i}: "
                f"{go_strconv_quote(method)}"
            )
    cleaned = _go_path_clean(method)
    while cleaned.startswith("../"):
        cleaned = cleaned[3:]
    if cleaned in ("..", "."):
        cleaned = ""
    return cleaned


def decode_method(raw: str) -> str:
    """Decode percent-encoding once; a malformed escape or non-UTF-8 bytes are refused."""
    if "%" not in raw:
        return raw
    i = raw.find("%")
    while i != -1:
        escape = raw[i + 1 : i + 3]
        if len(escape) != 2 or not set(escape) <= _HEX:
            raise InvalidMethod(
                f"invalid method: malformed percent-encoding {raw[i : i + 3]!r}: "
                f"{go_strconv_quote(raw)}; write a literal '%' as %25"
            )
        i = raw.find("%", i + 3)
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidMethod(
            f"invalid method: percent-encoded bytes are not UTF-8: {go_strconv_quote(raw)}"
        ) from err


@functools.lru_cache(maxsize=4096)
def canonical_method(raw: str, *, encoded: bool = True) -> str:
    """The one normalization of an invoked method (see the module docstring): decode once,
    refuse forbidden characters, ``path.Clean``, keep a trailing slash. Raises
    :class:`InvalidMethod`.

    ``encoded=False`` is for a method that never was a URL path (the gRPC API's
    ``InvokeRequest.method``): it is taken as it is, without percent-decoding."""
    decoded = decode_method(raw) if encoded else raw
    cleaned = normalize_method(decoded).lstrip("/")
    if decoded.endswith("/") and cleaned and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


@functools.lru_cache(maxsize=4096)
def encode_method(method: str) -> str:
    """Write a canonical method as a URL path (without the leading ``/``)."""
    return quote(method.lstrip("/"), safe=_PATH_SAFE)


def app_path(method: str) -> str:
    """The path of the request to the app for a canonical method: ``/`` + the encoded method."""
    return "/" + encode_method(method)
