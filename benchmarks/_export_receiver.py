"""A counting OTLP/gRPC receiver for the export benchmarks, run as its own process.

It prints its port, then answers each ``count`` line on stdin with the number of spans received.
``--flapping`` answers every other Export with RESOURCE_EXHAUSTED (a retryable refusal).
"""

from __future__ import annotations

import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class CountingService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, flapping: bool) -> None:
        self.flapping = flapping
        self.calls = 0
        self.spans = 0
        self.lock = threading.Lock()

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            self.calls += 1
            refuse = self.flapping and self.calls % 2 == 1
        if refuse:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "flapping")
        count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            self.spans += count
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> None:
    service = CountingService("--flapping" in sys.argv)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            with service.lock:
                print(service.spans, flush=True)
    server.stop(0)


if __name__ == "__main__":
    main()
