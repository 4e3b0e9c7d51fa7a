"""Pre and post scripts (hooks): what a maintenance configuration declares, read from its tags.

| tag on the configuration | value | default |
|---|---|---|
| ``prepost-hook-pre-linux`` / ``prepost-hook-post-linux`` | a blob name in ``prepost-hooks`` (note 1) | none |
| ``prepost-hook-pre-windows`` / ``prepost-hook-post-windows`` | same | none |
| ``prepost-hook-timeout-seconds`` | whole seconds, 30 to 1500 | 300 |
| ``prepost-hook-success-codes`` | comma-separated exit codes | ``0`` |
| ``prepost-hook-pre-failure`` | ``cancel`` (the run is cancelled, like a failed snapshot) or ``warn`` | ``cancel`` |
| ``prepost-hook-backend`` | ``run-command`` or ``automation`` | ``run-command`` |
| ``prepost-hook-automation-account`` | resource id of the Automation account (``automation`` backend) | none |

Note 1: the blob container ``prepost-hooks`` of the app's own storage account; with the
``automation`` backend the value names a runbook of that account instead.

| tag on a machine (VM or Arc server) | value |
|---|---|
| ``prepost-hook-pre`` / ``prepost-hook-post`` | a script for this machine instead of the configuration's, or ``none`` |
| ``prepost-hook-worker-group`` | the hybrid worker group holding this machine (``automation`` backend) |

Unlike the policy tags (where a typo keeps a default), a hook declaration that does not parse is
an error: the operator asked for something to happen inside the machines, and guessing could
skip stopping a service before patching. :func:`hooks_from_tags` raises
:class:`InvalidHookDeclaration` listing every problem; the planner records it and fails the pre
scripts, which cancels the run unless ``prepost-hook-pre-failure=warn`` parsed. Design and a
worked example: docs/hooks.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from shared.errors import PermanentError

HOOK_TAG_PREFIX = "prepost-hook-"
DEFAULT_TIMEOUT_SECONDS = 300
MIN_TIMEOUT_SECONDS = 30
MAX_TIMEOUT_SECONDS = 1500
"""25 minutes: a script still running then would outlast the 30-minute bound on one task's wait."""
MACHINE_OVERRIDE_NONE = "none"
# Blob names: 1 to 1024 characters; kept to a safe subset (no "..", no leading "/", no spaces)
# so a tag value can never name something outside the container or be misread.
_BLOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,255}$")
_RESOURCE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Automation/automationAccounts/[^/]+$",
    re.IGNORECASE,
)
_GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_EXIT_CODE_RANGE = (-(2**31), 2**32 - 1)
"""Windows reports exit codes as unsigned 32-bit numbers (3010: reboot required), Linux 0-255."""


class ScriptOs(str, Enum):
    LINUX = "linux"
    WINDOWS = "windows"

    @classmethod
    def parse(cls, value: str | None) -> ScriptOs | None:
        lowered = (value or "").strip().lower()
        return next((os for os in cls if os.value == lowered), None)


class HookPhase(str, Enum):
    PRE = "pre"
    POST = "post"


class PreFailure(str, Enum):
    CANCEL = "cancel"
    """A failed pre script is safety-critical: the run is cancelled, as after a failed snapshot."""
    WARN = "warn"
    """A failed pre script is recorded as failed, and patching goes ahead."""


class HookBackend(str, Enum):
    RUN_COMMAND = "run-command"
    """Managed Run Command on Azure VMs and Arc-enabled servers."""
    AUTOMATION = "automation"
    """A runbook job on the hybrid worker group that holds the machine."""


class InvalidHookDeclaration(PermanentError):
    """The configuration's (or a machine's) hook tags do not parse; ``problems`` says each one."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid hook declaration: " + "; ".join(self.problems))


@dataclass(frozen=True)
class HookDeclaration:
    """The scripts of a configuration and how their outcome is judged."""

    scripts: Mapping[str, str] = field(default_factory=dict)
    """``"<phase>-<os>"`` (``pre-linux``) to a blob name (or runbook name)."""
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    success_exit_codes: tuple[int, ...] = (0,)
    pre_failure: PreFailure = PreFailure.CANCEL
    backend: HookBackend = HookBackend.RUN_COMMAND
    automation_account: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.scripts)

    @property
    def pre_is_safety_critical(self) -> bool:
        return self.pre_failure is PreFailure.CANCEL

    def script_for(self, phase: HookPhase, os: ScriptOs) -> str | None:
        return self.scripts.get(f"{phase.value}-{os.value}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "scripts": dict(self.scripts),
            "timeout_seconds": self.timeout_seconds,
            "success_exit_codes": list(self.success_exit_codes),
            "pre_failure": self.pre_failure.value,
            "backend": self.backend.value,
            "automation_account": self.automation_account,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HookDeclaration:
        return cls(
            scripts=dict(values.get("scripts") or {}),
            timeout_seconds=int(values.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
            success_exit_codes=tuple(int(code) for code in values.get("success_exit_codes", (0,))),
            pre_failure=PreFailure(values.get("pre_failure", PreFailure.CANCEL.value)),
            backend=HookBackend(values.get("backend", HookBackend.RUN_COMMAND.value)),
            automation_account=values.get("automation_account"),
        )


def has_hook_tags(tags: Mapping[str, str] | None) -> bool:
    return any(str(key).lower().startswith(HOOK_TAG_PREFIX) for key in (tags or {}))


def hooks_from_tags(tags: Mapping[str, str] | None) -> HookDeclaration:
    """The declaration in a configuration's tags (case-insensitive names, trimmed values).

    No hook tag at all gives a declaration that is not :attr:`~HookDeclaration.enabled`.

    Raises:
        InvalidHookDeclaration: any tag that does not parse, an unknown ``prepost-hook-`` tag,
            settings without any script, or the Automation backend without its account.
    """
    lowered = {
        str(key).lower(): str(value).strip()
        for key, value in (tags or {}).items()
        if str(key).lower().startswith(HOOK_TAG_PREFIX)
    }
    if not lowered:
        return HookDeclaration()
    problems: list[str] = []
    scripts: dict[str, str] = {}
    for phase in HookPhase:
        for os in ScriptOs:
            name = f"{phase.value}-{os.value}"
            raw = lowered.pop(HOOK_TAG_PREFIX + name, None)
            if raw is None:
                continue
            if _BLOB_NAME.match(raw) and ".." not in raw:
                scripts[name] = raw
            else:
                problems.append(f"tag {HOOK_TAG_PREFIX}{name}={raw[:60]!r} is not a script name ({_NAME_RULE})")

    timeout = DEFAULT_TIMEOUT_SECONDS
    raw = lowered.pop(HOOK_TAG_PREFIX + "timeout-seconds", None)
    if raw is not None:
        if raw.isascii() and raw.isdigit() and len(raw) <= 6 and MIN_TIMEOUT_SECONDS <= int(raw) <= MAX_TIMEOUT_SECONDS:
            timeout = int(raw)
        else:
            problems.append(
                f"tag {HOOK_TAG_PREFIX}timeout-seconds={raw[:40]!r} is not a whole number of seconds "
                f"from {MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS}"
            )

    codes: tuple[int, ...] = (0,)
    raw = lowered.pop(HOOK_TAG_PREFIX + "success-codes", None)
    if raw is not None:
        parsed = _exit_codes(raw)
        if parsed is None:
            problems.append(
                f"tag {HOOK_TAG_PREFIX}success-codes={raw[:60]!r} is not a comma-separated list of exit codes"
            )
        else:
            codes = parsed

    pre_failure = PreFailure.CANCEL
    raw = lowered.pop(HOOK_TAG_PREFIX + "pre-failure", None)
    if raw is not None:
        try:
            pre_failure = PreFailure(raw.lower())
        except ValueError:
            problems.append(f"tag {HOOK_TAG_PREFIX}pre-failure={raw[:40]!r} is not cancel/warn")

    backend = HookBackend.RUN_COMMAND
    raw = lowered.pop(HOOK_TAG_PREFIX + "backend", None)
    if raw is not None:
        try:
            backend = HookBackend(raw.lower())
        except ValueError:
            problems.append(f"tag {HOOK_TAG_PREFIX}backend={raw[:40]!r} is not run-command/automation")

    account = lowered.pop(HOOK_TAG_PREFIX + "automation-account", None)
    if account is not None and not _RESOURCE_ID.match(account):
        problems.append(
            f"tag {HOOK_TAG_PREFIX}automation-account={account[:80]!r} is not the resource id of an Automation account"
        )
    if backend is HookBackend.AUTOMATION and account is None:
        problems.append(f"the automation backend needs the tag {HOOK_TAG_PREFIX}automation-account")

    for key in sorted(lowered):
        problems.append(f"tag {key} is not a prepost hook tag")
    if not scripts and not problems:
        problems.append(
            "hook settings without any script: name one with prepost-hook-pre-linux, prepost-hook-post-linux, "
            "prepost-hook-pre-windows or prepost-hook-post-windows"
        )
    if problems:
        raise InvalidHookDeclaration(problems)
    return HookDeclaration(
        scripts=scripts,
        timeout_seconds=timeout,
        success_exit_codes=codes,
        pre_failure=pre_failure,
        backend=backend,
        automation_account=account,
    )


@dataclass(frozen=True)
class MachineOverride:
    """A machine's own hook tags: another script per phase, ``none``, or its worker group."""

    scripts: Mapping[HookPhase, str | None] = field(default_factory=dict)
    """Present phases override the configuration; None means: no script on this machine."""
    worker_group: str | None = None

    def script_for(self, phase: HookPhase, declared: str | None) -> str | None:
        return self.scripts.get(phase, declared)


def machine_override_from_tags(tags: Mapping[str, str] | None) -> MachineOverride:
    """The override in a machine's tags.

    Raises:
        InvalidHookDeclaration: a value that is neither a script name nor ``none``.
    """
    lowered = {str(key).lower(): str(value).strip() for key, value in (tags or {}).items()}
    problems: list[str] = []
    scripts: dict[HookPhase, str | None] = {}
    for phase in HookPhase:
        raw = lowered.get(f"prepost-hook-{phase.value}")
        if raw is None:
            continue
        if raw.lower() == MACHINE_OVERRIDE_NONE:
            scripts[phase] = None
        elif _BLOB_NAME.match(raw) and ".." not in raw:
            scripts[phase] = raw
        else:
            problems.append(
                f"machine tag prepost-hook-{phase.value}={raw[:60]!r} is neither 'none' "
                f"nor a script name ({_NAME_RULE})"
            )
    group = lowered.get("prepost-hook-worker-group")
    if group is not None and not _GROUP_NAME.match(group):
        problems.append(f"machine tag prepost-hook-worker-group={group[:60]!r} is not a hybrid worker group name")
    if problems:
        raise InvalidHookDeclaration(problems)
    return MachineOverride(scripts=scripts, worker_group=group)


_NAME_RULE = "letters, digits, '.', '_', '-' and '/', at most 256 characters, no '..'"


def _exit_codes(raw: str) -> tuple[int, ...] | None:
    parts = [part.strip() for part in raw.split(",")]
    if not parts or len(parts) > 32:
        return None
    codes = []
    for part in parts:
        if not re.fullmatch(r"-?\d{1,10}", part):
            return None
        code = int(part)
        if not _EXIT_CODE_RANGE[0] <= code <= _EXIT_CODE_RANGE[1]:
            return None
        codes.append(code)
    return tuple(dict.fromkeys(codes))
