"""A loopback HTTP proxy in front of one Azurite service (queue or table) that injects storage faults.

The app's storage clients retry 5xx answers and connection errors with the SDKs' own retry policies. To test
that those retries (and the idempotency behind them) hold up, the faults have to happen on the wire, not in a
fake client: this proxy forwards each request verbatim (method, path and query, headers including ``Host``,
body) to Azurite, so SharedKey signatures stay valid, and answers with Azurite's response verbatim, except
for the requests its :class:`~prepost.chaos.proxy_faults.FaultPlan` picks to fail (500/503 without
forwarding, a reset, a lost response, a timeout). Point the clients at it with
:func:`proxied_connection_string`::

    with StorageFaultProxy(azurite.endpoints.queue_url, "queue", plan=FaultPlan.parse("queue.send=lost@1")) as q:
        connection = proxied_connection_string(azurite.endpoints.connection_string, queue_endpoint=q.url)

One proxy serves one service; the chaos drill runs one for queues and one for tables. Control requests
under ``/_proxy/`` (a path no storage account can have: account names have no underscore) are answered by
the proxy itself and never faulted or counted:

``GET /_proxy/stats``
    Requests and injected faults so far, per operation and kind (:meth:`StorageFaultProxy.stats`).
``GET /_proxy/faults``, ``POST /_proxy/faults``
    The plan as JSON; replace it with a JSON body, or with a ``text/plain`` body in the text form.
``POST /_proxy/pause``, ``POST /_proxy/resume``
    While paused, requests pass through untouched and do not advance the plan (counted, never faulted).

Run as a process of its own with ``python -m prepost.chaos.proxy`` (see :func:`main`), or through
:class:`~prepost.chaos.proxy_process.ProxyProcess`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import logging
import os
import select
import signal
import socket
import socketserver
import struct
import sys
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prepost.chaos.proxy_faults import (
    OPERATIONS,
    SERVICES,
    Decision,
    FaultDecider,
    FaultKind,
    FaultPlan,
    FaultRates,
    FaultRule,
    Service,
    classify,
)
from prepost.chaos.proxy_process import ProxyError, ProxyProcess, ProxyStartError

__all__ = [
    "CONTROL_PREFIX",
    "OPERATIONS",
    "FaultDecider",
    "FaultKind",
    "FaultPlan",
    "FaultRates",
    "FaultRule",
    "ProxyError",
    "ProxyProcess",
    "ProxyStartError",
    "Service",
    "StorageFaultProxy",
    "classify",
    "main",
    "proxied_connection_string",
]

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "/_proxy/"
_LOOPBACK = "127.0.0.1"
_MAX_LINE = 65536
_NO_BODY_STATUSES = frozenset({204, 304})
_SHUTDOWN_POLL_SECONDS = 0.05  # how often serve_forever looks for stop(); its default of 0.5 s slows every stop

#: Azure's own codes and messages for the two injected error statuses.
_ERRORS = {
    FaultKind.ERROR500: (
        500,
        "Internal Server Error",
        "InternalError",
        "Server encountered an internal error. Please try again after some time.",
    ),
    FaultKind.ERROR503: (
        503,
        "Service Unavailable",
        "ServerBusy",
        "The server is currently unable to receive requests. Please retry your request.",
    ),
}


# -- addresses --------------------------------------------------------------------------


def _loopback_address(address: str, what: str) -> tuple[str, int]:
    """``(host, port)`` from ``host:port`` or ``http://host:port[/path]``; only loopback hosts are accepted."""
    text = address.strip()
    split = urlsplit(text if "://" in text else f"//{text}")
    try:
        host, port = split.hostname, split.port
    except ValueError as error:
        raise ValueError(f"{what} {address!r}: {error}") from None
    if not host or port is None:
        raise ValueError(f"{what} {address!r}: expected HOST:PORT or http://HOST:PORT")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        # A test tool that forwards requests signed with the account key has no business leaving the machine.
        raise ValueError(f"{what} {address!r}: only loopback addresses (127.0.0.1) are allowed")
    return host, port


def proxied_connection_string(
    connection_string: str, *, queue_endpoint: str | None = None, table_endpoint: str | None = None
) -> str:
    """``connection_string`` with its ``QueueEndpoint`` and/or ``TableEndpoint`` sent through proxies.

    Only the scheme, host and port of each new endpoint are used; the path (``/devstoreaccount1``) is kept from
    the original, since the account name in the path is part of what Azurite routes and signatures cover. Keys
    match case-insensitively, as the SDKs read them; ``BlobEndpoint`` and everything else stay as they are.

    Raises:
        ValueError: if an endpoint to replace is missing from ``connection_string``.
    """
    replacements = {"queueendpoint": queue_endpoint, "tableendpoint": table_endpoint}
    parts = connection_string.split(";")
    replaced = set()
    for index, part in enumerate(parts):
        key, equals, value = part.partition("=")
        new = replacements.get(key.strip().lower())
        if not equals or new is None:
            continue
        original, proxy = urlsplit(value.strip()), urlsplit(new.strip())
        if not proxy.scheme or not proxy.netloc:
            raise ValueError(f"{key.strip()}: {new!r} is not an http://HOST:PORT address")
        parts[index] = f"{key}={urlunsplit((proxy.scheme, proxy.netloc, original.path, original.query, ''))}"
        replaced.add(key.strip().lower())
    missing = [key for key, new in replacements.items() if new is not None and key not in replaced]
    if missing:
        names = {"queueendpoint": "QueueEndpoint", "tableendpoint": "TableEndpoint"}
        raise ValueError(f"the connection string has no {' or '.join(names[key] for key in missing)} to replace")
    return ";".join(parts)


# -- counting ---------------------------------------------------------------------------


class _Stats:
    """Requests and injected faults per operation and kind; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._faults: dict[str, Counter[str]] = {}
        self._upstream_errors = 0

    def record(self, decision: Decision) -> None:
        with self._lock:
            self._requests[decision.operation] += 1
            if decision.fault is not None:
                self._faults.setdefault(decision.operation, Counter())[decision.fault.value] += 1

    def record_upstream_error(self) -> None:
        with self._lock:
            self._upstream_errors += 1

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._upstream_errors = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_kind: Counter[str] = Counter()
            for counts in self._faults.values():
                by_kind.update(counts)
            return {
                "requests_total": sum(self._requests.values()),
                "requests": dict(sorted(self._requests.items())),
                "faults_total": sum(by_kind.values()),
                "faults_by_kind": {kind.value: by_kind[kind.value] for kind in FaultKind},
                "faults": {op: dict(sorted(counts.items())) for op, counts in sorted(self._faults.items())},
                "upstream_errors": self._upstream_errors,
            }


# -- the proxy --------------------------------------------------------------------------


class StorageFaultProxy:
    """Forwards HTTP/1.1 requests on a loopback port to one Azurite service, injecting the plan's faults.

    Args:
        upstream: the Azurite service, ``127.0.0.1:PORT`` or its URL (any path is ignored).
        service: ``"queue"`` or ``"table"``: how requests are classified and how error bodies look.
        plan: the faults to inject; none by default.
        host, port: where to listen; port 0 picks a free one.
        upstream_timeout: seconds to wait for Azurite to accept a connection or answer.

    Each client connection is served by a thread of its own with its own keep-alive connection to Azurite.
    """

    def __init__(
        self,
        upstream: str,
        service: Service,
        *,
        plan: FaultPlan | None = None,
        host: str = _LOOPBACK,
        port: int = 0,
        upstream_timeout: float = 30.0,
    ) -> None:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
        self.service: Service = service
        self.upstream = _loopback_address(upstream, "upstream")
        self._bind = _loopback_address(f"{host}:{port}", "listen address")
        self.upstream_timeout = upstream_timeout
        self._decider = FaultDecider(plan)
        self._stats = _Stats()
        self._paused = threading.Event()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> StorageFaultProxy:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise ProxyError(f"the proxy is already running at {self.url}")
        self._stopping.clear()
        self._server = _Server(self._bind, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(_SHUTDOWN_POLL_SECONDS,),
            name=f"storage-fault-proxy-{self.service}",
            daemon=True,
        )
        self._thread.start()
        logger.info("%s proxy %s -> %s:%s, plan %s", self.service, self.url, *self.upstream, self.plan.to_text())
        return self

    def stop(self) -> None:
        """Stop serving, drop open client connections and release held requests. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes requests sleeping on latency or held by a timeout fault
        server.shutdown()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # Idle keep-alive connections block their thread in a read: shutting them down ends it.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def port(self) -> int:
        if self._server is None:
            raise ProxyError("the proxy is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, for :func:`proxied_connection_string`."""
        return f"http://{self._bind[0]}:{self.port}"

    def __enter__(self) -> StorageFaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- plan and counts --------------------------------------------------------------

    @property
    def plan(self) -> FaultPlan:
        return self._decider.plan

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace the plan: the random sequence restarts from its seed and rule counts from zero."""
        self._decider.set_plan(plan)
        logger.info("%s proxy plan: %s", self.service, plan.to_text())

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def pause(self) -> None:
        """Let every request through untouched (still counted) until :meth:`resume`."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stats(self) -> dict[str, Any]:
        """Counts so far::

        {"requests_total": 12, "requests": {"queue.send": 3, ...},
         "faults_total": 2, "faults_by_kind": {"error500": 0, "error503": 1, ...},
         "faults": {"queue.send": {"error503": 1, "lost_response": 1}},
         "upstream_errors": 0, "paused": false}

        ``upstream_errors`` counts requests Azurite could not be reached for or did not answer (not faults: the
        client's connection was closed as if it had talked to Azurite directly).
        """
        return {**self._stats.snapshot(), "paused": self.paused}

    def reset_stats(self) -> None:
        self._stats.reset()

    # -- used by the request handler ----------------------------------------------------

    def _decide(self, operation: str) -> Decision:
        decision = Decision(operation) if self.paused else self._decider.decide(operation)
        self._stats.record(decision)
        if decision.fault is not None:
            logger.info("%s proxy: %s on %s", self.service, decision.fault.value, operation)
        return decision

    def _upstream_failed(self, request: str, error: Exception) -> None:
        self._stats.record_upstream_error()
        logger.warning("%s proxy: %s: upstream failed: %r", self.service, request, error)

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the drill opens many client connections at once

    def __init__(self, address: tuple[str, int], proxy: StorageFaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall without DNS; the name is unused.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away: nothing to report
            logger.debug("connection from %s ended: %s", client_address, error)
        else:
            logger.exception("storage fault proxy: error serving %s", client_address)


class _ClientGone(Exception):
    """The client closed its connection in the middle of a request."""


@dataclass(frozen=True)
class _Answer:
    """Azurite's response, read in full."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool


class _Handler(BaseHTTPRequestHandler):
    """One client connection: each request is forwarded, faulted, or answered by the control API."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.proxy = self.server.proxy
        self._upstream: http.client.HTTPConnection | None = None
        self.proxy._track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._close_upstream()
            self.proxy._track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        try:
            if self.path.startswith(CONTROL_PREFIX):
                self._control()
            else:
                self._proxy()
        except _ClientGone:
            self.close_connection = True

    # Every method the storage services use; MERGE is the Table service's older form of PATCH.
    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_MERGE = do_OPTIONS = _dispatch

    # -- proxying ---------------------------------------------------------------------

    def _proxy(self) -> None:
        decision = self.proxy._decide(classify(self.proxy.service, self.command, self.path))
        if decision.delay_seconds and self.proxy._stopping.wait(decision.delay_seconds):
            self._abort()
            return
        if decision.fault is FaultKind.RESET_BEFORE:
            self._abort()
            return
        body = self._read_body()
        if decision.fault in _ERRORS:
            self._send_error_answer(decision.fault)
            return
        try:
            answer = self._forward(body)
        except (OSError, http.client.HTTPException) as error:
            # Pass the failure on as the client would have seen it talking to Azurite directly.
            self.proxy._upstream_failed(f"{self.command} {self.path}", error)
            self._close_upstream()
            self._abort()
            return
        if decision.fault is FaultKind.TIMEOUT:
            self.proxy._stopping.wait(decision.hold_seconds)
        if decision.fault is not None:  # lost_response and timeout: the work is done, the answer is not given
            self._abort()
            return
        self._relay(answer)

    def _read_body(self) -> bytes:
        """The request body exactly as received (still chunk-encoded if it was)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.send_error(400, f"bad Content-Length {length_text!r}")
            raise _ClientGone from None
        return self._read_exactly(length)

    def _read_chunked(self) -> bytes:
        raw = bytearray()
        while True:
            line = self._read_line()
            raw += line
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.send_error(400, "bad chunk size")
                raise _ClientGone from None
            if size == 0:
                break
            raw += self._read_exactly(size + 2)  # the chunk and its CRLF
        while True:  # trailers, up to the empty line
            line = self._read_line()
            raw += line
            if line in (b"\r\n", b"\n"):
                return bytes(raw)

    def _read_line(self) -> bytes:
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise _ClientGone
        return line

    def _read_exactly(self, length: int) -> bytes:
        data = self.rfile.read(length)
        if len(data) != length:
            raise _ClientGone
        return data

    def _upstream_connection(self) -> http.client.HTTPConnection:
        connection = self._upstream
        if connection is not None and connection.sock is not None and _peer_closed(connection.sock):
            # Azurite (Node) closes idle keep-alive connections after a few seconds; reconnect rather than
            # send into a closed connection and fail a request the client never saw fail.
            connection.close()
        if connection is None:
            host, port = self.proxy.upstream
            connection = self._upstream = http.client.HTTPConnection(host, port, timeout=self.proxy.upstream_timeout)
        return connection

    def _forward(self, body: bytes) -> _Answer:
        connection = self._upstream_connection()
        # Headers exactly as received, Host included: SharedKey signs the path, query and x-ms-* headers.
        connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        chunked = bool(response.chunked)
        payload = response.read()
        return _Answer(response.status, response.reason, response.getheaders(), payload, chunked)

    def _relay(self, answer: _Answer) -> None:
        has_body = self.command != "HEAD" and answer.status >= 200 and answer.status not in _NO_BODY_STATUSES
        headers = list(answer.headers)
        framed = answer.chunked or any(name.lower() == "content-length" for name, _ in headers)
        if has_body and not framed:
            # Azurite ended the body by closing; this connection stays open, so the length has to be said.
            headers.append(("Content-Length", str(len(answer.body))))
        self.send_response_only(answer.status, answer.reason)
        for name, value in headers:
            self.send_header(name, value)  # also honours Connection: close
        self.end_headers()
        if has_body:
            if answer.chunked:  # the body was chunked: send it chunked again, headers stay verbatim
                if answer.body:
                    self.wfile.write(b"%X\r\n%s\r\n" % (len(answer.body), answer.body))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.wfile.write(answer.body)
        self.wfile.flush()

    def _send_error_answer(self, kind: FaultKind) -> None:
        status, reason, code, message = _ERRORS[kind]
        request_id = str(uuid.uuid4())
        text = f"{message}\nRequestId:{request_id}\nTime:{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
        if self.proxy.service == "table":
            content_type = "application/json;odata=minimalmetadata;streaming=true;charset=utf-8"
            error = {"odata.error": {"code": code, "message": {"lang": "en-US", "value": text}}}
            body = json.dumps(error, separators=(",", ":")).encode()
        else:
            content_type = "application/xml"
            body = (
                f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{text}</Message></Error>'
            ).encode()
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-ms-request-id", request_id),
            ("x-ms-error-code", code),
            ("Date", formatdate(usegmt=True)),
            ("Server", "prepost-storage-fault-proxy"),
            ("x-prepost-fault", kind.value),  # tells an injected error from a real one in a capture
        ]
        for echoed in ("x-ms-version", "x-ms-client-request-id"):
            if echoed in self.headers:
                headers.append((echoed, self.headers[echoed]))
        self._relay(_Answer(status, reason, headers, body, chunked=False))

    def _abort(self) -> None:
        """Close the client connection without an answer, with a reset (RST) rather than an orderly close."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The socket is really closed (and the RST sent) when finish() closes the rfile/wfile that share it.
            self.connection.close()

    def _close_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    # -- control API ------------------------------------------------------------------

    def _control(self) -> None:
        body = self._read_body()
        route = urlsplit(self.path).path.rstrip("/")
        method = self.command
        proxy = self.proxy
        if route == "/_proxy/stats" and method == "GET":
            self._send_json(200, proxy.stats())
        elif route == "/_proxy/stats/reset" and method == "POST":
            proxy.reset_stats()
            self._send_json(200, proxy.stats())
        elif route == "/_proxy/faults" and method == "GET":
            self._send_json(200, {**proxy.plan.to_json(), "text": proxy.plan.to_text()})
        elif route == "/_proxy/faults" and method == "POST":
            try:
                # get_content_type() would say text/plain for a missing header too: JSON is the default here.
                text_plain = self.headers.get("Content-Type", "").split(";")[0].strip().lower() == "text/plain"
                plan = FaultPlan.parse(body.decode()) if text_plain else FaultPlan.from_json(body or b"{}")
            except (UnicodeDecodeError, ValueError) as error:
                self._send_json(400, {"error": str(error)})
                return
            proxy.set_plan(plan)
            self._send_json(200, {**plan.to_json(), "text": plan.to_text()})
        elif route in ("/_proxy/pause", "/_proxy/resume") and method == "POST":
            if route.endswith("pause"):
                proxy.pause()
            else:
                proxy.resume()
            self._send_json(200, {"paused": proxy.paused})
        elif route in _CONTROL_ROUTES:
            self._send_json(405, {"error": f"{method} is not allowed on {route}"})
        else:
            self._send_json(404, {"error": f"no control route {route}; known: {', '.join(sorted(_CONTROL_ROUTES))}"})

    def _send_json(self, status: int, data: Any) -> None:
        body = json.dumps(data, indent=2).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        self._relay(_Answer(status, http.client.responses.get(status, ""), headers, body, chunked=False))


_CONTROL_ROUTES = frozenset(
    {"/_proxy/stats", "/_proxy/stats/reset", "/_proxy/faults", "/_proxy/pause", "/_proxy/resume"}
)


def _peer_closed(sock: socket.socket) -> bool:
    """True if an idle connection is readable: the peer closed it (or sent something unasked)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# -- command line -----------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m prepost.chaos.proxy",
        description="Serve a storage fault proxy in front of one Azurite service until SIGTERM or Ctrl-C.",
    )
    parser.add_argument("--upstream", required=True, help="the Azurite service, 127.0.0.1:PORT (or its URL)")
    parser.add_argument("--service", required=True, choices=SERVICES, help="which service the upstream is")
    parser.add_argument("--host", default=_LOOPBACK, help="address to listen on (loopback only; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default 0: any free port)")
    parser.add_argument("--faults", default="", help="the fault plan in the text form (default: no faults)")
    parser.add_argument("--faults-json", type=Path, metavar="PATH", help="the fault plan as a JSON file instead")
    parser.add_argument("--seed", type=int, help="random seed, overriding the plan's")
    parser.add_argument("--ready-file", type=Path, metavar="PATH", help="write the proxy's URL here once it listens")
    parser.add_argument("--log-level", default="WARNING", help="logging level on stderr (default WARNING)")
    return parser.parse_args(argv)


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` so that a reader polling for ``path`` never sees it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a proxy until SIGTERM or SIGINT; print its URL (and write ``--ready-file``) once it listens."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        plan = FaultPlan.from_json(args.faults_json.read_bytes()) if args.faults_json else FaultPlan.parse(args.faults)
        if args.seed is not None:
            plan = plan.with_seed(args.seed)
        proxy = StorageFaultProxy(args.upstream, args.service, plan=plan, host=args.host, port=args.port)
    except (OSError, ValueError) as error:
        print(f"storage fault proxy: {error}", file=sys.stderr)
        return 2
    stopped = threading.Event()
    # Installed before listening, so a SIGTERM right after the ready file appears still stops cleanly.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    proxy.start()
    try:
        print(proxy.url, flush=True)
        if args.ready_file is not None:
            _write_atomically(args.ready_file, proxy.url + "\n")
        stopped.wait()
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
