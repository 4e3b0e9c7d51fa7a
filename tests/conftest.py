"""Shared fixtures: sample events, and one fresh Azurite per test session (stopped by PID)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def load_events(name: str) -> list[dict]:
    """A sample event file from ``tests/fixtures/events`` (copied from the reference samples)."""
    return json.loads((FIXTURES / "events" / name).read_text())


@pytest.fixture(scope="session")
def azurite() -> Iterator[object]:
    """A fresh in-memory Azurite for the whole session: a long-lived one slows down."""
    from prepost.local.azurite import AzuriteProcess

    process = AzuriteProcess()
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def storage_connection_string(azurite) -> str:
    return azurite.endpoints.connection_string


@pytest.fixture
def unique_suffix() -> str:
    """Tests share one Azurite: names made unique per test keep them independent."""
    return uuid.uuid4().hex[:8]
