"""Canary strings: a credential given to the package in any of the usual wrong ways never comes out.

Each scenario runs with every Python logger at DEBUG (grpc, urllib3, requests, opentelemetry,
k8s_otel, root) and the process's stdout/stderr captured at the file-descriptor level, where gRPC
core writes its own log (at the verbosity it read at import: errors such as an invalid metadata
value are always written), exports through the real exporters to a real receiver, and hands back what it saw. Then no
canary may appear in any log record, any exported span or resource, or any CLI output.

To add a scenario (a webhook, kopf, an API client error), write a function that takes a
``Capture`` and records what the process emitted with ``capture.add(...)``, and add it to
``SCENARIOS``.
"""

from __future__ import annotations

import http.server
import io
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import k8s_otel
from k8s_otel.cli import main as cli_main
from k8s_otel.cli.receiver import OTLPReceiver

# Credential-looking canaries, one per way a secret is handed over.
TOKEN = "dG9rZW4tY2FuYXJ5LTExMTExMTExMTE"  # a bearer token read from a file, trailing newline
BASIC = "YmFzaWMtY2FuYXJ5LTIyMjIyMjIyMjI"  # a colon-form header
PASSWORD = "cGFzc3dvcmQtY2FuYXJ5LTMzMzMzMzM"  # userinfo in the endpoint
INNER = "aW5uZXItY2FuYXJ5LTQ0NDQ0NDQ0NDQ"  # a value with a newline inside
CANARIES = (TOKEN, BASIC, PASSWORD, INNER)

LOGGERS = ("", "grpc", "urllib3", "requests", "opentelemetry", "k8s_otel")


@dataclass
class Capture:
    """Everything a scenario saw the process emit, plus what reached the collector on the wire."""

    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    receiver: OTLPReceiver
    texts: list[str] = field(default_factory=list)
    sent_headers: list[dict[str, str]] = field(default_factory=list)

    def add(self, *texts: str) -> None:
        self.texts.extend(texts)


class _HTTPReceiver(http.server.BaseHTTPRequestHandler):
    """A tiny OTLP/HTTP receiver: records each POST's headers and spans."""

    received: ClassVar[list[tuple[dict[str, str], ExportTraceServiceRequest]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_receiver() -> Iterator[tuple[int, list[tuple[dict[str, str], ExportTraceServiceRequest]]]]:
    handler: type[_HTTPReceiver] = type("Handler", (_HTTPReceiver,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler.received
    finally:
        server.shutdown()
        server.server_close()


def _export_one_span(handle: k8s_otel.TracingHandle, capture: Capture) -> None:
    tracer = handle.tracer_provider.get_tracer("canary")
    with tracer.start_as_current_span("canary-span"):
        pass
    assert handle.force_flush(10)
    capture.add(
        repr(handle), repr(handle.settings), str(handle.settings.as_dict()), *handle.settings.problems
    )


# The env a careless deployment gives: a token file's content with its newline, a header pasted in
# "Name: value" form, another with a newline inside, and the password in the endpoint.
HEADERS_ENV = f"X-Basic: Basic {BASIC}==,authorization=Bearer%20{TOKEN}%0A,x-inner=a%0A{INNER}"


def grpc_export(capture: Capture) -> None:
    capture.monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", HEADERS_ENV)
    capture.monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://collector:{PASSWORD}@{capture.receiver.endpoint}"
    )
    handle = k8s_otel.configure(install=False, sampling_rate_per_million=1_000_000)
    try:
        _export_one_span(handle, capture)
        assert capture.receiver.wait_for_spans(1)
        capture.sent_headers.extend(dict(request.metadata) for request in capture.receiver.requests)
        assert all(headers.get("authorization") for headers in capture.sent_headers)
        capture.add(*(repr(span) for span in capture.receiver.spans()))
    finally:
        handle.shutdown()


def grpc_export_with_a_token_argument(capture: Capture) -> None:
    handle = k8s_otel.configure(
        install=False,
        sampling_rate_per_million=1_000_000,
        endpoint=f"dns://u:{PASSWORD}@{capture.receiver.endpoint}",
        headers={"authorization": f"Bearer {TOKEN}\n", "x-inner": f"a\n{INNER}"},
    )
    try:
        _export_one_span(handle, capture)
        assert capture.receiver.wait_for_spans(1)
        capture.sent_headers.extend(dict(request.metadata) for request in capture.receiver.requests)
    finally:
        handle.shutdown()


def grpc_export_with_every_header_refused(capture: Capture) -> None:
    # With nothing left to send, the stock exporter must still not read the variable itself.
    capture.monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"X-Basic: Basic {BASIC}==,x-inner=a%0A{INNER}")
    handle = k8s_otel.configure(
        install=False, sampling_rate_per_million=1_000_000, endpoint=capture.receiver.endpoint
    )
    try:
        _export_one_span(handle, capture)
        assert capture.receiver.wait_for_spans(1)
        capture.sent_headers.extend(dict(request.metadata) for request in capture.receiver.requests)
        assert all("x-inner" not in headers for headers in capture.sent_headers)
    finally:
        handle.shutdown()


def make_http_export(port: int, received: list[tuple[dict[str, str], ExportTraceServiceRequest]]) -> Scenario:
    def http_export(capture: Capture) -> None:
        capture.monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        capture.monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", HEADERS_ENV)
        capture.monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://collector:{PASSWORD}@127.0.0.1:{port}"
        )
        handle = k8s_otel.configure(install=False, sampling_rate_per_million=1_000_000)
        try:
            _export_one_span(handle, capture)
            assert received, "the OTLP/HTTP receiver got nothing"
            capture.sent_headers.extend(headers for headers, _ in received)
            capture.add(*(str(request) for _, request in received))
        finally:
            handle.shutdown()

    return http_export


def doctor_and_validate(capture: Capture) -> None:
    capture.monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", HEADERS_ENV)
    good = capture.tmp_path / "good.yaml"
    good.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n"
        f"endpoint: dns://u:{PASSWORD}@{capture.receiver.endpoint}\n"
    )
    bad = capture.tmp_path / "bad.yaml"
    bad.write_text(
        f"apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n{TOKEN}: 1\n"
        f"endpoint: http://u:{PASSWORD}@host:4317\n"
    )
    broken = capture.tmp_path / "broken.yaml"
    broken.write_text(f"kind: {BASIC}\ntoken: [{TOKEN}\n")
    for argv in (
        ["doctor", "--config-file", str(good), "--timeout", "2"],
        ["doctor", "--config-file", str(good), "--timeout", "2", "--json"],
        ["doctor", "--endpoint", f"http://u:{PASSWORD}@{capture.receiver.endpoint}", "--timeout", "2"],
        ["validate", str(good), str(bad), str(broken)],
        ["validate", "--json", str(good), str(bad), str(broken)],
    ):
        out, err = io.StringIO(), io.StringIO()
        cli_main(argv, out=out, err=err)
        capture.add(out.getvalue(), err.getvalue())


Scenario = Callable[[Capture], None]
SCENARIOS: dict[str, Scenario] = {
    "grpc export, env": grpc_export,
    "grpc export, arguments": grpc_export_with_a_token_argument,
    "grpc export, every header refused": grpc_export_with_every_header_refused,
    "doctor and validate": doctor_and_validate,
}


@pytest.fixture
def capture(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    otlp_receiver: OTLPReceiver,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> Iterator[Capture]:
    monkeypatch.setenv("K8S_OTEL_FS_ROOT", str(tmp_path))  # no pod files from the host
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    result = Capture(tmp_path=tmp_path, monkeypatch=monkeypatch, receiver=otlp_receiver)
    try:
        yield result
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    out, err = capfd.readouterr()
    result.add(out, err, caplog.text, *(record.getMessage() for record in caplog.records))
    result.add(*(str(record.args) for record in caplog.records), *(str(r.exc_info) for r in caplog.records))
    _assert_no_canary(result)


def _assert_no_canary(capture: Capture) -> None:
    emitted = "\n".join(capture.texts)
    for canary in CANARIES:
        assert canary not in emitted, f"canary {canary} leaked"
    # What was sent on the wire: the token, cleaned; nothing from the refused headers or the endpoint.
    for headers in capture.sent_headers:
        assert headers.get("authorization", f"Bearer {TOKEN}") == f"Bearer {TOKEN}"
        wire = " ".join(f"{k}={v}" for k, v in headers.items())
        assert BASIC not in wire and PASSWORD not in wire and INNER not in wire


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_canary_leaves_the_process(capture: Capture, scenario: str) -> None:
    SCENARIOS[scenario](capture)


def test_no_canary_leaves_the_process_over_otlp_http(
    capture: Capture, http_receiver: tuple[int, list[tuple[dict[str, str], ExportTraceServiceRequest]]]
) -> None:
    make_http_export(*http_receiver)(capture)
    assert capture.sent_headers and all(
        h.get("authorization") == f"Bearer {TOKEN}" for h in capture.sent_headers
    )


def test_the_capture_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: a canary in a log line or on the wire is caught."""
    capture = Capture(tmp_path=tmp_path, monkeypatch=monkeypatch, receiver=OTLPReceiver())
    capture.add(f"ERROR something {TOKEN}")
    with pytest.raises(AssertionError, match="leaked"):
        _assert_no_canary(capture)
    capture.texts.clear()
    capture.sent_headers.append({"authorization": f"Bearer {TOKEN}", "x-basic": BASIC})
    with pytest.raises(AssertionError):
        _assert_no_canary(capture)
