"""What every command shares: the user-error type and the JSON form."""

from __future__ import annotations

import json
from typing import Any

from k8s_otel._exceptions import K8sOtelError

__all__ = ["UserError", "as_json"]


class UserError(K8sOtelError):
    """A problem with what the user asked for: printed as one line, exit code 2."""


def as_json(value: Any) -> str:
    """One line of JSON; tuples as lists, anything else unknown as its text. ASCII only, so no
    control character from a span reaches a terminal raw."""
    return json.dumps(value, default=lambda o: list(o) if isinstance(o, tuple) else str(o), sort_keys=True)
