"""Measuring: wall time, repeats and medians, Python heap peaks, a fresh interpreter's RSS, and
HTTP round trips counted per port.

Every number the bench reports comes from one of these helpers, and every pipeline number is
paired with a baseline measured the same way in the same run: only the ratio means anything
from one machine to the next.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One measure of a benchmark: the pipeline against its same-run baseline.

    ``ratio`` is always the pipeline's cost divided by the baseline's cost, so 1.0 means "as
    cheap as the baseline" and 3.0 "three times the time (or memory) of the baseline". For a
    rate (events per second) the cost is its inverse: ``ratio = baseline / pipeline``.
    """

    measure: str
    unit: str
    pipeline: float
    baseline: float
    ratio: float
    note: str = ""

    @classmethod
    def cost(cls, measure: str, unit: str, pipeline: float, baseline: float, note: str = "") -> Row:
        """A time or memory measure: lower is better."""
        return cls(measure, unit, pipeline, baseline, _divide(pipeline, baseline), note)

    @classmethod
    def rate(cls, measure: str, unit: str, pipeline: float, baseline: float, note: str = "") -> Row:
        """A throughput measure: higher is better, so the ratio is baseline over pipeline."""
        return cls(measure, unit, pipeline, baseline, _divide(baseline, pipeline), note)

    def to_json(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "unit": self.unit,
            "pipeline": self.pipeline,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "note": self.note,
        }


@dataclass
class Result:
    """What one benchmark hands back: its rows, the details behind them, how long it took."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "rows": [row.to_json() for row in self.rows],
            "details": self.details,
            "seconds": round(self.seconds, 2),
            "error": self.error,
        }


def _divide(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


# -- time ----------------------------------------------------------------------------------


def timed(function: Callable[[], T]) -> tuple[T, float]:
    """Call ``function`` once; its result and the wall time in seconds (``perf_counter``)."""
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


@dataclass(frozen=True)
class Timing:
    wall: float
    """Seconds on the wall clock (``perf_counter``)."""
    cpu: float
    """CPU seconds of this whole process, every thread (``process_time``): the Python side's own
    work. Azurite runs in its own process and is not in it; the simulator's threads are."""


def timed_cpu(function: Callable[[], T]) -> tuple[T, Timing]:
    """Call ``function`` once; its result, its wall time and this process's CPU time."""
    cpu_started, started = time.process_time(), time.perf_counter()
    result = function()
    return result, Timing(time.perf_counter() - started, time.process_time() - cpu_started)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of a list of samples, for the JSON details."""
    if not values:
        return {}
    return {"median": median(values), "min": min(values), "max": max(values), "n": len(values)}


def alternate(pipeline: Callable[[int], T], baseline: Callable[[int], T], rounds: int) -> tuple[list[T], list[T]]:
    """Run pipeline and baseline in turn, ``rounds`` times each, and return both sample lists.

    Taking turns puts both under the same conditions: a busy neighbour, a warming cache or an
    emulator that slows down as it fills touches both sides alike, and the ratio stays fair.
    The pipeline goes first in each round so that its baseline can repeat exactly the work it
    just did. Each callable gets the round number and returns its own measurement.
    """
    pipeline_samples: list[T] = []
    baseline_samples: list[T] = []
    for round_number in range(rounds):
        pipeline_samples.append(pipeline(round_number))
        baseline_samples.append(baseline(round_number))
    return pipeline_samples, baseline_samples


# -- memory --------------------------------------------------------------------------------


def traced_peak(function: Callable[[], T]) -> tuple[T, int]:
    """Call ``function`` with ``tracemalloc`` on; its result and the peak of Python heap
    allocations made during the call (bytes above what was allocated when it started).

    Tracing slows allocation-heavy code a lot, so never time a call measured this way.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        result = function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, max(peak - start, 0)


PROBE = """
import importlib, json, resource, sys, time

def peak_rss_kib():
    # VmHWM: the peak RSS of this process image. ru_maxrss would do on its own, but Linux
    # carries the parent's RSS at fork over exec into it, so it would start at the parent's size.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

before = peak_rss_kib()
loaded = set(sys.modules)
started = time.perf_counter()
for name in sys.argv[1:]:
    importlib.import_module(name)
seconds = time.perf_counter() - started
after = peak_rss_kib()
print(json.dumps({
    "seconds": seconds,
    "peak_rss_before_kib": before,
    "peak_rss_after_kib": after,
    "modules": sorted(set(sys.modules) - loaded),
}))
"""


@dataclass(frozen=True)
class ImportProbe:
    """One fresh interpreter importing some modules: time and RSS growth of the imports only."""

    seconds: float
    rss_growth_kib: int
    """Growth of the process's peak RSS across the imports (``VmHWM`` on Linux, KiB)."""
    rss_peak_kib: int
    modules: list[str]


def import_in_fresh_interpreter(modules: list[str], *, cwd: str, env: Mapping[str, str] | None = None) -> ImportProbe:
    """Start ``python`` afresh, import ``modules`` and report what the imports cost.

    Interpreter start-up is left out: the clock and the RSS reading start after it, just
    before the first import, as a Functions worker loads the app after its own start-up.
    """
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        cwd=cwd,
        env=dict(os.environ if env is None else env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"importing {', '.join(modules)} failed:\n{completed.stderr.strip()[-2000:]}")
    data = json.loads(completed.stdout.strip().splitlines()[-1])
    return ImportProbe(
        seconds=data["seconds"],
        rss_growth_kib=data["peak_rss_after_kib"] - data["peak_rss_before_kib"],
        rss_peak_kib=data["peak_rss_after_kib"],
        modules=data["modules"],
    )


# -- round trips ---------------------------------------------------------------------------


class _RequestCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.by_port: Counter[int] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        # urllib3 logs every response as '%s://%s:%s "%s %s %s" %s %s' (scheme, host, port...).
        args = record.args
        if isinstance(args, tuple) and len(args) >= 4 and str(record.msg).startswith("%s://%s:%s"):
            with contextlib.suppress(TypeError, ValueError):
                self.by_port[int(args[2])] += 1


@contextlib.contextmanager
def count_http_requests() -> Iterator[Counter[int]]:
    """Count the HTTP requests this process sends, by server port, while the block runs.

    Every Azure SDK client here sends through ``requests`` and ``urllib3``, which logs each
    response at DEBUG level; the counter listens to that logger and nothing else, and the
    logger's records do not reach the console. Logging costs time: do not time a block that
    counts.
    """
    logger = logging.getLogger("urllib3.connectionpool")
    handler = _RequestCounter()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler.by_port
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class _StorageCallLog(logging.Handler):
    """Every HTTP request by port, method and first path segment after the account (the table
    or queue): ``(10002, "GET", "PrepostTasks")``."""

    def __init__(self, exclude_threads: tuple[str, ...] = ()) -> None:
        super().__init__(level=logging.DEBUG)
        self.calls: Counter[tuple[int, str, str]] = Counter()
        self.threads: Counter[str] = Counter()
        self.exclude_threads = exclude_threads
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if not (isinstance(args, tuple) and len(args) >= 5 and str(record.msg).startswith("%s://%s:%s")):
            return
        if record.threadName in self.exclude_threads:
            return
        with contextlib.suppress(TypeError, ValueError):
            method, url = str(args[3]), str(args[4])
            # /devstoreaccount1/<table or queue>[(keys)][/messages[/id]]?query
            parts = url.split("?", 1)[0].split("/")
            resource = (parts[2] if len(parts) > 2 else "").split("(", 1)[0]
            if method == "GET" and "peekonly=true" in url.lower():
                method = "PEEK"
            with self._lock:
                self.calls[(int(args[2]), method, resource)] += 1
                self.threads[record.threadName.rstrip("_0123456789")] += 1


@contextlib.contextmanager
def count_calls_by_resource(*, exclude_threads: tuple[str, ...] = ()) -> Iterator[Counter[tuple[int, str, str]]]:
    """Count HTTP requests by (port, method, table or queue) while the block runs; the caller maps
    ports to services once it knows them. Requests made by ``exclude_threads`` (a harness polling
    the records from its main thread) are not counted. Same mechanism as :func:`count_http_requests`."""
    logger = logging.getLogger("urllib3.connectionpool")
    handler = _StorageCallLog(exclude_threads)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler.calls
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sampled_rss_peak(function: Callable[[], T], *, interval: float = 0.02) -> tuple[T, int, int]:
    """Call ``function`` while a thread samples this process's resident memory; its result, the
    highest RSS seen (bytes) and the RSS when it started. Unlike :func:`traced_peak` it barely
    slows the call, so a timed run can be measured this way (Linux: ``/proc/self/statm``)."""
    start = _rss_bytes()
    peak = start
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(interval):
            peak = max(peak, _rss_bytes())

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        result = function()
    finally:
        done.set()
        sampler.join()
    return result, max(peak, _rss_bytes()), start
