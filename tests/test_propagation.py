"""W3C Trace Context / Baggage helpers: the W3C test-suite cases, every carrier kind, hostile input."""

from __future__ import annotations

import http.client
import os
from email.parser import Parser
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from requests.structures import CaseInsensitiveDict

from k8s_otel._propagation import (
    KubernetesPropagator,
    extract,
    extract_from_values,
    header_values,
    inject,
    parse_traceparent,
    parse_tracestate,
)

TRACE_ID = "12345678901234567890123456789012"
SPAN_ID = "1234567890123456"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"


def span_context(context: Context) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()


def trace_id_of(headers: Any) -> str | None:
    context = span_context(extract(headers))
    return f"{context.trace_id:032x}" if context.is_valid else None


# --- traceparent: w3c/trace-context test/test.py --------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        VALID,
        f" {VALID}",
        f"\t{VALID}",
        f"{VALID} ",
        f"{VALID}\t",
        f"\t {VALID} \t",
        f"cc-{TRACE_ID}-{SPAN_ID}-01",  # a future version, exactly 55 characters
        f"cc-{TRACE_ID}-{SPAN_ID}-01-what-the-future-will-be-like",
    ],
)
def test_valid_traceparents(value: str) -> None:
    assert trace_id_of({"traceparent": value}) == TRACE_ID


@pytest.mark.parametrize(
    "value",
    [
        f"ff-{TRACE_ID}-{SPAN_ID}-01",  # version ff is invalid
        f"00-{TRACE_ID}-{SPAN_ID}-01-what-the-future-will-be-like",  # 00 allows nothing more
        f"cc-{TRACE_ID}-{SPAN_ID}-01.what-the-future-will-be-like",
        f"0-{TRACE_ID}-{SPAN_ID}-01",
        f"000-{TRACE_ID}-{SPAN_ID}-01",
        f".0-{TRACE_ID}-{SPAN_ID}-01",
        f"00-{TRACE_ID.upper().replace('1', 'A')}-{SPAN_ID}-01",  # upper-case hex
        f"00-{'0' * 32}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
        f"00-{TRACE_ID}1-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID[:-1]}-01",
        f"00-{TRACE_ID}-{SPAN_ID}1-01",
        f"00-{TRACE_ID}-{SPAN_ID}-0.",
        f"00-{TRACE_ID}-{SPAN_ID}-001",
        f"00-{TRACE_ID}-{SPAN_ID}-1",
        f"00-{TRACE_ID[:-1]}.-{SPAN_ID}-01",
        "",
        "garbage",
        f"{VALID},{VALID}",  # two traceparent lines, folded: invalid, a new trace starts
    ],
)
def test_invalid_traceparents(value: str) -> None:
    assert trace_id_of({"traceparent": value}) is None


def test_two_traceparent_lines_in_a_multi_valued_carrier_start_a_new_trace() -> None:
    headers = CIMultiDict([("traceparent", VALID), ("traceparent", VALID.replace("-01", "-00"))])
    assert trace_id_of(headers) is None


@pytest.mark.parametrize(
    ("flags", "kept"), [("00", 0), ("01", 1), ("02", 2), ("03", 3), ("09", 1), ("ff", 3)]
)
def test_flags_keep_sampled_and_random_and_clear_the_rest(flags: str, kept: int) -> None:
    # Level 2: the random flag (0x02) is kept; "other flags ... vendors MUST set those to zero".
    context = parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-{flags}")
    assert context is not None
    assert context.trace_flags == kept


def test_inject_writes_version_00_and_keeps_the_random_flag() -> None:
    context = extract({"traceparent": f"cc-{TRACE_ID}-{SPAN_ID}-03-future", "tracestate": "foo=1"})
    carrier: dict[str, str] = {}
    inject(carrier, context)
    assert carrier == {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-03", "tracestate": "foo=1"}


# --- tracestate ------------------------------------------------------------------------------


def state_of(tracestate: str | list[str]) -> dict[str, str] | None:
    headers = [("traceparent", VALID)] + [
        ("tracestate", v) for v in ([tracestate] if isinstance(tracestate, str) else tracestate)
    ]
    state = span_context(extract(headers)).trace_state
    return dict(state) if state else None


def test_tracestate_is_kept_and_ows_ignored() -> None:
    assert state_of("foo=1,bar=2") == {"foo": "1", "bar": "2"}
    assert state_of("foo=1 \t , \t bar=2, \t baz=3") == {"foo": "1", "bar": "2", "baz": "3"}
    assert state_of(["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]) == {
        "foo": "1", "bar": "2", "rojo": "1", "congo": "2", "baz": "3"
    }  # fmt: skip
    assert state_of(["foo=1", ""]) == {"foo": "1"}
    assert state_of(["", "foo=1"]) == {"foo": "1"}
    assert state_of(",,foo=1,, ,") == {"foo": "1"}


def test_tracestate_all_allowed_characters_and_current_key_grammar() -> None:
    key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
    value = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=").rstrip()
    assert state_of(f"{key}={value}") == {key: value}
    assert state_of(f"{key}@a-z0-9_-*/={value}") == {f"{key}@a-z0-9_-*/": value}
    assert state_of("1vendor=x,tenant@system=y") == {
        "1vendor": "x",
        "tenant@system": "y",
    }  # keys may start with a digit


@pytest.mark.parametrize(
    "value", ["foo =1", "FOO=1", "foo.bar=1", "foo=", "=1", "foo=a,b=c=d", "foo=1\x01", "foo"]
)
def test_an_invalid_member_discards_the_tracestate_but_not_the_traceparent(value: str) -> None:
    headers = {"traceparent": VALID, "tracestate": f"{value},bar=2"}
    assert trace_id_of(headers) == TRACE_ID
    assert state_of(f"{value},bar=2") is None


def test_member_count_limit() -> None:
    members = [f"k{i}=v" for i in range(32)]
    assert state_of(",".join(members)) is not None
    assert state_of(",".join([*members, "k32=v"])) is None


def test_key_and_value_length_limits() -> None:
    assert state_of("k" * 256 + "=v") is not None
    assert state_of("k" * 257 + "=v") is None
    assert state_of("k=" + "v" * 256) is not None
    assert state_of("k=" + "v" * 257) is None


def test_duplicated_keys_keep_the_left_most_entry() -> None:
    # The spec allows one entry per key, the left-most being the latest position. Go and the
    # strict W3C suite discard the whole header; we keep what is valid (docs/propagation.md).
    assert state_of("foo=1,bar=2,foo=3") == {"foo": "1", "bar": "2"}
    assert state_of(["foo=1", "foo=2"]) == {"foo": "1"}


def test_tracestate_without_traceparent_is_ignored() -> None:
    assert span_context(extract({"tracestate": "foo=1"})).trace_state == trace.TraceState()
    assert parse_tracestate(None) is None


def test_known_differences_from_the_stock_propagator() -> None:
    stock = TraceContextTextMapPropagator()

    def stock_state(value: str) -> dict[str, str]:
        return dict(span_context(stock.extract({"traceparent": VALID, "tracestate": value})).trace_state)

    assert stock_state("1vendor=x") == {}  # stock: the older key grammar
    assert state_of("1vendor=x") == {"1vendor": "x"}
    assert span_context(stock.extract({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-ff"})).trace_flags == 0xFF
    assert span_context(extract({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-ff"})).trace_flags == 0x03


# --- baggage ---------------------------------------------------------------------------------


def test_baggage_round_trip_with_percent_encoding_and_properties() -> None:
    context = extract({"baggage": "user=alice%20smith;sensitive;ttl=60, tenant = a%2Cb ,bad key=x,k=v%3Dw"})
    assert baggage.get_all(context) == {"user": "alice smith", "tenant": "a,b", "k": "v=w"}
    carrier: dict[str, str] = {}
    inject(carrier, context)
    assert carrier["baggage"] == "user=alice%20smith;sensitive;ttl=60,tenant=a%2Cb,k=v=w"


def test_baggage_limits() -> None:
    many = ",".join(f"k{i}=v" for i in range(200))
    assert len(baggage.get_all(extract({"baggage": many}))) == 180
    assert baggage.get_all(extract({"baggage": "k=" + "v" * 9000})) == {}


def test_baggage_without_traceparent_still_arrives() -> None:
    assert baggage.get_all(extract({"baggage": "a=1"})) == {"a": "1"}


# --- carriers --------------------------------------------------------------------------------


def test_every_carrier_kind() -> None:
    message = Parser(_class=http.client.HTTPMessage).parsestr(
        f"TraceParent: {VALID}\r\nTraceState: a=1\r\nTracestate: b=2\r\n\r\n"
    )
    carriers: list[Any] = [
        {"traceparent": VALID, "tracestate": "a=1,b=2"},
        {"TraceParent": VALID, "TRACESTATE": "a=1,b=2"},  # a plain dict with other casing
        {"traceparent": [VALID], "tracestate": ["a=1", "b=2"]},
        CaseInsensitiveDict({"Traceparent": VALID, "Tracestate": "a=1,b=2"}),
        message,
        httpx.Headers([("traceparent", VALID), ("tracestate", "a=1"), ("tracestate", "b=2")]),
        CIMultiDict([("Traceparent", VALID), ("tracestate", "a=1"), ("TraceState", "b=2")]),
        {
            "REQUEST_METHOD": "POST",
            "HTTP_TRACEPARENT": VALID,
            "HTTP_TRACESTATE": "a=1,b=2",
            "wsgi.input": None,
        },
        [(b"traceparent", VALID.encode()), (b"tracestate", b"a=1"), (b"tracestate", b"b=2")],  # ASGI
        (("traceparent", VALID), ("tracestate", "a=1"), ("tracestate", "b=2")),  # gRPC metadata
    ]
    for carrier in carriers:
        context = span_context(extract(carrier))
        assert f"{context.trace_id:032x}" == TRACE_ID, type(carrier)
        assert dict(context.trace_state) == {"a": "1", "b": "2"}, type(carrier)


def test_inject_into_every_writable_carrier() -> None:
    context = extract({"traceparent": VALID, "baggage": "a=1"})
    plain: dict[str, str] = {}
    asgi: list[tuple[bytes, bytes]] = [(b"host", b"x")]
    grpc: list[tuple[str, str]] = [("x-other", "y")]
    ci = CaseInsensitiveDict({"Accept": "*/*"})
    for carrier in (plain, asgi, grpc, ci):
        inject(carrier, context)
    assert plain == {"traceparent": VALID, "baggage": "a=1"}
    assert asgi[1:] == [(b"traceparent", VALID.encode()), (b"baggage", b"a=1")]
    assert grpc[1:] == [("traceparent", VALID), ("baggage", "a=1")]
    assert ci["TRACEPARENT"] == VALID


def test_inject_uses_the_current_context() -> None:
    from opentelemetry.context import attach, detach

    token = attach(extract({"traceparent": VALID}))
    try:
        carrier: dict[str, str] = {}
        inject(carrier)
    finally:
        detach(token)
    assert carrier == {"traceparent": VALID}


def test_nothing_to_inject() -> None:
    carrier: dict[str, str] = {}
    inject(carrier, Context())
    assert carrier == {}


def test_unknown_carriers_give_an_empty_context() -> None:
    for carrier in (None, 42, object(), "traceparent", [1, 2], {1: 2}, [(None, None)]):
        assert extract(carrier) == Context() or not span_context(extract(carrier)).is_valid
        assert header_values(carrier, "traceparent") is None


# --- the TextMapPropagator and its entry point -----------------------------------------------


def test_propagator_with_the_sdk_getter_and_setter() -> None:
    from opentelemetry.propagators.textmap import DefaultGetter, DefaultSetter

    propagator = KubernetesPropagator()
    assert propagator.fields == {"traceparent", "tracestate", "baggage"}
    context = propagator.extract({"traceparent": [VALID], "baggage": ["a=1"]}, getter=DefaultGetter())
    assert f"{span_context(context).trace_id:032x}" == TRACE_ID

    class Box:
        def __init__(self) -> None:
            self.items: dict[str, str] = {}

    class BoxSetter(DefaultSetter):  # type: ignore[misc]
        def set(self, carrier: Box, key: str, value: str) -> None:  # type: ignore[override]
            carrier.items[key] = value

    box = Box()
    propagator.inject(box, context, setter=BoxSetter())
    assert box.items == {"traceparent": VALID, "baggage": "a=1"}


def test_otel_propagators_selects_it() -> None:
    import subprocess_scripts

    result = subprocess_scripts.run(
        "probes", "global_propagator", VALID, env={**os.environ, "OTEL_PROPAGATORS": "k8s"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("KubernetesPropagator")
    assert (
        "trace_state=['{key=1a, value=b}']" in result.stdout
    )  # the current key grammar, via OTEL_PROPAGATORS


# --- hostile input ---------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.text(max_size=600), st.text(max_size=600), st.text(max_size=600))
def test_no_header_value_makes_extract_raise(traceparent: str, tracestate: str, bag: str) -> None:
    extract_from_values(traceparent, tracestate, bag)
    extract({"traceparent": traceparent, "tracestate": tracestate, "baggage": bag})


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_no_byte_string_makes_extract_raise(raw: bytes) -> None:
    extract([(b"traceparent", raw), (b"tracestate", raw), (b"baggage", raw)])


def test_one_megabyte_headers_are_rejected_not_scanned() -> None:
    huge = VALID + "," + "k=v," * 260_000
    context = extract({"traceparent": huge, "tracestate": huge, "baggage": huge})
    assert not span_context(context).is_valid
    assert baggage.get_all(context) == {}
    state = span_context(extract({"traceparent": VALID, "tracestate": "k=v," * 300_000})).trace_state
    assert not state


def test_extract_takes_the_carrier_and_headers_is_deprecated() -> None:
    from k8s_otel import extract as public_extract

    carrier = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    wanted = trace.get_current_span(public_extract(carrier)).get_span_context()
    assert trace.get_current_span(public_extract(carrier=carrier)).get_span_context() == wanted
    with pytest.warns(DeprecationWarning, match="carrier"):
        old = public_extract(headers=carrier)
    assert trace.get_current_span(old).get_span_context() == wanted
    with pytest.raises(TypeError):
        public_extract()
    with pytest.raises(TypeError):
        public_extract(carrier, headers=carrier)
