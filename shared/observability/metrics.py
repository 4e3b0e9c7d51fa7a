"""Metrics per run: tasks by outcome, phase durations, cancellations.

Each is written twice, for two readers:
- a log record on ``shared.metrics`` with an ``event`` attribute and the values as attributes
  (plus the run, phase, task and queue dimensions), which the log-based alert rules in
  ``infra/modules/alerts.bicep`` count;
- when telemetry is on (:mod:`shared.observability.telemetry`), an OpenTelemetry instrument
  (``prepost.tasks``, ``prepost.phase.duration``, ``prepost.cancellations``), exported to
  Application Insights as custom metrics.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import cache
from typing import Any

from shared.observability.context import log_context
from shared.observability.telemetry import telemetry_enabled

log = logging.getLogger("shared.metrics")

TASK_FINISHED = "task-finished"
PHASE_FINISHED = "phase-finished"
RUN_CANCELLED = "run-cancellation"


def task_finished(run_key: str, phase: str, action: str, outcome: str, attempts: int) -> None:
    """A task became final (succeeded, skipped or failed)."""
    _emit(
        TASK_FINISHED,
        logging.WARNING if outcome == "failed" else logging.INFO,
        f"task {action} of run {run_key} ({phase}) {outcome} after {attempts} attempt(s)",
        {"action": action, "outcome": outcome, "attempts": attempts},
        run_key=run_key,
        phase=phase,
    )
    if telemetry_enabled():
        _instruments()["tasks"].add(1, {"phase": phase, "action": action, "outcome": outcome})


def phase_finished(run_key: str, phase: str, status: str, started: datetime, finished: datetime, failed: int) -> None:
    """A phase is final; ``started`` is when its event (or the fallback) arrived."""
    seconds = max((finished - started).total_seconds(), 0.0)
    _emit(
        PHASE_FINISHED,
        logging.ERROR if status != "completed" else logging.INFO,
        f"{phase} phase of run {run_key} {status} in {seconds:.0f} s ({failed} failed task(s))",
        {"status": status, "duration_s": seconds, "failed_tasks": failed},
        run_key=run_key,
        phase=phase,
    )
    if telemetry_enabled():
        _instruments()["phase_duration"].record(seconds, {"phase": phase, "status": status})


def run_cancellation(run_key: str, accepted: bool, result: str) -> None:
    """prepost decided a run must be cancelled; ``accepted``: Update Manager took the cancel."""
    _emit(
        RUN_CANCELLED,
        logging.WARNING,
        f"run {run_key} cancellation {'accepted' if accepted else 'not accepted'}: {result}",
        {"accepted": accepted, "result": result[:300]},
        run_key=run_key,
    )
    if telemetry_enabled():
        _instruments()["cancellations"].add(1, {"accepted": str(accepted).lower()})


def _emit(event: str, level: int, text: str, values: dict[str, Any], *, run_key: str, phase: str = "") -> None:
    # The run and phase are set as dimensions (logging refuses an ``extra`` that names an
    # attribute the record already has, and every record has the dimensions).
    with log_context(run_key=run_key, phase=phase):
        log.log(level, text, extra={"event": event, **values})


@cache
def _instruments() -> dict[str, Any]:
    from opentelemetry import metrics

    meter = metrics.get_meter("prepost")
    return {
        "tasks": meter.create_counter("prepost.tasks", unit="{task}", description="Tasks that became final"),
        "phase_duration": meter.create_histogram(
            "prepost.phase.duration", unit="s", description="From a phase's event to its last task"
        ),
        "cancellations": meter.create_counter(
            "prepost.cancellations", unit="{run}", description="Runs prepost decided to cancel"
        ),
    }
