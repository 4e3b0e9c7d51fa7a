"""Scheduled readiness results in the ``PrepostRuns`` table, one partition per configuration.

Partition ``readiness-<hash of the configuration id>`` (runs live in partition ``run`` and
phases in partitions named by run key, so neither is touched), row key the inverted check time
so the newest sorts first. No table of its own: the app already has every permission it needs
on this one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shared.adapters.storage_clients import StorageClients
from shared.adapters.table_codecs import delivery_row_key
from shared.adapters.table_values import fit_text, from_table_datetime, json_property, to_utc, without_none
from shared.models.ids import ResourceId
from shared.names import TableName
from shared.ports.readiness import ReadinessRecords, ReadinessResult

PARTITION_PREFIX = "readiness-"


def partition_of(configuration_id: str) -> str:
    return PARTITION_PREFIX + ResourceId(configuration_id).short_hash()


class TableReadinessRecords(ReadinessRecords):
    def __init__(self, clients: StorageClients) -> None:
        self._clients = clients

    def add(self, result: ReadinessResult) -> None:
        entity = without_none(
            {
                "PartitionKey": partition_of(result.configuration_id),
                "RowKey": delivery_row_key(result.checked_at),
                "ConfigurationId": result.configuration_id,
                "CheckedAt": to_utc(result.checked_at),
                "Verdict": result.verdict,
                "WouldCancel": result.would_cancel,
                "Machines": result.machines,
                "Severities": json.dumps(result.severities),
                "Failing": json_property(result.failing, what="failing machines"),
                "Summary": fit_text(result.summary, what="summary"),
                "Error": fit_text(result.error, what="error") if result.error else None,
            }
        )
        self._clients.table(TableName.RUNS).create_entity(entity)

    def list_results(self, configuration_id: str, *, limit: int = 20) -> list[ReadinessResult]:
        entities = self._clients.table(TableName.RUNS).query_entities(
            "PartitionKey eq @pk", parameters={"pk": partition_of(configuration_id)}, results_per_page=limit
        )
        results = []
        for entity in entities:
            results.append(_result(entity))
            if len(results) >= limit:
                break
        return results


def _result(entity: Mapping[str, Any]) -> ReadinessResult:
    return ReadinessResult(
        configuration_id=entity["ConfigurationId"],
        checked_at=from_table_datetime(entity.get("CheckedAt")),
        verdict=entity.get("Verdict"),
        would_cancel=bool(entity.get("WouldCancel", False)),
        machines=int(entity.get("Machines", 0)),
        severities=json.loads(entity.get("Severities") or "{}"),
        failing=json.loads(entity.get("Failing") or "[]"),
        summary=entity.get("Summary", ""),
        error=entity.get("Error"),
    )
