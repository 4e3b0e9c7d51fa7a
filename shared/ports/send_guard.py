"""A last look right before a request that changes something goes on the wire.

Between a use case's last check of its records and the moment its request leaves, time passes
that the use case does not see: the ARM rate control may pace the request (sleep for a token),
wait for an in-flight slot, the SDK may retry it after a backoff, and several requests of one
action (a snapshot per disk) follow each other. A cancellation accepted, or a post phase begun,
in that time must still stop the request. So a use case states its condition with
:func:`guarded`, and every adapter that sends a request which changes something in Azure calls
:func:`check_before_sending` after any waiting of its own, immediately before that request (and
each retry of it) is sent. The check raises to stop it; nothing is sent then.

The condition travels in a context variable: the adapters' signatures stay as they are, and a
request made outside any :func:`guarded` block (the post phase, reads) is not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

SendCheck = Callable[[], None]
"""Returns when the request may go; raises (the caller's own exception) when it must not."""

_check: ContextVar[SendCheck | None] = ContextVar("prepost_send_check", default=None)


@contextmanager
def guarded(check: SendCheck) -> Iterator[None]:
    """Run ``check`` right before each changing request sent inside the block."""
    token = _check.set(check)
    try:
        yield
    finally:
        _check.reset(token)


def check_before_sending() -> None:
    """For adapters: call immediately before a request that changes something goes on the wire,
    after any pacing, slot or backoff wait. Raises what the guarding use case's check raises."""
    check = _check.get()
    if check is not None:
        check()
