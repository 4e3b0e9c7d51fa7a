"""The services a benchmark runs against, each started fresh and stopped by the benchmark.

A fresh in-memory Azurite per benchmark (docs/reference.md section 7: a long-lived one slows down) and,
where ARM is needed, the management-API simulator on a free loopback port. The pipeline side
gets its adapters from the app's own :class:`~shared.bootstrap.Container`, built from the
settings the local stack gives the function app, so it is wired exactly as in production.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy

from shared.bootstrap import Container


@contextlib.contextmanager
def azurite() -> Iterator[str]:
    """A fresh in-memory Azurite; yields its connection string, stops it (by PID) afterwards."""
    from prepost.local.azurite import AzuriteProcess

    process = AzuriteProcess()
    process.start()
    try:
        yield process.endpoints.connection_string
    finally:
        process.stop()


@contextlib.contextmanager
def simulator(estate, config=None) -> Iterator:
    """The management-API simulator seeded with ``estate``, in this process, on a free port."""
    from prepost.simulator import SimulatorServer

    server = SimulatorServer(estate, config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def simulator_process(estate, config=None) -> Iterator[str]:
    """The simulator in a process of its own; yields its URL.

    ARM is another machine in production: a simulator in the measuring process would add its
    own CPU time and GIL contention to the pipeline's, and its allocations to a tracemalloc
    peak (answering a Resource Graph query over a large estate allocates more than planning).
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(estate, config, theirs), name="bench-simulator", daemon=True)
    process.start()
    try:
        if not ours.poll(60):
            raise RuntimeError("the simulator process did not start within 60 s")
        yield ours.recv()
    finally:
        with contextlib.suppress(OSError):
            ours.send("stop")
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)


def _serve(estate, config, connection) -> None:
    from prepost.simulator import SimulatorServer

    with SimulatorServer(estate, config) as server:
        connection.send(server.url)
        with contextlib.suppress(EOFError):  # EOF: the parent went away without a word
            connection.recv()  # "stop"


def storage_ports(connection_string: str) -> dict[str, int]:
    """Azurite's table and queue ports, from its connection string (to count requests by port)."""
    from urllib.parse import urlparse

    parts = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    return {service: urlparse(parts[f"{service.title()}Endpoint"]).port for service in ("table", "queue")}


def app_container(connection_string: str, simulator_url: str, estate) -> Container:
    """The function app's container with the settings ``prepost local up`` would give it.

    The app's tables and queues are created here, outside any measurement.
    """
    from prepost.local.stack import app_settings
    from shared.settings import Settings

    env = app_settings(connection_string, simulator_url, [estate.configuration.id], list(estate.subscription_ids))
    container = Container(Settings.from_environ(env))
    container.storage.ensure_storage()
    return container


def storage_container(connection_string: str) -> Container:
    """A container for storage-only work (no ARM calls are made): every run is allowed."""
    from shared.settings import AllowList, Settings, StorageConnection

    settings = Settings(
        storage=StorageConnection(connection_string=connection_string),
        allowed_configurations=AllowList(allow_all=True),
        allowed_subscriptions=AllowList(allow_all=True),
    )
    container = Container(settings)
    container.storage.ensure_storage()
    return container


# -- raw SDK clients for the baselines ------------------------------------------------------


class _StaticCredential:
    """Any bearer token is accepted by the simulator."""

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        import time

        return AccessToken("bench", int(time.time()) + 3600)


class _PlainHttpBearer(SansIOHTTPPolicy):
    """The header alone: the SDK's bearer policy refuses plain http (docs/reference.md section 3)."""

    def on_request(self, request) -> None:
        request.http_request.headers["Authorization"] = "Bearer bench"


def raw_mgmt_options(url: str) -> dict:
    """What a plain mgmt client needs to talk to the simulator, and nothing the app adds.

    SDK defaults otherwise (retry policy, timeouts): the baseline is the SDK as it comes.
    """
    return {"base_url": url, "authentication_policy": _PlainHttpBearer(), "credential_scopes": ["bench/.default"]}


def raw_credential() -> _StaticCredential:
    return _StaticCredential()
