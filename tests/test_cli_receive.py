"""``k8s-otel receive`` end to end: real exporters in other processes, gRPC and OTLP/HTTP, one view."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Optional

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

import subprocess_scripts
from k8s_otel.cli._receiver import OTLPReceiver

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}


class Receive:
    """A running ``k8s-otel receive`` whose stdout is read line by line in a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "k8s_otel", "receive", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**ENV, "PYTHONIOENCODING": "utf-8"},
        )
        assert self.process.stderr is not None
        self.banner = self.process.stderr.readline()
        grpc_match = re.search(r"OTLP/gRPC on (127\.0\.0\.1:\d+)", self.banner)
        assert grpc_match, self.banner + self.process.stderr.read()
        self.endpoint = grpc_match.group(1)
        http_match = re.search(r"OTLP/HTTP on (http://127\.0\.0\.1:\d+/v1/traces)", self.banner)
        self.http_endpoint = http_match.group(1) if http_match else ""
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 20) -> str:
        """The first line (from now on, or already seen) that matches ``pattern``, while it runs."""
        for line in self.seen:
            if re.search(pattern, line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {timeout} s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"receive ended before {pattern!r}: {self.seen}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def stop(self) -> tuple[int, list[str], str]:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        finally:
            self.process.kill()
        assert self.process.stderr is not None
        stderr = self.process.stderr.read()
        while True:
            line = self.lines.get(timeout=5)
            if line is None:
                break
            self.seen.append(line)
        return self.process.returncode, self.seen, stderr


@pytest.fixture
def receive_factory() -> Any:
    started: list[Receive] = []

    def start(*args: str) -> Receive:
        receive = Receive(*args)
        started.append(receive)
        return receive

    yield start
    for receive in started:
        if receive.process.poll() is None:
            receive.process.kill()
            receive.process.wait(5)


def send(endpoint: str, protocol: str, service: str, traceparent: str = "-") -> str:
    """Export one span from another process; return its traceparent."""
    result = subprocess_scripts.run("otlp_sender", endpoint, protocol, service, traceparent, env=ENV)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_two_processes_send_parts_of_one_trace_over_grpc_and_http_and_it_is_shown_once(
    receive_factory: Any,
) -> None:
    receive = receive_factory("--settle", "1")
    parent = send(receive.endpoint, "grpc", "first")
    trace_id = parent.split("-")[1]
    send(receive.http_endpoint, "http/protobuf", "second", parent)
    # Shown while the receiver still runs: the settle time bounds the wait.
    header = receive.wait_for(rf"^trace {trace_id}\b")
    assert "2 spans" in header
    assert "services: first, second" in header
    rows = [receive.wait_for(r"first work"), receive.wait_for(r"second work")]
    assert rows[0].startswith("first work ")
    assert rows[1].startswith("└ second work ")  # the other process's span, under its parent
    code, lines, stderr = receive.stop()
    assert code == 0, stderr
    assert sum(1 for line in lines if line.startswith(f"trace {trace_id}")) == 1


def test_filters_show_only_matching_traces(receive_factory: Any) -> None:
    receive = receive_factory("--settle", "30", "--uid", "alpha-uid", "--json")
    by_service = receive_factory("--settle", "30", "--service", "beta")
    by_attribute = receive_factory("--settle", "30", "--filter", "UID=gamma-uid")
    for name in ("alpha", "beta", "gamma"):
        for target in (receive, by_service, by_attribute):
            send(target.endpoint, "grpc", name)
    # A long settle time: everything is shown at exit.
    _, uid_lines, _ = receive.stop()
    assert [json.loads(line)["attributes"]["UID"] for line in uid_lines] == ["alpha-uid"]
    _, service_lines, _ = by_service.stop()
    assert [line.split()[0] for line in service_lines if line.startswith("beta")] == ["beta"]
    assert not any("alpha" in line or "gamma" in line for line in service_lines)
    _, attribute_lines, _ = by_attribute.stop()
    assert any(line.startswith("gamma work") for line in attribute_lines)
    assert not any("alpha" in line or "beta" in line for line in attribute_lines)


def test_otlp_json_over_http_is_shown_like_grpc(receive_factory: Any) -> None:
    receive = receive_factory("--settle", "30")
    trace_id = "5b8efff798038103d269b633813fc60c"
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "json-sender"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "curl"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "eee19b7ec3c1b174",
                                "name": "from JSON",
                                "kind": 2,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "status": {"code": 2, "message": "went wrong"},
                                "events": [{"name": "retry", "timeUnixNano": "1544712660500000000"}],
                                "links": [
                                    {
                                        "traceId": "0af7651916cd43dd8448eb211c80319c",
                                        "spanId": "b7ad6b7169203331",
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    request = urllib.request.Request(
        receive.http_endpoint,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        assert json.loads(answer.read()) == {}
    _, lines, stderr = receive.stop()
    text = "\n".join(lines)
    assert "Traceback" not in stderr, stderr
    assert f"trace {trace_id}  1 span, 1.00 s, error: 1, services: json-sender" in text
    assert re.search(r"^from JSON +json-sender SERVER .* 1\.00 s ERROR$", text, re.MULTILINE)
    assert "    error: went wrong" in text
    assert "    • retry +500 ms" in text
    assert "    ↪ link to trace 0af7651916cd43dd8448eb211c80319c span b7ad6b7169203331" in text


def _chain(length: int, name: str = "link") -> trace_service_pb2.ExportTraceServiceRequest:
    trace_id = bytes.fromhex("1" * 32)
    spans = [
        trace_pb2.Span(
            trace_id=trace_id,
            span_id=(i + 1).to_bytes(8, "big"),
            parent_span_id=i.to_bytes(8, "big") if i else b"",
            name=f"{name} {i}",
            start_time_unix_nano=1_000_000 + i,
            end_time_unix_nano=2_000_000_000 - i,
        )
        for i in range(length)
    ]
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request


def _export(endpoint: str, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
    with grpc.insecure_channel(endpoint) as channel:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=20)


def test_a_5000_deep_parent_chain_is_accepted_and_drawn(receive_factory: Any) -> None:
    receive = receive_factory("--settle", "30")
    _export(receive.endpoint, _chain(5000))  # raises if the RPC fails
    code, lines, stderr = receive.stop()
    assert code == 0
    assert "Traceback" not in stderr
    assert lines[0].startswith(f"trace {'1' * 32}  5000 spans")
    assert lines[2].startswith("link 0 ")
    assert any(line.lstrip().startswith("└ [399] link 399") for line in lines)
    assert lines[-2:] == ["    … 4600 more spans not drawn", ""]
    assert max(len(line) for line in lines) <= 160


def test_escape_sequences_in_span_data_never_reach_the_terminal(receive_factory: Any) -> None:
    receive = receive_factory("--settle", "30", "--verbose")
    request = _chain(1, name="\x1b]0;owned\x07\x1b[2J")
    span = request.resource_spans[0].scope_spans[0].spans[0]
    attribute = span.attributes.add()
    attribute.key = "key\x1b[31m"
    attribute.value.string_value = "value\x9b\u202e"
    _export(receive.endpoint, request)
    _, lines, _ = receive.stop()
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text and "\u202e" not in text
    assert "\\x1b]0;owned\\x07\\x1b[2J 0" in text
    assert "key\\x1b[31m = value\\x9b\\u202e" in text


def test_json_output_is_escaped_too(receive_factory: Any) -> None:
    receive = receive_factory("--settle", "30", "--json")
    _export(receive.endpoint, _chain(1, name="\x1b[2J"))
    _, lines, _ = receive.stop()
    assert "\x1b" not in "".join(lines)
    assert json.loads(lines[0])["name"] == "\x1b[2J 0"


def test_receive_restarts_on_its_port_at_once_after_a_crash(receive_factory: Any) -> None:
    first = receive_factory("--no-http")
    port = first.endpoint.rsplit(":", 1)[1]
    # A live exporter connection, then a crash: the old connection lingers in the kernel.
    with grpc.insecure_channel(first.endpoint) as channel:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(_chain(1), timeout=20)
        first.process.kill()
        first.process.wait(10)
    second = receive_factory("--port", port, "--no-http")  # the later --port wins
    assert f"OTLP/gRPC on 127.0.0.1:{port}" in second.banner


def test_a_taken_port_is_a_one_line_error() -> None:
    with OTLPReceiver() as taken:
        result = subprocess.run(
            [sys.executable, "-m", "k8s_otel", "receive", "--port", str(taken.port), "--no-http"],
            capture_output=True,
            text=True,
            timeout=30,
            env=ENV,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.startswith(f"k8s-otel receive: cannot listen on 127.0.0.1:{taken.port}")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_port_out_of_range_is_a_clear_error(port: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "k8s_otel", "receive", f"--port={port}"],
        capture_output=True,
        text=True,
        timeout=30,
        env=ENV,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert re.search(rf"argument --port: '?{re.escape(port)}'? is not a port number", result.stderr)


def test_a_non_loopback_host_is_warned_about() -> None:
    # 192.0.2.1 (TEST-NET-1) is not an address of this machine: the bind fails after the warning.
    result = subprocess.run(
        [sys.executable, "-m", "k8s_otel", "receive", "--host", "192.0.2.1", "--port", "0", "--no-http"],
        capture_output=True,
        text=True,
        timeout=30,
        env=ENV,
        check=False,
    )
    assert result.stderr.splitlines()[0] == (
        "k8s-otel receive: warning: listening on 192.0.2.1, which is not a loopback address: anyone who "
        "can reach it can send spans, and there is no TLS and no authentication"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_help_says_what_it_is() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "k8s_otel", "receive", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert "not a collector" in result.stdout
    assert "--settle" in result.stdout and "--uid" in result.stdout and "--filter" in result.stdout


def test_settle_must_be_positive() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "k8s_otel", "receive", "--settle", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        env=ENV,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == "k8s-otel receive: --settle must be more than 0 and at most 3600 seconds\n"


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RSS from /proc")
def test_receive_keeps_nothing_once_traces_are_shown(receive_factory: Any) -> None:
    """Bounded memory: 60 exports of about 1 MB each leave RSS where it was (it grew 240 MiB before)."""
    receive = receive_factory("--settle", "0.05", "--service", "nobody", "--no-http")

    def batch(index: int) -> trace_service_pb2.ExportTraceServiceRequest:
        request = _chain(1000, name=f"batch {index} " + "x" * 1000)
        request.resource_spans[0].scope_spans[0].spans[0].trace_id = index.to_bytes(16, "big")
        for span in request.resource_spans[0].scope_spans[0].spans:
            span.trace_id = (index + 1).to_bytes(16, "big")
        return request

    with grpc.insecure_channel(receive.endpoint) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for index in range(10):  # warm up: allocator arenas, gRPC buffers
            stub.Export(batch(index), timeout=20)
        time.sleep(0.5)
        before = _rss_kib(receive.process.pid)
        for index in range(10, 70):
            stub.Export(batch(index), timeout=20)
        time.sleep(0.5)
        after = _rss_kib(receive.process.pid)
    assert after - before < 30 * 1024, (before, after)


def test_a_terminal_that_cannot_show_a_name_gets_escapes() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "k8s_otel", "receive", "--port", "0", "--no-http", "--settle", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="ascii",
        errors="strict",
        env={**ENV, "PYTHONIOENCODING": "ascii"},
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        endpoint = re.search(r"OTLP/gRPC on (127\.0\.0\.1:\d+)", banner)
        assert endpoint, banner
        _export(endpoint.group(1), _chain(1, name="Grüße 日本"))
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "Gr\\xfc\\xdfe \\u65e5\\u672c 0" in stdout
    assert "|#" in stdout  # ASCII bars
