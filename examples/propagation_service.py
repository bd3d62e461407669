"""A small service that continues the caller's trace and passes it on: extract, serve, inject.

    python examples/propagation_service.py

It starts a downstream service and this one on 127.0.0.1, calls itself once with a traceparent and
baggage, and prints what each service saw and the trace. Each incoming request is a SERVER span in
the caller's context (``k8s_otel.extract``, attached as the current context so that the
caller's baggage comes with it); each outgoing call is one CLIENT span, with traceparent, tracestate
and baggage written into its headers by ``k8s_otel.inject``.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from k8s_otel import extract, inject


def make_handler(tracer: trace.Tracer, downstream: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            incoming = extract(self.headers)  # an http.client.HTTPMessage: multi-valued, case-insensitive
            # Attach the whole incoming context, not only the parent span: the caller's baggage is in
            # it, and inject() below writes what the current context holds.
            token = context.attach(incoming)
            try:
                seen = self._serve()
            finally:
                context.detach(token)
            body = json.dumps(seen).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self) -> dict[str, Any]:
            with tracer.start_as_current_span(f"GET {self.path}", kind=SpanKind.SERVER):
                seen: dict[str, Any] = {
                    name: self.headers.get(name) for name in ("traceparent", "tracestate", "baggage")
                }
                answers = []
                for url in downstream:
                    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as span:
                        span.set_attribute("url.full", url)
                        headers: dict[str, str] = {}
                        inject(headers)
                        with urllib.request.urlopen(
                            urllib.request.Request(url, headers=headers), timeout=5
                        ) as answer:
                            span.set_attribute("http.response.status_code", answer.status)
                            answers.append(json.loads(answer.read()))
                if answers:
                    seen["downstream"] = answers
            return seen

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(tracer: trace.Tracer, downstream: list[str]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(tracer, downstream))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("propagation-example")
    with serve(tracer, []) as downstream, serve(tracer, [f"{downstream}/a", f"{downstream}/b"]) as service:
        caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        request = urllib.request.Request(
            f"{service}/work", headers={"traceparent": caller, "baggage": "tenant=a"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            seen = json.loads(answer.read())
        print("the service saw:", json.dumps({k: v for k, v in seen.items() if k != "downstream"}))
        for index, downstream_saw in enumerate(seen["downstream"]):
            print(f"downstream call {index + 1} saw:", json.dumps(downstream_saw))
    for span in sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0):
        parent = f"{span.parent.span_id:016x}" if span.parent else "-"
        print(
            f"{span.kind.name:<6} {span.name:<10} trace {span.context.trace_id:032x} "
            f"span {span.context.span_id:016x} parent {parent}"
        )


if __name__ == "__main__":
    main()
