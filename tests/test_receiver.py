"""The development OTLP receiver: bounded memory, OTLP/HTTP beside gRPC, faults kept from exporters."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from k8s_otel.cli._receiver import OTLPReceiver, ReceivedRequest, parse_otlp_json


def _export_grpc(receiver: OTLPReceiver, count: int = 1) -> None:
    with grpc.insecure_channel(receiver.endpoint) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for _ in range(count):
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.resource_spans.add().scope_spans.add().spans.add(
                trace_id=b"\1" * 16, span_id=b"\2" * 8, name="s"
            )
            stub.Export(request, timeout=10)


def test_keep_bounds_the_requests_held() -> None:
    with OTLPReceiver(keep=3) as receiver:
        _export_grpc(receiver, 10)
        assert len(receiver.requests) == 3


def test_keep_zero_holds_nothing_but_on_request_still_sees_everything() -> None:
    seen: list[ReceivedRequest] = []
    with OTLPReceiver(keep=0, on_request=seen.append) as receiver:
        _export_grpc(receiver, 5)
        assert receiver.requests == []
    assert len(seen) == 5


def test_a_failing_on_request_never_fails_the_export(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: ReceivedRequest) -> None:
        raise RecursionError("viewer bug")

    with OTLPReceiver(on_request=broken) as receiver:
        _export_grpc(receiver)  # raises if the RPC failed
        assert len(receiver.requests) == 1
    # Logged once, with the hook's exception: not its wording.
    assert len([r for r in caplog.records if r.exc_info is not None and r.exc_info[0] is RecursionError]) == 1


def _provider(exporter: HTTPSpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_stock_otlp_http_exporter_is_received(compression: Compression) -> None:
    with OTLPReceiver(http_port=0) as receiver:
        provider = _provider(HTTPSpanExporter(endpoint=receiver.http_endpoint, compression=compression))
        with provider.get_tracer("t").start_as_current_span("over http", attributes={"k": "v"}):
            pass
        provider.shutdown()
        [span] = receiver.wait_for_spans(1)
        [request] = receiver.requests
    assert (span.name, span.attributes) == ("over http", {"k": "v"})
    assert request.transport == "http"
    assert request.metadata["content-type"] == "application/x-protobuf"


def _post(url: str, body: bytes, content_type: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": content_type, **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


JSON_REQUEST = {
    "resourceSpans": [
        {
            "scopeSpans": [
                {
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "parentSpanId": "eee19b7ec3c1b173",
                            "name": "json",
                            "attributes": [{"key": "n", "value": {"intValue": "7"}}],
                        }
                    ]
                }
            ]
        }
    ]
}


def test_otlp_json_ids_are_hex() -> None:
    [span] = ReceivedRequest(parse_otlp_json(json.dumps(JSON_REQUEST).encode()), {}).spans()
    assert (span.trace_id, span.span_id, span.parent_span_id) == (
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
        "eee19b7ec3c1b173",
    )
    assert span.attributes == {"n": 7}


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status"),
    [
        (json.dumps(JSON_REQUEST).encode(), "application/json", {}, 200),
        (
            gzip.compress(json.dumps(JSON_REQUEST).encode()),
            "application/json",
            {"Content-Encoding": "gzip"},
            200,
        ),
        (b"{", "application/json", {}, 400),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "application/json",
            {},
            400,
        ),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", {}, 400),
        (b"\xff\xff", "application/x-protobuf", {}, 400),
        (b"{}", "text/plain", {}, 415),
        (b"not gzip", "application/json", {"Content-Encoding": "gzip"}, 400),
        (b"{}", "application/json", {"Content-Encoding": "br"}, 415),
    ],
)
def test_otlp_http_answers(body: bytes, content_type: str, headers: dict[str, str], status: int) -> None:
    with OTLPReceiver(http_port=0) as receiver:
        code, _ = _post(receiver.http_endpoint, body, content_type, **headers)
        assert code == status
        assert len(receiver.requests) == (1 if status == 200 else 0)


def test_otlp_http_other_paths_are_not_found() -> None:
    with OTLPReceiver(http_port=0) as receiver:
        code, _ = _post(
            receiver.http_endpoint.replace("/v1/traces", "/v1/logs"), b"", "application/x-protobuf"
        )
    assert code == 404


def test_a_status_code_is_answered_over_http_as_its_http_equivalent() -> None:
    with OTLPReceiver(http_port=0, status_code=grpc.StatusCode.UNAVAILABLE) as receiver:
        code, _ = _post(receiver.http_endpoint, b"", "application/x-protobuf")
    assert code == 503


# --- properties: the OTLP/JSON parser and the HTTP endpoint take anything ---------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "name", "attributes", "x"]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(document=_JSON)
def test_otlp_json_parser_raises_only_value_error(document: object) -> None:
    try:
        request = parse_otlp_json(json.dumps(document).encode())
    except ValueError:
        return
    list(ReceivedRequest(request, {}).spans())


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "application/x-protobuf"])
)
def test_the_http_endpoint_answers_any_body_without_a_server_error(body: bytes, content_type: str) -> None:
    code, _ = _post(HTTP_RECEIVER.http_endpoint, body, content_type)
    assert code in (200, 400)


HTTP_RECEIVER = OTLPReceiver(http_port=0, keep=0)


@pytest.fixture(autouse=True, scope="module")
def _http_receiver() -> Iterator[None]:
    HTTP_RECEIVER.start()
    yield
    HTTP_RECEIVER.stop()
