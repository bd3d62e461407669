"""Import the SDK's tracing package even when ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` is bad.

opentelemetry-sdk reads that one variable when ``opentelemetry.sdk.trace`` is first imported (its
deprecated ``SPAN_ATTRIBUTE_COUNT_LIMIT`` constant) and raises ValueError for a value that is not a
non-negative integer, so a typo in a pod's env would crash the app at import. ``configure()``
reports a bad limit variable as a settings problem instead (docs/configuration.md, "Errors"): for
that, the package is imported here, once, with the bad value hidden. A good value, or none, costs
one dictionary lookup and imports nothing.
"""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ["SPAN_ATTRIBUTE_COUNT_LIMIT_ENV", "import_sdk_despite_a_bad_limit", "is_bad_limit"]

SPAN_ATTRIBUTE_COUNT_LIMIT_ENV = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"  # the SDK's constant lives in the SDK


def is_bad_limit(value: str) -> bool:
    """What the SDK refuses for an ``OTEL_*_LIMIT`` variable: not empty (its "unset") and not an int >= 0."""
    stripped = value.strip()
    if stripped == "":
        return False
    try:
        return int(stripped) < 0
    except ValueError:
        return True


def import_sdk_despite_a_bad_limit() -> None:
    """If the variable is bad and the SDK not yet imported, import it with the variable hidden."""
    value = os.environ.get(SPAN_ATTRIBUTE_COUNT_LIMIT_ENV)
    if value is None or not is_bad_limit(value) or "opentelemetry.sdk.trace" in sys.modules:
        return
    del os.environ[SPAN_ATTRIBUTE_COUNT_LIMIT_ENV]
    try:
        importlib.import_module("opentelemetry.sdk.trace")
    except Exception:
        pass
    finally:
        os.environ[SPAN_ATTRIBUTE_COUNT_LIMIT_ENV] = value
