"""The hook declaration read from a configuration's tags, and a machine's override."""

from __future__ import annotations

import pytest

from shared.models.hooks import (
    DEFAULT_TIMEOUT_SECONDS,
    HookBackend,
    HookDeclaration,
    HookPhase,
    InvalidHookDeclaration,
    PreFailure,
    ScriptOs,
    hooks_from_tags,
    machine_override_from_tags,
)
from shared.models.policy import RunPolicy

ACCOUNT = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Automation/automationAccounts/aa-patching"


def test_no_hook_tags_declare_nothing():
    declaration = hooks_from_tags({"prepost-snapshot-disks": "all", "owner": "ops"})
    assert not declaration.enabled
    assert declaration == HookDeclaration()


def test_a_full_declaration_is_read_case_insensitively_and_trimmed():
    declaration = hooks_from_tags(
        {
            "Prepost-Hook-Pre-Linux": " nginx/stop.sh ",
            "prepost-hook-post-linux": "nginx/start-and-check.sh",
            "PREPOST-HOOK-PRE-WINDOWS": "iis/stop-pool.ps1",
            "prepost-hook-post-windows": "iis/start-pool.ps1",
            "prepost-hook-timeout-seconds": "120",
            "prepost-hook-success-codes": "0, 3010,0",
            "prepost-hook-pre-failure": "WARN",
        }
    )
    assert declaration.enabled
    assert declaration.script_for(HookPhase.PRE, ScriptOs.LINUX) == "nginx/stop.sh"
    assert declaration.script_for(HookPhase.POST, ScriptOs.WINDOWS) == "iis/start-pool.ps1"
    assert declaration.timeout_seconds == 120
    assert declaration.success_exit_codes == (0, 3010)
    assert declaration.pre_failure is PreFailure.WARN and not declaration.pre_is_safety_critical
    assert declaration.backend is HookBackend.RUN_COMMAND
    assert HookDeclaration.from_dict(declaration.to_dict()) == declaration


def test_defaults_cancel_on_a_failed_pre_script():
    declaration = hooks_from_tags({"prepost-hook-pre-linux": "a.sh"})
    assert declaration.timeout_seconds == DEFAULT_TIMEOUT_SECONDS
    assert declaration.success_exit_codes == (0,)
    assert declaration.pre_is_safety_critical
    assert declaration.script_for(HookPhase.POST, ScriptOs.LINUX) is None


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ({"prepost-hook-pre-linux": "../secrets.sh"}, "is not a script name"),
        ({"prepost-hook-pre-linux": "/etc/passwd"}, "is not a script name"),
        ({"prepost-hook-pre-linux": "has space.sh"}, "is not a script name"),
        ({"prepost-hook-pre-linux": "a.sh", "prepost-hook-timeout-seconds": "10"}, "from 30 to 1500"),
        ({"prepost-hook-pre-linux": "a.sh", "prepost-hook-timeout-seconds": "5m"}, "from 30 to 1500"),
        ({"prepost-hook-pre-linux": "a.sh", "prepost-hook-timeout-seconds": "²"}, "from 30 to 1500"),
        ({"prepost-hook-pre-linux": "a.sh", "prepost-hook-success-codes": "0;1"}, "list of exit codes"),
        ({"prepost-hook-pre-linux": "a.sh", "prepost-hook-success-codes": "99999999999"}, "list of exit codes"),
        ({"prepost-hook-pre-linux": "a.sh", "prepost-hook-pre-failure": "ignore"}, "is not cancel/warn"),
        ({"prepost-hook-pre-linux": "a.sh", "prepost-hook-backend": "ssh"}, "is not run-command/automation"),
        ({"prepost-hook-pre-linux": "a.sh", "prepost-hook-backend": "automation"}, "needs the tag"),
        ({"prepost-hook-pre-linux": "a.sh", "prepost-hook-automation-account": "aa"}, "Automation account"),
        ({"prepost-hook-pre-linx": "a.sh"}, "is not a prepost hook tag"),
        ({"prepost-hook-timeout-seconds": "60"}, "without any script"),
    ],
)
def test_a_declaration_that_does_not_parse_is_an_error_naming_the_problem(tags, problem):
    with pytest.raises(InvalidHookDeclaration) as raised:
        hooks_from_tags(tags)
    assert any(problem in p for p in raised.value.problems), raised.value.problems


def test_every_problem_is_listed_at_once():
    with pytest.raises(InvalidHookDeclaration) as raised:
        hooks_from_tags({"prepost-hook-pre-linux": "..", "prepost-hook-pre-failure": "x", "prepost-hook-zzz": "1"})
    assert len(raised.value.problems) == 3


def test_the_automation_backend_with_its_account():
    declaration = hooks_from_tags(
        {
            "prepost-hook-pre-windows": "Stop-AppPool",
            "prepost-hook-backend": "automation",
            "prepost-hook-automation-account": ACCOUNT,
        }
    )
    assert declaration.backend is HookBackend.AUTOMATION and declaration.automation_account == ACCOUNT


def test_hook_tags_are_not_reported_as_unknown_policy_tags():
    policy = RunPolicy.from_tags({"prepost-hook-pre-linux": "a.sh", "prepost-snapshot-disk": "all"})
    assert policy.findings == ("tag prepost-snapshot-disk is not a prepost policy tag; ignored",)


def test_a_machine_override_replaces_or_removes_a_script():
    override = machine_override_from_tags({"Prepost-Hook-Pre": "db/stop.sh", "prepost-hook-post": "NONE"})
    assert override.script_for(HookPhase.PRE, "nginx/stop.sh") == "db/stop.sh"
    assert override.script_for(HookPhase.POST, "nginx/start.sh") is None
    assert machine_override_from_tags({}).script_for(HookPhase.PRE, "a.sh") == "a.sh"


def test_a_machine_override_that_does_not_parse_is_an_error():
    with pytest.raises(InvalidHookDeclaration, match="neither 'none' nor a script name"):
        machine_override_from_tags({"prepost-hook-pre": "../x"})
    with pytest.raises(InvalidHookDeclaration, match="hybrid worker group"):
        machine_override_from_tags({"prepost-hook-worker-group": "bad group"})
