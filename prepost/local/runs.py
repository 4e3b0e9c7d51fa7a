"""The runs of the local stack's simulator: which one an event names, and registering it.

Update Manager lists a run's machines in Resource Graph before it sends the pre-event; an event
sent by hand names a run the simulator may not know yet. So before delivering, ``send-event``
makes sure the simulator lists the run, with its machines taken from ``--machines``, from the
estate file the stack was started with (the configuration's assignments and dynamic scopes), or
from another run of the same configuration, in that order; and says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from prepost.simulator import ids
from prepost.simulator.estate import parse_run_id

TIMEOUT = 10


class RunRegistryError(Exception):
    """The simulator could not be read or refused the run."""


@dataclass(frozen=True)
class KnownRun:
    correlation_id: str
    machines: tuple[str, ...]

    @property
    def configuration_id(self) -> str:
        return parse_run_id(self.correlation_id)

    @property
    def start(self) -> datetime | None:
        try:
            return datetime.strptime(self.correlation_id.rstrip("/").rsplit("/", 1)[-1], "%Y%m%d%H%M%S").replace(
                tzinfo=UTC
            )
        except ValueError:
            return None


@dataclass(frozen=True)
class Registration:
    correlation_id: str
    machines: int
    created: bool
    source: str
    """Where the machines came from: ``--machines``, ``the estate file``, ``the simulator``, ..."""

    def describe(self) -> str:
        if self.created:
            return f"registered run {self.correlation_id} in the simulator: {self.machines} machines from {self.source}"
        return f"run {self.correlation_id} is in the simulator ({self.machines} machines)"


class SimulatorRuns:
    """``/_sim/runs`` and ``/_sim/state`` of a running simulator."""

    def __init__(self, simulator_url: str):
        self.url = simulator_url.rstrip("/")

    def _get(self, path: str) -> Any:
        try:
            response = requests.get(f"{self.url}/_sim/{path}", timeout=TIMEOUT)
        except requests.RequestException as error:
            raise RunRegistryError(f"the simulator at {self.url} cannot be reached: {error}") from error
        if response.status_code != 200:
            raise RunRegistryError(f"the simulator answered GET /_sim/{path} with HTTP {response.status_code}")
        return response.json()

    def runs(self) -> list[KnownRun]:
        return [
            KnownRun(str(item["correlationId"]), tuple(str(m) for m in item.get("resourceIds", [])))
            for item in self._get("runs").get("value", [])
        ]

    def machines(self) -> list[str]:
        """Every VM and Arc server the simulator holds."""
        state = self._get("state")
        return [vm["id"] for vm in state.get("vms", [])] + [arc["id"] for arc in state.get("arcServers", [])]

    def register(self, correlation_id: str, machines: Sequence[str]) -> None:
        try:
            response = requests.post(
                f"{self.url}/_sim/runs",
                json={"correlationId": correlation_id, "resourceIds": list(machines)},
                timeout=TIMEOUT,
            )
        except requests.RequestException as error:
            raise RunRegistryError(f"the simulator at {self.url} cannot be reached: {error}") from error
        if response.status_code >= 300:
            raise RunRegistryError(
                f"the simulator refused run {correlation_id}: HTTP {response.status_code} {response.text}"
            )

    def find(self, correlation_id: str) -> KnownRun | None:
        return next((run for run in self.runs() if ids.same(run.correlation_id, correlation_id)), None)

    def next_run(self, configuration_id: str, now: datetime) -> KnownRun | None:
        """The run of ``configuration_id`` that starts soonest at or after ``now``."""
        ahead = [
            run
            for run in self.runs()
            if ids.same(run.configuration_id, configuration_id) and run.start is not None and run.start >= now
        ]
        return min(ahead, key=lambda run: run.start) if ahead else None

    def ensure(
        self,
        correlation_id: str,
        *,
        machines: Sequence[str] | None = None,
        estate_machines: Sequence[str] | None = None,
    ) -> Registration:
        """Make sure the simulator lists ``correlation_id``.

        ``machines`` (from ``--machines``) replace whatever the run held. Otherwise a run the
        simulator knows is left as it is, and a new one gets ``estate_machines`` (the estate
        file's machines for its configuration), else the machines of another run of the same
        configuration, else every machine the simulator holds.
        """
        if machines:
            self.register(correlation_id, machines)
            return Registration(correlation_id, len(machines), True, "--machines")
        runs = self.runs()
        known = next((run for run in runs if ids.same(run.correlation_id, correlation_id)), None)
        if known is not None:
            return Registration(correlation_id, len(known.machines), False, "the simulator")
        configuration_id = parse_run_id(correlation_id)
        if estate_machines is not None:
            chosen, source = list(estate_machines), "the estate file (assignments and dynamic scopes)"
        else:
            sibling = next((run for run in runs if ids.same(run.configuration_id, configuration_id)), None)
            if sibling is not None:
                chosen, source = list(sibling.machines), f"run {sibling.correlation_id}"
            else:
                chosen, source = self.machines(), "every machine in the simulator"
        self.register(correlation_id, chosen)
        return Registration(correlation_id, len(chosen), True, source)
