""".funcignore keeps the deployment package to what the function app runs.

Core Tools (``func azure functionapp publish``) and ``azd deploy`` read ``.funcignore`` with
gitignore syntax, so it is evaluated here with ``pathspec``'s gitignore implementation. Two
checks: a list of paths that must never ship (secrets, local state, caches, development files),
and an allowlist walk of the working tree, so a new top-level file or folder that nobody thought
about fails here instead of being uploaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parents[2]

# What the function app needs at run time: the entry point, the host configuration, what Azure
# installs, and the two packages function_app.py imports.
SHIPPED_FILES = {"function_app.py", "host.json", "requirements.txt"}
SHIPPED_DIRS = ("functions/", "shared/")

NEVER_SHIP = [
    # secrets and local state
    "local.settings.json",
    ".env",
    ".azure/dev/.env",
    ".azure/config.json",
    ".azurite/__azurite_db_table__.json",
    ".prepost/state.json",
    "bench-results/run.json",
    # environments and caches
    ".venv/bin/python",
    ".venv/checkov/bin/checkov",
    ".venv-worker/bin/python",
    ".venv-worker.lock",
    "venv/bin/python",
    "node_modules/.bin/azurite",
    ".ruff_cache/0.17.6/123",
    ".pytest_cache/v/cache/lastfailed",
    ".mypy_cache/3.11/x.json",
    ".hypothesis/examples/abc",
    "shared/__pycache__/bootstrap.cpython-311.pyc",
    "shared/bootstrap.pyc",
    ".coverage",
    "htmlcov/index.html",
    "prepost.egg-info/PKG-INFO",
    "build/lib/shared/names.py",
    "dist/prepost-0.1.0.tar.gz",
    # version control, CI, editors
    ".git/HEAD",
    ".gitignore",
    ".funcignore",
    ".ci/run",
    ".vscode/settings.json",
    ".idea/workspace.xml",
    # development-only files
    "requirements-dev.txt",
    "requirements-dev.in",
    "requirements.in",
    "requirements-worker.txt",
    "requirements-worker.in",
    "requirements-worker-presettlement.in",
    "requirements-worker-presettlement.txt",
    "pyproject.toml",
    "Makefile",
    "README.md",
    "azure.yaml",
    "docker-compose.yml",
    "package.json",
    "package-lock.json",
    "local.settings.sample.json",
    "prepost/cli.py",
    "prepost/simulator/app.py",
    "tests/conftest.py",
    "bench/__main__.py",
    "docs/deploy.md",
    "infra/main.bicep",
    "infra/hooks/postdeploy.sh",
]

MUST_SHIP = [
    "function_app.py",
    "host.json",
    "requirements.txt",
    "functions/__init__.py",
    "shared/bootstrap.py",
    "shared/adapters/arm/compute.py",
]


def spec() -> pathspec.PathSpec:
    lines = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    # Negations re-include files under an ignored folder in some tools and not in others: keep
    # the file unambiguous.
    assert not [line for line in lines if line.startswith("!")], ".funcignore must not use negations"
    return pathspec.GitIgnoreSpec.from_lines(lines)


def ignored(path: str) -> bool:
    return spec().match_file(path)


@pytest.mark.parametrize("path", NEVER_SHIP)
def test_path_never_ships(path: str):
    assert ignored(path), f"{path} would be uploaded with the function app; add it to .funcignore"


@pytest.mark.parametrize("path", MUST_SHIP)
def test_runtime_file_ships(path: str):
    assert not ignored(path), f"{path} is needed at run time but .funcignore leaves it out"


def shipped(root: Path) -> Iterator[str]:
    """Every file of the working tree the package would hold, without descending into ignored folders."""
    matcher = spec()
    for directory, folders, files in os.walk(root):
        relative = Path(directory).relative_to(root)
        kept = []
        for folder in folders:
            path = (relative / folder).as_posix()
            if matcher.match_file(path + "/"):
                continue
            if (Path(directory) / folder).is_symlink():
                # A symlinked folder (node_modules in a worktree) is uploaded as its target's files.
                yield path + "/"
                continue
            kept.append(folder)
        folders[:] = kept
        for name in files:
            path = (relative / name).as_posix()
            if not matcher.match_file(path):
                yield path


def test_only_the_runtime_files_ship_from_this_working_tree():
    unexpected = sorted(
        path for path in shipped(ROOT) if path not in SHIPPED_FILES and not path.startswith(SHIPPED_DIRS)
    )
    assert unexpected == [], f"these would be uploaded with the function app: {unexpected}"


def test_the_walk_finds_a_stray_file(tmp_path: Path):
    # Guards the test above: a walk that found nothing would make it pass vacuously.
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "names.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / ".ruff_cache").mkdir()
    (tmp_path / ".ruff_cache" / "x").write_text("")
    assert sorted(shipped(tmp_path)) == ["notes.txt", "shared/names.py"]
