"""Intake: accepted pre-events per second, against the least storage work an accepted event needs.

The pipeline side is :func:`shared.usecases.intake.accept_event` with the app's real
``TableRunRecords`` and ``StorageQueueTransport`` on Azurite, one pre-event of a distinct run
after another, as Event Grid delivers them to one worker. The baseline is the floor any intake
must pay to accept an event durably: one ``TableClient.upsert_entity`` (the run) and one
``QueueClient.send_message`` (the plan), raw SDK, one by one. The ratio is the storage work the
intake does beyond that floor: the phase record, the delivery log and the two safety-net
messages, plus the use case's own Python.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from bench.measure import Result, Row, Timing, alternate, count_http_requests, median, spread, timed_cpu
from bench.stack import azurite, storage_container, storage_ports

NAME = "intake"
TITLE = "Intake: accept_event on Azurite (records + queue) vs raw upsert_entity + send_message"
CONFIGURATION = (
    "/subscriptions/6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40/resourceGroups/rg-bench/providers/"
    "Microsoft.Maintenance/maintenanceConfigurations/mc-bench"
)
SUBSCRIPTION = "6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40"


def run(*, quick: bool) -> Result:
    events_per_round = 100 if quick else 250
    rounds = 2 if quick else 3
    with azurite() as connection_string:
        return _measure(connection_string, events_per_round, rounds)


def _measure(connection_string: str, events_per_round: int, rounds: int) -> Result:
    from azure.data.tables import TableClient
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    from prepost.local.events import build_event
    from shared.clock import utcnow
    from shared.names import QueueName, TableName
    from shared.ports.records import DeliveryOutcome
    from shared.usecases.intake import IntakePolicy, accept_event

    container = storage_container(connection_string)
    settings = container.settings
    policy = IntakePolicy(
        allowed_configurations=settings.allowed_configurations,
        allowed_subscriptions=settings.allowed_subscriptions,
        cancel_margin=settings.cancel_margin,
        post_fallback_after=settings.suppression_grace,
    )
    records, transport = container.records, container.transport

    # The baseline's clients: the SDK as it comes, on the same tables and queue as the app.
    table = TableClient.from_connection_string(connection_string, TableName.RUNS.value)
    queue = QueueClient.from_connection_string(
        connection_string, QueueName.PLAN.value, message_encode_policy=TextBase64EncodePolicy()
    )
    first_start = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(second=0, microsecond=0)
    used = 0

    def events(count: int) -> list[dict]:
        nonlocal used
        # Distinct runs: one schedule stamp per event, a minute apart (all within 7 days, the
        # longest delay a safety-net message can have).
        batch = [
            build_event(
                "pre",
                configuration_id=CONFIGURATION,
                subscription_ids=[SUBSCRIPTION],
                start=first_start + timedelta(minutes=used + index),
            )
            for index in range(count)
        ]
        used += count
        return batch

    outcomes: dict[str, int] = {}

    def accept(batch: list[dict]) -> None:
        for raw in batch:
            result = accept_event(raw, records=records, transport=transport, policy=policy, now=utcnow())
            outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1

    def baseline_write(count: int) -> None:
        for _ in range(count):
            key = f"bench-{uuid.uuid4().hex}"
            table.upsert_entity(_run_like_entity(key))
            queue.send_message(json.dumps({"kind": "plan-phase", "run_key": key, "phase": "pre"}), time_to_live=-1)

    # Warm both sides (connections, first-call imports), unmeasured.
    accept(events(5))
    baseline_write(5)

    def pipeline_round(_: int) -> Timing:
        batch = events(events_per_round)
        return timed_cpu(lambda: accept(batch))[1]

    def baseline_round(_: int) -> Timing:
        return timed_cpu(lambda: baseline_write(events_per_round))[1]

    pipeline_timings, baseline_timings = alternate(pipeline_round, baseline_round, rounds)
    pipeline_rates = [events_per_round / timing.wall for timing in pipeline_timings]
    baseline_rates = [events_per_round / timing.wall for timing in baseline_timings]
    pipeline_cpu_ms = [1000 * timing.cpu / events_per_round for timing in pipeline_timings]
    baseline_cpu_ms = [1000 * timing.cpu / events_per_round for timing in baseline_timings]

    # Round trips per event, counted apart from the timed rounds (logging costs time).
    sample = 20
    ports = storage_ports(connection_string)
    table_port, queue_port = ports["table"], ports["queue"]
    with count_http_requests() as pipeline_calls:
        accept(events(sample))
    with count_http_requests() as baseline_calls:
        baseline_write(sample)
    table.close()
    queue.close()

    accepted_all = outcomes.get(DeliveryOutcome.ACCEPTED.value, 0) == sum(outcomes.values())
    rows = [
        Row.rate(
            "accepted events",
            "events/s",
            median(pipeline_rates),
            median(baseline_rates),
            f"{events_per_round} distinct runs x {rounds} rounds",
        ),
        Row.cost(
            "Python CPU per event",
            "ms",
            median(pipeline_cpu_ms),
            median(baseline_cpu_ms),
            "process_time of this process (Azurite excluded)",
        ),
        Row.cost(
            "storage calls per event",
            "calls",
            (pipeline_calls[table_port] + pipeline_calls[queue_port]) / sample,
            (baseline_calls[table_port] + baseline_calls[queue_port]) / sample,
            f"table {pipeline_calls[table_port] / sample:g} + queue {pipeline_calls[queue_port] / sample:g}",
        ),
    ]
    details = {
        "events_per_round": events_per_round,
        "rounds": rounds,
        "events_per_second": {"pipeline": spread(pipeline_rates), "baseline": spread(baseline_rates)},
        "outcomes": outcomes,
        "all_accepted": accepted_all,
        "calls_per_event": {
            "pipeline": {"table": pipeline_calls[table_port] / sample, "queue": pipeline_calls[queue_port] / sample},
            "baseline": {"table": baseline_calls[table_port] / sample, "queue": baseline_calls[queue_port] / sample},
        },
        "cpu_ms_per_event": {"pipeline": spread(pipeline_cpu_ms), "baseline": spread(baseline_cpu_ms)},
        "per_event_ms": {"pipeline": 1000 / median(pipeline_rates), "baseline": 1000 / median(baseline_rates)},
    }
    result = Result(NAME, TITLE, rows, details)
    if not accepted_all:
        result.details["summary"] = f"not every event was accepted: {outcomes}"
    return result


def _run_like_entity(key: str) -> dict:
    """About the properties a run record has: the baseline writes a comparable entity."""
    now = datetime.now(timezone.utc)
    return {
        "PartitionKey": key,
        "RowKey": "run",
        "CorrelationId": f"{CONFIGURATION}/providers/microsoft.maintenance/applyupdates/{now:%Y%m%d%H%M%S}",
        "ConfigurationId": CONFIGURATION,
        "Start": now,
        "End": now + timedelta(hours=2),
        "Subscriptions": json.dumps([SUBSCRIPTION]),
        "CreatedAt": now,
    }
