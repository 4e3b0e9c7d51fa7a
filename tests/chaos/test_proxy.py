"""Tests of the storage fault proxy: the real SDK clients through it to a real Azurite, faults and counts.

Upstream effects are checked with clients that talk to Azurite directly, never through the proxy.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.queue import QueueClient

from prepost.chaos.proxy import (
    FaultPlan,
    ProxyError,
    ProxyProcess,
    ProxyStartError,
    StorageFaultProxy,
    proxied_connection_string,
)
from shared.adapters.storage_clients import RetrySettings, StorageClients
from shared.settings import StorageConnection

integration = pytest.mark.integration
CONNECTION_ERRORS = (ServiceRequestError, ServiceResponseError)
#: Production's retry policies, with waits short enough for a test.
FAST_RETRIES = RetrySettings(total=2, backoff_seconds=0.01)
NO_RETRIES = RetrySettings(total=0, backoff_seconds=0.01)


@pytest.fixture
def table_proxy(azurite) -> Iterator[StorageFaultProxy]:
    with StorageFaultProxy(azurite.endpoints.table_url, "table") as proxy:
        yield proxy


@pytest.fixture
def queue_proxy(azurite) -> Iterator[StorageFaultProxy]:
    with StorageFaultProxy(azurite.endpoints.queue_url, "queue") as proxy:
        yield proxy


def _clients(
    azurite, retry: RetrySettings, *, table: StorageFaultProxy | None = None, queue: StorageFaultProxy | None = None
) -> StorageClients:
    """The app's own storage clients, sent through the given proxies."""
    connection = proxied_connection_string(
        azurite.endpoints.connection_string,
        table_endpoint=table.url if table else None,
        queue_endpoint=queue.url if queue else None,
    )
    return StorageClients(StorageConnection(connection_string=connection), retry=retry)


def _direct_table(azurite, name: str) -> TableClient:
    client = TableClient.from_connection_string(azurite.endpoints.connection_string, name)
    client.create_table()
    return client


def _direct_queue(azurite, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(azurite.endpoints.connection_string, name)
    client.create_queue()
    return client


def _upstream_messages(queue: QueueClient) -> list[str]:
    return [message.content for message in queue.peek_messages(max_messages=32)]


# -- pass-through ---------------------------------------------------------------------------


@integration
def test_tables_work_through_the_proxy_without_faults(azurite, table_proxy, unique_suffix) -> None:
    connection = proxied_connection_string(azurite.endpoints.connection_string, table_endpoint=table_proxy.url)
    service = TableServiceClient.from_connection_string(connection)
    table = service.create_table(f"chaos{unique_suffix}")

    table.create_entity({"PartitionKey": "p", "RowKey": "r1", "value": 1})
    entity = table.get_entity("p", "r1")
    entity["value"] = 2
    table.update_entity(
        entity, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified
    )
    with pytest.raises(ResourceModifiedError):  # Azurite's 412 comes back as it was
        table.update_entity(
            entity, mode=UpdateMode.MERGE, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified
        )
    table.submit_transaction(
        [("create", {"PartitionKey": "p", "RowKey": "r2"}), ("upsert", {"PartitionKey": "p", "RowKey": "r3"})]
    )
    table.delete_entity("p", "r2")
    found = {e["RowKey"]: e.get("value") for e in table.query_entities("PartitionKey eq @p", parameters={"p": "p"})}

    assert found == {"r1": 2, "r3": None}
    direct = TableClient.from_connection_string(azurite.endpoints.connection_string, f"chaos{unique_suffix}")
    assert {e["RowKey"] for e in direct.list_entities()} == {"r1", "r3"}
    stats = table_proxy.stats()
    assert stats["requests"] == {
        "table.batch": 1,
        "table.create": 1,
        "table.delete": 1,
        "table.insert": 1,
        "table.query": 2,
        "table.update": 2,
    }
    assert (stats["faults_total"], stats["upstream_errors"]) == (0, 0)


@integration
def test_queues_work_through_the_proxy_without_faults(azurite, queue_proxy, unique_suffix) -> None:
    queue = _clients(azurite, FAST_RETRIES, queue=queue_proxy).queue(f"chaos-{unique_suffix}")
    queue.create_queue()

    queue.send_message("first")
    received = next(iter(queue.receive_messages(visibility_timeout=30)))
    queue.update_message(received, visibility_timeout=0, content="changed")
    peeked = queue.peek_messages()
    again = next(iter(queue.receive_messages(visibility_timeout=30)))
    queue.delete_message(again)

    assert (received.content, peeked[0].content, again.content) == ("first", "changed", "changed")
    assert queue.peek_messages() == []
    requests = queue_proxy.stats()["requests"]
    assert {op: requests[op] for op in ("queue.send", "queue.update", "queue.delete")} == {
        "queue.send": 1,
        "queue.update": 1,
        "queue.delete": 1,
    }
    assert requests["queue.peek"] == 2 and requests["queue.receive"] >= 2 and requests["queue.other"] == 1


# -- faults -----------------------------------------------------------------------------------


@integration
def test_503_on_every_insert_fails_after_the_sdk_retries_and_creates_nothing(
    azurite, table_proxy, unique_suffix
) -> None:
    direct = _direct_table(azurite, f"chaos{unique_suffix}")
    table_proxy.set_plan(FaultPlan.parse("table.insert=503:1"))
    table = _clients(azurite, FAST_RETRIES, table=table_proxy).table(f"chaos{unique_suffix}")

    with pytest.raises(HttpResponseError) as raised:
        table.create_entity({"PartitionKey": "p", "RowKey": "r"})

    assert raised.value.status_code == 503
    assert raised.value.response.headers["x-ms-error-code"] == "ServerBusy"
    assert json.loads(raised.value.response.text())["odata.error"]["code"] == "ServerBusy"
    with pytest.raises(ResourceNotFoundError):
        direct.get_entity("p", "r")
    stats = table_proxy.stats()
    assert stats["requests"]["table.insert"] == 1 + FAST_RETRIES.total
    assert stats["faults"] == {"table.insert": {"error503": 1 + FAST_RETRIES.total}}


@integration
def test_a_500_on_a_send_is_retried_and_leaves_one_message(azurite, queue_proxy, unique_suffix) -> None:
    direct = _direct_queue(azurite, f"chaos-{unique_suffix}")
    queue_proxy.set_plan(FaultPlan.parse("queue.send=500@1"))

    _clients(azurite, FAST_RETRIES, queue=queue_proxy).queue(f"chaos-{unique_suffix}").send_message("once")

    assert len(_upstream_messages(direct)) == 1
    assert queue_proxy.stats()["faults"] == {"queue.send": {"error500": 1}}


@integration
@pytest.mark.parametrize("kind", ["lost", "timeout"])
def test_a_lost_answer_to_a_send_leaves_the_message_upstream(azurite, queue_proxy, unique_suffix, kind) -> None:
    direct = _direct_queue(azurite, f"chaos-{unique_suffix}")
    queue_proxy.set_plan(FaultPlan.parse(f"timeout_seconds=0.2;queue.send={kind}@1"))
    queue = _clients(azurite, NO_RETRIES, queue=queue_proxy).queue(f"chaos-{unique_suffix}")

    with pytest.raises(CONNECTION_ERRORS):
        queue.send_message("sent anyway")

    assert len(_upstream_messages(direct)) == 1


@integration
@pytest.mark.parametrize("kind", ["lost", "timeout"])
def test_a_client_that_retries_a_lost_send_sends_the_message_twice(azurite, queue_proxy, unique_suffix, kind) -> None:
    direct = _direct_queue(azurite, f"chaos-{unique_suffix}")
    queue_proxy.set_plan(FaultPlan.parse(f"timeout_seconds=0.2;queue.send={kind}@1"))
    queue = _clients(azurite, FAST_RETRIES, queue=queue_proxy).queue(f"chaos-{unique_suffix}")

    queue.send_message("twice")  # the retry succeeds, so the caller sees one successful send

    upstream = _upstream_messages(direct)
    assert len(upstream) == 2 and upstream[0] == upstream[1]
    assert queue_proxy.stats()["requests"]["queue.send"] == 2


@integration
def test_a_lost_answer_to_an_insert_is_not_retried_by_the_tables_sdk(azurite, table_proxy, unique_suffix) -> None:
    # azure-core retries a POST after a 5xx but not after a connection error (the request may have been
    # processed): the caller gets the error, and its own retry of the insert then meets the row it created.
    direct = _direct_table(azurite, f"chaos{unique_suffix}")
    table_proxy.set_plan(FaultPlan.parse("table.insert=lost@1"))
    table = _clients(azurite, FAST_RETRIES, table=table_proxy).table(f"chaos{unique_suffix}")

    with pytest.raises(CONNECTION_ERRORS):
        table.create_entity({"PartitionKey": "p", "RowKey": "r"})
    assert direct.get_entity("p", "r")["RowKey"] == "r"
    with pytest.raises(ResourceExistsError):
        table.create_entity({"PartitionKey": "p", "RowKey": "r"})
    assert table_proxy.stats()["requests"]["table.insert"] == 2


@integration
def test_a_reset_is_a_connection_error_with_no_side_effect(azurite, table_proxy, unique_suffix) -> None:
    direct = _direct_table(azurite, f"chaos{unique_suffix}")
    table_proxy.set_plan(FaultPlan.parse("table.insert=reset@1"))
    table = _clients(azurite, FAST_RETRIES, table=table_proxy).table(f"chaos{unique_suffix}")

    with pytest.raises(CONNECTION_ERRORS):
        table.create_entity({"PartitionKey": "p", "RowKey": "r"})
    with pytest.raises(ResourceNotFoundError):
        direct.get_entity("p", "r")
    table.create_entity({"PartitionKey": "p", "RowKey": "r"})  # no 409: the reset insert never happened

    assert table_proxy.stats()["faults"] == {"table.insert": {"reset_before": 1}}


@integration
def test_a_retried_reset_send_leaves_exactly_one_message(azurite, queue_proxy, unique_suffix) -> None:
    direct = _direct_queue(azurite, f"chaos-{unique_suffix}")
    queue_proxy.set_plan(FaultPlan.parse("queue.send=reset@1"))

    _clients(azurite, FAST_RETRIES, queue=queue_proxy).queue(f"chaos-{unique_suffix}").send_message("once")

    assert len(_upstream_messages(direct)) == 1


# -- counts and control -------------------------------------------------------------------------


def _control(proxy: StorageFaultProxy, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@integration
def test_stats_count_requests_and_faults_per_operation_and_kind(azurite, queue_proxy, unique_suffix) -> None:
    direct = _direct_queue(azurite, f"chaos-{unique_suffix}")
    status, plan = _control(
        queue_proxy,
        "POST",
        "/_proxy/faults",
        b"queue.send=503@1,lost@3;queue.peek=500@1-2",
        **{"Content-Type": "text/plain"},
    )
    assert status == 200 and len(plan["rules"]) == 3
    queue = _clients(azurite, FAST_RETRIES, queue=queue_proxy).queue(f"chaos-{unique_suffix}")

    queue.send_message("a")  # send 1: 503, send 2: ok
    queue.send_message("b")  # send 3: lost, send 4: ok (a duplicate)
    queue.peek_messages()  # peek 1 and 2: 500, peek 3: ok

    status, stats = _control(queue_proxy, "GET", "/_proxy/stats")
    assert status == 200 and stats == queue_proxy.stats()
    assert stats["requests"] == {"queue.peek": 3, "queue.send": 4}
    assert stats["faults"] == {"queue.peek": {"error500": 2}, "queue.send": {"error503": 1, "lost_response": 1}}
    assert stats["faults_by_kind"] == {
        "error500": 2,
        "error503": 1,
        "reset_before": 0,
        "lost_response": 1,
        "timeout": 0,
    }
    assert (stats["requests_total"], stats["faults_total"]) == (7, 4)
    assert len(_upstream_messages(direct)) == 3


@integration
def test_a_paused_proxy_passes_everything_through(azurite, queue_proxy, unique_suffix) -> None:
    direct = _direct_queue(azurite, f"chaos-{unique_suffix}")
    queue_proxy.set_plan(FaultPlan.parse("queue.send=reset@1-"))
    queue = _clients(azurite, NO_RETRIES, queue=queue_proxy).queue(f"chaos-{unique_suffix}")

    assert _control(queue_proxy, "POST", "/_proxy/pause") == (200, {"paused": True})
    queue.send_message("through")
    assert _control(queue_proxy, "POST", "/_proxy/resume") == (200, {"paused": False})
    with pytest.raises(CONNECTION_ERRORS):
        queue.send_message("reset")

    assert len(_upstream_messages(direct)) == 1
    assert queue_proxy.stats()["requests"]["queue.send"] == 2
    assert queue_proxy.stats()["faults_total"] == 1


@integration
def test_the_control_api_rejects_bad_plans_and_unknown_routes(queue_proxy) -> None:
    status, answer = _control(queue_proxy, "POST", "/_proxy/faults", b'{"rates": {"*": {"error500": 2}}}')
    assert status == 400 and "probability of error500 must be between 0 and 1" in answer["error"]
    assert _control(queue_proxy, "GET", "/_proxy/nothing")[0] == 404
    assert _control(queue_proxy, "DELETE", "/_proxy/stats")[0] == 405
    status, plan = _control(queue_proxy, "GET", "/_proxy/faults")
    assert status == 200 and FaultPlan.from_json({k: v for k, v in plan.items() if k != "text"}) == FaultPlan()


def test_an_unreachable_upstream_is_passed_on_as_a_connection_failure() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    with StorageFaultProxy(f"127.0.0.1:{closed_port}", "queue") as proxy:
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            connection.request("GET", "/devstoreaccount1/jobs/messages")
            connection.getresponse()
        connection.close()
        assert proxy.stats()["upstream_errors"] == 1


# -- verbatim forwarding ------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """An upstream that records each request as received and answers chunked, like Azurite often does."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]]

    def do_MERGE(self) -> None:
        raw_body = b""
        while True:  # chunks, then trailers up to the empty line
            size_line = self.rfile.readline()
            raw_body += size_line
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            raw_body += self.rfile.read(size + 2)
        while not raw_body.endswith(b"\r\n\r\n"):
            raw_body += self.rfile.readline()
        self.seen.append({"line": self.requestline, "headers": self.headers.items(), "body": raw_body})
        self.send_response_only(207, "Multi")
        self.send_header("X-Upstream-Case", "Kept")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[ThreadingHTTPServer, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, seen
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_requests_and_answers_are_forwarded_verbatim(recorder) -> None:
    server, seen = recorder
    target = "/devstoreaccount1/jobs(PartitionKey='a%2Fb',RowKey='r')?x=%2F&y="
    with StorageFaultProxy(f"127.0.0.1:{server.server_address[1]}", "table") as proxy:
        port = proxy.port
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        answers = []
        for body in (b"5\r\nhello\r\n0\r\n\r\n", b"2;ext=1\r\nhi\r\n0\r\nTrailer: t\r\n\r\n"):
            connection.putrequest("MERGE", target, skip_host=True, skip_accept_encoding=True)
            for name, value in [("Host", f"127.0.0.1:{port}"), ("x-MS-Odd", "1"), ("x-ms-dup", "a")]:
                connection.putheader(name, value)
            connection.putheader("x-ms-dup", "b")
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            connection.send(body)
            response = connection.getresponse()  # the second request reuses the connection
            answers.append((response.status, response.reason, response.getheader("X-Upstream-Case"), response.read()))
        connection.close()

    expected_headers = [
        ("Host", f"127.0.0.1:{port}"),
        ("x-MS-Odd", "1"),
        ("x-ms-dup", "a"),
        ("x-ms-dup", "b"),
        ("Transfer-Encoding", "chunked"),
    ]
    assert [(s["line"], s["headers"]) for s in seen] == [(f"MERGE {target} HTTP/1.1", expected_headers)] * 2
    assert [s["body"] for s in seen] == [b"5\r\nhello\r\n0\r\n\r\n", b"2;ext=1\r\nhi\r\n0\r\nTrailer: t\r\n\r\n"]
    assert answers == [(207, "Multi", "Kept", b"abcde")] * 2


class _ClosesWhenIdle(BaseHTTPRequestHandler):
    """An upstream that closes each connection after answering, unannounced, as Node does to idle ones."""

    protocol_version = "HTTP/1.1"
    closed: threading.Event

    def do_GET(self) -> None:
        self.send_response_only(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
        self.connection.shutdown(socket.SHUT_RDWR)
        self.closed.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_an_upstream_connection_closed_while_idle_is_reopened_not_failed() -> None:
    closed = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("ClosesWhenIdle", (_ClosesWhenIdle,), {"closed": closed}))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with StorageFaultProxy(f"127.0.0.1:{server.server_address[1]}", "queue") as proxy:
            connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
            bodies = []
            for _ in range(2):
                closed.clear()
                connection.request("GET", "/devstoreaccount1/jobs/messages")
                bodies.append(connection.getresponse().read())
                assert closed.wait(5)
            connection.close()
            assert bodies == [b"ok", b"ok"]
            assert proxy.stats()["upstream_errors"] == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- connection strings -------------------------------------------------------------------------


def test_proxied_connection_string_moves_queue_and_table_and_keeps_the_rest() -> None:
    original = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5==;"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
        "tableendpoint=http://127.0.0.1:10002/devstoreaccount1;"
    )
    proxied = proxied_connection_string(
        original, queue_endpoint="http://127.0.0.1:5001", table_endpoint="http://127.0.0.1:5002/"
    )
    assert proxied == original.replace(":10001/", ":5001/").replace(":10002/", ":5002/")
    assert proxied_connection_string(original) == original


def test_proxied_connection_string_needs_the_endpoint_it_replaces() -> None:
    with pytest.raises(ValueError, match="has no TableEndpoint to replace"):
        proxied_connection_string("UseDevelopmentStorage=true", table_endpoint="http://127.0.0.1:5002")


@pytest.mark.parametrize("upstream", ["10.1.2.3:10001", "example.com:80", "http://192.168.0.1:10001/x", "127.0.0.1"])
def test_only_a_loopback_upstream_is_accepted(upstream: str) -> None:
    with pytest.raises(ValueError, match="upstream"):
        StorageFaultProxy(upstream, "queue")


# -- a process of its own -----------------------------------------------------------------------


@integration
def test_the_proxy_runs_as_a_process_and_stops_cleanly_on_sigterm(azurite, unique_suffix) -> None:
    direct = _direct_queue(azurite, f"chaos-{unique_suffix}")
    process = ProxyProcess(azurite.endpoints.queue_url, "queue", faults="queue.send=503@1", seed=7)
    with process:
        assert process.url.startswith("http://127.0.0.1:")
        connection = proxied_connection_string(azurite.endpoints.connection_string, queue_endpoint=process.url)
        clients = StorageClients(StorageConnection(connection_string=connection), retry=FAST_RETRIES)

        clients.queue(f"chaos-{unique_suffix}").send_message("through a process")

        stats = process.stats()
        assert stats["requests"] == {"queue.send": 2}
        assert stats["faults_by_kind"]["error503"] == 1
        assert process.set_plan("queue.*=lost:0.5").seed == 0
        assert process.stats()["requests_total"] == 2  # a new plan keeps the counts
        pid = process.pid
        clients.close()
    assert process.returncode == 0  # SIGTERM ends it through its handler, not by the signal
    assert not _pid_running(pid)
    assert len(_upstream_messages(direct)) == 1
    with pytest.raises(ProxyError, match="not running"):
        process.stats()


def test_a_proxy_process_that_cannot_start_reports_why() -> None:
    process = ProxyProcess("10.9.8.7:10001", "queue", startup_timeout=10)
    with pytest.raises(ProxyStartError, match="only loopback addresses"):
        process.start()
    assert process.returncode == 2


def test_a_bad_plan_is_rejected_before_starting_a_process() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        ProxyProcess("127.0.0.1:10001", "queue", faults="*=explode:1")


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
