"""Fixtures shared by the Sentry client tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from grpclib.server import Server


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    """The fake Sentry servers a test started; closed after it."""
    started: list[Server] = []
    yield started
    for server in started:
        server.close()
        await server.wait_closed()
