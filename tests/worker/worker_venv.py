"""``.venv-worker``: a Python 3.13 environment with the Python worker's own indexing library.

``azure-functions-runtime`` (the library the Functions Python worker loads on Python 3.13 and
later to index and invoke an app) requires Python 3.13, and the project's environment may be
older, so the worker-index test runs it in a separate virtual environment built from the hashed
lock ``requirements-worker.txt``. Beside it, ``runtime-1.0.0/`` holds azure-functions-runtime
1.0.0 (``requirements-worker-presettlement.txt``), the last release without settlement-client
support, to show what such a worker does with the explicit-settlement app. Both locks are written
by ``make lock`` and installed with ``--require-hashes``: every download is checked.

Run ``python -m tests.worker.worker_venv`` (``make worker-venv``) to build it; the test builds it
too when it is missing or out of date. Python 3.13 is found as ``PREPOST_WORKER_PYTHON``,
``python3.13`` on the PATH, or the newest pyenv 3.13; failing those, uv downloads one.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-worker"
REQUIREMENTS = ROOT / "requirements-worker.txt"
PRE_SETTLEMENT_REQUIREMENTS = ROOT / "requirements-worker-presettlement.txt"
PRE_SETTLEMENT_RUNTIME = "1.0.0"
"""azure-functions-runtime 1.0.0 rejects a parameter bound to no binding; 1.1.0 added the settlement client."""
PRE_SETTLEMENT_PATH = VENV / f"runtime-{PRE_SETTLEMENT_RUNTIME}"
_STAMP = VENV / ".installed"


class WorkerPythonMissing(RuntimeError):
    """No Python 3.13 to build the worker environment with."""


def python() -> Path:
    return VENV / "bin" / "python"


def find_python313() -> str:
    """A Python 3.13 interpreter: PREPOST_WORKER_PYTHON, python3.13 on the PATH, or pyenv's."""
    candidates = [os.environ.get("PREPOST_WORKER_PYTHON"), shutil.which("python3.13")]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.13*/bin/python3.13"), reverse=True)
    for candidate in filter(None, candidates):
        done = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] >= (3, 13))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
    managed = _uv_python313()
    if managed:
        return managed
    raise WorkerPythonMissing(
        "the worker-index test needs Python 3.13 (azure-functions-runtime requires it) and none was found "
        "nor could uv download one: install it (e.g. `pyenv install 3.13`) or point PREPOST_WORKER_PYTHON at one"
    )


UV_VERSION = "0.13.8"
"""The uv the Makefile's ``make lock`` uses too (``.venv/uv``)."""


def _uv_python313() -> str | None:
    """A Python 3.13 that uv manages, downloaded once when no other is on the machine.

    So that ``make test`` needs nothing beyond the Quick start's Python 3.11: uv comes from PyPI
    (into ``.venv/uv``, where ``make lock`` puts it) and fetches a standalone CPython build.
    """
    uv = shutil.which("uv") or str(ROOT / ".venv" / "uv" / "bin" / "uv")
    if not Path(uv).exists():
        home = ROOT / ".venv" / "uv"
        made = subprocess.run([sys.executable, "-m", "venv", str(home)], capture_output=True, check=False)
        pip = [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}"]
        if made.returncode != 0 or subprocess.run(pip, capture_output=True, check=False).returncode != 0:
            return None
    if subprocess.run([uv, "python", "install", "3.13"], capture_output=True, check=False).returncode != 0:
        return None
    found = subprocess.run([uv, "python", "find", "3.13"], capture_output=True, text=True, check=False)
    return found.stdout.strip() or None if found.returncode == 0 else None


def _fingerprint() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(PRE_SETTLEMENT_REQUIREMENTS.read_bytes())
    return digest.hexdigest()


def ensure() -> Path:
    """Build or refresh ``.venv-worker`` when its requirements changed; the path of its Python.

    Safe to call from concurrent test sessions: a file lock serialises the build.
    """
    VENV.parent.mkdir(parents=True, exist_ok=True)
    lock_path = ROOT / ".venv-worker.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _STAMP.exists() and _STAMP.read_text() == _fingerprint() and python().exists():
            return python()
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([find_python313(), "-m", "venv", str(VENV)], check=True)
        pip = [str(python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes"]
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
        # The lock holds azure-functions-runtime alone (make lock resolves it with --no-deps).
        pre_settlement = ["--no-deps", "--target", str(PRE_SETTLEMENT_PATH), "-r", str(PRE_SETTLEMENT_REQUIREMENTS)]
        subprocess.run([*pip, *pre_settlement], check=True)
        _STAMP.write_text(_fingerprint())
        return python()


if __name__ == "__main__":
    try:
        print(ensure())
    except WorkerPythonMissing as error:
        print(f"worker-venv: {error}", file=sys.stderr)
        sys.exit(2)
