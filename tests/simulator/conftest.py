"""Fixtures for the simulator tests: a running simulator and real Azure SDK clients pointed at it.

The mgmt clients refuse bearer tokens over plain http, so the clients here get an
authentication policy that sets the header without the https check, and no retries (a 429 or
500 must reach the test, not be retried away). ``polling_interval=0`` keeps multi-poll
operations fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from prepost.simulator import Estate, ManualClock, SimulatorConfig, SimulatorServer

RUN_START = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


class StaticCredential:
    """A TokenCredential that hands out one token valid for a day."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("sim-token", int(time.time()) + 86_400)


class PlainHttpBearerPolicy(SansIOHTTPPolicy):
    """Sets ``Authorization: Bearer ...`` without BearerTokenCredentialPolicy's https check."""

    def __init__(self, token: str = "sim-token") -> None:
        self._token = token

    def on_request(self, request: PipelineRequest) -> None:
        request.http_request.headers["Authorization"] = f"Bearer {self._token}"


def client_options(server: SimulatorServer, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments that point an Azure mgmt client at the simulator."""
    options: dict[str, Any] = {
        "base_url": server.url,
        "authentication_policy": PlainHttpBearerPolicy(),
        "retry_total": 0,
        "polling_interval": 0,
    }
    options.update(overrides)
    return options


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 22, 1, 20, tzinfo=UTC))


@pytest.fixture
def estate() -> Estate:
    return Estate.generate(
        machines=8,
        subscriptions=2,
        arc_servers=2,
        seed=7,
        run_start=RUN_START,
        configuration_tags={"prepost-snapshot": "true"},
        extra_resource_groups=("rg-prepost",),
    )


@pytest.fixture
def config() -> SimulatorConfig:
    return SimulatorConfig()


@pytest.fixture
def server(estate: Estate, config: SimulatorConfig, clock: ManualClock) -> Iterator[SimulatorServer]:
    with SimulatorServer(estate, config, clock=clock) as running:
        yield running


@pytest.fixture
def credential() -> StaticCredential:
    return StaticCredential()


@pytest.fixture
def compute(server: SimulatorServer, credential: StaticCredential) -> Callable[..., Any]:
    from azure.mgmt.compute import ComputeManagementClient

    def make(subscription_id: str, **overrides: Any) -> ComputeManagementClient:
        return ComputeManagementClient(credential, subscription_id, **client_options(server, **overrides))

    return make


@pytest.fixture
def graph(server: SimulatorServer, credential: StaticCredential) -> Any:
    from azure.mgmt.resourcegraph import ResourceGraphClient

    return ResourceGraphClient(credential, **client_options(server))


@pytest.fixture
def maintenance(server: SimulatorServer, credential: StaticCredential) -> Callable[..., Any]:
    from azure.mgmt.maintenance import MaintenanceManagementClient

    def make(subscription_id: str) -> MaintenanceManagementClient:
        return MaintenanceManagementClient(credential, subscription_id, **client_options(server))

    return make


@pytest.fixture
def resources(server: SimulatorServer, credential: StaticCredential) -> Callable[..., Any]:
    from azure.mgmt.resource.resources import ResourceManagementClient

    def make(subscription_id: str, **overrides: Any) -> ResourceManagementClient:
        return ResourceManagementClient(credential, subscription_id, **client_options(server, **overrides))

    return make
