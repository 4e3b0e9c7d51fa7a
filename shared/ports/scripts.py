"""Ports for pre and post scripts: the scripts' store, the machine they run in, and the runner.

Adapters translate errors as the ARM ports do (:mod:`shared.ports.azure`): 429 is
:class:`~shared.errors.Throttled`, 5xx :class:`~shared.errors.TransientError`, 4xx
:class:`~shared.errors.PermanentError`; a missing resource is None, never an exception.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.errors import PermanentError
from shared.models.hooks import ScriptOs

# Managed Run Command execution states (VirtualMachineRunCommandInstanceView.executionState):
# Unknown, Pending, Running, Failed, Succeeded, TimedOut, Canceled.
# https://learn.microsoft.com/python/api/azure-mgmt-compute/azure.mgmt.compute.v2021_04_01.models.virtualmachineruncommandinstanceview
FINISHED_STATES = frozenset({"failed", "succeeded", "timedout", "canceled", "suspended", "blocked", "disconnected"})
"""The last three: runbook jobs (shared.adapters.arm.automation_jobs) that will not go on by themselves."""


class ScriptNotFound(PermanentError):
    """The declared script is not in the scripts' store."""


@dataclass(frozen=True)
class ScriptTarget:
    """The machine a script would run in, as ARM describes it now."""

    resource_id: str
    location: str
    os: ScriptOs | None
    running: bool
    """A VM whose power state is running; an Arc server whose agent is Connected."""
    state: str
    """For people: ``running``, ``deallocated``, ``agent Disconnected since ...``."""
    is_arc: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScriptExecution:
    """One script execution (a run command, or a runbook job), as last seen."""

    name: str
    execution_state: str
    """As Azure says it: ``Pending``, ``Running``, ``Succeeded``, ``Failed``, ``TimedOut``, ..."""
    provisioning_state: str = "Succeeded"
    exit_code: int | None = None
    output: str = ""
    error: str = ""
    message: str = ""
    """Azure's execution message: why the script could not run (agent not ready, ...)."""
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def is_finished(self) -> bool:
        if self.provisioning_state.lower() == "failed":
            return True
        return self.execution_state.lower() in FINISHED_STATES


class ScriptStore(ABC):
    @abstractmethod
    def get_script(self, name: str) -> str:
        """The script's text.

        Raises:
            ScriptNotFound: no such script.
        """


class ScriptTargets(ABC):
    @abstractmethod
    def get_target(self, machine_id: str) -> ScriptTarget | None:
        """The VM or Arc server, or None if it does not exist."""


class ScriptRunner(ABC):
    """Runs one script in one machine under a name the caller chooses; the name makes it idempotent."""

    @abstractmethod
    def begin_script(
        self,
        target: ScriptTarget,
        name: str,
        *,
        script: str,
        parameters: Mapping[str, str],
        timeout_seconds: int,
        tags: Mapping[str, str],
        run_on: str | None = None,
    ) -> None:
        """Begin running ``script`` in the machine; does not wait for it.

        ``script`` is the script's text (Run Command) or a runbook's name (Automation), and
        ``run_on`` the hybrid worker group that holds the machine (Automation only).
        """

    @abstractmethod
    def get_execution(self, target: ScriptTarget, name: str) -> ScriptExecution | None:
        """The execution under ``name``, or None if there is none (never begun, or deleted)."""

    @abstractmethod
    def delete_execution(self, target: ScriptTarget, name: str) -> None:
        """Remove what :meth:`begin_script` created; succeeds when it is already gone."""
