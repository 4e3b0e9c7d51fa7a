"""Reading a real estate into an estate file: Resource Graph queries and ARM GETs, never a write.

What is read, for the given maintenance configurations:

- each configuration (``maintenanceConfigurations`` GET): location, tags, window;
- its assignments (``maintenanceresources``, type ``microsoft.maintenance/configurationassignments``):
  static ones name a machine, dynamic scopes are subscription-wide with a ``filter``
  (https://learn.microsoft.com/azure/templates/microsoft.maintenance/configurationassignments);
- the VMs and Arc servers of the subscriptions involved (``resources``), kept when an assignment
  or a dynamic scope covers them: OS, disks, power state (``properties.extended.instanceView``),
  patch settings, tags, Arc status, agent version and automatic upgrade (``agentUpgrade``);
- what the readiness checks (``prepost preflight``) read, by the same requests they make: each
  kept VM's instance view (GET with ``$expand=instanceView``: the guest agent's status and the
  extensions' states, which Resource Graph does not carry), each kept Arc server's extensions
  (``GET machines/{name}/extensions``), and the incremental snapshots of each disk, counted
  beside it (``GET snapshots`` of the disk's resource group);
- the most recent runs (``maintenanceresources``, type ``microsoft.maintenance/applyupdates``,
  https://learn.microsoft.com/azure/update-manager/query-logs) with their machines.

Reader on the subscriptions is enough. The clients carry a policy that refuses any request other
than a GET or a Resource Graph query, so no code path here can change anything in Azure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from azure.core.pipeline.policies import SansIOHTTPPolicy

from prepost.simulator import ids
from prepost.simulator.estate import COMPUTE_VM, HYBRID_MACHINE

from .loader import parse_time
from .model import (
    ARC_STATUSES,
    PATCH_MODES,
    POWER_STATES,
    AgentSpec,
    ArcSpec,
    AssignmentSpec,
    ConfigurationSpec,
    DiskSpec,
    DynamicScopeSpec,
    EstateFile,
    ExtensionSpec,
    RunSpec,
    SubscriptionSpec,
    VmSpec,
    WindowSpec,
)

PAGE_SIZE = 1000
MAX_PAGES = 200
RESOURCE_GRAPH_PATH = "/providers/microsoft.resourcegraph/resources"


class ExportError(Exception):
    """The estate could not be read (a configuration missing, a query refused, ...)."""


class ReadOnlyPolicy(SansIOHTTPPolicy):
    """Refuses every request but a GET or a Resource Graph query (a POST that only reads)."""

    def on_request(self, request) -> None:
        http = request.http_request
        path = http.url.split("?", 1)[0].lower()
        if http.method == "GET" or (http.method == "POST" and path.endswith(RESOURCE_GRAPH_PATH)):
            return
        raise ExportError(f"estate export only reads: refused {http.method} {http.url.split('?', 1)[0]}")


def read_only_clients(endpoint: str, auth):
    """Management clients (shared.adapters.arm.clients) whose every request passes :class:`ReadOnlyPolicy`."""
    from shared.adapters.arm.clients import ArmClients

    class ReadOnlyArmClients(ArmClients):
        def _options(self) -> dict[str, Any]:
            return {**super()._options(), "per_call_policies": [ReadOnlyPolicy()]}

    return ReadOnlyArmClients(endpoint, auth)


@dataclass(frozen=True)
class ExportSummary:
    configurations: int
    machines_seen: int
    machines_kept: int
    runs: int
    queries: int
    reads: int = 0
    """ARM GETs besides Resource Graph (configurations, instance views, extensions, snapshot lists)."""


class EstateReader:
    """Reads an estate through :func:`read_only_clients`."""

    def __init__(self, clients):
        self.clients = clients
        self.queries = 0
        self.reads = 0

    # -- Resource Graph ---------------------------------------------------------------------
    def query(self, text: str, subscriptions: Sequence[str] | None) -> list[dict[str, Any]]:
        """Every row of ``text`` (all pages). ``subscriptions`` None: all the caller can read."""
        from azure.core.exceptions import HttpResponseError
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        client = self.clients.resource_graph()
        rows: list[dict[str, Any]] = []
        skip_token = None
        for _ in range(MAX_PAGES):
            request = QueryRequest(
                subscriptions=list(subscriptions) if subscriptions else None,
                query=text,
                options=QueryRequestOptions(skip_token=skip_token, top=PAGE_SIZE, result_format="objectArray"),
            )
            try:
                page = client.resources(request)
            except HttpResponseError as error:
                raise ExportError(f"Resource Graph refused a query: {error.message or error}") from error
            self.queries += 1
            rows.extend(row for row in page.data or [] if isinstance(row, Mapping))
            skip_token = page.skip_token
            if not skip_token:
                return rows
        raise ExportError(f"more than {MAX_PAGES} pages of {PAGE_SIZE} rows: narrow it with --subscriptions")

    # -- ARM ----------------------------------------------------------------------------------
    def configuration(self, configuration_id: str) -> ConfigurationSpec:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        parsed = ids.parse(configuration_id)
        if parsed is None or parsed.resource_group is None:
            raise ExportError(f"{configuration_id!r} is not a maintenance configuration id")
        operations = self.clients.maintenance(parsed.subscription_id).maintenance_configurations
        self.reads += 1
        try:
            config = operations.get(parsed.resource_group, parsed.name)
        except ResourceNotFoundError as error:
            raise ExportError(
                f"maintenance configuration {configuration_id} does not exist (or is not readable)"
            ) from error
        except HttpResponseError as error:
            raise ExportError(f"reading {configuration_id} failed: {error.message or error}") from error
        start = parse_time(config.start_date_time) if isinstance(config.start_date_time, str) else None
        if start is None:
            raise ExportError(f"{configuration_id} has no maintenance window start ({config.start_date_time!r})")
        return ConfigurationSpec(
            id=config.id or configuration_id,
            location=config.location or "westeurope",
            tags=dict(config.tags or {}),
            window=WindowSpec(
                start=start,
                duration=config.duration or "03:55",
                time_zone=config.time_zone or "UTC",
                recur_every=config.recur_every or "1Week",
            ),
        )

    def instance_view(self, vm_id: str) -> Mapping[str, Any] | None:
        """The VM with its instance view (wire shape), as preflight reads it; None when gone."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        parsed = ids.parse(vm_id)
        if parsed is None or parsed.resource_group is None:
            raise ExportError(f"{vm_id!r} is not a VM id")
        operations = self.clients.compute(parsed.subscription_id).virtual_machines
        self.reads += 1
        try:
            vm = operations.get(parsed.resource_group, parsed.name, expand="instanceView")
        except ResourceNotFoundError:
            return None
        except HttpResponseError as error:
            raise ExportError(f"reading the instance view of {vm_id} failed: {error.message or error}") from error
        as_dict = getattr(vm, "as_dict", None)  # a model, or (an SDK race, see shared/adapters/arm/compute.py) a dict
        body = as_dict() if callable(as_dict) else vm
        return body if isinstance(body, Mapping) else None

    def arc_extensions(self, machine_id: str) -> list[ExtensionSpec] | None:
        """``GET {machine}/extensions`` (https://learn.microsoft.com/rest/api/hybridcompute/machine-extensions/list);
        None when the server is gone."""
        from shared.adapters.arm.arc import API_VERSION
        from shared.adapters.arm.generic import arm_request
        from shared.errors import PermanentError, TransientError

        self.reads += 1
        try:
            status, body = arm_request(
                self.clients, "GET", machine_id.rstrip("/"), API_VERSION, "list Arc extensions", collection="extensions"
            )
        except (PermanentError, TransientError) as error:
            raise ExportError(f"listing the extensions of {machine_id} failed: {error}") from error
        if status == 404 or not isinstance(body, Mapping):
            return None
        found = []
        for item in body.get("value") or []:
            properties = _get(item, "properties") or {}
            found.append(
                ExtensionSpec(
                    name=str(_get(item, "name") or ""),
                    type=str(_get(properties, "type") or ""),
                    publisher=str(_get(properties, "publisher") or ""),
                    version=str(_get(properties, "typeHandlerVersion") or ""),
                    provisioning_state=str(_get(properties, "provisioningState") or "Succeeded"),
                    message=_failure_message(properties),
                )
            )
        return found

    def snapshot_counts(self, disk_ids: Sequence[str]) -> dict[str, int]:
        """Incremental snapshots per disk, counted as preflight counts them (beside the disk)."""
        from shared.adapters.arm.compute import ArmCompute
        from shared.errors import PermanentError, TransientError
        from shared.usecases.preflight import snapshot_counts

        self.reads += len({(ids.subscription_of(d), ids.resource_group_of(d) or "") for d in disk_ids})
        try:
            return snapshot_counts(ArmCompute(self.clients), disk_ids)
        except (PermanentError, TransientError) as error:
            raise ExportError(f"counting snapshots failed: {error}") from error


def export_estate(
    clients,
    configuration_ids: Sequence[str],
    *,
    subscriptions: Sequence[str] | None = None,
    recent_runs: int = 1,
    all_machines: bool = False,
) -> tuple[EstateFile, ExportSummary]:
    """The estate around ``configuration_ids``. ``subscriptions`` narrows the machine search
    (default: the subscriptions the assignments name). Raises ExportError."""
    reader = EstateReader(clients)
    configurations = [reader.configuration(config_id) for config_id in configuration_ids]
    quoted = ", ".join(_quote(config.id) for config in configurations)
    assignment_rows = reader.query(
        "maintenanceresources"
        " | where type =~ 'microsoft.maintenance/configurationassignments'"
        f" | where properties.maintenanceConfigurationId in~ ({quoted})"
        " | project id, name, subscriptionId, resourceId = tostring(properties.resourceId),"
        " configurationId = tostring(properties.maintenanceConfigurationId), filter = properties.filter",
        subscriptions,
    )
    by_key = {ids.key(config.id): config.id for config in configurations}
    assignments: list[AssignmentSpec] = []
    scopes_by_key: dict[tuple[str, str, str], DynamicScopeSpec] = {}
    for row in assignment_rows:
        configuration_id = by_key.get(ids.key(str(row.get("configurationId") or "")))
        resource_id = str(row.get("resourceId") or "")
        if configuration_id is None or not resource_id:
            continue
        if ids.parse(resource_id) is None:  # subscription scope: a dynamic scope
            scope = _scope(configuration_id, row, resource_id)
            # ARM holds a scope over several subscriptions as one assignment per subscription,
            # same name and filter: one scope in the file, as it was declared.
            key = (ids.key(configuration_id), scope.name, json.dumps(row.get("filter") or {}, sort_keys=True))
            if key in scopes_by_key:
                known = scopes_by_key[key]
                scopes_by_key[key] = replace(known, subscriptions=(*known.subscriptions, *scope.subscriptions))
            else:
                scopes_by_key[key] = scope
        else:
            assignments.append(AssignmentSpec(configuration_id, resource_id))
    scopes = list(scopes_by_key.values())
    search = list(subscriptions or []) or sorted(
        {ids.subscription_of(a.resource_id) or "" for a in assignments}
        | {sub for scope in scopes for sub in scope.subscriptions}
        | {config.subscription_id for config in configurations}
    )
    machine_rows = reader.query(
        "resources"
        f" | where type in~ ('{COMPUTE_VM.lower()}', '{HYBRID_MACHINE.lower()}')"
        " | project id, type, location, tags, properties",
        search,
    )
    extension_rows = reader.query(
        "resources"
        f" | where type in~ ('{COMPUTE_VM.lower()}/extensions', '{HYBRID_MACHINE.lower()}/extensions')"
        " | project id, name, properties",
        search,
    )
    extensions = _extensions(extension_rows)
    vms = [_vm(row, extensions) for row in machine_rows if str(row.get("type", "")).lower() == COMPUTE_VM.lower()]
    arcs = [_arc(row, extensions) for row in machine_rows if str(row.get("type", "")).lower() == HYBRID_MACHINE.lower()]
    # Resource Graph lower-cases some ids; the machines' own ids are kept as ARM spells them.
    spelled = {ids.key(m.id): m.id for m in (*vms, *arcs)}
    assignments = [
        AssignmentSpec(a.configuration_id, spelled.get(ids.key(a.resource_id), a.resource_id)) for a in assignments
    ]
    estate = EstateFile(
        vms=vms, arc_servers=arcs, configurations=configurations, assignments=assignments, dynamic_scopes=scopes
    )
    if not all_machines:
        covered = {ids.key(m) for config in configurations for m in estate.machines_for(config.id)}
        if assignments or scopes:
            estate.vms = [vm for vm in vms if ids.key(vm.id) in covered]
            estate.arc_servers = [arc for arc in arcs if ids.key(arc.id) in covered]
    kept = {ids.key(m) for m in estate.machine_ids}
    estate.assignments = [a for a in assignments if ids.key(a.resource_id) in kept]
    _readiness(reader, estate)
    estate.runs = _runs(reader, configurations, recent_runs, subscriptions, spelled, kept) if recent_runs else []
    estate.subscriptions = [SubscriptionSpec(id=sub) for sub in estate.subscription_ids]
    estate.description = "exported by prepost estate export from " + ", ".join(c.name for c in configurations)
    summary = ExportSummary(
        len(configurations), len(vms) + len(arcs), len(estate.machines), len(estate.runs), reader.queries, reader.reads
    )
    return estate, summary


def _runs(reader, configurations, recent_runs, subscriptions, spelled, kept) -> list[RunSpec]:
    quoted = ", ".join(_quote(config.id) for config in configurations)
    rows = reader.query(
        "maintenanceresources"
        " | where type =~ 'microsoft.maintenance/applyupdates'"
        f" | where properties.maintenanceConfigurationId in~ ({quoted})"
        " | project correlationId = tostring(properties.correlationId), resourceId = tostring(properties.resourceId),"
        " status = tostring(properties.status), configurationId = tostring(properties.maintenanceConfigurationId)",
        subscriptions,
    )
    runs: dict[str, dict[str, Any]] = {}
    for row in rows:
        correlation = str(row.get("correlationId") or "")
        if "/applyupdates/" not in correlation.lower():
            continue
        run = runs.setdefault(
            ids.key(correlation),
            {
                "id": correlation,
                "status": str(row.get("status") or "Pending"),
                "config": ids.key(str(row.get("configurationId"))),
                "machines": [],
            },
        )
        machine = spelled.get(ids.key(str(row.get("resourceId") or "")))
        if machine and ids.key(machine) in kept and machine not in run["machines"]:
            run["machines"].append(machine)
    chosen: list[RunSpec] = []
    for config in configurations:
        own = sorted(
            (r for r in runs.values() if r["config"] == ids.key(config.id)), key=lambda r: r["id"].rsplit("/", 1)[-1]
        )
        for run in own[-recent_runs:]:
            correlation = config.id + run["id"][len(config.id) :]  # the configuration's spelling
            chosen.append(RunSpec(correlation_id=correlation, status=run["status"], machines=tuple(run["machines"])))
    return chosen


def _quote(value: str) -> str:
    if "'" in value or "\n" in value:
        raise ExportError(f"{value!r} contains characters a query cannot hold")
    return f"'{value}'"


def _get(row: Any, *path: str) -> Any:
    for key in path:
        row = row.get(key) if isinstance(row, Mapping) else None
    return row


def _choice(value: Any, choices: Iterable[str], default: str) -> str:
    text = str(value or "")
    return next((c for c in choices if c.lower() == text.lower()), default)


def _os_type(value: Any) -> str:
    return "Windows" if str(value or "").lower() == "windows" else "Linux"


def _extensions(rows: list[dict[str, Any]]) -> dict[str, list[ExtensionSpec]]:
    found: dict[str, list[ExtensionSpec]] = {}
    for row in rows:
        extension_id = str(row.get("id") or "")
        marker = extension_id.lower().rfind("/extensions/")
        if marker < 0:
            continue
        properties = row.get("properties") or {}
        found.setdefault(ids.key(extension_id[:marker]), []).append(
            ExtensionSpec(
                name=str(row.get("name") or extension_id[marker + len("/extensions/") :]),
                type=str(_get(properties, "type") or ""),
                publisher=str(_get(properties, "publisher") or ""),
                version=str(_get(properties, "typeHandlerVersion") or ""),
                provisioning_state=str(_get(properties, "provisioningState") or "Succeeded"),
            )
        )
    return found


def _vm(row: Mapping[str, Any], extensions: dict[str, list[ExtensionSpec]]) -> VmSpec:
    properties = row.get("properties") or {}
    storage = _get(properties, "storageProfile") or {}
    os_type = _os_type(_get(storage, "osDisk", "osType"))
    vm_id = str(row["id"])
    parsed = ids.parse(vm_id)
    os_disk_id = _get(storage, "osDisk", "managedDisk", "id") or ids.resource_id(
        parsed.subscription_id, parsed.resource_group or "", "Microsoft.Compute/disks", f"{parsed.name}-osdisk"
    )
    os_disk = DiskSpec(
        id=os_disk_id,
        size_gb=int(_get(storage, "osDisk", "diskSizeGB") or (127 if os_type == "Windows" else 30)),
        sku=str(_get(storage, "osDisk", "managedDisk", "storageAccountType") or "Premium_LRS"),
    )
    data_disks = tuple(
        DiskSpec(
            id=str(_get(disk, "managedDisk", "id")),
            size_gb=int(_get(disk, "diskSizeGB") or 128),
            sku=str(_get(disk, "managedDisk", "storageAccountType") or "Premium_LRS"),
            lun=_get(disk, "lun"),
        )
        for disk in _get(storage, "dataDisks") or []
        if _get(disk, "managedDisk", "id")
    )
    config = _get(properties, "osProfile", "windowsConfiguration" if os_type == "Windows" else "linuxConfiguration")
    patch = _get(config, "patchSettings") or {}
    power_code = str(_get(properties, "extended", "instanceView", "powerState", "code") or "PowerState/running")
    agent_view = _get(properties, "instanceView", "vmAgent")
    # Resource Graph has no guest agent state; a VM row that carries an instance view gives it.
    agent = AgentSpec(_agent_status(agent_view), str(_get(agent_view, "vmAgentVersion") or "")) if agent_view else None
    return VmSpec(
        id=vm_id,
        location=str(row.get("location") or "westeurope"),
        os_type=os_type,
        os_disk=os_disk,
        data_disks=data_disks,
        power_state=_choice(power_code.split("/", 1)[-1], POWER_STATES, "running"),
        patch_mode=_choice(
            _get(patch, "patchMode"), PATCH_MODES, "ImageDefault" if os_type == "Linux" else "AutomaticByOS"
        ),
        bypass_platform_safety_checks=bool(
            _get(patch, "automaticByPlatformSettings", "bypassPlatformSafetyChecksOnUserSchedule")
        ),
        vm_size=str(_get(properties, "hardwareProfile", "vmSize") or "Standard_D2s_v5"),
        tags={str(k): str(v) for k, v in (row.get("tags") or {}).items()},
        agent=agent,
        extensions=tuple(extensions.get(ids.key(vm_id), ())),
    )


def _readiness(reader: EstateReader, estate: EstateFile) -> None:
    """What preflight reads about the kept machines, read the way it reads it."""
    vms = []
    for vm in estate.vms:
        body = reader.instance_view(vm.id)
        view = _get(body, "properties", "instanceView") if body else None
        if isinstance(view, Mapping):
            agent_view = _get(view, "vmAgent")
            agent = (
                AgentSpec(
                    _agent_status(agent_view),
                    str(_get(agent_view, "vmAgentVersion") or ""),
                    _agent_message(agent_view),
                )
                if agent_view
                else vm.agent
            )
            vm = replace(vm, agent=agent, extensions=_merge_extensions(vm.extensions, _get(view, "extensions")))
        vms.append(vm)
    disks = [disk.id for vm in vms for disk in (vm.os_disk, *vm.data_disks)]
    counts = {ids.key(d): n for d, n in reader.snapshot_counts(disks).items()} if disks else {}

    def counted(disk: DiskSpec) -> DiskSpec:
        return replace(disk, existing_snapshots=counts.get(ids.key(disk.id), 0))

    estate.vms = [
        replace(vm, os_disk=counted(vm.os_disk), data_disks=tuple(counted(d) for d in vm.data_disks)) for vm in vms
    ]
    arcs = []
    for arc in estate.arc_servers:
        listed = reader.arc_extensions(arc.id)
        arcs.append(arc if listed is None else replace(arc, extensions=tuple(listed)))
    estate.arc_servers = arcs


def _merge_extensions(known: Sequence[ExtensionSpec], view: Any) -> tuple[ExtensionSpec, ...]:
    """The instance view's extensions with their states (where a failure shows), each completed
    from the Resource Graph row of the same name (publisher, version) when there is one."""
    if not isinstance(view, list):
        return tuple(known)
    by_name = {ext.name.lower(): ext for ext in known}
    merged = []
    for item in view:
        name = str(_get(item, "name") or "")
        statuses = [s for s in _get(item, "statuses") or [] if isinstance(s, Mapping)]
        provisioning = [s for s in statuses if str(s.get("code") or "").lower().startswith("provisioningstate/")]
        status = provisioning[0] if provisioning else (statuses[0] if statuses else {})
        code = str(status.get("code") or "ProvisioningState/succeeded")
        state = code.split("/")[1] if code.lower().startswith("provisioningstate/") else "succeeded"
        row = by_name.get(name.lower())
        handler = str(_get(item, "type") or "")
        publisher = row.publisher if row else ""
        if not publisher and "." in handler:  # the instance view says Publisher.Type
            publisher, handler = handler.rsplit(".", 1)
        merged.append(
            ExtensionSpec(
                name=name,
                type=(row.type if row and row.type else handler),
                publisher=publisher,
                version=(row.version if row and row.version else str(_get(item, "typeHandlerVersion") or "")),
                provisioning_state=state[:1].upper() + state[1:],
                message=str(status.get("message") or "") if state.lower() == "failed" else "",
            )
        )
    seen = {ext.name.lower() for ext in merged}
    return tuple(merged) + tuple(ext for ext in known if ext.name.lower() not in seen)


def _failure_message(properties: Any) -> str:
    status = _get(properties, "instanceView", "status") or {}
    failed = str(_get(properties, "provisioningState") or "").lower() == "failed"
    return str(_get(status, "message") or "") if failed else ""


def _agent_message(view: Any) -> str:
    statuses = _get(view, "statuses") or []
    first = statuses[0] if isinstance(statuses, list) and statuses else {}
    return "" if _agent_status(view).lower() == "ready" else str(_get(first, "message") or "")


def _agent_status(view: Any) -> str:
    statuses = _get(view, "statuses") or []
    first = statuses[0] if isinstance(statuses, list) and statuses else {}
    return str(_get(first, "displayStatus") or "Ready")


def _arc(row: Mapping[str, Any], extensions: dict[str, list[ExtensionSpec]]) -> ArcSpec:
    properties = row.get("properties") or {}
    changed = _get(properties, "lastStatusChange")
    return ArcSpec(
        id=str(row["id"]),
        location=str(row.get("location") or "westeurope"),
        os_type=_os_type(_get(properties, "osType")),
        status=_choice(_get(properties, "status"), ARC_STATUSES, "Disconnected"),
        agent_version=str(_get(properties, "agentVersion") or ""),
        last_status_change=parse_time(changed) if isinstance(changed, str) else None,
        tags={str(k): str(v) for k, v in (row.get("tags") or {}).items()},
        extensions=tuple(extensions.get(ids.key(str(row["id"])), ())),
        automatic_upgrade=bool(_get(properties, "agentUpgrade", "enableAutomaticUpgrade")),
    )


def _scope(configuration_id: str, row: Mapping[str, Any], scope_id: str) -> DynamicScopeSpec:
    flt = row.get("filter") or {}
    tag_settings = _get(flt, "tagSettings") or {}
    subscription = ids.subscription_of(scope_id) or str(row.get("subscriptionId") or "")
    return DynamicScopeSpec(
        configuration_id=configuration_id,
        name=str(row.get("name") or "dynamic-scope"),
        subscriptions=(subscription,),
        resource_groups=tuple(_get(flt, "resourceGroups") or ()),
        resource_types=tuple(_get(flt, "resourceTypes") or ()),
        locations=tuple(_get(flt, "locations") or ()),
        os_types=tuple(_os_type(o) for o in _get(flt, "osTypes") or ()),
        tags={str(k): tuple(str(v) for v in values) for k, values in (_get(tag_settings, "tags") or {}).items()},
        tag_operator=_choice(_get(tag_settings, "filterOperator"), ("All", "Any"), "Any"),
    )
