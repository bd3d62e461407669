"""Record an exception on a span without its text.

The SDK's ``record_exception`` writes ``exception.message`` *and* ``exception.stacktrace``, and the
stack trace's last line is ``str(error)``: overriding the message hides nothing. The text of an API
error holds the response headers and body, and an app's exception often quotes the admitted object
(``invalid literal for int(): 'c2VjcmV0LXZhbHVl'``). So by default only the type, the HTTP status
and the stack frames are recorded; the message is opt-in (``K8S_OTEL_RECORD_EXCEPTION_MESSAGES``).
"""

from __future__ import annotations

import traceback
from typing import Any, Optional

from opentelemetry.trace import Span, Status, StatusCode

from k8s_otel._attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_EVENT,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from k8s_otel._env import env_flag

__all__ = [
    "MAX_ATTRIBUTE_LENGTH",
    "RECORD_MESSAGES_ENV",
    "bounded",
    "exception_type",
    "record_error",
    "record_messages_from_env",
    "safe_stacktrace",
]

RECORD_MESSAGES_ENV = "K8S_OTEL_RECORD_EXCEPTION_MESSAGES"

#: Longest string this package sets on a span from input. kube-apiserver names are at most 253
#: characters; a longer value is cut, so that no single request can make an export batch too large.
MAX_ATTRIBUTE_LENGTH = 1024

_MAX_FRAMES = 64  # per exception in the chain: a 1,000-deep recursion must not make a 1 MB event
_MAX_CHAIN = 8


def record_messages_from_env() -> bool:
    """Whether ``K8S_OTEL_RECORD_EXCEPTION_MESSAGES`` opts in to recording exception messages."""
    return env_flag(RECORD_MESSAGES_ENV, "exception messages are not recorded")


def bounded(value: str, limit: int = MAX_ATTRIBUTE_LENGTH) -> str:
    """``value`` cut to ``limit`` characters: attributes taken from input are bounded."""
    return value if len(value) <= limit else value[:limit]


def exception_type(error: BaseException) -> str:
    """The fully qualified type name, as the semantic conventions' ``exception.type``."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


def safe_stacktrace(error: BaseException) -> str:
    """The traceback in Python's format, frames and type names only: no exception's text.

    Causes and contexts are included (as Python prints them), each with its type only. Source lines
    are kept: they are the program's code, not its data.
    """
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: Optional[BaseException] = error
    note = ""
    while current is not None and id(current) not in seen and len(chain) < _MAX_CHAIN:
        seen.add(id(current))
        chain.append((current, note))
        if current.__cause__ is not None:
            current, note = (
                current.__cause__,
                "The above exception was the direct cause of the following exception:",
            )
        elif current.__context__ is not None and not current.__suppress_context__:
            current, note = (
                current.__context__,
                "During handling of the above exception, another exception occurred:",
            )
        else:
            current = None
    out: list[str] = []
    for index in range(len(chain) - 1, -1, -1):  # Python prints the oldest exception first
        item, link = chain[index]
        frames = traceback.extract_tb(item.__traceback__)
        if len(frames) > _MAX_FRAMES:
            half = _MAX_FRAMES // 2
            frames = traceback.StackSummary.from_list([*frames[:half], *frames[-half:]])
        text = "".join(traceback.format_list(frames))
        out.append(f"Traceback (most recent call last):\n{text}" if text else "")
        out.append(f"{exception_type(item)}\n")
        if index:
            out.append(f"\n{link}\n\n")
    return "".join(out)


def _http_status(error: BaseException, status: Any) -> Optional[int]:
    if status is None:
        status = getattr(error, "status", None)
    return status if isinstance(status, int) and not isinstance(status, bool) and status > 0 else None


def record_error(
    span: Span,
    error: BaseException,
    *,
    status: Any = None,
    record_message: bool = False,
    set_status: bool = True,
    description_suffix: str = "",
) -> None:
    """Add an ``exception`` event, ``error.type`` and (``set_status``) an ERROR status to ``span``.

    ``status`` (or the error's own ``status`` attribute) marks an HTTP error: its status and
    reason phrase are recorded instead of its text, whatever ``record_message`` says, because the
    text of an API error is the response body. Otherwise the message is recorded only when
    ``record_message`` is true. Never raises.
    """
    try:
        kind = exception_type(error)
        http_status = _http_status(error, status)
        if http_status is not None:
            reason = getattr(error, "reason", None)
            message: Optional[str] = (
                f"HTTP {http_status} {bounded(reason, 64)}"
                if isinstance(reason, str) and reason
                else f"HTTP {http_status}"
            )
        elif record_message:
            message = bounded(str(error), 256)
        else:
            message = None
        attributes: dict[str, Any] = {
            EXCEPTION_TYPE: kind,
            EXCEPTION_STACKTRACE: safe_stacktrace(error),
            EXCEPTION_ESCAPED: False,
        }
        if message:
            attributes[EXCEPTION_MESSAGE] = message
        span.add_event(EXCEPTION_EVENT, attributes)
        if set_status:
            description = f"{type(error).__qualname__}: {message}" if message else type(error).__qualname__
            span.set_status(Status(StatusCode.ERROR, bounded(description + description_suffix, 256)))
    except Exception:  # telemetry never breaks the app
        return
