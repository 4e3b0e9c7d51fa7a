"""The local stack: Azurite, the management-API simulator and the in-process function app."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from prepost.local.state import StackState

DEFAULT_AZURITE_PORTS = (10000, 10001, 10002)
DEFAULT_SIMULATOR_PORT = 7480
DEFAULT_WEBHOOK_PORT = 7071


def app_settings(
    storage_connection: str, simulator_url: str, configuration_ids: list[str], subscription_ids: list[str]
) -> dict[str, str]:
    """What local.settings.json gives the host, for this stack."""
    from shared.names import STORAGE_CONNECTION, SettingName

    return {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        STORAGE_CONNECTION: storage_connection,
        SettingName.TRANSPORT.value: "storage",
        SettingName.ALLOWED_CONFIGURATIONS.value: ",".join(configuration_ids),
        SettingName.ALLOWED_SUBSCRIPTIONS.value: ",".join(subscription_ids),
        SettingName.ARM_ENDPOINT.value: simulator_url,
        SettingName.ARM_AUTH.value: "simulator",
        # The simulator finishes an operation at the next request by default: looking again
        # after a second keeps the demo and the tests quick (Azure's operations take minutes).
        SettingName.OPERATION_CHECK_SECONDS.value: "1",
    }


class LocalStack:
    """Starts everything in order and stops it in reverse, whatever happens in between."""

    def __init__(
        self,
        *,
        fixed_ports: bool = False,
        machines: int = 50,
        subscriptions: int = 2,
        arc_servers: int = 3,
        with_runner: bool = True,
        run_start: datetime | None = None,
        configuration_tags: dict[str, str] | None = None,
        wrap_transport: Callable[[Any], Any] | None = None,
        write_state: bool = True,
    ):
        self.fixed_ports = fixed_ports
        self.machines = machines
        self.subscriptions = subscriptions
        self.arc_servers = arc_servers
        self.with_runner = with_runner
        self.run_start = run_start or (datetime.now(timezone.utc) + timedelta(minutes=30)).replace(
            second=0, microsecond=0
        )
        self.configuration_tags = configuration_tags or {}
        self.wrap_transport = wrap_transport
        self.write_state = write_state
        self.azurite = None
        self.simulator = None
        self.runner = None
        self.estate = None
        self._stopped = threading.Event()

    def start(self) -> LocalStack:
        from prepost.local.azurite import AzuriteProcess
        from prepost.simulator.estate import Estate
        from prepost.simulator.server import SimulatorServer

        try:
            self.azurite = AzuriteProcess(ports=DEFAULT_AZURITE_PORTS) if self.fixed_ports else AzuriteProcess()
            self.azurite.start()
            self.estate = Estate.generate(
                machines=self.machines,
                subscriptions=self.subscriptions,
                arc_servers=self.arc_servers,
                run_start=self.run_start,
                configuration_tags=self.configuration_tags,
            )
            self.simulator = SimulatorServer(self.estate, port=DEFAULT_SIMULATOR_PORT if self.fixed_ports else 0)
            self.simulator.start()
            if self.with_runner:
                from function_app import build_app
                from prepost.local.runner import FunctionAppRunner
                from shared.settings import Transport

                self.runner = FunctionAppRunner(
                    build_app(Transport.STORAGE), env=self.settings, wrap_transport=self.wrap_transport
                )
                self.runner.start(webhook_port=DEFAULT_WEBHOOK_PORT if self.fixed_ports else 0)
            if self.write_state:
                self.state.save()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def configuration_id(self) -> str:
        return self.estate.configuration.id

    @property
    def subscription_ids(self) -> list[str]:
        return list(self.estate.subscription_ids)

    @property
    def settings(self) -> dict[str, str]:
        return app_settings(
            self.azurite.endpoints.connection_string, self.simulator.url, [self.configuration_id], self.subscription_ids
        )

    @property
    def state(self) -> StackState:
        return StackState(
            storage_connection=self.azurite.endpoints.connection_string,
            webhook_url=self.runner.webhook_url if self.runner else None,
            simulator_url=self.simulator.url,
            configuration_id=self.configuration_id,
            subscription_ids=self.subscription_ids,
            pid=os.getpid(),
        )

    def describe(self) -> str:
        lines = ["prepost local stack is up (Ctrl-C stops it)", ""]
        lines.append(
            f"  Azurite            {self.azurite.endpoints.blob_url} (blob), queue and table beside it "
            f"(pid {self.azurite.pid})"
        )
        lines.append(
            f"  ARM simulator      {self.simulator.url}  ({len(self.estate.vms)} VMs, "
            f"{len(self.estate.arc_servers)} Arc servers, {len(self.subscription_ids)} subscriptions)"
        )
        if self.runner:
            lines.append(f"  Event Grid webhook {self.runner.webhook_url}?functionName=maintenance_event_intake")
        else:
            lines.append("  function app       not started (--no-runner): run `func start` with local.settings.json")
        lines.append(f"  configuration      {self.configuration_id}")
        lines.append(f"  seeded run         {self.estate.run.correlation_id}")
        lines.append("")
        lines.append("Settings (local.settings.json Values):")
        for key, value in self.settings.items():
            lines.append(f"  {key}={value}")
        return "\n".join(lines)

    def wait_for_interrupt(self) -> None:
        """Block until Ctrl-C (SIGINT) or SIGTERM. Both are handled explicitly: a process
        started in the background by a script inherits SIGINT as ignored."""
        previous = {sig: signal.signal(sig, lambda *_: self._stopped.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self._stopped.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        for part in (self.runner, self.simulator, self.azurite):
            if part is None:
                continue
            try:
                part.stop()
            except Exception as error:  # keep stopping the rest; report what failed
                print(f"prepost: stopping {type(part).__name__} failed: {error}")
        if self.write_state:
            StackState.clear()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
