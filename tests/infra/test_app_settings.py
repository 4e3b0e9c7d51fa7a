"""Every setting the app reads can be set from the deployment, and the deployment's values are ones the app accepts.

``shared/names.py`` ``SettingName`` lists what ``shared/settings.py`` reads. Each one is either
written by ``infra/modules/functionapp.bicep`` into the function app's app settings (always, or
when its parameter is set) or listed in ``LOCAL_ONLY`` with the reason a deployment never sets
it. A setting added to the code without either fails here.

The app settings are then evaluated the way ARM would for the parameter values a deployment can
give (the templates' defaults, every allowed value, every bool), and the result is read by
``Settings.from_environ``: a parameter whose value the app would refuse at start-up (every function
down, the intake included) fails here instead of in Azure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from shared.models.gate import ErrorBudget
from shared.models.policy import RunPolicy
from shared.names import SERVICEBUS_CONNECTION, STORAGE_CONNECTION, SettingName
from shared.settings import Settings
from tests.infra.test_azd import PROVISION_ENV, run_hook

pycep = pytest.importorskip("pycep", reason="pycep-parser is not installed (pip install -e .[dev])")

INFRA = Path(__file__).resolve().parents[2] / "infra"

LOCAL_ONLY: dict[SettingName, str] = {
    SettingName.ARM_ENDPOINT: (
        "the deployed app talks to Azure Resource Manager at its default endpoint; only the local stack points "
        "it at the simulator (and the token scope in shared/adapters/arm/clients.py is the public cloud's)"
    ),
    SettingName.ARM_AUTH: (
        "a deployed app authenticates with its managed identity, the default; 'simulator' is accepted only with "
        "a loopback endpoint, for the local stack"
    ),
}
"""Settings a deployment deliberately never sets, each with the reason."""

CONFIGURATION = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-patching"
    "/providers/Microsoft.Maintenance/maintenanceConfigurations/mc-weekly"
)
CONNECTION_STRING = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"
REQUIRED = {
    # Parameters without a literal default: values a real deployment would pass.
    "storageAccountName": "prepoststorage",
    "allowedConfigurations": CONFIGURATION,
    "allowedSubscriptions": "11111111-1111-1111-1111-111111111111",
    "serviceBusFullyQualifiedNamespace": "prepost-sb.servicebus.windows.net",
}


@cache
def parse(path: Path) -> dict[str, Any]:
    return pycep.BicepParser().parse(file_path=path)


def functionapp() -> dict[str, Any]:
    return parse(INFRA / "modules" / "functionapp.bicep")


def main() -> dict[str, Any]:
    return parse(INFRA / "main.bicep")


def app_setting_variables() -> list[str]:
    """The variables the site's ``appSettings`` concatenates, as the template lists them."""
    expression = functionapp()["resources"]["site"]["config"]["properties"]["siteConfig"]["appSettings"]
    function = expression["function"]
    assert function["type"] == "concat", "appSettings is expected to be concat(variable, ...)"
    names = list(function["parameters"].values())
    assert all(isinstance(name, str) and name in functionapp()["variables"] for name in names)
    return names


def evaluate(node: Any, values: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
    """The subset of Bicep expressions the app settings use, with parameters bound to ``values``.

    pycep writes an identifier and a string literal alike, as a string: a string that names a
    parameter or a variable is that symbol, anything else is a literal.
    """
    if isinstance(node, str):
        if node in values:
            return values[node]
        if node in variables:
            return evaluate(variables[node]["value"], values, variables)
        return node
    if isinstance(node, bool | int) or node is None:
        return node
    if isinstance(node, list):
        return [evaluate(item, values, variables) for item in node]
    if "operator" in node:
        operator = node["operator"]
        operands = operator["operands"]
        if operator["type"] == "conditional":
            branch = "true_value" if evaluate(operands["condition"], values, variables) else "false_value"
            return evaluate(operands[branch], values, variables)
        if operator["type"] == "property_accessor":
            return CONNECTION_STRING  # appInsights.properties.ConnectionString, known once deployed
        if operator["type"] == "equals":
            return evaluate(operands["operand_1"], values, variables) == evaluate(
                operands["operand_2"], values, variables
            )
        raise AssertionError(f"operator {operator['type']} is not evaluated here: extend evaluate()")
    if "function" in node:
        function = node["function"]
        args = [evaluate(arg, values, variables) for arg in function["parameters"].values()]
        match function["type"]:
            case "string":
                (value,) = args
                return json.dumps(value) if isinstance(value, bool) else str(value)
            case "empty":
                return not args[0]
            case "join":
                items, delimiter = args
                return delimiter.join(items)
            case "concat":
                return [item for arg in args for item in arg]
        raise AssertionError(f"function {function['type']} is not evaluated here: extend evaluate()")
    if set(node) == {"name", "value"}:
        return {"name": node["name"], "value": evaluate(node["value"], values, variables)}
    raise AssertionError(f"cannot evaluate {node!r}")


def module_defaults() -> dict[str, Any]:
    return {name: spec["default"] for name, spec in functionapp()["parameters"].items() if "default" in spec}


def deployed_settings(**overrides: Any) -> dict[str, str]:
    """The app settings the site gets for these module parameter values (defaults otherwise)."""
    values = {**module_defaults(), "transport": "storage", **REQUIRED, **overrides}
    variables = functionapp()["variables"]
    settings: dict[str, str] = {}
    for variable in app_setting_variables():
        for entry in evaluate(variable, values, variables):
            assert entry["name"] not in settings, f"{entry['name']} is set twice"
            settings[entry["name"]] = entry["value"]
    return settings


def settable_names() -> set[str]:
    """Every setting name any parameter values could emit: each variable walked, conditions ignored."""
    names = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) == {"name", "value"} and isinstance(node["name"], str):
                names.add(node["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for variable in app_setting_variables():
        walk(functionapp()["variables"][variable]["value"])
    return names


def app_reads(settings: Mapping[str, str]) -> Settings:
    return Settings.from_environ(settings)


# --- every setting is deployable or deliberately local -----------------------------------------------


def test_every_setting_is_set_by_the_deployment_or_local_only_with_a_reason():
    deployed = settable_names()
    for setting in SettingName:
        if setting in LOCAL_ONLY:
            assert setting.value not in deployed, f"{setting.value} is deployed but listed as local-only"
            assert len(LOCAL_ONLY[setting].split()) >= 5, f"{setting.value}: give the reason it stays local"
        else:
            assert setting.value in deployed, (
                f"{setting.value} is read by shared/settings.py but infra/modules/functionapp.bicep never sets it: "
                "add a parameter and an app setting, or list it in LOCAL_ONLY with the reason"
            )


def test_the_walk_sees_a_setting_the_site_does_not_get():
    # Guards the test above: only variables concatenated into appSettings count.
    assert "PREPOST_SUPPRESSION_RESOURCE_GROUP" in settable_names()
    assert "PREPOST_SUPPRESSION_RESOURCE_GROUP" not in deployed_settings()
    assert deployed_settings(suppressionResourceGroupName="rg-x")["PREPOST_SUPPRESSION_RESOURCE_GROUP"] == "rg-x"


def test_every_module_setting_parameter_is_a_main_parameter_with_the_same_default():
    # A setting parameter of the module that main.bicep does not pass could only ever hold its default.
    passed = main()["modules"]["functionApp"]["config"]["params"]
    main_parameters = main()["parameters"]
    for name, spec in functionapp()["parameters"].items():
        descriptions = [d["argument"] for d in spec.get("decorators", []) if d["type"] == "description"]
        if not any(text.startswith("PREPOST_") for text in descriptions):
            continue
        assert name in passed, f"main.bicep does not pass {name} to the function app"
        source = passed[name]
        if isinstance(source, str) and source in main_parameters and "default" in spec:
            assert main_parameters[source].get("default") == spec["default"] or name == "telemetry", (
                f"{name}: main.bicep's default differs from the module's"
            )


def setting_parameters_of_main() -> set[str]:
    """main.bicep's parameters that become an app setting (their description starts with its name)."""
    found = set()
    for name, spec in main()["parameters"].items():
        descriptions = [d["argument"] for d in spec.get("decorators", []) if d["type"] == "description"]
        if any(text.startswith("PREPOST_") for text in descriptions):
            found.add(name)
    return found


@pytest.mark.parametrize("parameters_file", ["main.parameters.json", "main.parameters.example.json"])
def test_every_setting_parameter_is_in_the_parameters_files(parameters_file: str):
    # main.parameters.json is what azd fills from its environment: a setting missing there could
    # only be changed by editing the file. The example is what an az deployment starts from.
    listed = set(json.loads((INFRA / parameters_file).read_text(encoding="utf-8"))["parameters"])
    assert {"maxErrors", "safetyCritical", "readinessConfigurationIds"} <= setting_parameters_of_main()
    missing = setting_parameters_of_main() - listed
    assert not missing, f"{parameters_file} does not list {sorted(missing)}"


# --- what the deployment writes, the app accepts -------------------------------------------------------


def test_default_deployment_gives_the_apps_own_defaults():
    deployed = app_reads(deployed_settings(telemetry=main()["parameters"]["telemetry"]["default"]))
    assert deployed.policy_defaults == RunPolicy()
    assert deployed.readiness_configurations == ()
    assert deployed.arm_buckets == {}
    assert deployed.suppression_grace == timedelta(minutes=60)
    assert deployed.max_task_attempts == 8
    # The one deliberate difference: main.bicep turns telemetry on (docs/operations.md).
    assert deployed.telemetry is True


def choices(name: str, spec: dict[str, Any]) -> list[Any]:
    allowed = [d["argument"] for d in spec.get("decorators", []) if d["type"] == "allowed"]
    if spec["type"] == "bool":
        return [True, False]
    if allowed and spec["type"] == "array":
        return [[], *([value] for value in allowed[0]), allowed[0]]
    if allowed:
        return list(allowed[0])
    return []


ENUMERABLE = [
    (name, value)
    for name, spec in parse(INFRA / "modules" / "functionapp.bicep")["parameters"].items()
    for value in choices(name, spec)
]


@pytest.mark.parametrize(("parameter", "value"), ENUMERABLE, ids=lambda v: json.dumps(v))
def test_every_allowed_parameter_value_gives_settings_the_app_accepts(parameter: str, value: Any):
    app_reads(deployed_settings(**{parameter: value}))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"safetyCritical": []}, lambda s: s.policy_defaults.safety_critical == ()),
        ({"safetyCritical": ["snapshot"]}, lambda s: s.policy_defaults.safety_critical == ("snapshot",)),
        ({"cancelOnFailure": False}, lambda s: s.policy_defaults.cancel_on_failure is False),
        ({"maxErrors": "10%"}, lambda s: s.policy_defaults.max_errors == "10%"),
        ({"readinessConfigurations": CONFIGURATION}, lambda s: s.readiness_configurations == (CONFIGURATION,)),
        ({"armBuckets": "reads=100/10,writes=50/5"}, lambda s: s.arm_buckets["writes"] == (50, 5.0)),
        (
            {"transport": "servicebus", "serviceBusSettlement": "explicit"},
            lambda s: s.servicebus_settlement.value == "explicit" and s.servicebus is not None,
        ),
    ],
    ids=["no-safety-critical", "snapshot-only", "never-cancel", "percent-budget", "readiness", "buckets", "explicit"],
)
def test_a_parameter_reaches_the_app_as_the_setting_it_names(overrides: dict[str, Any], expected):
    assert expected(app_reads(deployed_settings(**overrides)))


def test_storage_and_service_bus_connections_are_identity_based():
    settings = deployed_settings(transport="servicebus")
    assert settings[f"{STORAGE_CONNECTION}__accountName"] == REQUIRED["storageAccountName"]
    namespace = REQUIRED["serviceBusFullyQualifiedNamespace"]
    assert settings[f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace"] == namespace
    assert "PREPOST_SERVICEBUS_SETTLEMENT" not in deployed_settings(transport="storage")


# --- the pre-provision hook refuses what the app would refuse -------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["0", "3", "100000", "100001", "1000000", "10%", "0%", "100%", "101%", "0100%", "3.5", "-1", "%", "x%", "ten"],
)
def test_preprovision_accepts_an_error_budget_exactly_when_the_app_does(tmp_path: Path, value: str):
    try:
        ErrorBudget.parse(value)
        app_accepts = True
    except ValueError:
        app_accepts = False
    result, calls = run_hook("preprovision", tmp_path, {**PROVISION_ENV, "PREPOST_MAX_ERRORS": value})
    assert (result.returncode == 0) is app_accepts, result.stderr
    if not app_accepts:
        assert "PREPOST_MAX_ERRORS" in result.stderr
        assert calls == []


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("PREPOST_SAFETY_CRITICAL", '["snapshot", "start"]', True),
        ("PREPOST_SAFETY_CRITICAL", "[]", True),
        ("PREPOST_SAFETY_CRITICAL", "snapshot,start", False),
        ("PREPOST_ALLOWED_SUBSCRIPTION_IDS", "11111111-1111-1111-1111-111111111111", False),
        ("PREPOST_READINESS_CONFIGURATION_IDS", f'["{CONFIGURATION}"]', True),
        ("PREPOST_READINESS_CONFIGURATION_IDS", CONFIGURATION, False),
        ("PREPOST_READINESS_CONFIGURATION_IDS", '["mc-weekly"]', False),
        ("PREPOST_ALERT_ACTION_GROUP_IDS", "[]", True),
    ],
)
def test_preprovision_checks_the_optional_settings(tmp_path: Path, variable: str, value: str, accepted: bool):
    result, calls = run_hook("preprovision", tmp_path, {**PROVISION_ENV, variable: value})
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert variable in result.stderr
        assert calls == []
    if accepted and variable == "PREPOST_READINESS_CONFIGURATION_IDS":
        # What the hook lets through, the app accepts too.
        app_reads(deployed_settings(readinessConfigurations=",".join(json.loads(value))))
