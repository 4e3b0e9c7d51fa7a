"""Precise errors a caller can act on."""

from __future__ import annotations

from datetime import timedelta


class PrepostError(Exception):
    """Base class of every error raised on purpose by prepost."""


class SettingsError(PrepostError):
    """An application setting is missing or malformed; nothing can run until it is fixed."""


class InvalidEvent(PrepostError):
    """An event of a supported type whose content is wrong. Not retried: it is recorded as rejected."""

    def __init__(self, reasons: list[str]):
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


class UnsupportedEventType(PrepostError):
    """An event that is not a maintenance pre- or post-event. Ignored visibly, never retried."""

    def __init__(self, event_type: str):
        self.event_type = event_type
        super().__init__(f"event type {event_type!r} is not handled by prepost")


class MalformedPayload(PrepostError):
    """A delivery body that is not a JSON event or array of events."""


class InvalidMessage(PrepostError):
    """A work message that cannot be decoded. Permanent: it goes to the poison/dead-letter queue."""


class TransientError(PrepostError):
    """A failure worth retrying later (throttling, 5xx, timeouts)."""

    def __init__(self, message: str, *, retry_after: timedelta | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Throttled(TransientError):
    """Azure answered 429; ``retry_after`` is what it asked for."""


class Deferred(TransientError):
    """The app's own ARM rate control put the work off before sending anything (``retry_after``).

    Not a failed attempt: nothing was tried, so the task is sent again with the same attempt.
    """


class PermanentError(PrepostError):
    """A failure that retrying cannot fix (not found, forbidden, invalid request)."""


class NotAllowed(PermanentError):
    """The resource is outside the subscriptions or configurations prepost may act on."""


class InvalidIdentifier(PermanentError):
    """An id or name that breaks Azure's naming rules: it is never put in a request."""


class MessageRejected(InvalidMessage):
    """A well-formed message that disagrees with its task record or the allowed subscriptions.

    Nothing is done on Azure for it: it is parked (or dead-lettered) with the reason, and the
    task record is left as it was, so the genuine message still does the task.
    """
