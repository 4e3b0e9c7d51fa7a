"""Ruff, run as a test so every ``make test`` (and so CI) lints the Python code.

Ruff lints the whole repository in well under a second, so it costs nothing here; the Bicep
scan (checkov) is slower and runs from the Makefile instead (see docs/deploy.md, "Checking the
templates locally").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"ruff check . reported:\n{result.stdout}{result.stderr}"


def test_ruff_reports_a_violation(tmp_path: Path):
    # Guards the test above: a ruff that checked nothing would make it pass vacuously.
    (tmp_path / "bad.py").write_text("import os\n")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F401", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "F401" in result.stdout
