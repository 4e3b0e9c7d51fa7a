"""Scheduled readiness results in Azurite: kept apart from the runs, newest first."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.adapters.table_readiness import TableReadinessRecords
from shared.adapters.table_records import TableRunRecords
from shared.ports.readiness import ReadinessResult

pytestmark = pytest.mark.integration

SUB = "6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40"
CONFIG = f"/subscriptions/{SUB}/resourceGroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations/mc"
OTHER = CONFIG + "-other"
T0 = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)


def test_results_come_back_newest_first_per_configuration_and_leave_the_runs_alone(clean_storage):
    records = TableReadinessRecords(clean_storage)
    for day in range(3):
        records.add(
            ReadinessResult(
                CONFIG,
                T0 + timedelta(days=day),
                "cancel" if day == 2 else "proceed",
                would_cancel=day == 2,
                machines=40,
                severities={"ok": 38, "blocking": 2} if day == 2 else {"ok": 40},
                failing=[{"machine": "/subscriptions/x/vm-1", "reasons": ["blocking: disk full"]}] if day == 2 else [],
                summary=f"day {day}",
            )
        )
    records.add(ReadinessResult(OTHER.upper(), T0, None, error="403 AuthorizationFailed"))

    latest = records.list_results(CONFIG.upper(), limit=2)
    other = records.list_results(OTHER)

    assert [r.summary for r in latest] == ["day 2", "day 1"]
    assert latest[0].would_cancel and latest[0].severities == {"ok": 38, "blocking": 2}
    assert latest[0].failing[0]["reasons"] == ["blocking: disk full"] and latest[0].checked_at == T0 + timedelta(days=2)
    assert [(r.verdict, r.error) for r in other] == [(None, "403 AuthorizationFailed")]
    assert TableRunRecords(clean_storage).list_runs() == []
