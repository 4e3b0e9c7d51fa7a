"""Where a running local stack tells the other CLI commands how to reach it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from prepost.local.host_config import REPO_ROOT


def state_dir() -> Path:
    return Path(os.environ.get("PREPOST_STATE_DIR", REPO_ROOT / ".prepost"))


@dataclass
class StackState:
    storage_connection: str
    webhook_url: str | None = None
    simulator_url: str | None = None
    configuration_id: str | None = None
    subscription_ids: list[str] | None = None
    pid: int | None = None
    estate_file: str | None = None
    """The estate file the stack was started with (``local up --estate``), absolute."""

    def save(self) -> Path:
        path = state_dir() / "local-stack.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls) -> StackState | None:
        path = state_dir() / "local-stack.json"
        if not path.exists():
            return None
        fields = json.loads(path.read_text())
        known = {name: value for name, value in fields.items() if name in cls.__dataclass_fields__}
        state = cls(**known)
        if state.pid and not _alive(state.pid):
            return None
        return state

    @staticmethod
    def clear() -> None:
        (state_dir() / "local-stack.json").unlink(missing_ok=True)


def remember_run(correlation_id: str) -> None:
    path = state_dir() / "last-run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"correlationId": correlation_id}))


def last_run() -> str | None:
    path = state_dir() / "last-run.json"
    return json.loads(path.read_text()).get("correlationId") if path.exists() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
