"""The one typed door to wrapt: its own stubs declare its API only for Python >= 3.10."""

from __future__ import annotations

from typing import Any, Callable

import wrapt

__all__ = ["wrap_function_wrapper"]


def wrap_function_wrapper(module: Any, name: str, wrapper: Callable[..., Any]) -> None:
    """``wrapt.wrap_function_wrapper``; undone with ``opentelemetry.instrumentation.utils.unwrap``."""
    wrapt.wrap_function_wrapper(module, name, wrapper)  # type: ignore[attr-defined,unused-ignore]
