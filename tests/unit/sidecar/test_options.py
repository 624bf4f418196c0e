"""daprd flags and env vars (spec §9.1, §9.2)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from pysentry.config.method import app_path, canonical_method
from pysentry.errors import ConfigError
from pysentry.sidecar.options import parse_options, stable_random_port


def test_defaults() -> None:
    o = parse_options(["--app-id", "a"], env={})
    assert (o.dapr_http_port, o.metrics_port, o.enable_mtls, o.mode) == (
        3500,
        9090,
        False,
        "standalone",
    )
    assert o.dapr_internal_grpc_port is None
    assert (o.control_plane_trust_domain, o.control_plane_namespace) == ("localhost", "default")
    assert not o.control_plane_trust_domain_given
    assert o.namespace == "default"


def test_flags_and_go_style_booleans() -> None:
    o = parse_options(
        [
            "--app-id",
            "a",
            "--app-port",
            "8000",
            "--enable-mtls=true",
            "--log-as-json",
            "--dapr-internal-grpc-port",
            "50002",
            "--sentry-address",
            "localhost:50001",
            "--trust-anchors-file",
            "/x/ca.crt",
            "--config=./c.yaml",
        ],
        env={},
    )
    assert o.enable_mtls and o.log_as_json and o.app_port == 8000
    assert o.dapr_internal_grpc_port == 50002
    assert o.trust_anchors_file == Path("/x/ca.crt") and o.config == Path("./c.yaml")
    assert not parse_options(["--enable-mtls=false"], env={}).enable_mtls


def test_env_fallbacks_flag_wins() -> None:
    env = {
        "DAPR_CONTROLPLANE_TRUST_DOMAIN": "cluster.local",
        "DAPR_CONTROLPLANE_NAMESPACE": "dapr-system",
        "NAMESPACE": "prod",
        "DAPR_TRUST_ANCHORS": "PEM",
        "DAPR_CERT_CHAIN": "x",
        "DAPR_API_TOKEN": "tok",
    }
    o = parse_options([], env=env)
    assert o.control_plane_trust_domain == "cluster.local" and o.control_plane_trust_domain_given
    assert o.control_plane_namespace == "dapr-system" and o.namespace == "prod"
    assert o.trust_anchors_pem == b"PEM" and o.deprecated_env == ("DAPR_CERT_CHAIN",)
    assert o.api_token == "tok"
    o = parse_options(["--control-plane-namespace", "cp"], env=env)
    assert o.control_plane_namespace == "cp"


def test_empty_sentry_token_file_is_an_error() -> None:
    with pytest.raises(ConfigError, match="DAPR_SENTRY_TOKEN_FILE is set with an empty value"):
        parse_options([], env={"DAPR_SENTRY_TOKEN_FILE": ""})


def test_stable_random_port_is_daprs_formula() -> None:
    seed = f"a|/w|{os.getuid()}|{socket.gethostname()}"
    h = hashlib.sha256(seed.encode()).digest()
    assert stable_random_port("a", cwd="/w") == 47300 + (h[0] | h[1] << 8) % (65535 - 47300)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("hello", "/hello"),
        ("orders/list", "/orders/list"),
        ("", "/"),
        ("a/../b", "/b"),
        ("/x//y/", "/x/y/"),
        ("../../etc", "/etc"),
    ],
    ids=str,
)
def test_app_path_is_path_clean(method: str, path: str) -> None:
    assert app_path(canonical_method(method)) == path


def test_go_style_single_dash_flags() -> None:
    o = parse_options(
        ["-app-id", "a", "-dapr-http-port=3501", "-enable-mtls", "-c", "x.yaml"], env={}
    )
    assert (o.app_id, o.dapr_http_port, o.enable_mtls) == ("a", 3501, True)
    assert o.config == Path("x.yaml")


def test_tokens_stay_out_of_the_repr() -> None:
    env = {"DAPR_API_TOKEN": "api-secret-1", "APP_API_TOKEN": "app-secret-2"}
    o = parse_options(["--app-id", "a"], env=env)
    assert (o.api_token, o.app_api_token) == ("api-secret-1", "app-secret-2")
    assert "secret" not in repr(o)


REAL_CLI_ARGV = [
    # what the real `dapr run` (v1.16) passes to daprd, including v1.16.5's stray empty argument
    "--app-id", "myapp", "--dapr-http-port", "3500", "--dapr-grpc-port", "50001",
    "--log-level", "info", "--app-max-concurrency", "-1", "--app-protocol", "http",
    "--metrics-port", "9090", "--placement-host-address", "", "--scheduler-host-address", "",
    "--max-body-size", "4Mi", "--read-buffer-size", "4Ki", "--profile-port", "-1", "",
    "--resources-path", "/root/.dapr/components", "--enable-profiling=false",
    "--dapr-graceful-shutdown-seconds", "5", "--app-health-probe-timeout=500",
]  # fmt: skip


def test_every_flag_the_real_cli_passes_is_accepted() -> None:
    opts = parse_options(REAL_CLI_ARGV, {})
    assert opts.app_id == "myapp"
    assert opts.max_body_size == 4 << 20
    # only values that ask for something pysentry lacks are reported
    assert opts.dapr_grpc_port == 50001
    assert opts.ignored_flags == ("--resources-path=/root/.dapr/components",)


@pytest.mark.parametrize(
    ("argv", "ignored"),
    [
        (["--enable-api-logging"], ("--enable-api-logging=true",)),
        (["--enable-app-health-check=true"], ("--enable-app-health-check=true",)),
        (["--read-buffer-size", "16Ki"], ("--read-buffer-size=16Ki",)),
        (["--wait"], ("--wait=true",)),
        (["--actors-service", "placement:x:1"], ("--actors-service=placement:x:1",)),
        (["--unix-domain-socket", ""], ()),
    ],
)
def test_unsupported_flags_warn_only_off_their_default(
    argv: list[str], ignored: tuple[str, ...]
) -> None:
    assert parse_options(["--app-id", "a", *argv], {}).ignored_flags == ignored


def test_body_size_flags() -> None:
    assert parse_options(["--max-body-size", "1Mi"], {}).max_body_size == 1 << 20
    legacy = parse_options(["--dapr-http-max-request-size", "8"], {})
    assert legacy.max_body_size == 8 << 20
    assert legacy.deprecated_flags == (("--dapr-http-max-request-size", "--max-body-size"),)
    # --max-body-size wins, as in Dapr
    both = parse_options(["--dapr-http-max-request-size", "8", "--max-body-size", "2Mi"], {})
    assert both.max_body_size == 2 << 20
    with pytest.raises(ConfigError, match="invalid value for 'max-body-size' option: '4MB'"):
        parse_options(["--max-body-size", "4MB"], {})


def test_unknown_flags_are_still_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_options(["--app-id", "a", "--no-such-flag"], {})
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


# What the real `dapr run` v1.16.5 passed to our daprd (captured): it blanks
# `--scheduler-host-address` for a runtime older than 1.14 (`daprd --version` is pysentry's),
# leaving `"" localhost:50006`.
REAL_CLI_1165_ARGV = [
    "--config", "/h/.dapr/config.yaml", "--app-protocol", "http", "--log-level", "info",
    "--app-max-concurrency", "-1", "--placement-host-address", "localhost:50005",
    "--components-path", "/h/.dapr/components", "--max-body-size", "4Mi",
    "--read-buffer-size", "4Ki", "", "localhost:50006", "--app-id", "mana", "--app-port", "48891",
    "--dapr-http-port", "41323", "--dapr-grpc-port", "36951", "--profile-port", "-1",
    "--metrics-port", "46879", "--dapr-internal-grpc-port", "42187",
]  # fmt: skip


def test_the_value_of_a_flag_the_real_cli_blanked_is_ignored_with_a_warning() -> None:
    opts = parse_options(REAL_CLI_1165_ARGV, {})
    assert (opts.app_id, opts.app_port, opts.dapr_http_port) == ("mana", 48891, 41323)
    assert opts.ignored_flags[-1] == (
        "'localhost:50006' after an empty argument (the value of a flag the dapr CLI blanked)"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--app-id", "a", "stray"],  # not after an empty argument
        ["--app-id", "a", "", "--app-port", "1", "stray"],  # an empty argument elsewhere
    ],
)
def test_other_positional_arguments_still_fail(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as err:
        parse_options(argv, {})
    assert err.value.code == 2
    assert "unrecognized arguments: stray" in capsys.readouterr().err
