"""The Bicep templates in ``infra/``: they parse, and they agree with the code.

The Bicep CLI cannot be installed here, so the templates are parsed with the pure-Python
``pycep-parser`` (the parser checkov uses for Bicep). Checkov reports a file it cannot parse as
a "parsing error" and still exits 0, which is why parsing is a test of its own: a template that
fails here is also a template checkov silently skipped.

Pin the same pycep-parser version as checkov (checkov 3.3.30 pins 0.5.1): the older grammar
rejects some newer Bicep syntax (multi-line function arguments, a loop with an ``if`` filter),
and a template must parse with the version checkov runs.

The facts checked here are the ones the code depends on: queue, table, setting and function
names from ``shared/names.py``, the two maintenance event types, the transport values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from shared.models.events import EventType
from shared.names import (
    INTAKE_FUNCTION,
    SERVICEBUS_CONNECTION,
    STORAGE_CONNECTION,
    QueueName,
    SettingName,
    TableName,
)
from shared.settings import Transport

pycep = pytest.importorskip("pycep", reason="pycep-parser is not installed (pip install -e .[dev])")
from lark.exceptions import LarkError  # noqa: E402 (a pycep dependency, present once pycep is)

INFRA = Path(__file__).resolve().parents[2] / "infra"
MODULES = INFRA / "modules"
TEMPLATES = sorted(INFRA.rglob("*.bicep"))

# Settings the platform reads rather than shared.settings: they have no place in names.py.
PLATFORM_SETTINGS = {"APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}
# Settings Flex Consumption rejects or ignores: the runtime comes from functionAppConfig.
FLEX_DEPRECATED_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
}


@cache
def parser() -> Any:
    # Building the LALR tables takes a while: one parser for the session.
    return pycep.BicepParser()


@cache
def parse(path: Path) -> dict[str, Any]:
    return parser().parse(file_path=path)


def module(name: str) -> dict[str, Any]:
    return parse(MODULES / f"{name}.bicep")


def main() -> dict[str, Any]:
    return parse(INFRA / "main.bicep")


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar inside a parsed template, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def app_settings() -> dict[str, Any]:
    """Every ``{name, value}`` app setting the function app module can emit, by name."""
    variables = module("functionapp")["variables"]
    settings = {}
    for var in ("baseSettings", "serviceBusSettings", "suppressionSettings"):
        for node in walk(variables[var]["value"]):
            if isinstance(node, dict) and set(node) == {"name", "value"}:
                settings[node["name"]] = node["value"]
    return settings


def body(declaration: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's properties, with any loop or ``if`` condition unwrapped."""
    config = declaration["config"]
    while "loop_type" in config or "condition" in config:
        config = config["config"]
    return config


def param_default(template: dict[str, Any], name: str) -> Any:
    return template["parameters"][name]["default"]


def allowed_values(template: dict[str, Any], name: str) -> list[Any]:
    for decorator in template["parameters"][name]["decorators"]:
        if decorator["type"] == "allowed":
            return decorator["argument"]
    raise AssertionError(f"parameter {name} has no @allowed decorator")


def role_ids(template: dict[str, Any]) -> set[str]:
    """Built-in role definition GUIDs written anywhere in a template."""
    guid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    return {node for node in walk(template) if isinstance(node, str) and guid.match(node)}


# --- syntax -----------------------------------------------------------------------------------


def test_templates_are_found():
    assert INFRA / "main.bicep" in TEMPLATES
    assert len(TEMPLATES) >= 5


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(INFRA)))
def test_template_parses(path: Path):
    parsed = parse(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path.name} declares nothing"


@pytest.mark.parametrize(
    "text",
    [
        "resource broken 'Microsoft.Storage/storageAccounts@2025-08-01' = {\n",
        'resource broken "Microsoft.Storage/storageAccounts@2025-08-01" = {}\n',
    ],
    ids=["unclosed-brace", "double-quotes"],
)
def test_parser_rejects_broken_bicep(text: str):
    # Guards the test above: a parser that accepted anything would make it pass vacuously.
    with pytest.raises((ValueError, LarkError)):
        parser().parse(text=text)


def test_every_module_main_uses_exists():
    modules = main()["modules"]
    assert modules
    for symbol, declaration in modules.items():
        path = INFRA / declaration["detail"]["path"]
        assert path.is_file(), f"module {symbol} points at missing {path}"


def test_checkov_suppressions_give_a_reason():
    suppression = re.compile(r"checkov:skip=(CKV2?_[A-Z]+_\d+)(?::(.*))?")
    for path in TEMPLATES:
        for line in path.read_text().splitlines():
            match = suppression.search(line)
            if match:
                assert (match.group(2) or "").strip(), f"{path.name}: {match.group(1)} suppressed without a reason"


# --- names from shared/names.py -----------------------------------------------------------------


def test_storage_creates_every_queue_and_its_poison_queue():
    storage = module("storage")
    created = set(storage["variables"]["queueNames"]["value"])
    expected = {queue.value for queue in QueueName} | {queue.poison for queue in QueueName}
    assert created == expected
    loop = storage["resources"]["queues"]["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "queueNames"


def test_storage_creates_every_table():
    storage = module("storage")
    created = set(storage["variables"]["tableNames"]["value"])
    assert created == {table.value for table in TableName}
    assert all(name.isalnum() for name in created)
    loop = storage["resources"]["tables"]["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "tableNames"


def test_storage_has_no_shared_keys_and_a_dead_letter_container():
    storage = module("storage")
    properties = storage["resources"]["account"]["config"]["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert storage["resources"]["deadLetterContainer"]["config"]["name"] == "deadLetterContainerName"
    assert main()["variables"]["names"]["value"]["deadLetterContainer"]


def test_service_bus_queues_match_the_transport_queues():
    servicebus = module("servicebus")
    assert set(servicebus["variables"]["queueNames"]["value"]) == {
        QueueName.PLAN.value,
        QueueName.VM_TASKS.value,
    }
    namespace = servicebus["resources"]["namespace"]["config"]
    assert namespace["sku"]["name"] == "Standard"
    assert namespace["properties"]["disableLocalAuth"] is True
    queue = body(servicebus["resources"]["queues"])["properties"]
    assert queue["requiresDuplicateDetection"] is True
    assert queue["duplicateDetectionHistoryTimeWindow"] == "PT10M"
    assert queue["maxDeliveryCount"] == 10
    assert queue["lockDuration"] == "PT1M"


def test_app_setting_names_come_from_names_module():
    settings = app_settings()
    known = (
        {setting.value for setting in SettingName}
        | {f"{STORAGE_CONNECTION}__accountName", f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace"}
        | PLATFORM_SETTINGS
    )
    assert set(settings) <= known, f"unknown app settings: {sorted(set(settings) - known)}"
    assert not set(settings) & FLEX_DEPRECATED_SETTINGS


def test_app_settings_cover_what_settings_require():
    settings = app_settings()
    for required in (
        SettingName.TRANSPORT,
        SettingName.ALLOWED_CONFIGURATIONS,
        SettingName.ALLOWED_SUBSCRIPTIONS,
    ):
        assert required.value in settings
    # Identity-based connections only: no connection string, no key.
    assert f"{STORAGE_CONNECTION}__accountName" in settings
    assert STORAGE_CONNECTION not in settings
    assert f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace" in settings
    assert SERVICEBUS_CONNECTION not in settings


def test_service_bus_setting_only_with_service_bus_transport():
    condition = module("functionapp")["variables"]["serviceBusSettings"]["value"]["operator"]
    assert condition["type"] == "conditional"
    assert condition["operands"]["false_value"] == []
    test = condition["operands"]["condition"]["operator"]
    assert test["type"] == "equals"
    assert test["operands"] == {"operand_1": "transport", "operand_2": Transport.SERVICEBUS.value}


def test_transport_values_match_settings():
    expected = {transport.value for transport in Transport}
    assert set(allowed_values(main(), "transport")) == expected
    assert set(allowed_values(module("functionapp"), "transport")) == expected
    assert param_default(main(), "transport") == Transport.STORAGE.value


def test_intake_function_name_matches():
    assert main()["variables"]["intakeFunctionName"]["value"] == INTAKE_FUNCTION
    params = body(main()["modules"]["eventSubscription"])["params"]
    assert params["intakeFunctionName"] == "intakeFunctionName"


# --- Event Grid -------------------------------------------------------------------------------------


def event_subscription() -> dict[str, Any]:
    return module("eventgrid-subscription")["resources"]["intakeSubscription"]["config"]["properties"]


def test_event_subscription_filters_exactly_the_two_maintenance_events():
    included = event_subscription()["filter"]["includedEventTypes"]
    assert sorted(included) == sorted(event_type.value for event_type in EventType)
    assert len(included) == 2


def test_event_subscription_targets_the_intake_function():
    destination = event_subscription()["destination"]
    assert destination["endpointType"] == "AzureFunction"
    assert destination["properties"]["resourceId"] == "${functionAppId}/functions/${intakeFunctionName}"
    assert destination["properties"]["maxEventsPerBatch"] == 1
    # The trigger binds func.EventGridEvent.
    assert event_subscription()["eventDeliverySchema"] == "EventGridSchema"


def test_event_subscription_retries_within_the_pre_event_budget_and_dead_letters():
    properties = event_subscription()
    assert properties["retryPolicy"] == {
        "maxDeliveryAttempts": "maxDeliveryAttempts",
        "eventTimeToLiveInMinutes": "eventTimeToLiveInMinutes",
    }
    defaults = [
        (
            param_default(main(), "eventMaxDeliveryAttempts"),
            param_default(main(), "eventTimeToLiveInMinutes"),
        ),
        (
            param_default(module("eventgrid-subscription"), "maxDeliveryAttempts"),
            param_default(module("eventgrid-subscription"), "eventTimeToLiveInMinutes"),
        ),
    ]
    for attempts, ttl in defaults:
        assert 1 <= attempts <= 30
        # All pre-event work has about 20 minutes; retrying past that protects nothing.
        assert 1 <= ttl <= 20
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"]["type"] == "SystemAssigned"
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"


def test_system_topic_is_on_the_maintenance_configuration():
    topic = module("eventgrid-topic")["resources"]["systemTopic"]["config"]
    assert topic["properties"]["topicType"] == "Microsoft.Maintenance.MaintenanceConfigurations"
    assert topic["properties"]["source"] == "maintenanceConfigurationId"
    assert topic["identity"]["type"] == "SystemAssigned"


def test_event_subscription_waits_for_the_published_code():
    assert param_default(main(), "deployEventSubscription") is False
    condition = main()["modules"]["eventSubscription"]["config"]["condition"]
    assert condition == "deployEventSubscription"


# --- function app ---------------------------------------------------------------------------------


def test_function_app_is_flex_consumption_python_311_with_managed_identity():
    functionapp = module("functionapp")
    plan = functionapp["resources"]["plan"]["config"]
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = functionapp["resources"]["site"]["config"]
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "SystemAssigned"
    assert site["properties"]["httpsOnly"] is True
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "SystemAssignedIdentity"


def test_allow_lists_have_no_default_that_allows_everything():
    template = main()
    for name in ("allowedConfigurationIds", "allowedSubscriptionIds"):
        default = param_default(template, name)
        assert default is not None
        assert "*" not in list(walk(default)), f"{name} defaults to allow-all"
    for required in (
        "maintenanceConfigurationId",
        "targetSubscriptionIds",
        "maintenanceConfigurationLocation",
    ):
        assert param_default(template, required) is None, f"{required} must be given explicitly"


# --- role assignments ---------------------------------------------------------------------------

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
VIRTUAL_MACHINE_CONTRIBUTOR = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c"
DISK_SNAPSHOT_CONTRIBUTOR = "7efff54f-a5b4-42b5-a1c5-5411624893ce"
MONITORING_CONTRIBUTOR = "749f88d5-cbae-40b8-bcfc-e573ddc772fa"
SCHEDULED_PATCHING_CONTRIBUTOR = "cd08ab90-6b14-449c-ad9a-8f8e549482c6"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
SERVICE_BUS_DATA_SENDER = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"
SERVICE_BUS_DATA_RECEIVER = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"


def test_target_subscription_roles_are_a_subscription_scope_module_with_custom_roles_only():
    roles = module("target-subscription-roles")
    assert roles["globals"]["scope"]["value"] == "subscription"
    # Custom roles only (tests/infra/test_roles.py checks their actions): no built-in role id.
    assert role_ids(roles) == set()
    assert {
        symbol
        for symbol, declaration in roles["resources"].items()
        if declaration["type"] == "Microsoft.Authorization/roleDefinitions"
    } == {"machineOperatorRole", "alertSuppressorRole", "scriptRunnerRole"}
    deployment = main()["modules"]["targetRoles"]
    assert deployment["detail"]["path"] == "modules/target-subscription-roles.bicep"
    assert body(deployment)["scope"]["function"]["type"] == "subscription"


def test_cancel_permission_is_apply_updates_write_on_the_configuration():
    access = module("maintenance-access")
    role = body(access["resources"]["cancelRunRole"])["properties"]
    actions = role["permissions"][0]["actions"]
    assert "Microsoft.Maintenance/applyUpdates/write" in actions
    assert all(action.endswith("/read") or action == "Microsoft.Maintenance/applyUpdates/write" for action in actions)
    assert SCHEDULED_PATCHING_CONTRIBUTOR in role_ids(access)
    assert body(access["resources"]["cancelRunAssignment"])["scope"] == "configuration"


def test_no_template_grants_the_broad_built_in_roles():
    # Virtual Machine Contributor includes Run Command; Disk Snapshot Contributor includes storage
    # listkeys and disk SAS; Monitoring Contributor and Reader reach far beyond prepost's calls.
    broad = {READER, VIRTUAL_MACHINE_CONTRIBUTOR, DISK_SNAPSHOT_CONTRIBUTOR, MONITORING_CONTRIBUTOR}
    for path in TEMPLATES:
        assert not role_ids(parse(path)) & broad, f"{path.name} grants a broad built-in role"


def test_app_gets_data_roles_on_its_own_resources():
    assert role_ids(module("app-access")) >= {
        STORAGE_BLOB_DATA_OWNER,
        STORAGE_QUEUE_DATA_CONTRIBUTOR,
        STORAGE_TABLE_DATA_CONTRIBUTOR,
        SERVICE_BUS_DATA_SENDER,
        SERVICE_BUS_DATA_RECEIVER,
    }
    assert role_ids(module("deadletter-access")) == {STORAGE_BLOB_DATA_CONTRIBUTOR}


def test_alert_role_is_granted_on_the_suppression_resource_group_when_one_is_set():
    roles = module("target-subscription-roles")
    uses_group = {"function": {"type": "empty", "parameters": {"item_to_test": "suppressionResourceGroupName"}}}
    # Without a suppression resource group: on the subscription (rules go next to the machines).
    at_subscription = roles["resources"]["alertSuppressorAssignment"]["config"]
    assert at_subscription["condition"] == uses_group
    assert at_subscription["config"]["properties"]["roleDefinitionId"]["operator"]["operands"]["operand_1"] == (
        "alertSuppressorRole"
    )
    # With one: on that resource group only, through suppression-access.bicep.
    at_group = roles["modules"]["suppressionGroupAccess"]
    assert at_group["detail"]["path"] == "suppression-access.bicep"
    assert at_group["config"]["condition"]["operator"] == {"type": "not", "operands": {"bool_value": uses_group}}
    config = at_group["config"]["config"]
    scope = config["scope"]["function"]
    assert scope["type"] == "resource_group"
    assert scope["parameters"]["resource_group_name"]["operator"]["operands"]["false_value"] == (
        "suppressionResourceGroupName"
    )
    assert config["params"]["roleDefinitionId"]["operator"]["operands"]["operand_1"] == "alertSuppressorRole"
    # The machine operator role is always on the subscription.
    operator = roles["resources"]["machineOperatorAssignment"]["config"]
    assert "condition" not in operator and "scope" not in operator
    assert operator["properties"]["roleDefinitionId"]["operator"]["operands"]["operand_1"] == "machineOperatorRole"
