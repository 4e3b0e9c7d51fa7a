"""Runbook jobs on hybrid runbook workers (``Microsoft.Automation/automationAccounts/{aa}/jobs``).

For teams that already run runbooks: the declared script names a runbook of the Automation
account, and the job runs on the hybrid worker group that holds the machine (``runOn``).
- create: ``PUT {account}/jobs/{job}`` with ``properties.runbook.name``, ``parameters``, ``runOn``
  https://learn.microsoft.com/rest/api/automation/job/create
- look: ``GET {account}/jobs/{job}``: ``properties.status`` (New, Activating, Running, Completed,
  Failed, Stopped, Blocked, Suspended, Disconnected, Suspending, Stopping, Resuming, Removing),
  ``startTime``, ``endTime``, ``exception``  https://learn.microsoft.com/rest/api/automation/job/get
- output stream: ``GET {account}/jobs/{job}/output`` (text)  https://learn.microsoft.com/rest/api/automation/job/get-output
- stop: ``POST {account}/jobs/{job}/stop``  https://learn.microsoft.com/rest/api/automation/job/stop

A job's name is a GUID, derived from the execution name, so the same run, phase and machine
always give the same job (a job cannot be created twice under one name). Jobs have no exit code:
``Completed`` counts as exit code 0; a job has no timeout of its own either, so the task stops
one that runs past the declared timeout. Jobs cannot be deleted (Automation keeps them 30 days):
"deleting" the execution stops it if it still runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from shared.adapters.arm.clients import ArmClients
from shared.adapters.arm.run_commands import _send, _time
from shared.ports.scripts import ScriptExecution, ScriptRunner, ScriptTarget

API_VERSION = "2023-11-01"
_NAMESPACE = uuid.UUID("5d0c3b8e-9f7a-4b1e-8c2d-6a4f0e1b7c93")
_STATES = {
    "completed": "Succeeded",
    "failed": "Failed",
    "stopped": "Canceled",
    "suspended": "Suspended",
    "blocked": "Blocked",
    "disconnected": "Disconnected",
}
"""Job statuses that end the script for prepost, as the execution state recorded."""


def job_name(execution_name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, execution_name.lower()))


class AutomationJobs(ScriptRunner):
    """Runbook jobs of one Automation account (its resource id)."""

    def __init__(self, clients: ArmClients, account_id: str):
        self._clients = clients
        self._account = account_id.rstrip("/")

    def _job(self, name: str) -> str:
        return f"{self._account}/jobs/{job_name(name)}"

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
        body = {"properties": {"runbook": {"name": script}, "parameters": dict(parameters), "runOn": run_on or ""}}
        _send(
            self._clients, "PUT", self._job(name), f"api-version={API_VERSION}", f"create job of runbook {script}", body
        )

    def get_execution(self, target: ScriptTarget, name: str) -> ScriptExecution | None:
        status, body = _send(self._clients, "GET", self._job(name), f"api-version={API_VERSION}", f"get job {name}")
        if status == 404 or not body:
            return None
        properties = body.get("properties") or {}
        job_status = str(properties.get("status") or "New")
        state = _STATES.get(job_status.lower(), job_status)
        output = ""
        if job_status.lower() in _STATES:
            output = self._output(name)
        return ScriptExecution(
            name=name,
            execution_state=state,
            provisioning_state="Succeeded",
            exit_code=0 if state == "Succeeded" else None,
            output=output,
            error=str(properties.get("exception") or ""),
            message=f"job {job_status}"
            + (f": {properties['statusDetails']}" if properties.get("statusDetails") else ""),
            started_at=_time(properties.get("startTime")),
            ended_at=_time(properties.get("endTime")),
        )

    def _output(self, name: str) -> str:
        _, body = _send(
            self._clients, "GET", f"{self._job(name)}/output", f"api-version={API_VERSION}", "job output", text=True
        )
        return body or ""

    def delete_execution(self, target: ScriptTarget, name: str) -> None:
        execution = self.get_execution(target, name)
        if execution is None or execution.is_finished:
            return
        _send(self._clients, "POST", f"{self._job(name)}/stop", f"api-version={API_VERSION}", f"stop job {name}")
