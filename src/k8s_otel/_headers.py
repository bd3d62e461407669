"""OTLP headers: parsed and checked once, and values that nothing can print.

``OTEL_EXPORTER_OTLP_HEADERS`` and the ``headers`` argument of ``configure()`` become
``(name, HeaderValue)`` pairs here. The SDK's ``parse_env_headers`` decodes each entry (name and
value), after checks that keep it from logging anything, and what it decodes is checked again:
the name must still be a header token, the value is stripped, and control and non-ASCII characters
are refused (docs/configuration.md). A problem names a header only by a valid name, never by its
value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional, Union

from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_HEADERS
from opentelemetry.util.re import parse_env_headers

from k8s_otel._redact import REDACTED, looks_like_token

__all__ = [
    "HeaderPairs",
    "HeaderValue",
    "HeadersInput",
    "RedactedHeaders",
    "normalise_headers",
    "parse_headers",
]

HeadersInput = Union[str, Mapping[str, str], Sequence[tuple[str, str]]]


class HeaderValue:
    """An OTLP header value: a credential. ``str``, ``repr``, formatting and copies never show it.

    ``reveal()`` is for the exporter only. Not a ``str`` subclass, so no string operation
    (slicing, ``+``, ``%``, f-strings, ``json.dumps``) can leak it by accident.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"HeaderValue({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeaderValue):
            return self._value == other._value
        if isinstance(other, str):
            return self._value == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __copy__(self) -> HeaderValue:
        return self

    def __deepcopy__(self, memo: object) -> HeaderValue:
        return self  # ``dataclasses.asdict`` deep-copies leaves: the copy must stay redacted


HeaderPairs = tuple[tuple[str, HeaderValue], ...]


class RedactedHeaders(tuple):  # type: ignore[type-arg]
    """Header pairs whose repr shows the names only: values are credentials."""

    def __repr__(self) -> str:
        return "(" + ", ".join(f"({name!r}, {value!r})" for name, value in self) + ")"


# RFC 9110 ``tchar``: the characters of a header name (the SDK's ``_KEY_FORMAT`` is the same set).
# With the next set, the one check the SDK cannot make for us: whether ``parse_env_headers`` would
# refuse an entry, which it does by logging the entry, value and all. tests/test_settings.py holds
# both sets to the SDK's own behaviour.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# What the SDK's liberal pattern takes unencoded in an env value: printable ASCII but ``"``, ``,``,
# ``;`` and ``\\``.
_UNENCODED_VALUE = frozenset(chr(c) for c in range(0x20, 0x7F)) - frozenset('",;\\')


def _valid_name(name: str) -> bool:
    return bool(name) and all(c in _TCHAR for c in name) and not looks_like_token(name)


def _value_problem(value: str) -> Optional[str]:
    """Why ``value`` cannot be sent, or None. gRPC metadata and HTTP fields both take printable ASCII."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "the value holds a control character (a newline read from a file?)"
    if not value.isascii():
        return "the value holds a character that is not ASCII, which gRPC metadata cannot carry"
    return None


def _checked(where: str, name: str, value: str, problems: Optional[list[str]]) -> Optional[HeaderValue]:
    value = value.strip()
    trouble = _value_problem(value)
    if trouble is None:
        return HeaderValue(value)
    if problems is not None:
        problems.append(f"{where}: header {name!r}: {trouble}; skipped (the value is not shown)")
    return None


def parse_headers(
    text: str, problems: Optional[list[str]] = None, origin: str = OTEL_EXPORTER_OTLP_HEADERS
) -> HeaderPairs:
    """Parse ``OTEL_EXPORTER_OTLP_HEADERS``: ``name=value`` pairs, comma separated, percent-encoded.

    Each entry is checked before the SDK's ``parse_env_headers`` decodes it, and its decoded value
    after: a bad entry is skipped and reported by its position, and by its name only when the name
    is a valid header token; a value is never shown. An entry without ``=`` right after a header
    means that header's value held a raw comma: both are skipped, never sent as two headers.
    """

    def report(message: str) -> None:
        if problems is not None:
            problems.append(f"{origin}: {message}")

    pairs: list[tuple[int, str, HeaderValue]] = []
    previous_ok: Optional[tuple[int, str]] = None
    for position, item in enumerate(text.split(","), start=1):
        entry = item.strip(" \t")
        if not entry:
            previous_ok = None
            continue
        name_text, equals, raw_value = entry.partition("=")
        name_text, raw_value = name_text.strip(" \t"), raw_value.strip(" \t")
        if not equals and previous_ok is not None:
            previous_position, previous_name = previous_ok
            pairs = [pair for pair in pairs if pair[0] != previous_position]
            report(
                f"entry {position} has no '=': if it is the rest of the value of header {previous_name!r} "
                f"(entry {previous_position}), that value holds a comma, which must be percent-encoded as %2C; "
                "both skipped"
            )
            previous_ok = None
            continue
        previous_ok = None
        if not equals or not _valid_name(name_text) or not raw_value or raw_value.startswith("="):
            hint = " (it looks like 'Name: value'; write name=value)" if ":" in name_text else ""
            report(f"entry {position} is not a valid name=value pair{hint}; skipped")
            continue
        name = name_text.lower()  # for the messages until the SDK has decoded it
        trouble = _value_problem(raw_value)
        if trouble is None and not set(raw_value) <= _UNENCODED_VALUE:
            trouble = "the value holds '\"', ';' or '\\\\', which must be percent-encoded"
        if trouble is not None:
            report(f"header {name!r} (entry {position}): {trouble}; skipped (the value is not shown)")
            continue
        decoded = list(parse_env_headers(entry, liberal=True).items())  # the SDK's reading of the entry
        if len(decoded) != 1:  # not seen: the checks above are the SDK's patterns
            report(f"header {name!r} (entry {position}) cannot be decoded; skipped (the value is not shown)")
            continue
        name, raw_value = decoded[0]
        if not _valid_name(name):  # a percent-encoded name decodes to anything, a newline included
            report(
                f"entry {position}: the header name decodes to something that is not a header token; skipped"
            )
            continue
        value = _checked(origin, name, raw_value, problems)
        if value is None:
            continue
        pairs.append((position, name, value))
        previous_ok = (position, name)
    return tuple((name, value) for _, name, value in pairs)


def normalise_headers(headers: HeadersInput, problems: list[str]) -> HeaderPairs:
    """A ``headers`` argument: a string is parsed as the env var is; pairs are checked, never split."""
    if isinstance(headers, str):
        return parse_headers(headers, problems, origin="headers argument")
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs: list[tuple[str, HeaderValue]] = []
    for position, (raw_name, raw_value) in enumerate(items, start=1):
        name = str(raw_name).strip()
        if not _valid_name(name):
            problems.append(
                f"headers argument: header {position} has a name that is not a header token; skipped"
            )
            continue
        value = _checked("headers argument", name.lower(), str(raw_value), problems)
        if value is not None:
            pairs.append((name.lower(), value))
    return tuple(pairs)
