"""The one rule for a boolean environment variable, as OpenTelemetry's configuration spec words it.

``true`` (any case, surrounding blanks ignored) is on; unset, empty or ``false`` is off; any other
value is off too, and is reported: by ``configure()`` as a settings problem, by an adapter that
reads its own variable as one warning per variable and value (docs/configuration.md, "Errors").
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Optional

__all__ = ["env_flag", "forget_reported", "parse_flag"]

_logger = logging.getLogger("k8s_otel")
_reported: set[tuple[str, str]] = set()
_lock = threading.Lock()


def parse_flag(text: str) -> Optional[bool]:
    """``true`` or ``false`` in any case, else None (not a boolean)."""
    value = text.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def env_flag(name: str, off_means: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """An adapter's own boolean variable: on only for ``true``; a bad value is warned about once."""
    text = (os.environ if environ is None else environ).get(name, "")
    if not text.strip():
        return False
    flag = parse_flag(text)
    if flag is not None:
        return flag
    shown = text.strip()[:40]
    with _lock:
        first = (name, shown) not in _reported
        _reported.add((name, shown))
    if first:
        _logger.warning("k8s_otel: %s=%r is not true or false; %s", name, shown, off_means)
    return False


def forget_reported() -> None:
    """Warn again about values already warned about (for tests, which each start afresh)."""
    with _lock:
        _reported.clear()
