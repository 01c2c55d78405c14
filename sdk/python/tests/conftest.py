"""Shared helpers: the SDK is imported from src/ (installed or not), and child
processes get the same path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python that must import this SDK."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "0"
    env.update(extra)
    return env


@pytest.fixture
def write_script(tmp_path: Path):
    """Writes a processor script (dedented) and returns its path."""

    def write(source: str, name: str = "proc.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source).lstrip())
        return path

    return write


def run_script(args: list[str], timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, timeout=timeout, env=child_env(), **kwargs
    )
