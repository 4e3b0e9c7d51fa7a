"""The parts of ``host.json`` the local runner honours, read the way the Functions host does."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class QueuesConfig:
    """``extensions.queues`` with the host's documented defaults."""

    batch_size: int = 16
    new_batch_threshold: int | None = None
    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    max_polling_interval: timedelta = timedelta(minutes=1)
    message_encoding: str = "base64"

    @property
    def threshold(self) -> int:
        return self.new_batch_threshold if self.new_batch_threshold is not None else self.batch_size // 2


def _timespan(value: str) -> timedelta:
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?", value.strip())
    if not match:
        raise ValueError(f"not a host.json timespan: {value!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds) + float(f"0.{fraction}" if fraction else 0),
    )


def load_queues_config(path: Path | None = None) -> QueuesConfig:
    data = json.loads((path or REPO_ROOT / "host.json").read_text())
    queues = data.get("extensions", {}).get("queues", {})
    defaults = QueuesConfig()
    return QueuesConfig(
        batch_size=int(queues.get("batchSize", defaults.batch_size)),
        new_batch_threshold=queues.get("newBatchThreshold"),
        max_dequeue_count=int(queues.get("maxDequeueCount", defaults.max_dequeue_count)),
        visibility_timeout=_timespan(queues["visibilityTimeout"])
        if "visibilityTimeout" in queues
        else defaults.visibility_timeout,
        max_polling_interval=_timespan(queues["maxPollingInterval"])
        if "maxPollingInterval" in queues
        else defaults.max_polling_interval,
        message_encoding=queues.get("messageEncoding", defaults.message_encoding),
    )
