"""Programs the tests run in a fresh interpreter, as modules that ruff and mypy check.

A test runs one with ``run(module, *args)`` (``python -m subprocess_scripts.<module> <args>``, with
``tests/`` on ``PYTHONPATH``); each module's ``main`` picks a scenario by its first argument.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

TESTS = Path(__file__).resolve().parent.parent


def command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"subprocess_scripts.{module}", *args]


def environment(env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """``env`` (the whole environment; the test's own when None), with ``tests/`` importable."""
    merged = dict(os.environ if env is None else env)
    merged["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), merged.get("PYTHONPATH")]))
    return merged


def run(
    module: str, *args: str, env: Optional[Mapping[str, str]] = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(module, *args),
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
