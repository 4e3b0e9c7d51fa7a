"""Managed Run Command on VMs (``Microsoft.Compute/virtualMachines/{vm}/runCommands``) and Arc
servers (``Microsoft.HybridCompute/machines/{m}/runCommands``): put, get, delete.

As in Azure, a PUT (create or update) runs the script: a second PUT of the same name runs it
again, which is what the pipeline must never do (the book counts executions per name). The
script does not run anywhere: its outcome is what ``POST /_sim/run-commands`` programmed for the
machine (or the default: exit 0 after 2 s, on the simulator's clock).
"""

from __future__ import annotations

from werkzeug.wrappers import Response

from .. import errors, ids
from ..clock import iso
from ..errors import ArmError
from ..estate import HYBRID_MACHINE, ArcStatus, PowerState
from ..http import RequestContext, empty_response, json_response
from ..run_command_records import JobRecord, RunCommandRecord

VM_TYPE = "Microsoft.Compute/virtualMachines"


def _machine(ctx: RequestContext) -> tuple[str, str]:
    """The machine's id and location; 404 if unknown, 409 if it cannot run anything now."""
    subscription_id, resource_group = ctx.require_resource_group()
    name = ctx.params["name"]
    if "hybridcompute" in ctx.request.path.lower():
        machine_id = ids.resource_id(subscription_id, resource_group, HYBRID_MACHINE, name)
        arc = ctx.state.arc_servers.get(ids.key(machine_id))
        if arc is None:
            raise errors.resource_not_found(HYBRID_MACHINE, name, resource_group)
        return arc.id, arc.location
    machine_id = ids.resource_id(subscription_id, resource_group, VM_TYPE, name)
    record = ctx.state.vm_records.get(ids.key(machine_id))
    if record is None:
        raise errors.resource_not_found(VM_TYPE, name, resource_group)
    return record.id, record.vm.location


def _refuse_if_not_ready(ctx: RequestContext, machine_id: str) -> None:
    arc = ctx.state.arc_servers.get(ids.key(machine_id))
    if arc is not None and arc.status is not ArcStatus.CONNECTED:
        raise ArmError(
            409,
            "MachineNotConnected",
            f"The machine '{arc.name}' is {arc.status.value}: its agent cannot run commands.",
        )
    vm = ctx.state.vm_records.get(ids.key(machine_id))
    if vm is not None and vm.power_state is not PowerState.RUNNING:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Cannot run a command on VM '{vm.vm.name}': it is {vm.power_state.value}.",
        )


def put_run_command(ctx: RequestContext) -> Response:
    machine_id, location = _machine(ctx)
    _refuse_if_not_ready(ctx, machine_id)
    body = ctx.json_body()
    properties = body.get("properties") or {}
    source = properties.get("source") or {}
    script = source.get("script") or source.get("scriptUri") or source.get("commandId")
    if not script:
        raise errors.invalid_request_content("properties.source needs script, scriptUri or commandId.")
    timeout = properties.get("timeoutInSeconds", 5400)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 0 < timeout <= 5400 * 2:
        raise errors.invalid_request_content(f"timeoutInSeconds {timeout!r} is not a valid number of seconds.")
    book = ctx.state.run_commands
    name = ctx.params["command"]
    now = ctx.clock.now()
    with book.lock:
        key = ids.key(f"{machine_id}/runCommands/{name}")
        existing = book.records.get(key)
        record = RunCommandRecord(
            machine_id=machine_id,
            name=name,
            location=str(body.get("location") or location),
            script=str(script),
            parameters=list(properties.get("parameters") or []),
            timeout_seconds=timeout,
            tags=dict(body.get("tags") or {}),
            outcome=book.outcome_for(machine_id, name),
            started=now,
            executions=(existing.executions + 1) if existing else 1,
        )
        book.records[key] = record
        # An update of a run command runs its script again, as in Azure.
        book.executions.append(
            {
                "machineId": machine_id,
                "name": name,
                "startedAt": iso(now),
                "timeoutInSeconds": timeout,
                "parameters": {p.get("name"): p.get("value") for p in record.parameters},
            }
        )
    ctx.state.increment(ctx.operation, machine_id)
    return json_response(200 if existing else 201, record.to_arm(now, instance_view=False))


def get_run_command(ctx: RequestContext) -> Response:
    machine_id, _ = _machine(ctx)
    book = ctx.state.run_commands
    with book.lock:
        record = book.records.get(ids.key(f"{machine_id}/runCommands/{ctx.params['command']}"))
    if record is None:
        raise errors.resource_not_found("runCommands", ctx.params["command"], ctx.params["resource_group"])
    expand = ctx.request.args.get("$expand", "").lower() == "instanceview"
    return json_response(200, record.to_arm(ctx.clock.now(), instance_view=expand))


def delete_run_command(ctx: RequestContext) -> Response:
    machine_id, _ = _machine(ctx)
    book = ctx.state.run_commands
    with book.lock:
        record = book.records.pop(ids.key(f"{machine_id}/runCommands/{ctx.params['command']}"), None)
    if record is None:
        return empty_response(204)
    ctx.state.increment(ctx.operation, machine_id)
    return empty_response(200)


# -- Automation runbook jobs on hybrid worker groups ----------------------------------------------
# https://learn.microsoft.com/rest/api/automation/job/create (and get, get-output, stop). The
# outcome comes from the book, programmed by the worker group's name (``runOn``) as the id.

AUTOMATION_ACCOUNT = "Microsoft.Automation/automationAccounts"


def _job_key(ctx: RequestContext) -> tuple[str, str]:
    subscription_id, resource_group = ctx.require_resource_group()
    account_id = ids.resource_id(subscription_id, resource_group, AUTOMATION_ACCOUNT, ctx.params["account"])
    return account_id, ids.key(f"{account_id}/jobs/{ctx.params['job']}")


def _require_job(ctx: RequestContext) -> JobRecord:
    _, key = _job_key(ctx)
    book = ctx.state.run_commands
    with book.lock:
        job = book.jobs.get(key)
    if job is None:
        raise errors.resource_not_found("jobs", ctx.params["job"], ctx.params["resource_group"])
    return job


def put_job(ctx: RequestContext) -> Response:
    account_id, key = _job_key(ctx)
    properties = ctx.json_body().get("properties") or {}
    runbook = str((properties.get("runbook") or {}).get("name") or "")
    if not runbook:
        raise errors.invalid_request_content("properties.runbook.name is required.")
    run_on = str(properties.get("runOn") or "")
    parameters = dict(properties.get("parameters") or {})
    book = ctx.state.run_commands
    now = ctx.clock.now()
    with book.lock:
        if key in book.jobs:
            raise ArmError(409, "Conflict", f"A job with id '{ctx.params['job']}' already exists.")
        job = JobRecord(
            account_id, ctx.params["job"], runbook, run_on, parameters, book.outcome_for(run_on, runbook), now
        )
        book.jobs[key] = job
        book.executions.append(
            {
                "machineId": run_on,
                "name": job.name,
                "startedAt": iso(now),
                "timeoutInSeconds": None,
                "parameters": parameters,
                "runbook": runbook,
            }
        )
    ctx.state.increment(ctx.operation, account_id)
    return json_response(201, job.to_arm(now))


def get_job(ctx: RequestContext) -> Response:
    return json_response(200, _require_job(ctx).to_arm(ctx.clock.now()))


def get_job_output(ctx: RequestContext) -> Response:
    text = _require_job(ctx).output(ctx.clock.now())
    return Response(text, status=200, content_type="text/plain; charset=utf-8")


def stop_job(ctx: RequestContext) -> Response:
    job = _require_job(ctx)
    book = ctx.state.run_commands
    with book.lock:
        if job.status(ctx.clock.now())[1] is None:
            job.stopped = ctx.clock.now()
    return empty_response(200)
