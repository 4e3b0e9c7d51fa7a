"""azure.yaml, infra/main.parameters.json and the azd hooks agree with the templates.

azd cannot run here, so what it relies on is checked instead: the service it deploys carries the
tag azd looks for, every parameter it fills comes from the environment under a documented name,
the hooks are valid POSIX sh and read only outputs main.bicep declares, and the post-deploy hook
deploys the event subscription with the very parameters main.bicep would. The hooks themselves
run here against a stand-in for the Azure CLI that records its arguments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pycep
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PLACEHOLDER = re.compile(r"^\$\{([A-Z][A-Z0-9_]*)(?:=([^}]*))?\}$")


@cache
def azure_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))


@cache
def bicep(path: str) -> dict[str, Any]:
    return pycep.BicepParser().parse(file_path=INFRA / path)


def parameters_file() -> dict[str, Any]:
    return json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]


def placeholders() -> dict[str, tuple[str, str | None]]:
    """Parameter -> (environment variable, default) of infra/main.parameters.json."""
    found = {}
    for name, entry in parameters_file().items():
        match = PLACEHOLDER.match(entry["value"])
        assert match, f"{name}: {entry['value']!r} is not an azd ${{VARIABLE}} or ${{VARIABLE=default}}"
        found[name] = (match.group(1), match.group(2))
    return found


def hook_paths() -> dict[str, Path]:
    return {event: ROOT / hook["posix"]["run"] for event, hook in azure_yaml()["hooks"].items()}


def test_azure_yaml_deploys_the_function_app_from_the_repository_root():
    project = azure_yaml()
    assert project["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert (INFRA / "main.bicep").is_file()
    assert list(project["services"]) == ["prepost"]
    service = project["services"]["prepost"]
    assert service["host"] == "function"
    assert service["language"] == "python"
    assert service["remoteBuild"] is True
    assert (ROOT / service["project"] / "function_app.py").is_file()
    assert (ROOT / service["project"] / "requirements.txt").is_file()


def test_the_function_app_carries_the_tag_azd_deploys_to():
    functionapp = bicep("modules/functionapp.bicep")
    service = next(iter(azure_yaml()["services"]))
    assert functionapp["variables"]["azdServiceName"]["value"] == service
    tags = functionapp["resources"]["site"]["config"]["tags"]["function"]
    assert tags["type"] == "union"
    added = [arg for arg in tags["parameters"].values() if isinstance(arg, dict)]
    # pycep keeps the quotes of a quoted key.
    assert [{key.strip("'"): value for key, value in arg.items()} for arg in added] == [
        {"azd-service-name": "azdServiceName"}
    ]


def test_parameters_file_fills_existing_parameters_from_the_environment():
    template = bicep("main.bicep")["parameters"]
    filled = placeholders()
    assert set(filled) <= set(template), f"unknown parameters: {set(filled) - set(template)}"
    required = {name for name, spec in template.items() if spec.get("default") is None}
    assert required <= set(filled), f"azd would prompt for {required - set(filled)}"
    for name, (_, default) in filled.items():
        allowed = [d["argument"] for d in template[name]["decorators"] if d["type"] == "allowed"]
        if default is not None and allowed:
            assert default in allowed[0], f"{name} defaults to {default!r}, not one of {allowed[0]}"


def test_every_environment_variable_is_documented():
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("## Deploying with azd", 1)[1].split("\n## ", 1)[0]
    for variable, _ in placeholders().values():
        assert f"`{variable}`" in section, f"{variable} is not explained in docs/deploy.md, 'Deploying with azd'"


def test_hooks_exist_are_executable_and_parse():
    hooks = hook_paths()
    assert set(hooks) == {"preprovision", "postdeploy"}
    for event, path in hooks.items():
        assert path.is_file(), f"{event}: {path} is missing"
        assert path.stat().st_mode & stat.S_IXUSR, f"{path.name} is not executable"
        assert path.read_text().startswith("#!/bin/sh\n")
        assert azure_yaml()["hooks"][event]["posix"]["shell"] == "sh"
        subprocess.run(["sh", "-n", str(path)], check=True)


def test_postdeploy_reads_only_outputs_main_bicep_declares():
    outputs = set(bicep("main.bicep")["outputs"])
    script = hook_paths()["postdeploy"].read_text()
    used = set(re.findall(r"\b(PREPOST_[A-Z_]+)\b", script)) - {"PREPOST_FUNCTION_WAIT_SECONDS"}
    assert used and used <= outputs, f"not outputs of main.bicep: {used - outputs}"


def test_event_subscription_parameters_output_matches_the_module_main_deploys():
    main = bicep("main.bicep")
    output = main["outputs"]["PREPOST_EVENT_SUBSCRIPTION_PARAMETERS"]["value"]["function"]
    assert output["type"] == "string"
    as_parameters = output["parameters"]["value_to_convert"]
    module = main["modules"]["eventSubscription"]["config"]["config"]["params"]
    assert {name: entry["value"] for name, entry in as_parameters.items()} == module
    wanted = bicep("modules/eventgrid-subscription.bicep")["parameters"]
    required = {name for name, spec in wanted.items() if spec.get("default") is None}
    assert required <= set(as_parameters) <= set(wanted)


# --- the hooks, run against a stand-in for the Azure CLI ---------------------------------------------

FAKE_AZ = """#!/bin/sh
echo "$*" >> "$AZ_CALLS"
case "$*" in
  "account show"*) echo 00000000-0000-0000-0000-0000000000aa ;;
  "provider show"*) echo "${AZ_PROVIDER_STATE:-Registered}" ;;
  "resource show"*) echo "$5" ;;
  "functionapp function show"*) echo maintenance_event_intake ;;
  "deployment group create"*) echo Succeeded ;;
  *) echo '{}' ;;
esac
"""

CONFIGURATION = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-patching"
    "/providers/Microsoft.Maintenance/maintenanceConfigurations/mc-weekly"
)


def run_hook(event: str, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    az = bin_dir / "az"
    az.write_text(FAKE_AZ)
    az.chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "AZ_CALLS": str(calls),
        **env,
    }
    result = subprocess.run(
        ["sh", str(hook_paths()[event])], env=environment, capture_output=True, text=True, timeout=60
    )
    return result, calls.read_text().splitlines()


PROVISION_ENV = {
    "AZURE_RESOURCE_GROUP": "rg-prepost",
    "PREPOST_MAINTENANCE_CONFIGURATION_ID": CONFIGURATION,
    "PREPOST_MAINTENANCE_CONFIGURATION_LOCATION": "westeurope",
    "PREPOST_TARGET_SUBSCRIPTION_IDS": '["22222222-2222-2222-2222-222222222222"]',
}


def test_preprovision_checks_the_configuration_and_the_resource_providers(tmp_path: Path):
    result, calls = run_hook("preprovision", tmp_path, PROVISION_ENV)
    assert result.returncode == 0, result.stderr
    assert f"resource show --ids {CONFIGURATION} --query id -o tsv" in calls
    checked = {(c.split()[3], c.split()[5]) for c in calls if c.startswith("provider show")}
    assert ("11111111-1111-1111-1111-111111111111", "Microsoft.Maintenance") in checked
    assert ("00000000-0000-0000-0000-0000000000aa", "Microsoft.Web") in checked


@pytest.mark.parametrize("missing", sorted(PROVISION_ENV))
def test_preprovision_names_a_missing_setting(tmp_path: Path, missing: str):
    env = {name: value for name, value in PROVISION_ENV.items() if name != missing}
    result, calls = run_hook("preprovision", tmp_path, env)
    assert result.returncode == 1
    assert missing in result.stderr
    assert calls == []


def test_preprovision_refuses_an_unregistered_provider(tmp_path: Path):
    result, _ = run_hook("preprovision", tmp_path, {**PROVISION_ENV, "AZ_PROVIDER_STATE": "NotRegistered"})
    assert result.returncode == 1
    assert "az provider register" in result.stderr


def test_postdeploy_deploys_the_event_subscription_module_with_mains_parameters(tmp_path: Path):
    parameters = json.dumps({"systemTopicName": {"value": "prepost-topic"}})
    env = {
        "AZURE_RESOURCE_GROUP": "rg-prepost",
        "PREPOST_FUNCTION_APP_NAME": "prepost-func-abc",
        "PREPOST_INTAKE_FUNCTION": "maintenance_event_intake",
        "PREPOST_CONFIGURATION_SUBSCRIPTION_ID": "11111111-1111-1111-1111-111111111111",
        "PREPOST_CONFIGURATION_RESOURCE_GROUP": "rg-patching",
        "PREPOST_EVENT_TOPIC_NAME": "prepost-topic",
        "PREPOST_EVENT_SUBSCRIPTION_PARAMETERS": parameters,
    }
    result, calls = run_hook("postdeploy", tmp_path, env)
    assert result.returncode == 0, result.stderr
    deploy = next(call for call in calls if call.startswith("deployment group create"))
    assert "--subscription 11111111-1111-1111-1111-111111111111 --resource-group rg-patching" in deploy
    assert "modules/eventgrid-subscription.bicep" in deploy
    assert f"--parameters {parameters}" in deploy
    assert calls.index(deploy) > next(i for i, c in enumerate(calls) if c.startswith("functionapp function show"))


def test_postdeploy_without_provision_outputs_says_so(tmp_path: Path):
    result, calls = run_hook("postdeploy", tmp_path, {"AZURE_RESOURCE_GROUP": "rg-prepost"})
    assert result.returncode == 1
    assert "run azd provision first" in result.stderr
    assert calls == []


def test_sh_is_available():
    assert shutil.which("sh")
