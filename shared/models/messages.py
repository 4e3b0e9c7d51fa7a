"""Work messages: what travels through the queues, whatever the transport.

Every message is a small JSON object with a ``kind``. Large lists (a run's machines) never
travel in a message: Storage queue messages are limited to 64 KB, so handlers read them from
the run records instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, ClassVar, Self

from shared.errors import InvalidMessage
from shared.models.events import format_time, parse_time
from shared.models.run import Action, Phase, TaskRecord, TaskStatus, task_id
from shared.names import QueueName

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class WorkMessage:
    """Base of every message. ``message_id`` is deterministic so duplicate sends can be dropped."""

    kind: ClassVar[str] = ""
    queue: ClassVar[QueueName]
    optional_fields: ClassVar[tuple[str, ...]] = ("resend",)
    """Fields added after schema version 1 shipped: left out of the body while they hold their
    default, so an instance still running the earlier code (during a deployment) reads the
    messages it can act on instead of parking them for unknown fields."""

    run_key: str
    resend: int = 0
    """How many times this very message was sent again as it was (0: the first send). Part of
    the message id, so a re-send is never taken for a duplicate: Service Bus silently drops a
    MessageId it saw within its duplicate-detection window (10 minutes by default)."""

    @property
    def message_id(self) -> str:
        return self._with_resend(f"{self.run_key}:{self.kind}")

    def _with_resend(self, base: str) -> str:
        return f"{base}:resend:{self.resend}" if self.resend else base

    def resent(self) -> Self:
        """The same message, to be sent again (a fresh id, everything else unchanged)."""
        return replace(self, resend=self.resend + 1)

    @property
    def properties(self) -> dict[str, str | int]:
        """Application properties (Service Bus) that let an operator filter without decoding."""
        return {"kind": self.kind, "runKey": self.run_key}

    def to_json(self) -> str:
        values = asdict(self)
        defaults = {f.name: f.default for f in fields(self)}
        for name in self.optional_fields:
            if values[name] == defaults[name]:
                del values[name]
        return json.dumps({"kind": self.kind, "v": SCHEMA_VERSION, **_plain(values)}, separators=(",", ":"))


@dataclass(frozen=True)
class PlanPhase(WorkMessage):
    """Resolve the machines of a phase and fan out its tasks."""

    kind: ClassVar[str] = "plan-phase"
    queue: ClassVar[QueueName] = QueueName.PLAN
    optional_fields: ClassVar[tuple[str, ...]] = ("resend",)
    phase: Phase = Phase.PRE
    attempt: int = 1
    """Grows when the post phase waits for unfinished pre-work."""

    @property
    def message_id(self) -> str:
        return self._with_resend(f"{self.run_key}:{self.kind}:{self.phase.value}:{self.attempt}")

    def next_attempt(self) -> PlanPhase:
        return replace(self, attempt=self.attempt + 1)

    @property
    def properties(self) -> dict[str, str | int]:
        return {**super().properties, "phase": self.phase.value}


@dataclass(frozen=True)
class SafetyNet(WorkMessage):
    """A supervision message due at a moment (``due``), whatever the transport's delay limit.

    A transport hides a message for a bounded time (7 days on Storage queues), and a message
    may also arrive early (an operator's replay). So the handler compares ``due`` with the
    clock and, when it is early, sends the message on again (:meth:`resent`) instead of acting.
    """

    optional_fields: ClassVar[tuple[str, ...]] = ("resend", "due")
    due: str | None = None
    """When to act (ISO 8601 UTC); None: at once (messages from before ``due`` existed)."""

    def due_at(self) -> datetime | None:
        return parse_time(self.due) if self.due else None


@dataclass(frozen=True)
class CheckPreDeadline(SafetyNet):
    """Due at the cancellation deadline: cancel the run if the pre-work is not done by then."""

    kind: ClassVar[str] = "check-pre-deadline"
    queue: ClassVar[QueueName] = QueueName.PLAN


@dataclass(frozen=True)
class PostFallback(SafetyNet):
    """Due after the window plus grace: make sure the post phase runs and finishes.

    If no post-event came, the post phase is started by prepost; if it is stuck (its plan or
    task messages ended in poison), they are sent again. Until the post phase is final the
    message comes back (``sweep``) a bounded number of times.
    """

    kind: ClassVar[str] = "post-fallback"
    queue: ClassVar[QueueName] = QueueName.PLAN
    optional_fields: ClassVar[tuple[str, ...]] = ("resend", "due", "sweep", "cause")
    sweep: int = 0
    """Which look this is after the first (0: the first)."""
    cause: str = ""
    """Why the post phase is due now when it is not the end of the window (a cancelled run)."""

    @property
    def message_id(self) -> str:
        cause = f":{self.cause}" if self.cause else ""
        return self._with_resend(f"{self.run_key}:{self.kind}{cause}:{self.sweep}")

    def next_sweep(self, due: datetime) -> PostFallback:
        return replace(self, sweep=self.sweep + 1, resend=0, due=format_time(due))


@dataclass(frozen=True)
class TaskMessage(WorkMessage):
    """One action on one target. ``attempt`` counts from 1 and grows on each re-queue.

    A long Azure operation (a VM start, snapshots) is begun by one delivery and looked at again
    by scheduled follow-ups of the same attempt: ``checks`` counts them and ``waiting_since``
    says when the operation began, which bounds the wait (see ``shared.usecases.task_runner``).
    """

    kind: ClassVar[str] = "task"
    queue: ClassVar[QueueName] = QueueName.VM_TASKS
    optional_fields: ClassVar[tuple[str, ...]] = ("resend", "checks", "waiting_since")
    phase: Phase = Phase.PRE
    action: Action = Action.START_VM
    target: str = ""
    attempt: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    checks: int = 0
    """Follow-ups so far of the operation this attempt began (0: not a follow-up)."""
    waiting_since: str | None = None
    """When this attempt began its long operation (ISO 8601 UTC); set on the first follow-up."""

    @property
    def task_id(self) -> str:
        return task_id(self.phase, self.action, self.target)

    @property
    def message_id(self) -> str:
        # Every follow-up needs an id of its own: Service Bus drops a repeated MessageId.
        base = f"{self.run_key}:{self.task_id}:{self.attempt}"
        return self._with_resend(f"{base}:check:{self.checks}" if self.checks else base)

    @property
    def properties(self) -> dict[str, str | int]:
        return {
            **super().properties,
            "phase": self.phase.value,
            "action": self.action.value,
            "target": self.target,
            "attempt": self.attempt,
            **({"checks": self.checks} if self.checks else {}),
        }

    @property
    def is_follow_up(self) -> bool:
        """True when an earlier delivery of this attempt began the operation this one looks at."""
        return self.checks > 0

    def next_attempt(self) -> TaskMessage:
        """The same task, one attempt later (same class, so monitoring stays monitoring).

        A new attempt begins its operation afresh: no follow-ups yet, and its own time bound.
        """
        return replace(self, attempt=self.attempt + 1, checks=0, waiting_since=None, resend=0)

    def follow_up(self, *, waiting_since: str) -> TaskMessage:
        """The same attempt, one look later. ``waiting_since`` is kept once set."""
        return replace(self, checks=self.checks + 1, waiting_since=self.waiting_since or waiting_since, resend=0)


@dataclass(frozen=True)
class MonitoringMessage(TaskMessage):
    """A monitoring task (per subscription); always on a Storage queue."""

    kind: ClassVar[str] = "monitoring"
    queue: ClassVar[QueueName] = QueueName.MONITORING


@dataclass(frozen=True)
class TaskOutcome(WorkMessage):
    """The result of one task, for the outcome recorder."""

    kind: ClassVar[str] = "outcome"
    queue: ClassVar[QueueName] = QueueName.OUTCOMES
    optional_fields: ClassVar[tuple[str, ...]] = ("resend",)
    phase: Phase = Phase.PRE
    action: Action = Action.START_VM
    target: str = ""
    status: TaskStatus = TaskStatus.SUCCEEDED
    detail: str = ""
    attempts: int = 1
    started_at: str | None = None
    finished_at: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return task_id(self.phase, self.action, self.target)

    @property
    def message_id(self) -> str:
        return self._with_resend(f"{self.run_key}:{self.task_id}:outcome:{self.status.value}:{self.attempts}")


def task_message_for(task: TaskRecord, *, resend: int = 0) -> TaskMessage:
    """The message that carries out ``task``, rebuilt from its record (to send it again)."""
    cls = MonitoringMessage if task.action.is_monitoring else TaskMessage
    return cls(
        run_key=task.run_key,
        phase=task.phase,
        action=task.action,
        target=task.target,
        attempt=max(task.attempts, 1),
        options=dict(task.options),
        resend=resend,
    )


_KINDS: dict[str, type[WorkMessage]] = {
    cls.kind: cls for cls in (PlanPhase, CheckPreDeadline, PostFallback, TaskMessage, MonitoringMessage, TaskOutcome)
}
_ENUMS = {"phase": Phase, "action": Action, "status": TaskStatus}
# The JSON type of every other field: a body of the right shape but the wrong types would
# otherwise decode and then fail on every delivery instead of being parked at once.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "run_key": (str,),
    "resend": (int,),
    "due": (str, type(None)),
    "sweep": (int,),
    "cause": (str,),
    "attempt": (int,),
    "target": (str,),
    "options": (dict,),
    "checks": (int,),
    "waiting_since": (str, type(None)),
    "detail": (str,),
    "attempts": (int,),
    "started_at": (str, type(None)),
    "finished_at": (str, type(None)),
    "data": (dict,),
}


def decode_message(body: str | bytes) -> WorkMessage:
    """Parse a message body produced by :meth:`WorkMessage.to_json`.

    Raises:
        InvalidMessage: not JSON, unknown kind, newer schema, or fields that do not fit.
    """
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidMessage(f"message is not JSON: {error}") from error
    if not isinstance(raw, dict):
        raise InvalidMessage("message must be a JSON object")
    kind = raw.pop("kind", None)
    version = raw.pop("v", None)
    cls = _KINDS.get(kind)
    if cls is None:
        raise InvalidMessage(f"unknown message kind {kind!r}")
    if version != SCHEMA_VERSION:
        raise InvalidMessage(f"message schema version {version!r} is not {SCHEMA_VERSION}")
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise InvalidMessage(f"{kind} message has unknown fields {sorted(unknown)}")
    wrong = sorted(
        key
        for key, value in raw.items()
        if key in _JSON_TYPES and (not isinstance(value, _JSON_TYPES[key]) or isinstance(value, bool))
    )
    if wrong:
        raise InvalidMessage(f"{kind} message is malformed: fields of the wrong type {wrong}")
    try:
        values = {key: (_ENUMS[key](value) if key in _ENUMS else value) for key, value in raw.items()}
        message = cls(**values)
    except (TypeError, ValueError) as error:
        raise InvalidMessage(f"{kind} message is malformed: {error}") from error
    if not message.run_key:
        raise InvalidMessage(f"{kind} message has no run_key")
    if isinstance(message, TaskMessage):
        _check_follow_up(message)
    negative = sorted(name for name in ("resend", "sweep") if getattr(message, name, 0) < 0)
    if negative:
        raise InvalidMessage(f"{kind} message is malformed: {', '.join(negative)} must not be negative")
    if isinstance(message, SafetyNet) and message.due is not None:
        try:
            message.due_at()
        except ValueError as error:
            raise InvalidMessage(f"{kind} message is malformed: due {message.due!r} is not an ISO 8601 time") from error
    return message


def _check_follow_up(message: TaskMessage) -> None:
    if message.checks < 0:
        raise InvalidMessage(f"{message.kind} message is malformed: checks must not be negative, got {message.checks}")
    if message.waiting_since is None:
        return
    try:
        parse_time(message.waiting_since)
    except ValueError as error:
        raise InvalidMessage(
            f"{message.kind} message is malformed: waiting_since {message.waiting_since!r} is not an ISO 8601 time"
        ) from error


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    return value
