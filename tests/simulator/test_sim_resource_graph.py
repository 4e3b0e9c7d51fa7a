"""Resource Graph: the pipeline's maintenanceresources query, paging, scoping and errors."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from prepost.simulator import Estate, GraphQuota, ManualClock, SimulatorServer, ThrottleConfig


def machines_query(correlation_id: str) -> str:
    return (
        "maintenanceresources\n"
        "| where type =~ 'microsoft.maintenance/applyupdates'\n"
        f"| where properties.correlationId =~ '{correlation_id}'\n"
        "| project resourceId = tostring(properties.resourceId)"
    )


def all_pages(graph, subscriptions: list[str], query: str, top: int | None = None) -> tuple[list[dict], int]:
    rows: list[dict] = []
    token = None
    pages = 0
    while True:
        response = graph.resources(
            QueryRequest(
                subscriptions=subscriptions,
                query=query,
                options=QueryRequestOptions(skip_token=token, top=top, result_format="objectArray"),
            )
        )
        pages += 1
        rows.extend(response.data)
        assert response.count == len(response.data)
        token = response.skip_token
        if not token:
            return rows, pages


def test_finds_the_runs_machines_case_insensitively(graph, estate: Estate) -> None:
    correlation_id = estate.run.correlation_id.upper()

    rows, _ = all_pages(graph, estate.subscription_ids, machines_query(correlation_id))

    found = {row["resourceId"] for row in rows}
    # Resource Graph answers ids in lower case: callers compare case-insensitively.
    assert found == {machine_id.lower() for machine_id in estate.machine_ids}
    assert any("/providers/microsoft.hybridcompute/machines/" in resource_id for resource_id in found)


def test_scopes_rows_to_the_requested_subscriptions(graph, estate: Estate) -> None:
    first = estate.subscription_ids[0]

    rows, _ = all_pages(graph, [first], machines_query(estate.run.correlation_id))

    expected = {m.lower() for m in estate.machine_ids if m.split("/")[2] == first}
    assert {row["resourceId"] for row in rows} == expected
    assert 0 < len(expected) < len(estate.machine_ids)


def test_pages_more_than_a_thousand_rows_with_skip_tokens(graph, server: SimulatorServer, estate: Estate) -> None:
    sub = estate.subscription_ids[0]
    machines = [
        f"/subscriptions/{sub}/resourceGroups/rg-big/providers/Microsoft.Compute/virtualMachines/vm-{n:05d}"
        for n in range(2_345)
    ]
    correlation_id = estate.run_correlation_id(estate.run.start.replace(day=29))
    server.state.add_run(correlation_id, machines)

    first = graph.resources(QueryRequest(subscriptions=[sub], query=machines_query(correlation_id)))
    rows, pages = all_pages(graph, [sub], machines_query(correlation_id))

    assert (first.total_records, first.count, first.result_truncated) == (2_345, 1_000, "false")
    assert first.skip_token
    assert pages == 3
    assert [row["resourceId"] for row in rows] == [m.lower() for m in machines]


def test_top_makes_smaller_pages(graph, estate: Estate) -> None:
    rows, pages = all_pages(graph, estate.subscription_ids, machines_query(estate.run.correlation_id), top=3)

    assert len(rows) == len(estate.machine_ids)
    assert pages == -(-len(rows) // 3)


def test_limit_truncates_without_a_skip_token(graph, estate: Estate) -> None:
    response = graph.resources(
        QueryRequest(
            subscriptions=estate.subscription_ids,
            query=machines_query(estate.run.correlation_id) + " | limit 2",
        )
    )

    assert (response.count, response.result_truncated, response.skip_token) == (2, "true", None)


def test_projects_other_columns_and_orders(graph, estate: Estate) -> None:
    query = (
        "maintenanceresources | where type == 'microsoft.maintenance/applyupdates' "
        f"and properties['correlationId'] =~ '{estate.run.correlation_id}' "
        "| extend machine = tolower(properties.resourceId) "
        "| project machine, subscriptionId, properties.status | order by machine asc"
    )

    response = graph.resources(QueryRequest(subscriptions=estate.subscription_ids, query=query))

    machines = [row["machine"] for row in response.data]
    assert machines == sorted(machines)
    assert set(response.data[0]) == {"machine", "subscriptionId", "properties_status"}
    assert response.data[0]["properties_status"] == "Pending"


def test_unknown_correlation_id_returns_no_rows(graph, estate: Estate) -> None:
    response = graph.resources(
        QueryRequest(subscriptions=estate.subscription_ids, query=machines_query(estate.run.correlation_id + "9"))
    )

    assert (response.total_records, response.data) == (0, [])


@pytest.mark.parametrize(
    "query",
    [
        "securityresources | where type =~ 'microsoft.security/assessments'",
        "maintenanceresources | where properties.correlationId =~ 'x' or type == 'y'",
        "maintenanceresources | summarize count() by type",
        "maintenanceresources | where Type =~ 'x'",
    ],
)
def test_queries_it_does_not_understand_get_400(graph, estate: Estate, query: str) -> None:
    with pytest.raises(HttpResponseError) as raised:
        graph.resources(QueryRequest(subscriptions=estate.subscription_ids, query=query))

    assert raised.value.status_code == 400
    assert raised.value.error.code == "BadRequest"
    assert raised.value.error.details[0].code == "InvalidQuery"


def test_a_skip_token_from_another_query_is_rejected(graph, estate: Estate) -> None:
    token = graph.resources(
        QueryRequest(
            subscriptions=estate.subscription_ids,
            query=machines_query(estate.run.correlation_id),
            options=QueryRequestOptions(top=1),
        )
    ).skip_token

    with pytest.raises(HttpResponseError) as raised:
        graph.resources(
            QueryRequest(
                subscriptions=estate.subscription_ids[:1],
                query=machines_query(estate.run.correlation_id),
                options=QueryRequestOptions(skip_token=token),
            )
        )
    assert raised.value.status_code == 400


def test_per_caller_quota_answers_429_until_the_window_resets(
    graph, server: SimulatorServer, estate: Estate, clock: ManualClock
) -> None:
    server.configure_throttling(ThrottleConfig(resource_graph=GraphQuota(queries=2, window_seconds=5)))
    request = QueryRequest(subscriptions=estate.subscription_ids, query=machines_query(estate.run.correlation_id))
    seen: list[dict] = []

    def keep_headers(response) -> None:
        seen.append(dict(response.http_response.headers))

    graph.resources(request, raw_response_hook=keep_headers)
    graph.resources(request, raw_response_hook=keep_headers)
    with pytest.raises(HttpResponseError) as raised:
        graph.resources(request)

    assert [h["x-ms-user-quota-remaining"] for h in seen] == ["1", "0"]
    assert seen[0]["x-ms-user-quota-resets-after"] == "00:00:05"
    assert raised.value.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "5"
    assert raised.value.error.code == "RateLimiting"

    clock.advance(5)
    assert graph.resources(request).count == len(estate.machine_ids)
