"""SPIFFE trust domains and IDs: go-spiffe's strict charset (spec §6)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysentry.errors import InvalidSpiffeId
from pysentry.spiffe import SpiffeId, TrustDomain, dapr_path

TD_CHARS = string.ascii_lowercase + string.digits + ".-_"
PATH_CHARS = string.ascii_letters + string.digits + ".-_"
_FAST = settings(max_examples=150, deadline=None, database=None)


@pytest.mark.parametrize(
    ("text", "td", "path"),
    [
        ("spiffe://public/ns/default/myapp", "public", "/ns/default/myapp"),
        (
            "spiffe://cluster.local/ns/dapr-system/dapr-sentry",
            "cluster.local",
            "/ns/dapr-system/dapr-sentry",
        ),
        ("spiffe://td", "td", ""),
        ("spiffe://a_b-c.9/X/y.z/_-", "a_b-c.9", "/X/y.z/_-"),
        ("spiffe://td/...", "td", "/..."),
    ],
    ids=["dapr-app", "sentry", "no-path", "all-charset", "three-dots-is-not-a-dot-segment"],
)
def test_parse_valid(text: str, td: str, path: str) -> None:
    parsed = SpiffeId.parse(text)
    assert parsed.trust_domain == TrustDomain(td)
    assert parsed.path == path
    assert str(parsed) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "cannot be empty"),
        ("http://public/ns/a/b", "scheme is missing or invalid"),
        ("SPIFFE://public/ns/a/b", "scheme is missing or invalid"),
        ("spiffe://", "trust domain is missing"),
        ("spiffe:///ns/a/b", "trust domain is missing"),
        ("spiffe://Public/ns/a/b", "character 'P' at position 0"),
        ("spiffe://pub:443/ns/a/b", "character ':'"),
        ("spiffe://user@td/x", "character '@'"),
        ("spiffe://td/", "trailing slash"),
        ("spiffe://td/ns//app", "empty segments"),
        ("spiffe://td/ns/./app", "dot segments"),
        ("spiffe://td/ns/../app", "dot segments"),
        ("spiffe://td/ns/a b", "character ' '"),
        ("spiffe://td/ns/a%20b", "character '%'"),
        ("spiffe://td/ns/app?x=1", "character '?'"),
        ("spiffe://td/ns/app#frag", "character '#'"),
        ("spiffe://tdé/x", "character 'é'"),
    ],
    ids=[
        "empty",
        "wrong-scheme",
        "upper-scheme",
        "no-td",
        "empty-td",
        "upper-td",
        "port",
        "userinfo",
        "trailing-slash",
        "empty-segment",
        "dot",
        "dotdot",
        "space",
        "percent",
        "query",
        "fragment",
        "non-ascii-td",
    ],
)
def test_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(InvalidSpiffeId) as info:
        SpiffeId.parse(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("public", "public"),
        ("spiffe://public", "public"),
        ("spiffe://cluster.local/ns/x/y", "cluster.local"),
    ],
    ids=["bare", "id-form", "id-with-path"],
)
def test_trust_domain_parse(text: str, name: str) -> None:
    td = TrustDomain.parse(text)
    assert td.name == name
    assert td.id_string() == "spiffe://" + name


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "trust domain is missing"),
        ("Cluster.local", "character 'C'"),
        ("http://x", "scheme is missing or invalid"),
        ("a/b", "character '/'"),
    ],
    ids=["empty", "upper", "other-scheme", "slash"],
)
def test_trust_domain_invalid(text: str, fragment: str) -> None:
    with pytest.raises(InvalidSpiffeId, match=fragment):
        TrustDomain.parse(text)


def test_for_app_and_accessors() -> None:
    sid = SpiffeId.for_app("public", "default", "myapp")
    assert str(sid) == "spiffe://public/ns/default/myapp"
    assert sid.namespace == "default"
    assert sid.app_id == "myapp"
    assert sid.segments == ("ns", "default", "myapp")
    assert sid.path == dapr_path("default", "myapp")
    assert SpiffeId.for_app(TrustDomain("public"), "default", "myapp") == sid


@pytest.mark.parametrize(
    "text",
    ["spiffe://public/foo", "spiffe://public", "spiffe://public/ns/default", "spiffe://td/x/a/b"],
    ids=["one-segment", "no-path", "two-segments", "not-ns"],
)
def test_non_dapr_ids_have_no_namespace_or_app(text: str) -> None:
    sid = SpiffeId.parse(text)
    assert sid.namespace is None
    assert sid.app_id is None


@pytest.mark.parametrize(
    ("segments", "fragment"),
    [
        (("ns", "", "app"), "empty segments"),
        (("ns", ".", "app"), "dot segments"),
        (("ns", "a/b", "app"), "segments cannot contain '/'"),
        (("ns", "default", "my app"), "' '"),
    ],
    ids=["empty", "dot", "slash", "space"],
)
def test_from_segments_rejects(segments: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(InvalidSpiffeId, match=fragment):
        SpiffeId.from_segments(TrustDomain("public"), *segments)


def test_from_segments_without_segments_is_the_trust_domain_id() -> None:
    assert str(SpiffeId.from_segments(TrustDomain("td"))) == "spiffe://td"


def test_ids_are_hashable_values() -> None:
    a = SpiffeId.parse("spiffe://public/ns/a/b")
    b = SpiffeId.for_app("public", "a", "b")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


# --- properties ----------------------------------------------------------------------------

trust_domains = st.text(alphabet=TD_CHARS, min_size=1, max_size=30)
segments = st.text(alphabet=PATH_CHARS, min_size=1, max_size=20).filter(
    lambda s: s not in (".", "..")
)


@_FAST
@given(trust_domains, st.lists(segments, max_size=5))
def test_round_trip(td: str, segs: list[str]) -> None:
    sid = SpiffeId.from_segments(TrustDomain(td), *segs)
    assert SpiffeId.parse(str(sid)) == sid
    assert sid.segments == tuple(segs)


bad_path_chars = st.characters(codec="utf-8").filter(lambda c: c not in PATH_CHARS + "/")
bad_td_chars = st.characters(codec="utf-8").filter(lambda c: c not in TD_CHARS + "/")


@_FAST
@given(trust_domains, segments, bad_path_chars, st.integers(min_value=0, max_value=20))
def test_invalid_path_character_is_named(td: str, seg: str, bad: str, where: int) -> None:
    where = min(where, len(seg))
    segment = seg[:where] + bad + seg[where:]
    with pytest.raises(InvalidSpiffeId) as info:
        SpiffeId.parse(f"spiffe://{td}/ns/{segment}")
    assert f"character {bad!r}" in str(info.value)


@_FAST
@given(trust_domains, bad_td_chars, st.integers(min_value=0, max_value=30))
def test_invalid_trust_domain_character_is_named(td: str, bad: str, where: int) -> None:
    where = min(where, len(td))
    name = td[:where] + bad + td[where:]
    with pytest.raises(InvalidSpiffeId) as info:
        SpiffeId.parse(f"spiffe://{name}/ns/a/b")
    assert f"character {bad!r} at position {where}" in str(info.value)
