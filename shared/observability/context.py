"""Log dimensions: every record logged while a message is handled carries its run, phase,
task and queue as attributes, not only inside the message text.

The dimensions live in a context variable set around each invocation (:func:`log_context`),
so concurrent invocations in one worker (threads) each see their own. A log record factory
copies them onto every record: Python's logging keeps extra record attributes, the local
runner's formatter can show them, and OpenTelemetry's logging handler exports every
non-standard record attribute as a log attribute (``customDimensions`` in Application
Insights), where alert rules and queries filter on them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

DIMENSIONS = ("run_key", "phase", "task", "queue")
"""The attribute names every record carries (an empty string when not known)."""

_current: ContextVar[Mapping[str, str]] = ContextVar("prepost_log_context", default=MappingProxyType({}))
_installed = False


@contextmanager
def log_context(**dimensions: str | None) -> Iterator[None]:
    """Add dimensions (``run_key``, ``phase``, ``task``, ``queue``) for the block; nested blocks add to them."""
    unknown = set(dimensions) - set(DIMENSIONS)
    if unknown:
        raise ValueError(f"unknown log dimensions {sorted(unknown)}")
    merged = {**_current.get(), **{k: str(v) for k, v in dimensions.items() if v}}
    token = _current.set(merged)
    try:
        yield
    finally:
        _current.reset(token)


def current_dimensions() -> dict[str, str]:
    """The dimensions in force, every name present (empty when not known)."""
    values = _current.get()
    return {name: values.get(name, "") for name in DIMENSIONS}


def install() -> None:
    """Make every log record carry the dimensions. Idempotent; cheap (standard library only).

    A record factory rather than a filter: filters on a logger do not see its children's
    records, and the Functions worker owns the handlers. (So ``extra=`` must not name a
    dimension: logging refuses to overwrite a record attribute; use :func:`log_context`.)
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        values = _current.get()
        for name in DIMENSIONS:
            setattr(record, name, values.get(name, ""))
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
