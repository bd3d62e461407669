"""Runs a scenario with some packages made to look uninstalled (tests/test_cli_packaging.py).

``python -m subprocess_scripts.without BLOCKED SCENARIO [ARGS...]``: BLOCKED is a comma-separated
list of top-level names whose import fails as it would without their extra; this stands in for a
bare install, which cannot be made here since the test environment has every extra installed.
Nothing from k8s_otel is imported before the blocker is in place.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Callable, Optional


class Uninstalled(importlib.abc.MetaPathFinder):
    def __init__(self, blocked: Sequence[str]) -> None:
        self.blocked = tuple(blocked)

    def find_spec(
        self, name: str, path: Optional[Sequence[str]] = None, target: Optional[ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if any(name == b or name.startswith(b + ".") for b in self.blocked):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def import_error(module: str) -> None:
    """Print whether the ImportError is a ModuleNotFoundError and a K8sOtelError, and the missing
    name, on one line; its message on the next."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        from k8s_otel import K8sOtelError

        print(isinstance(error, ModuleNotFoundError) and isinstance(error, K8sOtelError), error.name)
        print(error)


def import_ok(module: str) -> None:
    importlib.import_module(module)
    print("ok")


def cli(*args: str) -> None:
    from k8s_otel.cli import main

    sys.exit(main(list(args)))


SCENARIOS: dict[str, Callable[..., None]] = {f.__name__: f for f in (import_error, import_ok, cli)}


def main(argv: list[str]) -> None:
    blocked, scenario, *args = argv
    sys.meta_path.insert(0, Uninstalled(blocked.split(",")))
    SCENARIOS[scenario](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
