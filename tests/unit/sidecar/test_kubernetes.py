"""``daprd --mode kubernetes`` pieces that need no API server (the testbed tests cover the rest:
tests/k8s/test_daprd_k8s.py)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from pysentry.config.configuration import Configuration
from pysentry.errors import ConfigError
from pysentry.sidecar.kubernetes import (
    SENTRY_TOKEN_PATH,
    check_uid_gid,
    with_kubernetes_resolver,
    with_token_file,
)
from pysentry.sidecar.options import listen_addresses, parse_options
from pysentry.sidecar.ports import StartupError, bind_each

K8S = ["--mode", "kubernetes", "--app-id", "a"]


def test_listen_addresses_is_a_comma_list_with_bracketed_ipv6() -> None:
    assert listen_addresses("[::1],127.0.0.1") == ("::1", "127.0.0.1")
    assert listen_addresses(" 127.0.0.1 , [::1] ,127.0.0.1") == ("127.0.0.1", "::1")
    assert listen_addresses("") == ("127.0.0.1",)
    opts = parse_options([*K8S, "--dapr-listen-addresses", "[::1],127.0.0.1"], env={})
    assert (opts.dapr_listen_address, opts.dapr_listen_addresses) == ("::1", ("::1", "127.0.0.1"))


def test_bind_each_binds_every_address_on_one_port() -> None:
    socks = bind_each(["127.0.0.1", "::1"], 0, "--dapr-http-port")
    try:
        assert [s.family for s in socks] == [socket.AF_INET, socket.AF_INET6]
        assert socks[0].getsockname()[1] == socks[1].getsockname()[1]
    finally:
        for s in socks:
            s.close()


def test_bind_each_fails_only_when_no_address_binds(caplog: pytest.LogCaptureFixture) -> None:
    held = bind_each(["127.0.0.1"], 0, "--dapr-http-port")
    port = held[0].getsockname()[1]
    try:
        with caplog.at_level(logging.WARNING):
            socks = bind_each(["127.0.0.1", "::1"], port, "--dapr-http-port")
        assert [s.getsockname()[:2] for s in socks] == [("::1", port)]
        assert f"--dapr-http-port: port {port} is already in use on 127.0.0.1" in caplog.text
        assert "listening on the other --dapr-listen-addresses only" in caplog.text
        for s in socks:
            s.close()
        with pytest.raises(StartupError, match=f"port {port} is already in use on 127.0.0.1"):
            bind_each(["127.0.0.1"], port, "--dapr-http-port")
    finally:
        held[0].close()


def test_token_file_defaults_to_daprs_projected_token(tmp_path: Path) -> None:
    assert Path("/var/run/secrets/dapr.io/sentrytoken/token") == SENTRY_TOKEN_PATH
    default, legacy = tmp_path / "sentrytoken" / "token", tmp_path / "sa" / "token"
    opts = parse_options(K8S, env={})
    with pytest.raises(ConfigError) as err:
        with_token_file(opts, default=default, legacy=legacy)
    assert str(default) in str(err.value) and str(legacy) in str(err.value)
    assert "set DAPR_SENTRY_TOKEN_FILE" in str(err.value)
    legacy.parent.mkdir()
    legacy.write_text("t")
    assert with_token_file(opts, default=default, legacy=legacy).sentry_token_file == legacy
    default.parent.mkdir()
    default.write_text("t")
    assert with_token_file(opts, default=default, legacy=legacy).sentry_token_file == default
    given = parse_options(K8S, env={"DAPR_SENTRY_TOKEN_FILE": str(tmp_path / "mine")})
    assert with_token_file(given, default=default).sentry_token_file == tmp_path / "mine"


def test_legacy_token_logs_daprs_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    legacy = tmp_path / "token"
    legacy.write_text("t")
    with caplog.at_level(logging.WARNING):
        with_token_file(parse_options(K8S, env={}), default=tmp_path / "no", legacy=legacy)
    assert "daprd is initializing using the legacy service account token" in caplog.text


def test_uid_gid_check_is_daprs() -> None:
    with pytest.raises(ConfigError) as err:
        check_uid_gid({}, uid=0, gid=0)
    assert str(err.value) == (
        "current user UID/GID (0:0) does not match the required UID/GID (65532:65532). Dapr "
        "must be run as a non-root user 65532:65532 in Kubernetes environments. To override "
        "this check, set the environment variable 'DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK=true'"
    )
    with pytest.raises(ConfigError, match=r"\(1000:65532\)"):
        check_uid_gid({}, uid=1000, gid=65532)
    check_uid_gid({}, uid=65532, gid=65532)
    check_uid_gid({"DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK": "true"}, uid=0, gid=0)
    with pytest.raises(ConfigError):  # Dapr compares with "true" exactly
        check_uid_gid({"DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK": "1"}, uid=0, gid=0)


def test_name_resolution_defaults_to_kubernetes() -> None:
    cfg = with_kubernetes_resolver(Configuration.model_validate({}))
    assert cfg.spec.name_resolution is not None
    assert cfg.spec.name_resolution.component == "kubernetes"
    kept = Configuration.model_validate(
        {"spec": {"nameResolution": {"configuration": {"template": "127.0.0.1:1"}}}}
    )
    nr = with_kubernetes_resolver(kept).spec.name_resolution
    assert nr is not None and (nr.component, nr.configuration) == (
        "kubernetes",
        {"template": "127.0.0.1:1"},
    )
    sqlite = Configuration.model_validate({"spec": {"nameResolution": {"component": "sqlite"}}})
    assert with_kubernetes_resolver(sqlite) is sqlite
