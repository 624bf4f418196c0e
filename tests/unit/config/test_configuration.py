"""The Configuration resource: schema, defaults, loading, env expansion, errors (spec §4)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from pysentry.config.configuration import (
    DEFAULT_ALLOWED_CLOCK_SKEW,
    DEFAULT_WORKLOAD_CERT_TTL,
    Configuration,
    load_configuration,
    parse_configuration,
)
from pysentry.config.envexpand import expand_env
from pysentry.config.validators import SentryValidators, sentry_validators
from pysentry.errors import ConfigError
from tests.unprivileged import run_unprivileged, unreadable_file

DATA = Path(__file__).resolve().parents[2] / "data" / "config"


def test_dapr_init_config_loads_with_defaults() -> None:
    cfg = load_configuration(DATA / "dapr-init.yaml", env={})
    assert cfg.metadata.name == "daprConfig"
    assert cfg.spec.mtls.enabled is False
    assert cfg.spec.mtls.workload_cert_ttl == timedelta(hours=24)
    assert cfg.spec.mtls.allowed_clock_skew == timedelta(minutes=15)
    assert cfg.spec.mtls.control_plane_trust_domain is None
    assert cfg.spec.access_control is None
    assert cfg.spec.name_resolution is None


@pytest.mark.parametrize("name", ["empty.yaml", "slim.yaml"], ids=["empty-file", "slim-spec"])
def test_empty_documents_give_defaults(name: str) -> None:
    cfg = load_configuration(DATA / name, env={})
    assert cfg.spec.mtls.workload_cert_ttl == DEFAULT_WORKLOAD_CERT_TTL
    assert cfg.spec.mtls.allowed_clock_skew == DEFAULT_ALLOWED_CLOCK_SKEW
    assert cfg.spec.mtls.token_validators == ()
    assert "enabled" not in cfg.spec.mtls.model_fields_set


def test_daprsystem_config() -> None:
    cfg = load_configuration(DATA / "daprsystem.yaml", env={})
    mtls = cfg.spec.mtls
    assert mtls.enabled is True
    assert "enabled" in mtls.model_fields_set
    assert mtls.workload_cert_ttl == timedelta(hours=1, minutes=30)
    assert mtls.allowed_clock_skew == timedelta(minutes=5)
    assert mtls.control_plane_trust_domain == "cluster.local"
    assert mtls.sentry_address == "dapr-sentry.dapr-system.svc.cluster.local:443"
    (validator,) = mtls.token_validators
    assert validator.name == "jwks"
    assert validator.options == {
        "source": "https://issuer.example.com/.well-known/jwks.json",
        "minRefreshInterval": "10m",
        "requestTimeout": "30",
    }


def test_access_control_section() -> None:
    acl = load_configuration(DATA / "acl.yaml", env={}).spec.access_control
    assert acl is not None
    assert acl.default_action == "deny"
    assert acl.trust_domain == "public"
    assert acl.policies is not None
    first = acl.policies[0]
    assert (first.app_id, first.namespace, first.trust_domain) == ("app1", "default", "public")
    assert first.operations[0].name == "/op1"
    assert first.operations[0].http_verb == ("POST", "GET")
    assert first.operations[0].action == "deny"


def test_policies_absent_vs_empty_list_differ() -> None:
    absent = parse_configuration("spec:\n  accessControl:\n    trustDomain: x\n", "t")
    empty = parse_configuration("spec:\n  accessControl:\n    policies: []\n", "t")
    assert absent.spec.access_control is not None
    assert absent.spec.access_control.policies is None
    assert empty.spec.access_control is not None
    assert empty.spec.access_control.policies == ()


def test_name_resolution_sqlite_with_env_expansion() -> None:
    cfg = load_configuration(DATA / "nameresolution-sqlite.yaml", env={"HOME": "/home/me"})
    nr = cfg.spec.name_resolution
    assert nr is not None
    assert (nr.component, nr.version) == ("sqlite", "v1")
    assert nr.configuration == {"connectionString": "/home/me/.dapr/nr.db", "updateInterval": "5s"}


def test_env_expansion_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_NAME", "fromenv")
    monkeypatch.setenv("CERT_TTL", "2h")
    monkeypatch.delenv("UNSET_VARIABLE", raising=False)
    cfg = load_configuration(DATA / "mtls-env.yaml")
    assert cfg.metadata.name == "fromenv"
    assert cfg.spec.mtls.workload_cert_ttl == timedelta(hours=2)
    assert cfg.spec.mtls.control_plane_trust_domain is None  # unset -> "" -> not set


def test_unset_env_duration_falls_back_to_default() -> None:
    cfg = load_configuration(DATA / "mtls-env.yaml", env={})
    assert cfg.metadata.name == ""
    assert cfg.spec.mtls.workload_cert_ttl == DEFAULT_WORKLOAD_CERT_TTL


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$A", "1"),
        ("${A}", "1"),
        ("x${A}y", "x1y"),
        ("$A$B", "12"),
        ("$AB", ""),
        ("${MISSING}", ""),
        ("$", "$"),
        ("a$", "a$"),
        ("$ x", "$ x"),
        ("${}", ""),
        ("${A", "A"),
        ("$$", ""),
        ("$1", ""),
        ("${A}}", "1}"),
        ("pa$$word", "paword"),
        ("cost: 5$", "cost: 5$"),
        ("$-x", "x"),
        ("${A_B}", "under"),
    ],
    ids=[
        "bare",
        "braced",
        "embedded",
        "adjacent",
        "longest-name",
        "unset",
        "lone-dollar",
        "trailing-dollar",
        "dollar-space",
        "empty-braces",
        "unclosed",
        "double-dollar",
        "positional",
        "extra-brace",
        "mangles-like-go",
        "dollar-at-end",
        "special-var",
        "underscore",
    ],
)
def test_expand_env_matches_go(text: str, expanded: str) -> None:
    env = {"A": "1", "B": "2", "A_B": "under"}
    assert expand_env(text, env) == expanded


# --- errors ----------------------------------------------------------------------------------


def test_missing_file_names_path_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_configuration(path)
    message = str(info.value)
    assert str(path) in message
    assert "not found" in message
    assert "--config" in message


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_configuration(tmp_path)


def test_unreadable_file() -> None:
    def check() -> str:
        load_configuration(path)
        return "loaded"

    with unreadable_file(b"spec: {}\n") as path:
        code, message = run_unprivileged(check)
    assert code == 3, message
    assert re.search(r"cannot be read.*permissions", message), message


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"metadata:\n  name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_configuration(path)


def test_bad_yaml_reports_file_line_column() -> None:
    path = DATA / "bad-yaml.yaml"
    with pytest.raises(ConfigError) as info:
        load_configuration(path, env={})
    assert f"{path}:6:4" in str(info.value)


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        (
            "spec:\n  mtls:\n    workloadCertTTL: 1d\n",
            "spec.mtls.workloadCertTTL: error parsing WorkloadCertTTL duration: "
            'time: unknown unit "d" in duration "1d"',
        ),
        (
            "spec:\n  mtls:\n    allowedClockSkew: '15'\n",
            "spec.mtls.allowedClockSkew: error parsing AllowedClockSkew duration: "
            'time: missing unit in duration "15"',
        ),
        (
            "spec:\n  mtls:\n    workloadCertTTL: 24\n",
            'error parsing WorkloadCertTTL duration: time: missing unit in duration "24"',
        ),
        (
            "spec:\n  mtls:\n    workloadCertTTL: [1h]\n",
            "spec.mtls.workloadCertTTL: expected a Go duration string such as '24h', got a list",
        ),
        (
            "spec:\n  mtls:\n    enabled: 'true'\n",
            "spec.mtls.enabled: expected true or false, got 'true'",
        ),
        ("spec:\n  mtls:\n    enabled: 1\n", "spec.mtls.enabled: expected true or false, got 1"),
        (
            "spec:\n  mtls:\n    tokenValidators: jwks\n",
            "spec.mtls.tokenValidators: expected a list, got 'jwks'",
        ),
        (
            "spec:\n  mtls:\n    tokenValidators:\n      - name: jwks\n        options: [a]\n",
            "spec.mtls.tokenValidators[0].options: expected a mapping of option names to values",
        ),
        (
            "spec:\n  mtls:\n    tokenValidators:\n      - name: jwks\n        options:\n"
            "          source: {a: b}\n",
            "spec.mtls.tokenValidators[0].options: option 'source' must be a string, number or "
            "boolean",
        ),
        ("spec:\n  mtls: 5\n", "spec.mtls: expected a mapping, got 5"),
        (
            "spec:\n  mtls:\n    workloadCertTTL: -1h\n",
            "spec.mtls.workloadCertTTL: WorkloadCertTTL must be at least 1µs, got '-1h'",
        ),
        (
            "spec:\n  mtls:\n    workloadCertTTL: 1ns\n",
            "WorkloadCertTTL must be at least 1µs, got '1ns': use a Go duration such as '24h'",
        ),
        (
            "spec:\n  mtls:\n    allowedClockSkew: -1m\n",
            "spec.mtls.allowedClockSkew: AllowedClockSkew must be zero or positive, got '-1m'",
        ),
        (
            "spec:\n  accessControl:\n    policies:\n      - appId: a\n        operations:\n"
            "          - name: /x\n            httpVerb: GET\n",
            "spec.accessControl.policies[0].operations[0].httpVerb: expected a list, got 'GET'",
        ),
        (
            "spec:\n  accessControl:\n    policies:\n      - appId: {x: 1}\n",
            "spec.accessControl.policies[0].appId: expected a string, got dict",
        ),
        (
            "spec:\n  nameResolution:\n    configuration: [1]\n",
            "spec.nameResolution.configuration: expected a mapping",
        ),
        ("- a\n- b\n", "expected a mapping with apiVersion, kind and spec at the top level"),
        ("kind: Component\n", "kind is 'Component', expected 'Configuration'"),
    ],
    ids=[
        "ttl-day-unit",
        "skew-missing-unit",
        "ttl-int",
        "ttl-list",
        "enabled-string",
        "enabled-int",
        "validators-scalar",
        "options-list",
        "options-nested",
        "mtls-scalar",
        "ttl-negative",
        "ttl-below-resolution",
        "skew-negative",
        "verbs-scalar",
        "app-id-mapping",
        "nr-configuration-list",
        "top-level-list",
        "wrong-kind",
    ],
)
def test_validation_errors_name_file_field_and_problem(yaml_text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_configuration(yaml_text, "my.yaml")
    message = str(info.value)
    assert message.startswith("invalid configuration my.yaml")
    assert fragment in message


def test_errors_from_files_name_the_file() -> None:
    for name, fragment in [
        ("bad-ttl.yaml", "spec.mtls.workloadCertTTL"),
        ("bad-types.yaml", "spec.mtls.enabled"),
        ("component.yaml", "kind is 'Component'"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_configuration(DATA / name, env={})
        assert str(DATA / name) in str(info.value)
        assert fragment in str(info.value)


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        load_configuration(DATA / "bad-types.yaml", env={})
    assert "spec.mtls.enabled" in str(info.value)
    assert "spec.mtls.tokenValidators" in str(info.value)


@pytest.mark.parametrize(
    ("yaml_value", "expected"),
    [
        ("10", "10"),
        ("1.5", "1.5"),
        ("10.0", "10"),
        ("true", "true"),
        ("null", ""),
        ("'x'", "x"),
        ("1.0e+3", "1000"),
    ],
    ids=["int", "float", "integral-float", "bool", "null", "string", "exponent"],
)
def test_validator_options_become_strings(yaml_value: str, expected: str) -> None:
    cfg = parse_configuration(
        f"spec:\n  mtls:\n    tokenValidators:\n      - name: jwks\n        options:\n"
        f"          v: {yaml_value}\n",
        "t",
    )
    assert cfg.spec.mtls.token_validators[0].options == {"v": expected}


def test_scalars_decode_into_string_fields_like_yaml_v3() -> None:
    cfg = parse_configuration(
        "spec:\n  accessControl:\n    policies:\n      - appId: 123\n        namespace: null\n", "t"
    )
    assert cfg.spec.access_control is not None
    assert cfg.spec.access_control.policies is not None
    policy = cfg.spec.access_control.policies[0]
    assert (policy.app_id, policy.namespace) == ("123", "")


def test_models_are_frozen() -> None:
    cfg = Configuration()
    with pytest.raises(ValueError, match="frozen"):
        cfg.spec.mtls.enabled = True  # type: ignore[misc]


# --- Sentry validators (§4.2 step 4) ---------------------------------------------------------


def _with_validators(*names: str) -> Configuration:
    body = "".join(f"      - name: {n}\n        options: {{source: s}}\n" for n in names)
    return parse_configuration(f"spec:\n  mtls:\n    tokenValidators:\n{body}", "t")


@pytest.mark.parametrize(
    ("names", "mode", "expected"),
    [
        ((), "standalone", SentryValidators("INSECURE", ("INSECURE",))),
        ((), "kubernetes", SentryValidators("KUBERNETES", ("KUBERNETES",))),
        (("jwks",), "standalone", SentryValidators("UNKNOWN", ("JWKS",), {"source": "s"})),
        (
            ("JWKS",),
            "kubernetes",
            SentryValidators("KUBERNETES", ("KUBERNETES", "JWKS"), {"source": "s"}),
        ),
    ],
    ids=[
        "standalone-insecure",
        "kubernetes-default",
        "standalone-jwks-no-default",
        "kubernetes-plus-jwks",
    ],
)
def test_sentry_validators(names: tuple[str, ...], mode: str, expected: SentryValidators) -> None:
    cfg = _with_validators(*names) if names else Configuration()
    assert sentry_validators(cfg, mode) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "kubernetes",
            "invalid token validator: the built-in 'kubernetes' and 'insecure' "
            "validators cannot be configured manually",
        ),
        (
            "Insecure",
            "invalid token validator: the built-in 'kubernetes' and 'insecure' "
            "validators cannot be configured manually",
        ),
        ("oidc", "invalid token validator name: 'oidc'; supported values: 'jwks'"),
        ("unknown", "invalid token validator name: 'unknown'; supported values: 'jwks'"),
    ],
    ids=["kubernetes", "insecure-any-case", "unsupported", "enum-zero"],
)
def test_sentry_validators_reject(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        sentry_validators(_with_validators(name), "standalone")
    assert str(info.value) == message


def test_zero_clock_skew_is_allowed() -> None:
    cfg = parse_configuration("spec:\n  mtls:\n    allowedClockSkew: 0s\n", "t")
    assert cfg.spec.mtls.allowed_clock_skew == timedelta(0)


@pytest.mark.parametrize(
    ("word", "enabled"),
    [("yes", True), ("On", True), ("no", False), ("OFF", False), ("true", True)],
    ids=["yes", "On", "no", "OFF", "true"],
)
def test_yaml11_booleans_in_bool_fields_like_yaml_v3(word: str, enabled: bool) -> None:
    cfg = parse_configuration(f"spec:\n  mtls:\n    enabled: {word}\n", "t")
    assert cfg.spec.mtls.enabled is enabled


def test_yaml11_words_stay_text_in_string_fields() -> None:
    """No "Norway problem": yaml.v3 keeps ``namespace: no`` as the text "no"."""
    cfg = parse_configuration(
        "spec:\n  accessControl:\n    policies:\n      - appId: on\n        namespace: no\n"
        "  mtls:\n    tokenValidators: [{name: jwks, options: {a: yes, b: true}}]\n",
        "t",
    )
    assert cfg.spec.access_control is not None
    assert cfg.spec.access_control.policies is not None
    policy = cfg.spec.access_control.policies[0]
    assert (policy.app_id, policy.namespace) == ("on", "no")
    assert type(policy.namespace) is str
    assert cfg.spec.mtls.token_validators[0].options == {"a": "yes", "b": "true"}
