"""Reading an estate file, with every problem named by its field (``vms[3].powerState: ...``).

The file's shape is ``estate.schema.json`` beside this module (JSON Schema 2020-12, for editors
and other tools); this loader checks the same rules without a schema library, and then what a
schema cannot say: ids of the right resource type, no machine declared twice, assignments,
scopes and runs that name a declared configuration and declared machines. All problems are
reported at once.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prepost.simulator import ids
from prepost.simulator.estate import (
    COMPUTE_VM,
    HYBRID_MACHINE,
    MAINTENANCE_CONFIGURATION,
    parse_run_id,
    run_correlation_id,
)

from .model import (
    ARC_STATUSES,
    OS_TYPES,
    PATCH_MODES,
    POWER_STATES,
    SCHEMA_VERSION,
    TAG_OPERATORS,
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

SCHEMA_PATH = Path(__file__).with_name("estate.schema.json")
COMPUTE_DISK = "Microsoft.Compute/disks"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_PROBLEMS_SHOWN = 25


class EstateFileError(ValueError):
    """The file cannot be used; ``problems`` lists each one as ``field: what is wrong``."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        more = len(self.problems) - len(shown)
        lines = [f"{source}: {len(self.problems)} problem(s) in the estate file:", *(f"  {p}" for p in shown)]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


def load_estate(path: str | Path) -> EstateFile:
    """Read and check an estate file. Raises EstateFileError (also for a file that is not JSON)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise EstateFileError(source, [f"(file): cannot be read: {error}"]) from error
    try:
        data = json.loads(text)
    except ValueError as error:
        raise EstateFileError(source, [f"(file): not JSON: {error}"]) from error
    return parse_estate(data, source=source)


def parse_estate(data: Any, *, source: str = "estate") -> EstateFile:
    """Check the decoded JSON of an estate file and build the model. Raises EstateFileError."""
    problems: list[str] = []
    reader = _Reader(problems)
    estate = reader.estate(data)
    if not problems:
        _check_references(estate, problems)
    if problems:
        raise EstateFileError(source, problems)
    return estate


# -- shape ---------------------------------------------------------------------------------


class _Obj:
    """One JSON object being read: fields taken are checked, the rest are reported as unknown."""

    def __init__(self, reader: _Reader, value: Any, path: str, known: Sequence[str]):
        self.reader = reader
        self.path = path
        self.ok = isinstance(value, Mapping)
        self.value: Mapping[str, Any] = value if self.ok else {}
        if not self.ok:
            reader.problem(path, f"must be an object, got {_kind(value)}")
            return
        for key in self.value:
            if key not in known and key != "$schema":
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
                reader.problem(self._at(key), f"unknown field{hint}")

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.value

    def text(self, key: str, default: str | None = None, *, choices: Sequence[str] = ()) -> str:
        if key not in self.value:
            if default is None:
                self.reader.problem(self._at(key), "is required")
            return default or ""
        value = self.value[key]
        if not isinstance(value, str) or not value.strip():
            self.reader.problem(self._at(key), f"must be a non-empty string, got {_kind(value)}")
            return default or ""
        if choices:
            match = next((c for c in choices if c.lower() == value.lower()), None)
            if match is None:
                self.reader.problem(self._at(key), f"{value!r} is not one of: {', '.join(choices)}")
                return default or ""
            return match
        return value

    def integer(self, key: str, default: int | None = None, *, minimum: int = 0) -> int:
        value = self.value.get(key, default)
        if value is None:
            self.reader.problem(self._at(key), "is required")
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.reader.problem(self._at(key), f"must be a whole number of at least {minimum}, got {value!r}")
            return minimum
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value.get(key, default)
        if not isinstance(value, bool):
            self.reader.problem(self._at(key), f"must be true or false, got {_kind(value)}")
            return default
        return value

    def time(self, key: str, *, required: bool = True) -> datetime | None:
        if key not in self.value:
            if required:
                self.reader.problem(self._at(key), "is required")
            return None
        value = self.value[key]
        parsed = parse_time(value) if isinstance(value, str) else None
        if parsed is None:
            self.reader.problem(
                self._at(key), f"{value!r} is not a time (ISO 8601, e.g. 2026-12-01T02:00:00Z, or 2026-12-01 02:00)"
            )
        return parsed

    def strings(self, key: str, *, item_check: Callable[[str, str], None] | None = None) -> tuple[str, ...]:
        value = self.value.get(key, [])
        if not isinstance(value, list):
            self.reader.problem(self._at(key), f"must be an array of strings, got {_kind(value)}")
            return ()
        items = []
        for index, item in enumerate(value):
            where = f"{self._at(key)}[{index}]"
            if not isinstance(item, str) or not item.strip():
                self.reader.problem(where, f"must be a non-empty string, got {_kind(item)}")
                continue
            if item_check:
                item_check(item, where)
            items.append(item)
        return tuple(items)

    def tags(self, key: str = "tags") -> dict[str, str]:
        value = self.value.get(key, {})
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            self.reader.problem(self._at(key), "must be an object of string values")
            return {}
        return dict(value)

    def objects(self, key: str) -> Iterator[tuple[Any, str]]:
        value = self.value.get(key, [])
        if not isinstance(value, list):
            self.reader.problem(self._at(key), f"must be an array, got {_kind(value)}")
            return
        for index, item in enumerate(value):
            yield item, f"{self._at(key)}[{index}]"

    def resource_id(self, key: str, resource_type: str) -> str:
        value = self.text(key)
        if value:
            self.reader.check_id(value, resource_type, self._at(key))
        return value


class _Reader:
    def __init__(self, problems: list[str]):
        self.problems = problems

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(top level)'}: {message}")

    def check_id(self, value: str, resource_type: str, where: str) -> None:
        parsed = ids.parse(value)
        if parsed is None or parsed.resource_group is None or parsed.full_type.lower() != resource_type.lower():
            self.problem(where, f"{value!r} is not a {resource_type} resource id")
        elif not _GUID.match(parsed.subscription_id):
            self.problem(where, f"the subscription {parsed.subscription_id!r} in {value!r} is not a GUID")

    def estate(self, data: Any) -> EstateFile:
        top = _Obj(
            self,
            data,
            "",
            (
                "version",
                "description",
                "subscriptions",
                "vms",
                "arcServers",
                "maintenanceConfigurations",
                "configurationAssignments",
                "dynamicScopes",
                "runs",
            ),
        )
        if not top.ok:
            return EstateFile()
        version = top.value.get("version")
        if version != SCHEMA_VERSION:
            self.problem(
                "version", f"must be {SCHEMA_VERSION} (the estate file format this prepost reads), got {version!r}"
            )
        return EstateFile(
            subscriptions=[self.subscription(v, p) for v, p in top.objects("subscriptions")],
            vms=[self.vm(v, p) for v, p in top.objects("vms")],
            arc_servers=[self.arc(v, p) for v, p in top.objects("arcServers")],
            configurations=[self.configuration(v, p) for v, p in top.objects("maintenanceConfigurations")],
            assignments=[self.assignment(v, p) for v, p in top.objects("configurationAssignments")],
            dynamic_scopes=[self.scope(v, p) for v, p in top.objects("dynamicScopes")],
            runs=[self.run(v, p) for v, p in top.objects("runs")],
            description=top.text("description", ""),
        )

    def subscription(self, value: Any, path: str) -> SubscriptionSpec:
        obj = _Obj(self, value, path, ("id", "name", "resourceGroups"))
        sub = obj.text("id")
        if sub and not _GUID.match(sub):
            self.problem(f"{path}.id", f"{sub!r} is not a subscription GUID")
        return SubscriptionSpec(id=sub, name=obj.text("name", ""), resource_groups=obj.strings("resourceGroups"))

    def disk(self, value: Any, path: str, default_id: str, default_size: int) -> DiskSpec:
        obj = _Obj(self, value, path, ("id", "sizeGb", "sku", "lun", "existingSnapshots"))
        if obj.has("id") or not default_id:
            disk_id = obj.text("id")  # required when there is no default (data disks)
            if disk_id:
                self.check_id(disk_id, COMPUTE_DISK, f"{path}.id")
        else:
            disk_id = default_id
        lun = obj.integer("lun") if obj.has("lun") else None
        return DiskSpec(
            id=disk_id,
            size_gb=obj.integer("sizeGb", default_size, minimum=1),
            sku=obj.text("sku", "Premium_LRS"),
            lun=lun,
            existing_snapshots=obj.integer("existingSnapshots", 0),
        )

    def extensions(self, obj: _Obj) -> tuple[ExtensionSpec, ...]:
        found = []
        for value, path in obj.objects("extensions"):
            ext = _Obj(self, value, path, ("name", "type", "publisher", "version", "provisioningState", "message"))
            found.append(
                ExtensionSpec(
                    name=ext.text("name"),
                    type=ext.text("type", ""),
                    publisher=ext.text("publisher", ""),
                    version=ext.text("version", ""),
                    provisioning_state=ext.text("provisioningState", "Succeeded"),
                    message=ext.text("message", ""),
                )
            )
        return tuple(found)

    def vm(self, value: Any, path: str) -> VmSpec:
        obj = _Obj(
            self,
            value,
            path,
            (
                "id",
                "location",
                "osType",
                "vmSize",
                "powerState",
                "osDisk",
                "dataDisks",
                "patchSettings",
                "vmAgent",
                "extensions",
                "tags",
            ),
        )
        vm_id = obj.resource_id("id", COMPUTE_VM)
        os_type = obj.text("osType", choices=OS_TYPES)
        parsed = ids.parse(vm_id) if vm_id else None
        default_disk = (
            ids.resource_id(parsed.subscription_id, parsed.resource_group, COMPUTE_DISK, f"{parsed.name}-osdisk")
            if parsed and parsed.resource_group
            else ""
        )
        default_size = 127 if os_type == "Windows" else 30
        os_disk = (
            self.disk(obj.value["osDisk"], f"{path}.osDisk", default_disk, default_size)
            if obj.has("osDisk")
            else DiskSpec(id=default_disk, size_gb=default_size)
        )
        data_disks = tuple(self.disk(v, p, "", 128) for v, p in obj.objects("dataDisks"))
        patch = _Obj(
            self,
            obj.value.get("patchSettings", {}),
            f"{path}.patchSettings",
            ("patchMode", "bypassPlatformSafetyChecksOnUserSchedule"),
        )
        agent = None
        if obj.has("vmAgent"):
            raw_agent = _Obj(self, obj.value["vmAgent"], f"{path}.vmAgent", ("status", "version", "message"))
            agent = AgentSpec(
                status=raw_agent.text("status", "Ready"),
                version=raw_agent.text("version", ""),
                message=raw_agent.text("message", ""),
            )
        return VmSpec(
            id=vm_id,
            location=obj.text("location"),
            os_type=os_type,
            os_disk=os_disk,
            data_disks=data_disks,
            power_state=obj.text("powerState", "running", choices=POWER_STATES),
            patch_mode=patch.text("patchMode", "AutomaticByPlatform", choices=PATCH_MODES),
            bypass_platform_safety_checks=patch.boolean("bypassPlatformSafetyChecksOnUserSchedule", True),
            vm_size=obj.text("vmSize", "Standard_D2s_v5"),
            tags=obj.tags(),
            agent=agent,
            extensions=self.extensions(obj),
        )

    def arc(self, value: Any, path: str) -> ArcSpec:
        obj = _Obj(
            self,
            value,
            path,
            (
                "id",
                "location",
                "osType",
                "status",
                "agentVersion",
                "lastStatusChange",
                "agentUpgrade",
                "extensions",
                "tags",
            ),
        )
        upgrade = _Obj(self, obj.value.get("agentUpgrade", {}), f"{path}.agentUpgrade", ("enableAutomaticUpgrade",))
        return ArcSpec(
            id=obj.resource_id("id", HYBRID_MACHINE),
            location=obj.text("location"),
            os_type=obj.text("osType", choices=OS_TYPES),
            status=obj.text("status", "Connected", choices=ARC_STATUSES),
            agent_version=obj.text("agentVersion", "1.47.02825.2025"),
            last_status_change=obj.time("lastStatusChange", required=False),
            tags=obj.tags(),
            extensions=self.extensions(obj),
            automatic_upgrade=upgrade.boolean("enableAutomaticUpgrade", False),
        )

    def configuration(self, value: Any, path: str) -> ConfigurationSpec:
        obj = _Obj(self, value, path, ("id", "location", "tags", "maintenanceWindow"))
        window = _Obj(
            self,
            obj.value.get("maintenanceWindow"),
            f"{path}.maintenanceWindow",
            ("startDateTime", "duration", "timeZone", "recurEvery"),
        )
        start = window.time("startDateTime") if window.ok else None
        duration = window.text("duration", "03:55")
        if duration and not re.fullmatch(r"\d{1,2}:\d{2}", duration):
            self.problem(f"{path}.maintenanceWindow.duration", f"{duration!r} is not hh:mm")
        return ConfigurationSpec(
            id=obj.resource_id("id", MAINTENANCE_CONFIGURATION),
            location=obj.text("location", "westeurope"),
            tags=obj.tags(),
            window=WindowSpec(
                start=start or datetime(2026, 1, 1, tzinfo=UTC),
                duration=duration,
                time_zone=window.text("timeZone", "UTC"),
                recur_every=window.text("recurEvery", "1Week Sunday"),
            ),
        )

    def assignment(self, value: Any, path: str) -> AssignmentSpec:
        obj = _Obj(self, value, path, ("maintenanceConfigurationId", "resourceId"))
        configuration_id = obj.resource_id("maintenanceConfigurationId", MAINTENANCE_CONFIGURATION)
        resource_id = obj.text("resourceId")
        if resource_id and not _is_machine(resource_id):
            self.problem(f"{path}.resourceId", f"{resource_id!r} is neither a VM nor an Arc server id")
        return AssignmentSpec(configuration_id=configuration_id, resource_id=resource_id)

    def scope(self, value: Any, path: str) -> DynamicScopeSpec:
        obj = _Obj(self, value, path, ("maintenanceConfigurationId", "name", "subscriptions", "filter"))
        flt = _Obj(
            self,
            obj.value.get("filter", {}),
            f"{path}.filter",
            ("resourceGroups", "resourceTypes", "locations", "osTypes", "tagSettings"),
        )
        tag_settings = _Obj(
            self, flt.value.get("tagSettings", {}), f"{path}.filter.tagSettings", ("tags", "filterOperator")
        )
        tags: dict[str, tuple[str, ...]] = {}
        raw_tags = tag_settings.value.get("tags", {})
        if not isinstance(raw_tags, Mapping):
            self.problem(f"{path}.filter.tagSettings.tags", "must be an object of arrays of strings")
        else:
            for name, values in raw_tags.items():
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    self.problem(f"{path}.filter.tagSettings.tags.{name}", "must be an array of strings")
                    continue
                tags[name] = tuple(values)

        def subscription(item: str, where: str) -> None:
            if not _GUID.match(item):
                self.problem(where, f"{item!r} is not a subscription GUID")

        def resource_type(item: str, where: str) -> None:
            if item.lower() not in (COMPUTE_VM.lower(), HYBRID_MACHINE.lower()):
                self.problem(where, f"{item!r} is not one of: {COMPUTE_VM}, {HYBRID_MACHINE}")

        subscriptions = obj.strings("subscriptions", item_check=subscription)
        if not subscriptions:
            self.problem(f"{path}.subscriptions", "is required: at least one subscription the scope covers")
        os_types = flt.strings("osTypes")
        for index, os_type in enumerate(os_types):
            if os_type not in OS_TYPES:
                self.problem(f"{path}.filter.osTypes[{index}]", f"{os_type!r} is not one of: {', '.join(OS_TYPES)}")
        return DynamicScopeSpec(
            configuration_id=obj.resource_id("maintenanceConfigurationId", MAINTENANCE_CONFIGURATION),
            name=obj.text("name"),
            subscriptions=subscriptions,
            resource_groups=flt.strings("resourceGroups"),
            resource_types=flt.strings("resourceTypes", item_check=resource_type),
            locations=flt.strings("locations"),
            os_types=os_types,
            tags=tags,
            tag_operator=tag_settings.text("filterOperator", "Any", choices=TAG_OPERATORS),
        )

    def run(self, value: Any, path: str) -> RunSpec:
        obj = _Obj(
            self, value, path, ("correlationId", "maintenanceConfigurationId", "startDateTime", "status", "machines")
        )
        if obj.has("correlationId"):
            correlation_id = obj.text("correlationId")
            if obj.has("maintenanceConfigurationId") or obj.has("startDateTime"):
                self.problem(path, "give either correlationId, or maintenanceConfigurationId with startDateTime")
            try:
                parse_run_id(correlation_id)
            except ValueError:
                self.problem(
                    f"{path}.correlationId", f"{correlation_id!r} is not a run id (.../applyupdates/yyyyMMddHHmmss)"
                )
        else:
            configuration_id = obj.resource_id("maintenanceConfigurationId", MAINTENANCE_CONFIGURATION)
            start = obj.time("startDateTime")
            correlation_id = run_correlation_id(configuration_id, start) if configuration_id and start else ""
        machines = None
        if obj.has("machines"):

            def machine(item: str, where: str) -> None:
                if not _is_machine(item):
                    self.problem(where, f"{item!r} is neither a VM nor an Arc server id")

            machines = obj.strings("machines", item_check=machine)
        return RunSpec(correlation_id=correlation_id, status=obj.text("status", "Pending"), machines=machines)


# -- references ----------------------------------------------------------------------------


def _check_references(estate: EstateFile, problems: list[str]) -> None:
    declared_subscriptions = {s.id.lower() for s in estate.subscriptions}
    _duplicates(problems, "subscriptions", [s.id for s in estate.subscriptions])
    _duplicates(problems, "vms", [vm.id for vm in estate.vms])
    _duplicates(problems, "arcServers", [arc.id for arc in estate.arc_servers])
    _duplicates(problems, "maintenanceConfigurations", [c.id for c in estate.configurations])
    _duplicates(problems, "runs", [r.correlation_id for r in estate.runs], what="correlationId")
    disks = [d.id for vm in estate.vms for d in (vm.os_disk, *vm.data_disks)]
    _duplicates(problems, "vms[*] disks", disks)
    if declared_subscriptions:
        for kind, items in (
            ("vms", estate.vms),
            ("arcServers", estate.arc_servers),
            ("maintenanceConfigurations", estate.configurations),
        ):
            for index, item in enumerate(items):
                if item.subscription_id.lower() not in declared_subscriptions:
                    problems.append(
                        f"{kind}[{index}].id: its subscription {item.subscription_id} is not in subscriptions"
                    )
    configurations = {ids.key(c.id) for c in estate.configurations}
    machines = {ids.key(m) for m in estate.machine_ids}
    for index, assignment in enumerate(estate.assignments):
        where = f"configurationAssignments[{index}]"
        if ids.key(assignment.configuration_id) not in configurations:
            problems.append(f"{where}.maintenanceConfigurationId: not in maintenanceConfigurations")
        if ids.key(assignment.resource_id) not in machines:
            problems.append(f"{where}.resourceId: {assignment.resource_id} is not in vms or arcServers")
    for index, scope in enumerate(estate.dynamic_scopes):
        if ids.key(scope.configuration_id) not in configurations:
            problems.append(f"dynamicScopes[{index}].maintenanceConfigurationId: not in maintenanceConfigurations")
    for index, run in enumerate(estate.runs):
        if ids.key(run.configuration_id) not in configurations:
            field = "correlationId" if run.correlation_id else "maintenanceConfigurationId"
            problems.append(
                f"runs[{index}].{field}: its configuration {run.configuration_id} is not in maintenanceConfigurations"
            )
        for position, machine in enumerate(run.machines or ()):
            if ids.key(machine) not in machines:
                problems.append(f"runs[{index}].machines[{position}]: {machine} is not in vms or arcServers")


def _duplicates(problems: list[str], kind: str, values: Sequence[str], *, what: str = "id") -> None:
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        key = ids.key(value)
        if key in seen:
            problems.append(f"{kind}[{index}].{what}: {value} is declared twice (also at [{seen[key]}])")
        else:
            seen[key] = index


def _is_machine(resource_id: str) -> bool:
    parsed = ids.parse(resource_id)
    return bool(parsed and parsed.full_type.lower() in (COMPUTE_VM.lower(), HYBRID_MACHINE.lower()))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "an object" if isinstance(value, Mapping) else type(value).__name__
    )


def parse_time(text: str) -> datetime | None:
    """ISO 8601 or Azure's ``yyyy-MM-dd HH:mm`` (maintenance windows); naive times are UTC."""
    candidate = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", candidate):
        candidate = candidate.replace(" ", "T")
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
