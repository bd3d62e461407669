"""W3C Trace Context (Level 2) and Baggage, as the Kubernetes components propagate them, for any carrier.

Kubernetes propagates ``traceparent``, ``tracestate`` and ``baggage`` and nothing else
(component-base ``Propagators()``). The stock Python propagators predate parts of the current W3C
texts (tracestate keys starting with a digit, duplicated keys, baggage properties); the choices
made here, and where they differ from the stock propagator and from Go, are in
``docs/propagation.md``. No header value makes anything here raise; every header is length-checked
before it is scanned, and scanned once.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Optional
from urllib.parse import quote, unquote

from opentelemetry import baggage as otel_baggage
from opentelemetry import trace
from opentelemetry.context import Context, create_key, get_value, set_value
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from k8s_otel._exceptions import InvalidArgumentError

__all__ = [
    "MAX_BAGGAGE_BYTES",
    "MAX_BAGGAGE_MEMBERS",
    "MAX_TRACESTATE_MEMBERS",
    "KubernetesPropagator",
    "extract",
    "extract_from_values",
    "header_values",
    "inject",
    "parse_traceparent",
    "pair_values",
    "parse_tracestate",
]

_logger = logging.getLogger("k8s_otel.propagation")

TRACEPARENT, TRACESTATE, BAGGAGE = "traceparent", "tracestate", "baggage"
MAX_TRACEPARENT_LENGTH = 512
MAX_TRACESTATE_LENGTH = 8192
MAX_TRACESTATE_MEMBERS = 32
MAX_BAGGAGE_BYTES = 8192
MAX_BAGGAGE_MEMBERS = 180
_KEPT_FLAGS = TraceFlags.SAMPLED | 0x02  # sampled and random (Level 2); others "MUST be set to zero"
_OWS = " \t"

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL)
# Current W3C key grammar: starts with a lower-case letter or a digit; up to 256 characters of
# a-z 0-9 _ - * / @ (so "tenant@system" vendor keys are keys like any other).
_TRACESTATE_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_TRACESTATE_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAGGAGE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_BAGGAGE_SAFE = "!#$&'()*+-./:<=>?@[]^_`{|}~"  # baggage-octets that need no percent-encoding
_PROPERTIES_KEY = create_key("k8s_otel.baggage_properties")


# --- traceparent / tracestate ----------------------------------------------------------------


def parse_traceparent(value: Optional[str]) -> Optional[SpanContext]:
    """A remote SpanContext from a traceparent value, or None when it is invalid.

    Versions above 00 are parsed as the spec says (the 00 fields, then ``-`` or the end); ``ff``
    is invalid; upper-case hex is invalid; for version 00 there must be nothing after the flags.
    Flags other than sampled (0x01) and random (0x02) are cleared.
    """
    if value is None or len(value) > MAX_TRACEPARENT_LENGTH:
        return None
    match = _TRACEPARENT.fullmatch(value.strip(_OWS))
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    context = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16) & _KEPT_FLAGS),
    )
    return context if context.is_valid else None


def _trace_state(pairs: Sequence[tuple[str, str]]) -> TraceState:
    """A TraceState holding pairs already checked against the current W3C grammar.

    The API's constructor validates keys with the older grammar (no leading digit) and would drop
    valid entries, so the checked pairs are placed directly.
    """
    state = TraceState()
    entries = getattr(state, "_dict", None)
    if isinstance(entries, dict):
        entries.update(pairs)
        return state
    return TraceState(list(pairs))  # pragma: no cover - an API without _dict


def parse_tracestate(value: Optional[str]) -> Optional[TraceState]:
    """A TraceState from a (folded) tracestate value; None when it must be discarded.

    Empty members are skipped. An invalid member, or more than 32 members, discards the whole
    header (as Go and the W3C test suite do). A key that repeats keeps its first, left-most entry:
    the spec allows one entry per key, the left-most being the most recent position.
    """
    if value is None:
        return None
    if len(value) > MAX_TRACESTATE_LENGTH:
        return None
    pairs: dict[str, str] = {}
    count = 0
    for raw in value.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        count += 1
        if count > MAX_TRACESTATE_MEMBERS:
            return None
        key, equals, item = member.partition("=")
        if not equals or not _TRACESTATE_KEY.fullmatch(key) or not _TRACESTATE_VALUE.fullmatch(item):
            return None
        pairs.setdefault(key, item)
    return _trace_state(list(pairs.items())) if pairs else None


# --- baggage ---------------------------------------------------------------------------------


def _parse_baggage(value: str, context: Context) -> Context:
    """Add the members of a baggage header to ``context``; invalid members are skipped, one by one."""
    if len(value.encode("utf-8", "surrogatepass")) > MAX_BAGGAGE_BYTES:
        _logger.debug("baggage header over %d bytes ignored", MAX_BAGGAGE_BYTES)
        return context
    properties: dict[str, str] = {}
    for index, member in enumerate(value.split(",")):
        if index >= MAX_BAGGAGE_MEMBERS:
            break
        entry, _, props = member.partition(";")
        key, equals, item = entry.partition("=")
        key, item = key.strip(_OWS), item.strip(_OWS)
        if not equals or not _TOKEN.fullmatch(key) or not _BAGGAGE_VALUE.fullmatch(item):
            continue
        context = otel_baggage.set_baggage(key, unquote(item, errors="replace"), context)
        props = props.strip(_OWS)
        if props:
            properties[key] = ";".join(p.strip(_OWS) for p in props.split(";") if p.strip(_OWS))
    if properties:
        context = set_value(_PROPERTIES_KEY, properties, context)
    return context


def _format_baggage(context: Optional[Context]) -> str:
    entries = otel_baggage.get_all(context)
    if not entries:
        return ""
    properties: Mapping[str, str] = get_value(_PROPERTIES_KEY, context) or {}  # type: ignore[assignment]
    members: list[str] = []
    size = 0
    for key, value in entries.items():
        if not _TOKEN.fullmatch(key):
            continue
        member = f"{key}={quote(str(value), safe=_BAGGAGE_SAFE)}"
        if key in properties:
            member += ";" + properties[key]
        size += len(member) + 1
        if len(members) >= MAX_BAGGAGE_MEMBERS or size > MAX_BAGGAGE_BYTES + 1:
            break
        members.append(member)
    return ",".join(members)


# --- contexts --------------------------------------------------------------------------------


def extract_from_values(
    traceparent: Optional[str],
    tracestate: Optional[str] = None,
    baggage: Optional[str] = None,
    context: Optional[Context] = None,
) -> Context:
    """The context carried by the three header values (each already folded), on top of ``context``.

    The cheap path for adapters that read the headers themselves. Two ``traceparent`` lines folded
    into one value are invalid, so a new trace starts, as the spec requires.
    """
    result = context if context is not None else Context()
    span_context = parse_traceparent(traceparent)
    if span_context is not None:
        if tracestate:
            state = parse_tracestate(tracestate)
            if state is not None:
                span_context = SpanContext(
                    span_context.trace_id,
                    span_context.span_id,
                    is_remote=True,
                    trace_flags=span_context.trace_flags,
                    trace_state=state,
                )
        result = trace.set_span_in_context(NonRecordingSpan(span_context), result)
    if baggage:
        result = _parse_baggage(baggage, result)
    return result


def _fold(values: Iterable[Any]) -> Optional[str]:
    """Join repeated header lines with "," (RFC 9110 field order). None when there are none."""
    texts = [v.decode("latin-1") if isinstance(v, (bytes, bytearray)) else str(v) for v in values]
    if not texts:
        return None
    return texts[0] if len(texts) == 1 else ",".join(texts)


_FIELDS = frozenset({TRACEPARENT, TRACESTATE, BAGGAGE})
_WSGI_NAMES = {TRACEPARENT: "HTTP_TRACEPARENT", TRACESTATE: "HTTP_TRACESTATE", BAGGAGE: "HTTP_BAGGAGE"}


def header_values(headers: Any, name: str) -> Optional[str]:
    """Every line of header ``name`` in ``headers``, folded, whatever the carrier is.

    Understood: mappings (case-insensitive or not; a list value means several lines), WSGI
    environs, ASGI header lists of byte pairs, gRPC metadata and other sequences of pairs, and
    objects with ``getall``/``get_all``/``get_list`` (aiohttp, http.client, httpx).
    """
    try:
        if type(headers) is dict and "wsgi.input" not in headers and "REQUEST_METHOD" not in headers:
            value = headers.get(name)
            if value is None:
                value = next(
                    (v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None
                )
            if isinstance(value, (list, tuple)):
                return _fold(value)
            return None if value is None else _fold((value,))
        if isinstance(headers, (list, tuple)):
            wanted = name.encode() if headers and isinstance(headers[0][0], (bytes, bytearray)) else name
            return _fold(value for key, value in headers if key.lower() == wanted)
        for method in ("getall", "get_all", "get_list"):
            getter = getattr(headers, method, None)
            if getter is not None and not isinstance(headers, dict):
                values = getter(name, None) if method != "get_list" else getter(name)
                return _fold(values or ())
        if isinstance(headers, Mapping):
            if "wsgi.input" in headers or "REQUEST_METHOD" in headers:
                value = headers.get(_WSGI_NAMES.get(name, "HTTP_" + name.upper().replace("-", "_")))
                return None if value is None else str(value)
            value = headers.get(name)
            if value is None and not _is_case_insensitive(headers):
                value = next(
                    (v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None
                )
            if isinstance(value, (list, tuple)):
                return _fold(value)
            return None if value is None else _fold((value,))
    except Exception:  # a carrier we do not understand: no context, never an error
        _logger.debug("cannot read header %s from %s", name, type(headers).__name__, exc_info=True)
    return None


def _is_case_insensitive(headers: Mapping[str, Any]) -> bool:
    return type(headers).__name__ in ("CaseInsensitiveDict", "CIMultiDict", "CIMultiDictProxy", "Headers")


def pair_values(pairs: Iterable[tuple[Any, Any]]) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """traceparent, tracestate and baggage from header pairs (ASGI bytes or str), one pass, folded."""
    found: dict[str, list[str]] = {}
    for name, value in pairs:
        key = (name.decode("latin-1") if isinstance(name, (bytes, bytearray)) else str(name)).lower()
        if key in _FIELDS:
            found.setdefault(key, []).append(
                value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
            )
    return _fold(found.get(TRACEPARENT, ())), _fold(found.get(TRACESTATE, ())), _fold(found.get(BAGGAGE, ()))


_NO_HEADERS: Any = object()


def extract(
    carrier: Any = _NO_HEADERS, context: Optional[Context] = None, *, headers: Any = _NO_HEADERS
) -> Context:
    """The W3C context (traceparent, tracestate, baggage) in ``carrier``, of any carrier kind.

    ``carrier`` is ``inject``'s and OpenTelemetry's name for it; ``headers=`` is its deprecated
    predecessor (a DeprecationWarning). A plain dict is read with the lower-case names first
    (HTTP/2, httpx, most frameworks); only when ``traceparent`` is not found that way are its names
    matched case-insensitively.
    """
    if headers is not _NO_HEADERS or carrier is _NO_HEADERS:
        carrier = _renamed_carrier(carrier, headers)
    headers = carrier
    if type(headers) is dict:
        traceparent = headers.get(TRACEPARENT)
        if type(traceparent) is str:
            tracestate, bag = headers.get(TRACESTATE), headers.get(BAGGAGE)
            if (tracestate is None or type(tracestate) is str) and (bag is None or type(bag) is str):
                return extract_from_values(traceparent, tracestate, bag, context)
    if isinstance(headers, (list, tuple)):
        try:
            return extract_from_values(*pair_values(headers), context=context)
        except (TypeError, ValueError):  # not pairs: no context, never an error
            return context if context is not None else Context()
    return extract_from_values(
        header_values(headers, TRACEPARENT),
        header_values(headers, TRACESTATE),
        header_values(headers, BAGGAGE),
        context,
    )


def _outgoing(context: Optional[Context]) -> list[tuple[str, str]]:
    headers = []
    span_context = trace.get_current_span(context).get_span_context()
    if span_context.is_valid:
        flags = span_context.trace_flags & _KEPT_FLAGS
        headers.append(
            (TRACEPARENT, f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{flags:02x}")
        )
        if span_context.trace_state:
            headers.append((TRACESTATE, span_context.trace_state.to_header()))
    baggage = _format_baggage(context)
    if baggage:
        headers.append((BAGGAGE, baggage))
    return headers


def _renamed_carrier(carrier: Any, headers: Any) -> Any:
    if headers is _NO_HEADERS:
        raise InvalidArgumentError("extract() needs the carrier to read: extract(carrier)")
    if carrier is not _NO_HEADERS:
        raise InvalidArgumentError("extract() takes the carrier once: pass carrier, not carrier and headers")
    warnings.warn(
        "extract(headers=...) is deprecated: pass extract(carrier), the name inject() and OpenTelemetry use",
        DeprecationWarning,
        stacklevel=3,
    )
    return headers


def inject(carrier: Any, context: Optional[Context] = None) -> None:
    """Write traceparent/tracestate/baggage for ``context`` (default: the current one) into ``carrier``.

    ``carrier`` is a mutable mapping or header object (``headers[name] = value``) or a list of pairs
    (ASGI byte pairs or gRPC metadata), to which the headers are appended.
    """
    if type(carrier) is dict:
        carrier.update(_outgoing(context))
        return
    for name, value in _outgoing(context):
        if isinstance(carrier, list):
            if carrier and isinstance(carrier[0][0], (bytes, bytearray)):
                carrier.append((name.encode(), value.encode("latin-1")))
            else:
                carrier.append((name, value))
        else:
            carrier[name] = value


class KubernetesPropagator(TextMapPropagator):
    """tracecontext + baggage as the Kubernetes components propagate them (``OTEL_PROPAGATORS=k8s``).

    Never raises: a carrier, getter or setter that fails gives the context unchanged (extract) or
    writes nothing more (inject), logged at debug level, and the request goes on.
    """

    def extract(
        self, carrier: CarrierT, context: Optional[Context] = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        try:
            return self._extract(carrier, context, getter)
        except Exception:
            _logger.debug("k8s_otel: extracting the trace context failed", exc_info=True)
            return context if context is not None else Context()

    def _extract(self, carrier: CarrierT, context: Optional[Context], getter: Getter[CarrierT]) -> Context:
        if getter is default_getter:
            return extract(carrier, context)

        def value(name: str) -> Optional[str]:
            values = getter.get(carrier, name)
            return _fold(values) if values else None

        return extract_from_values(value(TRACEPARENT), value(TRACESTATE), value(BAGGAGE), context)

    def inject(
        self, carrier: CarrierT, context: Optional[Context] = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        try:
            self._inject(carrier, context, setter)
        except Exception:
            _logger.debug("k8s_otel: injecting the trace context failed", exc_info=True)

    def _inject(self, carrier: CarrierT, context: Optional[Context], setter: Setter[CarrierT]) -> None:
        if setter is default_setter and isinstance(carrier, (MutableMapping, list)):
            inject(carrier, context)
            return
        for name, value in _outgoing(context):
            setter.set(carrier, name, value)

    @property
    def fields(self) -> set[str]:
        return {TRACEPARENT, TRACESTATE, BAGGAGE}
