"""Running the simulator: a threaded Werkzeug server on loopback, in a background thread."""

from __future__ import annotations

import threading
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import SimulatorApp
from .clock import Clock, SystemClock
from .config import LatencyConfig, LroConfig, SimulatorConfig
from .estate import Estate
from .faults import FaultConfig, FaultRule
from .state import SimulatorState
from .throttling import ThrottleConfig


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the simulator keeps its own request log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SimulatorServer:
    """The management-API simulator on ``http://127.0.0.1:PORT``.

    ::

        with SimulatorServer(Estate.generate(machines=10)) as server:
            compute = ComputeManagementClient(credential, sub, base_url=server.url, ...)
            ...
            assert server.state.count("vm.start", vm_id) == 1

    ``port=0`` picks a free port. ``clock`` defaults to the system clock; pass a
    :class:`~prepost.simulator.clock.ManualClock` to move time in tests.
    """

    def __init__(
        self,
        estate: Estate | None = None,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self.estate = estate if estate is not None else Estate.generate()
        self.config = config or SimulatorConfig()
        self.clock = clock or SystemClock()
        self._stopping = threading.Event()
        self.app = SimulatorApp(self.estate, self.config, self.clock, self._stopping)
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SimulatorServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._stopping.clear()
        self._server = make_server(self._host, self._port, self.app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="prepost-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests held by simulated timeouts or latency are released first."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ access
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the ``base_url`` for the Azure SDK clients."""
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return f"http://{self._host}:{self._server.server_port}"

    @property
    def state(self) -> SimulatorState:
        """Thread-safe access to VMs, snapshots, alert rules, cancellations, counts and the request log."""
        return self.app.state

    # ------------------------------------------------------------------ configuration
    def configure_faults(self, faults: FaultConfig | None = None) -> FaultConfig:
        """Replace the fault configuration (``None``: no faults). Returns the one in force."""
        self.app.faults.configure(faults or FaultConfig())
        return self.app.faults.config

    def add_fault_rule(self, rule: FaultRule) -> FaultRule:
        """Add one deterministic rule to the faults in force."""
        return self.app.faults.add_rule(rule)

    def fail_next(self, operation: str, times: int = 1, status: int = 500, **options: object) -> FaultRule:
        """Fail the next ``times`` calls of ``operation`` with ``status``."""
        return self.add_fault_rule(FaultRule(str(getattr(operation, "value", operation)), status, times, **options))  # type: ignore[arg-type]

    def fail_matching(self, operation: str, contains: str, status: int = 500, **options: object) -> FaultRule:
        """Always fail ``operation`` for requests whose path or body contains ``contains``."""
        return self.add_fault_rule(
            FaultRule(
                str(getattr(operation, "value", operation)),
                status,
                None,
                resource_contains=contains,
                **options,
            )  # type: ignore[arg-type]
        )

    def configure_throttling(self, throttling: ThrottleConfig) -> None:
        """Replace the request budgets; every bucket starts full."""
        self.app.throttler.configure(throttling)

    def configure_latency(self, latency: LatencyConfig) -> None:
        self.app.config.latency = latency

    def configure_lro(self, lro: LroConfig) -> None:
        self.app.config.lro = lro

    def reset(self) -> None:
        """Back to the seeded estate and the initial configuration; the request log is emptied."""
        self.app.reset()
