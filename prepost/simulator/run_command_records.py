"""Run commands as the simulator keeps them: records, programmed outcomes, script executions.

Used by ``handlers/run_commands.py`` (the ARM routes) and ``control.py`` (``/_sim/run-commands``).
The instance view follows VirtualMachineRunCommandInstanceView: ``executionState``
Pending/Running/Succeeded/Failed/TimedOut, ``exitCode``, ``output``, ``error``, ``startTime``,
``endTime``, ``executionMessage``.
https://learn.microsoft.com/rest/api/compute/virtual-machine-run-commands/get-by-virtual-machine
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from . import ids
from .clock import iso
from .estate import HYBRID_MACHINE

DEFAULT_KEY = "*"


@dataclass(frozen=True)
class ScriptOutcome:
    """What a script run on a machine does, as a test or demo programs it."""

    exit_code: int = 0
    duration_seconds: float = 2.0
    output: str = "ok"
    error: str = ""
    timeout: bool = False
    """The script runs until the run command's ``timeoutInSeconds`` and is stopped: TimedOut
    (a runbook job, which has no timeout, runs until it is stopped)."""
    suspended: bool = False
    """A runbook job ends ``Suspended`` (it waits for someone) instead of completing."""
    agent_not_ready: bool = False
    """The guest agent does not answer: the run command fails to provision, no exit code."""

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ScriptOutcome:
        known = {
            "exitCode": "exit_code",
            "durationSeconds": "duration_seconds",
            "output": "output",
            "error": "error",
            "timeout": "timeout",
            "agentNotReady": "agent_not_ready",
            "suspended": "suspended",
        }
        unknown = set(body) - set(known) - {"id", "nameContains"}
        if unknown:
            raise ValueError(f"unknown run-command outcome fields {sorted(unknown)}")
        values = {known[key]: body[key] for key in known if key in body}
        outcome = cls(**values)
        if not isinstance(outcome.exit_code, int) or isinstance(outcome.exit_code, bool):
            raise ValueError("exitCode must be a whole number")
        if float(outcome.duration_seconds) < 0:
            raise ValueError("durationSeconds must not be negative")
        return replace(outcome, duration_seconds=float(outcome.duration_seconds))

    def to_json(self) -> dict[str, Any]:
        return {
            "exitCode": self.exit_code,
            "durationSeconds": self.duration_seconds,
            "output": self.output,
            "error": self.error,
            "timeout": self.timeout,
            "agentNotReady": self.agent_not_ready,
            "suspended": self.suspended,
        }


@dataclass
class RunCommandRecord:
    machine_id: str
    name: str
    location: str
    script: str
    parameters: list[dict[str, Any]]
    timeout_seconds: int
    tags: dict[str, str]
    outcome: ScriptOutcome
    started: datetime
    executions: int = 1

    @property
    def id(self) -> str:
        return f"{self.machine_id}/runCommands/{self.name}"

    def instance_view(self, now: datetime) -> dict[str, Any]:
        outcome = self.outcome
        if outcome.agent_not_ready:
            return {
                "executionState": "Unknown",
                "executionMessage": "The VM guest agent is not ready: the run command could not be delivered.",
                "output": "",
                "error": "",
            }
        runs_for = (
            float(self.timeout_seconds) if outcome.timeout else min(outcome.duration_seconds, self.timeout_seconds)
        )
        ended = self.started + timedelta(seconds=runs_for)
        view: dict[str, Any] = {"startTime": iso(self.started), "output": "", "error": ""}
        if now < ended:
            view["executionState"] = "Running"
            view["output"] = outcome.output[: len(outcome.output) // 2]
            return view
        view["endTime"] = iso(ended)
        view["output"] = outcome.output
        view["error"] = outcome.error
        if outcome.timeout or outcome.duration_seconds > self.timeout_seconds:
            view["executionState"] = "TimedOut"
            view["executionMessage"] = f"Execution timed out after {self.timeout_seconds} seconds."
            return view
        view["exitCode"] = outcome.exit_code
        view["executionState"] = "Succeeded" if outcome.exit_code == 0 else "Failed"
        return view

    def to_arm(self, now: datetime, *, instance_view: bool) -> dict[str, Any]:
        provisioning = "Failed" if self.outcome.agent_not_ready else "Succeeded"
        properties: dict[str, Any] = {
            "source": {"script": self.script},
            "parameters": self.parameters,
            "asyncExecution": True,
            "timeoutInSeconds": self.timeout_seconds,
            "treatFailureAsDeploymentFailure": False,
            "provisioningState": provisioning,
        }
        if instance_view:
            properties["instanceView"] = self.instance_view(now)
        return {
            "id": self.id,
            "name": self.name,
            "type": (
                "Microsoft.HybridCompute/machines/runCommands"
                if HYBRID_MACHINE.lower() in self.machine_id.lower()
                else "Microsoft.Compute/virtualMachines/runCommands"
            ),
            "location": self.location,
            "tags": dict(self.tags),
            "properties": properties,
        }

    def to_json(self, now: datetime) -> dict[str, Any]:
        view = self.instance_view(now)
        return {
            "id": self.id,
            "machineId": self.machine_id,
            "name": self.name,
            "executions": self.executions,
            "timeoutInSeconds": self.timeout_seconds,
            "parameters": {p.get("name"): p.get("value") for p in self.parameters},
            "executionState": view.get("executionState"),
            "exitCode": view.get("exitCode"),
        }


@dataclass
class JobRecord:
    """A runbook job (``Microsoft.Automation/automationAccounts/{aa}/jobs/{job}``)."""

    account_id: str
    name: str
    runbook: str
    run_on: str
    parameters: dict[str, Any]
    outcome: ScriptOutcome
    created: datetime
    stopped: datetime | None = None

    @property
    def id(self) -> str:
        return f"{self.account_id}/jobs/{self.name}"

    def status(self, now: datetime) -> tuple[str, datetime | None]:
        """The job's status now, and when it ended (None while it runs)."""
        outcome = self.outcome
        if self.stopped is not None:
            return "Stopped", self.stopped
        if outcome.agent_not_ready:
            return "Activating", None  # no worker of the group picks it up
        ended = self.created + timedelta(seconds=outcome.duration_seconds)
        if outcome.timeout or now < ended:
            return "Running", None
        if outcome.suspended:
            return "Suspended", ended
        return ("Completed" if outcome.exit_code == 0 else "Failed"), ended

    def to_arm(self, now: datetime) -> dict[str, Any]:
        status, ended = self.status(now)
        failed = status in ("Failed", "Suspended")
        return {
            "id": self.id,
            "name": self.name,
            "type": "Microsoft.Automation/AutomationAccounts/Jobs",
            "properties": {
                "jobId": self.name,
                "runbook": {"name": self.runbook},
                "runOn": self.run_on,
                "parameters": dict(self.parameters),
                "provisioningState": "Succeeded" if ended else "Processing",
                "status": status,
                "statusDetails": "None",
                "creationTime": iso(self.created),
                "startTime": None if status == "Activating" else iso(self.created),
                "endTime": iso(ended) if ended else None,
                "exception": (self.outcome.error or f"runbook {self.runbook} ended {status}") if failed else None,
            },
        }

    def output(self, now: datetime) -> str:
        status, ended = self.status(now)
        return self.outcome.output if ended else self.outcome.output[: len(self.outcome.output) // 2]


@dataclass
class RunCommandBook:
    """Run commands now, every script execution ever started, and the programmed outcomes."""

    records: dict[str, RunCommandRecord] = field(default_factory=dict)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    """Runbook jobs by id key (Automation keeps them; they are stopped, never deleted)."""
    outcomes: dict[str, ScriptOutcome] = field(default_factory=dict)
    executions: list[dict[str, Any]] = field(default_factory=list)
    """One entry per script run (a PUT that ran it), kept after the run command is deleted."""
    lock: threading.RLock = field(default_factory=threading.RLock)

    def outcome_for(self, machine_id: str, name: str = "") -> ScriptOutcome:
        """The most specific outcome programmed: machine and name, machine, all machines, default."""
        machine = ids.key(machine_id)
        for key in sorted(self.outcomes, key=lambda k: (k.split("|", 1)[0] == DEFAULT_KEY, -len(k))):
            owner, _, contains = key.partition("|")
            if owner in (machine, DEFAULT_KEY) and contains.lower() in name.lower():
                return self.outcomes[key]
        return ScriptOutcome()

    def program(self, machine_id: str, outcome: ScriptOutcome, *, name_contains: str = "") -> None:
        """From now on, run commands on ``machine_id`` (``*``: every machine) whose name contains
        ``name_contains`` do ``outcome``."""
        owner = DEFAULT_KEY if machine_id == DEFAULT_KEY else ids.key(machine_id)
        self.outcomes[f"{owner}|{name_contains}"] = outcome

    def executions_of(self, machine_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(e) for e in self.executions if machine_id is None or ids.key(e["machineId"]) == ids.key(machine_id)
            ]
