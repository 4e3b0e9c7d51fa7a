"""The local stack: Azurite, the management-API simulator and the in-process function app."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from prepost.local.state import StackState

if TYPE_CHECKING:
    from prepost.simulator.estate import Estate

DEFAULT_AZURITE_PORTS = (10000, 10001, 10002)
DEFAULT_SIMULATOR_PORT = 7480
DEFAULT_WEBHOOK_PORT = 7071


def app_settings(
    storage_connection: str,
    simulator_url: str,
    configuration_ids: list[str] | str,
    subscription_ids: list[str] | str,
) -> dict[str, str]:
    """What local.settings.json gives the host, for this stack (allow-lists as lists or as text)."""
    from shared.names import STORAGE_CONNECTION, SettingName

    return {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        STORAGE_CONNECTION: storage_connection,
        SettingName.TRANSPORT.value: "storage",
        SettingName.ALLOWED_CONFIGURATIONS.value: _listed(configuration_ids),
        SettingName.ALLOWED_SUBSCRIPTIONS.value: _listed(subscription_ids),
        SettingName.ARM_ENDPOINT.value: simulator_url,
        SettingName.ARM_AUTH.value: "simulator",
        # The simulator finishes an operation at the next request by default: looking again
        # after a second keeps the demo and the tests quick (Azure's operations take minutes).
        SettingName.OPERATION_CHECK_SECONDS.value: "1",
    }


def _listed(values: list[str] | str) -> str:
    return values if isinstance(values, str) else ",".join(values)


@dataclass(frozen=True)
class AllowLists:
    """The stack's allow-lists and where each came from (an option, the environment, the estate)."""

    configurations: str
    subscriptions: str
    configurations_from: str
    subscriptions_from: str


def choose_allow_lists(
    estate_configurations: list[str],
    estate_subscriptions: list[str],
    *,
    configurations: str | None = None,
    subscriptions: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> AllowLists:
    """An explicit option wins, then a value exported in ``environ`` (the user's shell, for
    ``local up``), then the estate's own."""
    from shared.names import SettingName

    env = environ or {}

    def pick(option: str | None, setting: SettingName, estate_values: list[str]) -> tuple[str, str]:
        if option is not None:
            return option, "option"
        exported = env.get(setting.value)
        if exported is not None and exported.strip():
            return exported, f"environment ({setting.value})"
        return ",".join(estate_values), "estate"

    config_list, config_from = pick(configurations, SettingName.ALLOWED_CONFIGURATIONS, estate_configurations)
    sub_list, sub_from = pick(subscriptions, SettingName.ALLOWED_SUBSCRIPTIONS, estate_subscriptions)
    return AllowLists(config_list, sub_list, config_from, sub_from)


class LocalStack:
    """Starts everything in order and stops it in reverse, whatever happens in between.

    ``estate`` seeds the simulator with a given estate (an estate file, mapped); without it one
    is generated from ``machines``, ``subscriptions`` and ``arc_servers``. The allow-lists follow
    the estate unless ``allowed_configurations``/``allowed_subscriptions`` are given or set in
    ``environ`` (the user's exported variables; :func:`choose_allow_lists`).
    """

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
        estate: Estate | None = None,
        estate_file: str | None = None,
        allowed_configurations: str | None = None,
        allowed_subscriptions: str | None = None,
        environ: Mapping[str, str] | None = None,
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
        self.estate = estate
        self.estate_file = estate_file
        self._allow_options = (allowed_configurations, allowed_subscriptions)
        # A copy taken now: the in-process runner writes its settings into os.environ later.
        self._environ = dict(environ or {})
        self.allow_lists: AllowLists | None = None
        self._stopped = threading.Event()

    def start(self) -> LocalStack:
        from prepost.local.azurite import AzuriteProcess
        from prepost.simulator.estate import Estate
        from prepost.simulator.server import SimulatorServer

        try:
            self.azurite = AzuriteProcess(ports=DEFAULT_AZURITE_PORTS) if self.fixed_ports else AzuriteProcess()
            self.azurite.start()
            if self.estate is None:
                self.estate = Estate.generate(
                    machines=self.machines,
                    subscriptions=self.subscriptions,
                    arc_servers=self.arc_servers,
                    run_start=self.run_start,
                    configuration_tags=self.configuration_tags,
                )
            self.allow_lists = choose_allow_lists(
                [config.id for config in self.estate.configurations],
                self.subscription_ids,
                configurations=self._allow_options[0],
                subscriptions=self._allow_options[1],
                environ=self._environ,
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
    def configuration_id(self) -> str | None:
        """The first configuration of the estate (None for an estate without one)."""
        return self.estate.configurations[0].id if self.estate.configurations else None

    @property
    def subscription_ids(self) -> list[str]:
        return list(self.estate.subscription_ids)

    @property
    def settings(self) -> dict[str, str]:
        allow = self.allow_lists
        return app_settings(
            self.azurite.endpoints.connection_string, self.simulator.url, allow.configurations, allow.subscriptions
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
            estate_file=self.estate_file,
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
        if self.estate_file:
            lines.append(f"  estate             {self.estate_file}")
        for config in self.estate.configurations[:5]:
            lines.append(f"  configuration      {config.id}")
        if len(self.estate.configurations) > 5:
            lines.append(f"  configuration      ... and {len(self.estate.configurations) - 5} more")
        for run in self.estate.runs[:5]:
            lines.append(f"  seeded run         {run.correlation_id} ({len(run.resource_ids)} machines)")
        if len(self.estate.runs) > 5:
            lines.append(f"  seeded run         ... and {len(self.estate.runs) - 5} more")
        if not self.estate.runs:
            lines.append("  seeded run         none: `prepost send-event pre` creates one")
        allow = self.allow_lists
        lines.append(f"  allowed configs    from the {allow.configurations_from}")
        lines.append(f"  allowed subs       from the {allow.subscriptions_from}")
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
