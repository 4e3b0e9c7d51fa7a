"""Tests of prepost.local.azurite against a real Azurite (installed by ``npm ci``)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from prepost.local import azurite as azurite_module
from prepost.local.azurite import (
    ACCOUNT_KEY,
    ACCOUNT_NAME,
    AzuriteEndpoints,
    AzuriteError,
    AzuriteNotInstalled,
    AzuriteProcess,
    AzuriteStartError,
    find_azurite_executable,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _azurite_installed() -> bool:
    try:
        find_azurite_executable()
    except AzuriteNotInstalled:
        return False
    return True


needs_azurite = pytest.mark.skipif(
    not _azurite_installed(), reason="Azurite is not installed: run `npm ci` in the repository root"
)


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, owned by someone else
        return True
    return True


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie is reaped by PID 1, which may be slow)."""
    if not _pid_exists(pid):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _port_is_free(port: int) -> bool:
    """Nobody listens on the port and a server could bind it."""
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers (and Node) do
        try:
            server.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _fake_executable(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-azurite"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture(scope="module")
def fresh_azurite() -> Iterator[AzuriteProcess]:
    if not _azurite_installed():
        pytest.skip("Azurite is not installed: run `npm ci` in the repository root")
    with AzuriteProcess() as process:
        yield process


# -- locating the executable and building endpoints (no process) --------------------------


@needs_azurite
def test_finds_the_repository_copy_first() -> None:
    exe = find_azurite_executable()
    assert exe == REPO_ROOT / "node_modules" / ".bin" / "azurite"


def test_missing_executable_tells_the_user_to_run_npm_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(AzuriteNotInstalled, match=r"npm ci.*make"):
        find_azurite_executable(tmp_path)


def test_executable_on_path_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = _fake_executable(bin_dir, "exit 0")
    fake.rename(bin_dir / "azurite")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_azurite_executable(tmp_path / "no-repo") == bin_dir / "azurite"


def test_endpoints_and_connection_string() -> None:
    ep = AzuriteEndpoints("127.0.0.1", 41000, 41001, 41002)
    assert ep.blob_url == "http://127.0.0.1:41000/devstoreaccount1"
    assert ep.queue_url == "http://127.0.0.1:41001/devstoreaccount1"
    assert ep.table_url == "http://127.0.0.1:41002/devstoreaccount1"
    assert ep.connection_string == (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={ACCOUNT_KEY};"
        "BlobEndpoint=http://127.0.0.1:41000/devstoreaccount1;"
        "QueueEndpoint=http://127.0.0.1:41001/devstoreaccount1;"
        "TableEndpoint=http://127.0.0.1:41002/devstoreaccount1;"
    )
    assert ACCOUNT_NAME == "devstoreaccount1"


def test_not_started_has_no_pid_or_endpoints_and_stop_is_a_no_op() -> None:
    process = AzuriteProcess()
    with pytest.raises(AzuriteError):
        _ = process.pid
    with pytest.raises(AzuriteError):
        _ = process.endpoints
    assert not process.running
    process.stop()
    process.stop()


# -- the three services through the Azure SDKs -------------------------------------------


def test_queue_send_and_receive(fresh_azurite: AzuriteProcess) -> None:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    queue = QueueClient.from_connection_string(
        fresh_azurite.endpoints.connection_string,
        _name("q"),
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    queue.create_queue()
    queue.send_message('{"event": "pre", "ok": true}')
    received = list(queue.receive_messages(max_messages=5, visibility_timeout=30))
    assert [m.content for m in received] == ['{"event": "pre", "ok": true}']
    queue.delete_message(received[0])
    assert queue.get_queue_properties().approximate_message_count == 0


def test_table_upsert_and_get(fresh_azurite: AzuriteProcess) -> None:
    from azure.data.tables import TableServiceClient, UpdateMode

    service = TableServiceClient.from_connection_string(fresh_azurite.endpoints.connection_string)
    table = service.create_table_if_not_exists(_name("t"))
    entity = {"PartitionKey": "run-1", "RowKey": "vm-1", "state": "started", "attempts": 1}
    table.upsert_entity(entity)
    table.upsert_entity({**entity, "attempts": 2}, mode=UpdateMode.MERGE)
    got = table.get_entity("run-1", "vm-1")
    assert (got["state"], got["attempts"]) == ("started", 2)


def test_blob_put_and_get(fresh_azurite: AzuriteProcess) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(fresh_azurite.endpoints.connection_string)
    container = service.create_container(_name("c"))
    container.upload_blob("runs/run-1.json", b'{"status": "done"}')
    assert container.download_blob("runs/run-1.json").readall() == b'{"status": "done"}'


def test_sdk_default_api_version_works_thanks_to_skip_api_version_check(
    fresh_azurite: AzuriteProcess,
) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.queue import QueueClient

    conn = fresh_azurite.endpoints.connection_string
    queue = QueueClient.from_connection_string(conn, _name("q"))
    # azure-storage-queue 12.18 defaults to a service version newer than Azurite 3.37 knows.
    assert queue.api_version > "2026-06-06"
    queue.create_queue()
    queue.send_message("hello")
    assert next(iter(queue.receive_messages())).content == "hello"

    class StrictAzurite(AzuriteProcess):
        base_args = tuple(a for a in AzuriteProcess.base_args if a != "--skipApiVersionCheck")

    with StrictAzurite() as strict:
        strict_queue = QueueClient.from_connection_string(strict.endpoints.connection_string, _name("q"))
        with pytest.raises(HttpResponseError) as excinfo:
            strict_queue.create_queue()
        assert excinfo.value.status_code == 400
        assert "API version 2026-10-06 is not supported by Azurite" in str(excinfo.value)


# -- lifecycle ----------------------------------------------------------------------------


@needs_azurite
def test_stop_kills_the_process_and_frees_the_ports() -> None:
    process = AzuriteProcess()
    started = time.monotonic()
    endpoints = process.start()
    start_seconds = time.monotonic() - started
    pid = process.pid
    assert process.running and _pid_exists(pid)
    assert os.getpgid(pid) == pid  # its own process group
    assert endpoints == process.endpoints
    assert not any(_port_is_free(p) for p in endpoints.ports)
    log_dir = process.log_path.parent if process.log_path else None

    started = time.monotonic()
    process.stop()
    stop_seconds = time.monotonic() - started

    assert not process.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert all(_port_is_free(p) for p in endpoints.ports)
    assert log_dir is not None and not log_dir.exists()
    process.stop()  # idempotent
    assert process.pid == pid  # still reported after stop, for diagnostics
    print(f"azurite start {start_seconds:.2f}s stop {stop_seconds:.2f}s")


def test_stop_escalates_to_sigkill_and_clears_the_process_group(tmp_path: Path) -> None:
    """An Azurite that ignores SIGTERM, with a child of its own, is still fully stopped."""
    child_pid_file = tmp_path / "child.pid"
    exe = _fake_executable(tmp_path, f"trap '' TERM\nsleep 60 &\necho $! > {child_pid_file}\nexec sleep 60")
    process = AzuriteProcess(exe, stop_timeout=0.5)
    process._launch(exe)  # launched, never ready: no readiness wait needed here
    deadline = time.monotonic() + 5
    while not child_pid_file.exists() or not child_pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid, child_pid = process.pid, int(child_pid_file.read_text())
    assert os.getpgid(child_pid) == pid
    process.stop()  # SIGTERM is ignored, so only the escalation to SIGKILL can end it
    assert not _pid_exists(pid)
    deadline = time.monotonic() + 2  # the orphaned child is killed, then reaped by PID 1
    while _running(child_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _running(child_pid)


@needs_azurite
def test_two_instances_at_once_get_different_ports(fresh_azurite: AzuriteProcess) -> None:
    from azure.storage.queue import QueueServiceClient

    with AzuriteProcess() as second:
        assert fresh_azurite.pid != second.pid
        assert not set(fresh_azurite.endpoints.ports) & set(second.endpoints.ports)
        one = QueueServiceClient.from_connection_string(fresh_azurite.endpoints.connection_string)
        two = QueueServiceClient.from_connection_string(second.endpoints.connection_string)
        name = _name("q")
        one.create_queue(name)
        # Each instance is its own in-memory world.
        assert name in [q.name for q in one.list_queues()]
        assert list(two.list_queues()) == []
    assert not _pid_exists(second.pid)
    assert fresh_azurite.running


def test_start_twice_is_refused(fresh_azurite: AzuriteProcess) -> None:
    with pytest.raises(AzuriteError, match="already running"):
        fresh_azurite.start()


@needs_azurite
def test_retries_with_new_ports_when_one_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_ports = azurite_module._free_ports
    calls: list[list[int]] = []
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]

        def free_ports(count: int) -> list[int]:
            ports = real_free_ports(count)
            if not calls:
                ports[1] = taken  # the queue port is lost to another process
            calls.append(ports)
            return ports

        monkeypatch.setattr(azurite_module, "_free_ports", free_ports)
        with AzuriteProcess() as process:
            assert len(calls) == 2
            assert taken not in process.endpoints.ports


# -- start failures -----------------------------------------------------------------------


def test_bogus_executable_path_raises_start_error(tmp_path: Path) -> None:
    process = AzuriteProcess(tmp_path / "no-such-azurite")
    with pytest.raises(AzuriteStartError, match="cannot run Azurite executable .*no-such-azurite"):
        process.start()
    assert not process.running


def test_early_exit_raises_start_error_with_log_tail(tmp_path: Path) -> None:
    exe = _fake_executable(tmp_path, 'echo "first line"; echo "Exit due to unhandled error: boom" >&2; exit 3')
    with pytest.raises(AzuriteStartError) as excinfo:
        AzuriteProcess(exe).start()
    message = str(excinfo.value)
    assert "exited with code 3" in message
    assert "first line" in message and "unhandled error: boom" in message


def test_deadline_raises_start_error_and_leaves_no_process(tmp_path: Path) -> None:
    exe = _fake_executable(tmp_path, 'echo "starting slowly"; exec sleep 60')
    process = AzuriteProcess(exe, startup_timeout=0.5, stop_timeout=0.5)
    with pytest.raises(AzuriteStartError, match=r"did not answer .* within 0.5 s(.|\n)*starting slowly"):
        process.start()
    assert not _pid_exists(process.pid)


@needs_azurite
def test_interrupted_session_leaves_no_orphan(tmp_path: Path) -> None:
    """Ctrl-C reaches only the foreground group, not Azurite's; the atexit hook stops it."""
    script = tmp_path / "session.py"
    script.write_text(
        "import sys, time\n"
        "from prepost.local.azurite import AzuriteProcess\n"
        "process = AzuriteProcess()\n"
        "process.start()\n"
        "print(process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    session = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert session.stdout is not None
        line = session.stdout.readline()
        assert line.strip(), session.stderr.read() if session.stderr else ""
        pid = int(line)
        assert _pid_exists(pid)
        session.send_signal(signal.SIGINT)
        _, err = session.communicate(timeout=20)
        assert b"KeyboardInterrupt" in err
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _running(pid)


def test_atexit_hook_stops_running_instances(tmp_path: Path) -> None:
    exe = _fake_executable(tmp_path, "exec sleep 60")
    process = AzuriteProcess(exe, stop_timeout=0.5)
    process._launch(exe)  # launched but not waited for, as if interrupted mid-start
    pid = process.pid
    assert process in azurite_module._live
    azurite_module._live.stop_all()
    assert not _pid_exists(pid)
    assert process not in azurite_module._live
