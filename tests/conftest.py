"""Shared fixtures: a Braze emulator on loopback and small projects pointing at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reverse_etl.sandbox import SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator


@pytest.fixture
def braze() -> Iterator[SandboxServer]:
    """A fresh strict Braze emulator on 127.0.0.1 (``braze.emulator`` to inspect it)."""
    with SandboxServer(BrazeEmulator()) as server:
        yield server


def braze_destination(server: SandboxServer, **extra: object) -> dict[str, dict[str, object]]:
    return {"braze": {"type": "braze", "base_url": server.url, "api_key": "sandbox-key", "max_retries": 2, **extra}}
