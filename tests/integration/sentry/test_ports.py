"""A port Sentry cannot listen on: the message names the flag and the fix, and Sentry exits 1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .conftest import free_port, run_sentry_to_exit

FIX = "stop the process that holds it or pass another port with"


@pytest.mark.parametrize(
    ("flag", "where"),
    [
        ("--port", "127.0.0.1"),
        ("--healthz-port", "all interfaces"),
        ("--metrics-port", "all interfaces"),
    ],
)
def test_a_taken_port_names_its_flag(tmp_path: Path, flag: str, where: str) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code, output = run_sentry_to_exit(tmp_path / "certs", flag, str(port))
    assert code == 1, output
    expected = (
        f"Fatal error: {flag}: port {port} is already in use on {where}: "
        f"Address already in use; {FIX} {flag}"
    )
    assert expected in output, output
    assert "Traceback" not in output
    others = {"--port", "--healthz-port", "--metrics-port"} - {flag}
    assert not any(f"Fatal error: {other}:" in output for other in others)


def test_an_address_that_is_not_local_names_both_flags(tmp_path: Path) -> None:
    port = free_port()
    code, output = run_sentry_to_exit(
        tmp_path / "certs", "--listen-address", "192.0.2.1", "--port", str(port)
    )
    assert code == 1, output
    assert (
        f"Fatal error: --port: cannot listen on 192.0.2.1 port {port}: "
        "Cannot assign requested address; check --listen-address and --port"
    ) in output, output
    assert "Traceback" not in output
