"""Access-control policies (spec §11): parsing, the trie, evaluation, messages.

The policy set and most evaluation rows are Dapr's own ``pkg/acl/acl_test.go`` and
``pkg/config/acl_trie*_test.go`` cases.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pysentry.config.acl import AccessControlList, Decision
from pysentry.config.configuration import AccessControlSpec, parse_configuration
from pysentry.config.method import normalize_method
from pysentry.config.trie import OperationAction, OperationTrie, is_match
from pysentry.errors import ConfigError, InvalidMethod
from pysentry.spiffe import SpiffeId, TrustDomain

DAPR_TEST_SPEC: dict[str, Any] = {
    "defaultAction": "deny",
    "trustDomain": "abcd",
    "policies": [
        {
            "appId": "app1",
            "defaultAction": "allow",
            "trustDomain": "public",
            "namespace": "ns1",
            "operations": [
                {"name": "/op1", "httpVerb": ["POST", "GET"], "action": "allow"},
                {"name": "/op2", "httpVerb": ["*"], "action": "deny"},
            ],
        },
        {
            "appId": "app2",
            "defaultAction": "deny",
            "trustDomain": "domain1",
            "namespace": "ns2",
            "operations": [
                {"name": "/op3/a/*", "httpVerb": ["PUT", "GET"], "action": "allow"},
                {"name": "/op4", "httpVerb": ["POST"], "action": "allow"},
            ],
        },
        {
            "appId": "app3",
            "trustDomain": "domain1",
            "namespace": "ns1",
            "operations": [{"name": "/op5", "httpVerb": ["POST"], "action": "allow"}],
        },
        {
            "appId": "app4",
            "defaultAction": "deny",
            "trustDomain": "domain1",
            "namespace": "ns2",
            "operations": [
                {"name": "/op6", "action": "allow"},
                {"name": "/op7/a/b/*", "action": "allow"},
                {"name": "/op7/a/b/c/f", "action": "allow"},
                {"name": "/op7/a/b*", "action": "allow"},
                {"name": "/op7/c/**", "action": "allow"},
            ],
        },
        {
            "appId": "app1",
            "defaultAction": "allow",
            "trustDomain": "public",
            "namespace": "ns4",
            "operations": [{"name": "/op6", "httpVerb": ["*"], "action": "allow"}],
        },
    ],
}


def _acl(spec: dict[str, Any] | None = None, *, http: bool = True) -> AccessControlList:
    return AccessControlList.from_spec(
        AccessControlSpec.model_validate(DAPR_TEST_SPEC if spec is None else spec), http=http
    )


def _id(td: str, ns: str, app: str) -> SpiffeId:
    return SpiffeId.for_app(TrustDomain(td), ns, app)


# (caller, operation, verb, http, allowed) — one row per Dapr test case.
EVALUATION = [
    (_id("public", "ns1", "appX"), "op1", "POST", True, False, "unknown-app-global-default"),
    (_id("private", "ns1", "app1"), "op1", "POST", True, False, "trust-domain-mismatch"),
    (_id("public", "abcd", "app1"), "op1", "POST", True, False, "namespace-mismatch"),
    (None, "op1", "POST", True, False, "no-caller-global-default"),
    (_id("public", "ns1", "app1"), "opX", "POST", True, True, "unknown-op-app-default"),
    (_id("public", "ns1", "app1"), "Op2", "POST", True, False, "http-case-insensitive"),
    (_id("domain1", "ns2", "app2"), "op4", "PUT", True, False, "verb-not-listed-app-default"),
    (_id("domain1", "ns1", "app3"), "op5", "PUT", True, False, "no-app-default-global"),
    (_id("public", "ns1", "app1"), "op2", "PUT", True, False, "verb-star"),
    (_id("domain1", "ns2", "app2"), "op4", "POST", True, True, "verb-match"),
    (_id("domain1", "ns2", "app2"), "/op4", "POST", True, True, "leading-slash"),
    (_id("domain1", "ns2", "app2"), "op4", "NONE", True, False, "http-verb-none-app-default"),
    (_id("domain1", "ns2", "app2"), "/op3/a", "PUT", True, True, "single-star-matches-parent"),
    (_id("domain1", "ns2", "app2"), "/OP4", "NONE", False, False, "grpc-case-sensitive"),
    (_id("domain1", "ns2", "app2"), "/op3/b/b", "PUT", True, False, "non-matching-postfix"),
    (_id("domain1", "ns2", "app2"), "/op3/a/b", "PUT", True, True, "matching-postfix"),
    (_id("domain1", "ns2", "app2"), "op4", "NONE", False, True, "grpc-operation-action"),
    (_id("domain1", "ns2", "app4"), "op6", "NONE", False, True, "grpc-no-verbs"),
    (_id("domain1", "ns2", "app4"), "op7/a/b/c", "NONE", False, True, "grpc-single-star"),
    (
        _id("domain1", "ns2", "app4"),
        "op7/a/b/c/d",
        "NONE",
        False,
        False,
        "grpc-single-star-one-level",
    ),
    (_id("domain1", "ns2", "app4"), "op7/a/b/c/f", "NONE", False, True, "grpc-exact-deep"),
    (_id("domain1", "ns2", "app4"), "op7/a/bc", "NONE", False, True, "grpc-glob"),
    (_id("domain1", "ns2", "app4"), "op7/c/d/e", "NONE", False, True, "grpc-double-star"),
    (_id("public", "ns4", "app1"), "op6", "DELETE", True, True, "same-app-other-namespace"),
    (_id("public", "ns1", "app1"), "op1/x/y", "GET", True, True, "prefix-semantics"),
    (_id("public", "ns1", "app1"), "op1", "get", True, True, "verb-upper-cased"),
    (_id("public", "ns1", "app1"), "a/../op2", "GET", True, False, "normalized-before-match"),
]


@pytest.mark.parametrize(
    ("caller", "operation", "verb", "http", "allowed"),
    [r[:5] for r in EVALUATION],
    ids=[r[5] for r in EVALUATION],
)
def test_evaluate_dapr_cases(
    caller: SpiffeId | None, operation: str, verb: str, http: bool, allowed: bool
) -> None:
    assert _acl(http=http).evaluate(caller, operation, verb).allowed is allowed


def test_denied_reason_is_dapr_message() -> None:
    decision = _acl().evaluate(_id("public", "ns1", "app1"), "/op2", "PUT")
    assert decision == Decision(
        False,
        "access control policy has denied access to id: spiffe://public/ns/ns1/app1 "
        "operation: /op2 verb: PUT",
        "app",
    )


def test_denied_without_caller_has_empty_id() -> None:
    decision = _acl().evaluate(None, "op1", "")
    assert decision.reason == (
        "access control policy has denied access to id:  operation: op1 verb: NONE"
    )
    assert decision.policy == "global"


def test_allowed_has_empty_reason() -> None:
    assert _acl().evaluate(_id("public", "ns1", "app1"), "op1", "GET") == Decision(True, "", "app")


@pytest.mark.parametrize(
    "caller",
    [
        SpiffeId.parse("spiffe://public/foo"),
        SpiffeId.parse("spiffe://public"),
        SpiffeId.parse("spiffe://public/ns/default"),
    ],
    ids=["not-ns", "no-path", "no-app"],
)
def test_malformed_caller_is_denied_with_error_text(caller: SpiffeId) -> None:
    decision = _acl().evaluate(caller, "op1", "GET")
    assert decision.allowed is False
    assert decision.reason == f"malformed SPIFFE ID: {caller}"


def test_extra_path_segments_are_accepted() -> None:
    caller = SpiffeId.parse("spiffe://public/ns/ns1/app1/extra")
    assert _acl().evaluate(caller, "op1", "GET").allowed is True


def test_invalid_method_is_denied() -> None:
    decision = _acl().evaluate(_id("public", "ns1", "app1"), "op1#x", "GET")
    assert decision.allowed is False
    assert decision.reason.startswith("invalid method: ")


@pytest.mark.parametrize(
    ("spec", "caller", "allowed"),
    [
        (None, _id("public", "ns1", "app1"), True),
        ({}, None, True),
        ({"policies": []}, None, True),
        ({"defaultAction": "deny"}, None, False),
        ({"defaultAction": "DENY"}, None, False),
        ({"defaultAction": "Allow"}, None, True),
        ({"trustDomain": "public"}, None, False),
        ({"trustDomain": "public", "policies": []}, None, True),
        ({"defaultAction": "bogus"}, None, False),
    ],
    ids=[
        "no-spec-allows",
        "empty-spec-allows",
        "empty-policies-allows",
        "global-deny",
        "action-case-insensitive",
        "global-allow",
        "no-action-policies-absent-denies",
        "no-action-policies-empty-allows",
        "unknown-action-denies",
    ],
)
def test_global_default(
    spec: dict[str, Any] | None, caller: SpiffeId | None, allowed: bool
) -> None:
    acl = AccessControlList.from_spec(
        None if spec is None else AccessControlSpec.model_validate(spec)
    )
    assert acl.evaluate(caller, "/anything", "GET").allowed is allowed


def test_no_acl_allows_even_malformed_callers() -> None:
    acl = AccessControlList.from_spec(None)
    assert acl.configured is False
    assert acl.evaluate(SpiffeId.parse("spiffe://public/x"), "a#b", "GET").allowed is True


def test_mtls_off_applies_global_default_not_policies() -> None:
    spec = {
        "defaultAction": "allow",
        "policies": [
            {"appId": "a", "defaultAction": "deny", "trustDomain": "public", "namespace": "default"}
        ],
    }
    acl = _acl(spec)
    assert acl.evaluate(None, "/x", "GET").allowed is True
    assert acl.evaluate(_id("public", "default", "a"), "/x", "GET").allowed is False


def test_missing_default_action_logs_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pysentry.config.acl"):
        acl = _acl({"trustDomain": "public"})
    assert acl.default_action == "deny"
    assert (
        "No global default action has been specified. Setting default global action as Deny"
        in caplog.text
    )


def test_lower_case_verbs_in_policy_warn(caplog: pytest.LogCaptureFixture) -> None:
    spec = {
        "defaultAction": "deny",
        "policies": [
            {
                "appId": "a",
                "trustDomain": "public",
                "namespace": "default",
                "operations": [{"name": "/x", "httpVerb": ["get"], "action": "allow"}],
            }
        ],
    }
    with caplog.at_level(logging.WARNING, logger="pysentry.config.acl"):
        acl = _acl(spec)
    assert "httpVerb 'get' never matches" in caplog.text
    assert acl.evaluate(_id("public", "default", "a"), "/x", "GET").allowed is False


def test_global_trust_domain_defaults_to_public() -> None:
    assert _acl({"defaultAction": "allow"}).trust_domain == "public"
    assert _acl().trust_domain == "abcd"


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        (
            [{"appId": "app1", "namespace": "ns1"}],
            "missing trustdomain for apps: [app1], missing namespace for apps: [], "
            "missing app name on at least one of the app policies: false",
        ),
        (
            [{"appId": "app2", "trustDomain": "d"}],
            "missing trustdomain for apps: [], missing namespace for apps: [app2], "
            "missing app name on at least one of the app policies: false",
        ),
        (
            [
                {"appId": "app1", "namespace": "ns1"},
                {"appId": "app2", "trustDomain": "d"},
                {"trustDomain": "d"},
            ],
            "missing trustdomain for apps: [app1], missing namespace for apps: [app2 ], "
            "missing app name on at least one of the app policies: true",
        ),
    ],
    ids=["missing-trust-domain", "missing-namespace", "dapr-test-all-three"],
)
def test_invalid_policies_list_offenders(policies: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _acl({"defaultAction": "deny", "policies": policies})
    assert str(info.value) == "invalid access control spec. " + message


def test_from_configuration_file_fixture() -> None:
    from pathlib import Path

    cfg = parse_configuration(
        (Path(__file__).resolve().parents[2] / "data" / "config" / "acl.yaml").read_text(), "acl"
    )
    acl = AccessControlList.from_spec(cfg.spec.access_control)
    assert acl.evaluate(_id("public", "default", "app1"), "/op1", "POST").allowed is False
    assert acl.evaluate(_id("public", "default", "app1"), "/op2/x", "DELETE").allowed is True
    assert acl.evaluate(_id("public", "default", "app1"), "/other", "GET").allowed is True
    assert acl.evaluate(_id("public", "ns2", "app2"), "/op3/a/b", "POST").allowed is True
    assert acl.evaluate(_id("public", "ns2", "app2"), "/op3/a/b", "GET").allowed is False
    assert acl.evaluate(_id("public", "default", "app9"), "/op1", "POST").allowed is False


# --- the trie on its own -----------------------------------------------------------------------


def _action(name: str) -> OperationAction:
    return OperationAction(name, {}, "allow")


TRIE = [
    (["/api/v1/state"], "/api/v1/state", "/api/v1/state", "exact"),
    (["/api/v1/state"], "/api/v1/other", None, "no-match"),
    (["/api/v1/*"], "/api/v1/foo", "/api/v1/*", "single-star-one-segment"),
    (["/api/v1/*"], "/api/v1/foo/bar", None, "single-star-not-deeper"),
    (["/api/v1/*"], "/api/v1", "/api/v1/*", "single-star-matches-parent"),
    (["/api/**"], "/api/v1/state", "/api/**", "double-star"),
    (["/api/**"], "/api/anything/nested/deep", "/api/**", "double-star-deep"),
    (["/api/v1/*", "/api/v1/state"], "/api/v1/state", "/api/v1/*", "wildcard-shadows-sibling"),
    (["/op1"], "/op1/x/y", "/op1", "prefix-semantics"),
    (["/op7/c/**"], "/op7/c/d/e", "/op7/c/**", "double-star-below"),
    (["/op7/a/b*"], "/op7/a/bc", "/op7/a/b*", "glob-suffix"),
    (["/a*d"], "/abcd", "/a*d", "glob-middle"),
    (["/*C"], "/ABC", "/*C", "glob-prefix"),
    (["/op/*/x"], "/op/q/x", None, "single-star-only-at-end"),
    ([], "/api", None, "empty-trie"),
]


@pytest.mark.parametrize(
    ("inserted", "query", "found"), [r[:3] for r in TRIE], ids=[r[3] for r in TRIE]
)
def test_trie_search(inserted: list[str], query: str, found: str | None) -> None:
    trie = OperationTrie()
    for name in inserted:
        trie.insert(name, _action(name))
    result = trie.search(query)
    assert (result.operation_name if result else None) == found


def test_trie_first_definition_wins() -> None:
    trie = OperationTrie()
    first, second = _action("/a/b"), OperationAction("/a/b", {}, "deny")
    trie.insert("/a/b", first)
    trie.insert("/a/b", second)
    assert trie.search("/a/b") is first


@pytest.mark.parametrize(
    ("target", "pattern", "matches"),
    [
        ("/ABC", "/A*", True),
        ("/ABC.a", "/A*", True),
        ("/ABC", "/*C", True),
        ("/ABC.a", "/*a", True),
        ("/abcd", "/a*d", True),
        ("/ABC.a", "/AB*.a", True),
        ("/abc", "/abd", False),
        ("/", "/*", True),
        ("/abc", "/a*c*", True),
        ("/ab", "/abc*", False),
    ],
    ids=[
        "suffix",
        "suffix-dot",
        "prefix",
        "prefix-dot",
        "middle",
        "middle-dot",
        "mismatch",
        "empty-run",
        "two-stars",
        "longer-pattern",
    ],
)
def test_glob(target: str, pattern: str, matches: bool) -> None:
    assert is_match(target, pattern) is matches


# --- method normalization ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "normalized"),
    [
        ("mymethod", "mymethod"),
        ("api/v1/users", "api/v1/users"),
        ("admin/../public", "public"),
        ("../../etc/passwd", "etc/passwd"),
        ("test%stream", "test%stream"),
        ("test%25stream", "test%25stream"),
        ('test"stream', 'test"stream'),
        ("test*stream", "test*stream"),
        ("test\\stream", "test\\stream"),
        ("///path", "/path"),
        ("/a/./b/", "/a/b"),
        (".", ""),
        ("..", ""),
        ("", ""),
        ("/..", "/"),
        ("Path", "Path"),
    ],
    ids=[
        "simple",
        "slashes",
        "traversal",
        "leading-traversal",
        "percent",
        "percent-encoded",
        "quote",
        "asterisk",
        "backslash",
        "duplicate-slashes",
        "dot-and-trailing",
        "dot",
        "dotdot",
        "empty",
        "rooted-dotdot",
        "case-kept",
    ],
)
def test_normalize_method(method: str, normalized: str) -> None:
    assert normalize_method(method) == normalized


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("test#stream", 'invalid method: method contains forbidden character: "test#stream"'),
        ("test?stream", 'invalid method: method contains forbidden character: "test?stream"'),
        (
            "test\x00stream",
            'invalid method: method contains forbidden character: "test\\x00stream"',
        ),
        (
            "test\x01stream",
            'invalid method: method contains control character at position 4: "test\\x01stream"',
        ),
        (
            "test\tstream",
            'invalid method: method contains control character at position 4: "test\\tstream"',
        ),
        ("t\nx", 'invalid method: method contains control character at position 1: "t\\nx"'),
        ("t\x7f", 'invalid method: method contains control character at position 1: "t\\x7f"'),
    ],
    ids=["hash", "question", "nul", "ctrl-01", "tab", "newline", "del"],
)
def test_normalize_method_rejects(method: str, message: str) -> None:
    with pytest.raises(InvalidMethod) as info:
        normalize_method(method)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)
