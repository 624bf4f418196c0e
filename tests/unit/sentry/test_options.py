"""Sentry's flags: Dapr's names and defaults, pflag-style spelling."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pysentry.pki.keys import KeyAlgorithm
from pysentry.sentry.options import OptionsError, parse_options


def test_defaults_are_daprs() -> None:
    opts = parse_options([], env={})
    assert opts.config == "daprsystem" and not opts.config_explicit
    assert opts.issuer_credentials == Path("/var/run/secrets/dapr.io/credentials")
    assert opts.ca_path == Path("/var/run/secrets/dapr.io/credentials/ca.crt")
    assert opts.issuer_cert_path.name == "issuer.crt"
    assert opts.issuer_key_path.name == "issuer.key"
    assert (opts.trust_domain, opts.port, opts.healthz_port, opts.metrics_port) == (
        "localhost",
        50001,
        8080,
        9090,
    )
    assert opts.enable_metrics and not opts.log_as_json
    assert (opts.log_level, opts.mode, opts.namespace) == ("info", "standalone", "default")
    assert opts.ca_key_algorithm == KeyAlgorithm.EC_P256
    assert opts.reload_quiet_period == timedelta(seconds=2)
    assert opts.sentry_id == "spiffe://localhost/ns/default/dapr-sentry"


def test_go_style_single_dash_and_bools() -> None:
    opts = parse_options(
        [
            "-port",
            "1234",
            "-trust-domain",
            "cluster.local",
            "--enable-metrics=false",
            "-log-as-json",
            "--config",
            "cfg.yaml",
            "-issuer-ca-filename",
            "/abs/root.pem",
        ],
        env={"NAMESPACE": "dapr-system", "PYSENTRY_RELOAD_QUIET_PERIOD": "0.1"},
    )
    assert opts.port == 1234 and opts.trust_domain == "cluster.local"
    assert not opts.enable_metrics and opts.log_as_json
    assert opts.config == "cfg.yaml" and opts.config_explicit
    assert opts.ca_path == Path("/abs/root.pem")  # absolute names are used as-is
    assert opts.sentry_id == "spiffe://cluster.local/ns/dapr-system/dapr-sentry"
    assert opts.reload_quiet_period == timedelta(seconds=0.1)


def test_pysentry_flags() -> None:
    opts = parse_options(
        [
            "--ca-key-algorithm",
            "ed25519",
            "--max-concurrent-signs",
            "3",
            "--max-request-bytes",
            "100",
        ],
        env={},
    )
    assert opts.ca_key_algorithm == KeyAlgorithm.ED25519
    assert (opts.max_concurrent_signs, opts.max_request_bytes) == (3, 100)


@pytest.mark.parametrize(
    "argv",
    [
        ["--token-audience", "x"],
        ["--port", "70000"],
        ["--max-concurrent-signs", "0"],
        ["--enable-metrics=maybe"],
        ["--log-level", "loud"],
    ],
    ids=["removed-flag", "port-range", "zero-cap", "bad-bool", "bad-level"],
)
def test_bad_flags_exit(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_options(argv, env={})
    assert info.value.code == 2


def test_bad_mode_and_env() -> None:
    with pytest.raises(OptionsError, match="invalid mode: bogus"):
        parse_options(["--mode", "bogus"], env={})
    with pytest.raises(OptionsError, match="PYSENTRY_RELOAD_QUIET_PERIOD"):
        parse_options([], env={"PYSENTRY_RELOAD_QUIET_PERIOD": "soon"})


def test_mode_kubernetes_is_explicit_or_detected_from_the_service_host() -> None:
    assert parse_options(["--mode", "kubernetes"], env={}).mode == "kubernetes"
    assert parse_options([], env={}).mode == "standalone"
    detected = parse_options([], env={"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert detected.mode == "kubernetes"
    assert parse_options(["--mode", "standalone"], env={"KUBERNETES_SERVICE_HOST": "x"}).mode == (
        "standalone"
    )
    assert not detected.kubeconfig_explicit
    assert parse_options(["--kubeconfig", "/k"], env={}).kubeconfig_explicit


def test_trust_domain_in_spiffe_form_gives_the_same_sentry_id() -> None:
    # go-spiffe's TrustDomainFromString accepts "spiffe://td"; the Sentry ID must not double it.
    opts = parse_options(["--trust-domain", "spiffe://cluster.local"], env={})
    assert opts.sentry_id == "spiffe://cluster.local/ns/default/dapr-sentry"
