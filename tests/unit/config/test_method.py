"""The one method normalization (``pysentry.config.method``): decode once, refuse, clean, encode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pysentry.config.method import app_path, canonical_method, decode_method, encode_method
from pysentry.errors import InvalidMethod

# (raw method as the caller's app wrote it in the URL, canonical method, path the app receives)
CASES = [
    ("public/hello.txt", "public/hello.txt", "/public/hello.txt"),
    ("public/%2e%2e/admin/secret.txt", "admin/secret.txt", "/admin/secret.txt"),
    ("public/%2E%2E/admin/secret.txt", "admin/secret.txt", "/admin/secret.txt"),
    ("public/..%2Fadmin/secret.txt", "admin/secret.txt", "/admin/secret.txt"),
    ("public/..%2fadmin/secret.txt", "admin/secret.txt", "/admin/secret.txt"),
    ("public/%2e%2e%2fadmin", "admin", "/admin"),
    ("public/%252e%252e/admin", "public/%2e%2e/admin", "/public/%252e%252e/admin"),
    ("public/..\\admin", "public/..\\admin", "/public/..%5Cadmin"),
    ("public/..%5cadmin", "public/..\\admin", "/public/..%5Cadmin"),
    ("public/..;/admin", "public/..;/admin", "/public/..%3B/admin"),
    ("public;x=1/a", "public;x=1/a", "/public%3Bx=1/a"),
    ("public/a/", "public/a/", "/public/a/"),
    ("public/a/./b//c/", "public/a/b/c/", "/public/a/b/c/"),
    ("../../etc/passwd", "etc/passwd", "/etc/passwd"),
    ("/..//../x", "x", "/x"),
    ("%2e", "", "/"),
    ("", "", "/"),
    ("hello%20world", "hello world", "/hello%20world"),
    ("caf%C3%A9", "café", "/caf%C3%A9"),
    ("100%25", "100%", "/100%25"),
]


@pytest.mark.parametrize(("raw", "canonical", "path"), CASES, ids=[c[0] for c in CASES])
def test_canonical_and_app_path(raw: str, canonical: str, path: str) -> None:
    assert canonical_method(raw) == canonical
    assert app_path(canonical) == path


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("a%00b", "forbidden character"),
        ("a#b", "forbidden character"),
        ("a%23b", "forbidden character"),
        ("a%3Fb", "forbidden character"),
        ("a%0ab", "control character"),
        ("a%7f", "control character"),
        ("a%zz", "malformed percent-encoding"),
        ("a%", "malformed percent-encoding"),
        ("a%4", "malformed percent-encoding"),
        ("a%c3", "not UTF-8"),
    ],
)
def test_refused(raw: str, message: str) -> None:
    with pytest.raises(InvalidMethod, match=message) as err:
        canonical_method(raw)
    assert str(err.value).startswith("invalid method: ")


@given(st.text(alphabet="ab/.%2eEfF5cC;\\ é", max_size=16))
def test_round_trip_and_never_climbs(raw: str) -> None:
    try:
        canonical = canonical_method(raw)
    except InvalidMethod:
        return
    # what the next hop decodes is exactly what was checked
    assert canonical_method(encode_method(canonical)) == canonical
    assert decode_method(app_path(canonical)[1:]) == canonical
    assert ".." not in canonical.split("/")
    assert not canonical.startswith("/")
