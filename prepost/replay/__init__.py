"""Operator replay: poison-queue messages back to their queue (:mod:`.poison`), dead-lettered
events back to the intake (:mod:`.events`), both reporting :class:`.result.ReplayResult`.

Both are safe to repeat because every handler is idempotent: runs and phases are created only
if absent, task messages have deterministic ids and their results live in
``PrepostIdempotency``, outcomes for finished tasks are ignored, snapshots have deterministic
names. Replaying does not bypass any check: a message still wrong is parked again, an event
still invalid is recorded as rejected again.
"""

from prepost.replay.events import (
    DEAD_LETTER_FIELDS,
    REPLAYED_PREFIX,
    BlobOutcome,
    BlobReplay,
    DeadLetterBlob,
    DeadLetteredEvent,
    DeadLetterFormatError,
    blob_container,
    deliverer,
    describe_delivery,
    list_dead_letter_blobs,
    parse_dead_letter_events,
    read_dead_letter_file,
    redact_url,
    replay_dead_letter_blobs,
    strip_dead_letter_fields,
)
from prepost.replay.poison import (
    HOST_POISON_REASON,
    PEEK_LIMIT,
    MessageOutcome,
    PoisonMessage,
    PoisonReplay,
    PoisonResult,
    PoisonSummary,
    decode_queue_text,
    describe_body,
    peek_poison,
    poison_message,
    poison_queue_clients,
    replay_poison,
    summarize_poison,
)
from prepost.replay.result import ReplayOutcome, ReplayResult, ReplaySummary

__all__ = [
    "DEAD_LETTER_FIELDS",
    "HOST_POISON_REASON",
    "PEEK_LIMIT",
    "REPLAYED_PREFIX",
    "BlobOutcome",
    "BlobReplay",
    "DeadLetterBlob",
    "DeadLetterFormatError",
    "DeadLetteredEvent",
    "MessageOutcome",
    "PoisonMessage",
    "PoisonReplay",
    "PoisonResult",
    "PoisonSummary",
    "ReplayOutcome",
    "ReplayResult",
    "ReplaySummary",
    "blob_container",
    "decode_queue_text",
    "deliverer",
    "describe_body",
    "describe_delivery",
    "list_dead_letter_blobs",
    "parse_dead_letter_events",
    "peek_poison",
    "poison_message",
    "poison_queue_clients",
    "read_dead_letter_file",
    "redact_url",
    "replay_dead_letter_blobs",
    "replay_poison",
    "strip_dead_letter_fields",
    "summarize_poison",
]
