"""How daprd's flags and env turn into anchors and Sentry tokens (spec §9.2, §9.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysentry.errors import ConfigError
from pysentry.security.anchors import FileAnchors, StaticAnchors
from pysentry.security.sentry_failure import SentryRequestFailed
from pysentry.security.sentry_sign import TokenValidator
from pysentry.sidecar.mtls import load_anchors, sentry_token
from pysentry.sidecar.options import parse_options
from pysentry.testing import TestCA


def test_no_anchors_says_how_to_provide_them() -> None:
    with pytest.raises(ConfigError) as err:
        load_anchors(parse_options(["--app-id", "a", "--enable-mtls"], env={}))
    assert "DAPR_TRUST_ANCHORS" in str(err.value) and "--trust-anchors-file" in str(err.value)


def test_anchors_from_env_or_watched_file(tmp_path: Path) -> None:
    pem = TestCA.create().anchors_pem()
    opts = parse_options([], env={"DAPR_TRUST_ANCHORS": pem.decode()})
    assert isinstance(load_anchors(opts), StaticAnchors)
    (tmp_path / "ca.crt").write_bytes(pem)
    opts = parse_options(["--trust-anchors-file", str(tmp_path / "ca.crt")], env={})
    anchors = load_anchors(opts)
    assert isinstance(anchors, FileAnchors) and anchors.pem() == pem


def test_sentry_token_file_selects_jwks(tmp_path: Path) -> None:
    assert sentry_token(parse_options([], env={})) == ("", TokenValidator.UNKNOWN)
    token = tmp_path / "token"
    token.write_text("abc.def.ghi\n")
    env = {"DAPR_SENTRY_TOKEN_FILE": str(token)}
    assert sentry_token(parse_options([], env=env)) == ("abc.def.ghi", TokenValidator.JWKS)
    k8s = parse_options(["--mode", "kubernetes"], env=env)
    assert sentry_token(k8s) == ("abc.def.ghi", TokenValidator.KUBERNETES)
    token.write_text("")
    with pytest.raises(SentryRequestFailed, match="is empty"):
        sentry_token(parse_options([], env=env))
