"""Fixtures for the tests that run the real function app through the local runner.

Every runner test gets the app's tables and queues freshly emptied (the session's Azurite is
shared), a process environment restored after it (the runner applies its settings to
``os.environ`` as the Functions host would), and its own state directory for the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest

from prepost.simulator import Estate
from shared.adapters.storage_clients import StorageClients
from shared.clock import OffsetClock, set_clock
from shared.settings import StorageConnection
from tests.integration.harness import AppHarness, reset_storage

SAMPLE_SUBSCRIPTIONS = ["6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40", "b3e8a912-4f6c-4d0b-8a21-7c5e9f3d2a18"]
SAMPLE_CONFIGURATION = "mc-weekly-linux"
SAMPLE_START = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


SAMPLE_NOW = datetime(2026, 11, 22, 1, 25, 30, tzinfo=timezone.utc)
"""Just after the sample pre-event's time: the app lives through the sample window as it happens."""


@pytest.fixture
def sample_clock() -> Iterator[None]:
    """The app's clock at the sample window (tests/fixtures/events), moving at real speed.

    The samples' times are fixed; without this, every run they describe would already be over,
    and the pipeline rightly refuses to begin pre-work after a run's start. Modules that deliver
    the samples use it (``pytestmark``); those that build events for now run on the real clock.
    """
    set_clock(OffsetClock(SAMPLE_NOW))
    yield
    set_clock(None)


@pytest.fixture(autouse=True)
def _restore_environ(tmp_path, monkeypatch) -> Iterator[None]:
    saved = dict(os.environ)
    # The CLI remembers the last pre-event it sent in the state directory: keep it out of the repo.
    monkeypatch.setenv("PREPOST_STATE_DIR", str(tmp_path / "prepost-state"))
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def storage(storage_connection_string) -> Iterator[StorageClients]:
    """The app's storage clients for a test module, its tables and queues created if missing."""
    clients = StorageClients(StorageConnection(connection_string=storage_connection_string))
    clients.ensure_storage()
    yield clients
    clients.close()


@pytest.fixture
def clean_storage(storage_connection_string):
    """The app's tables and queues, deleted and created again: empty, as in a fresh account."""
    clients = reset_storage(storage_connection_string)
    yield clients
    clients.close()


@pytest.fixture
def start_app(clean_storage, storage_connection_string) -> Iterator[Callable[..., AppHarness]]:
    """``start_app(estate, **options)``: the simulator and the runner, stopped after the test."""
    started: list[AppHarness] = []

    def start(estate: Estate, **options) -> AppHarness:
        harness = AppHarness(storage_connection_string, estate, **options)
        started.append(harness)
        return harness.start()

    yield start
    for harness in reversed(started):
        harness.stop()


def sample_estate(**overrides) -> Estate:
    """An estate whose seeded run is the one the sample events in tests/fixtures/events describe."""
    options = dict(
        machines=4,
        subscriptions=2,
        arc_servers=1,
        subscription_ids=SAMPLE_SUBSCRIPTIONS,
        configuration_name=SAMPLE_CONFIGURATION,
        run_start=SAMPLE_START,
    )
    options.update(overrides)
    return Estate.generate(**options)
