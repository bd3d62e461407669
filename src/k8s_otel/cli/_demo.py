"""``k8s-otel demo``: kube-apiserver traffic, a wrapped admission webhook, real OTLP, the trace on screen.

Everything runs in one process on 127.0.0.1 with the standard library only: an OTLP/gRPC
receiver, an example validating webhook (``wsgiref``) wrapped by ``WSGIMiddleware``, and an
``APIServerSimulator`` that makes the spans kube-apiserver makes for a CREATE that calls a
validating webhook, sampled by ``PerMillionSampler``, and POSTs the AdmissionReview with
``traceparent``.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, Optional, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry import trace
from opentelemetry.trace import SpanKind

import k8s_otel
from k8s_otel.admission import format_group_version_resource
from k8s_otel.cli._waterfall import render_traces as render_trees
from k8s_otel.cli._waterfall import span_as_dict, trace_trees
from k8s_otel.cli.receiver import OTLPReceiver
from k8s_otel.config import load_tracing_configuration
from k8s_otel.conventions import span_name
from k8s_otel.propagation import inject
from k8s_otel.settings import resolve_settings
from k8s_otel.webhook.wsgi import WSGIMiddleware

__all__ = ["APIServerSimulator", "example_webhook", "run_demo"]

MAX_REPLICAS = 10


def example_webhook(tracer_provider: Optional[trace.TracerProvider] = None) -> Callable[..., list[bytes]]:
    """A validating webhook: Deployments may have at most 10 replicas."""
    tracer = trace.get_tracer("k8s_otel.demo", tracer_provider=tracer_provider)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        review = json.loads(environ["wsgi.input"].read(length) or b"{}")
        request = review.get("request") or {}
        with tracer.start_as_current_span("policy check") as span:
            replicas = ((request.get("object") or {}).get("spec") or {}).get("replicas", 1)
            allowed = isinstance(replicas, int) and replicas <= MAX_REPLICAS
            span.set_attribute("policy.max_replicas", MAX_REPLICAS)
        response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": allowed}
        if not allowed:
            response["status"] = {"code": 403, "message": f"replicas must be at most {MAX_REPLICAS}"}
        body = json.dumps(
            {"apiVersion": review.get("apiVersion"), "kind": "AdmissionReview", "response": response}
        )
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body.encode()]

    return app


def _review(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": f"web-{index}",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "demo-user", "groups": ["system:authenticated"]},
            "object": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"web-{index}", "namespace": "default"},
                "spec": {"replicas": 3 if index % 4 else 12},
            },
            "dryRun": False,
        },
    }


class APIServerSimulator:
    """Makes the spans kube-apiserver makes when a CREATE calls a validating webhook, then calls it.

    ``POST /apis/apps/v1/namespaces/{:namespace}/deployments`` (SERVER, sampled by the per-million
    rule) → ``Call validating webhook`` (the dispatcher's span and attributes) → ``HTTP POST``
    (CLIENT, otelhttp's name) with ``traceparent`` injected into the POST.
    """

    def __init__(self, tracer_provider: trace.TracerProvider) -> None:
        self.tracer = tracer_provider.get_tracer("k8s.io/component-base/tracing")

    def call(
        self, url: str, review: dict[str, Any], *, webhook: str = "validating"
    ) -> tuple[bool, dict[str, Any]]:
        """Returns whether the request was sampled, and the webhook's AdmissionReview response."""
        request = review["request"]
        resource = request["resource"]
        path = f"/apis/{resource['group']}/{resource['version']}/namespaces/{request['namespace']}/{resource['resource']}"
        with self.tracer.start_as_current_span(
            span_name("POST", path), kind=SpanKind.SERVER, attributes={"http.target": path}
        ) as server_span:
            with self.tracer.start_as_current_span(
                f"Call {webhook} webhook",
                attributes={
                    "configuration": "demo-policy",
                    "webhook": "replicas.demo.k8s-otel.io",
                    "resource": format_group_version_resource(
                        resource["group"], resource["version"], resource["resource"]
                    ),
                    "subresource": request.get("subResource", ""),
                    "operation": request["operation"],
                    "UID": request["uid"],
                },
            ) as call_span:
                with self.tracer.start_as_current_span("HTTP POST", kind=SpanKind.CLIENT):
                    headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
                    inject(headers)
                    outgoing = urllib.request.Request(
                        f"{url}?timeout=10s", data=json.dumps(review).encode(), headers=headers, method="POST"
                    )
                    with urllib.request.urlopen(outgoing, timeout=10) as answer:
                        response: dict[str, Any] = json.loads(answer.read())
                call_span.add_event("Request completed")
            return server_span.is_recording(), response


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_webhook(app: Callable[..., Any]) -> Iterator[str]:
    """Serve a WSGI app on 127.0.0.1 (a free port) in a thread; yields its /validate URL."""
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/validate"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run_demo(
    *,
    requests: int = 20,
    sampling_rate_per_million: Optional[int] = None,
    config_file: Optional[str] = None,
    endpoint: Optional[str] = None,
    out: TextIO,
    progress: Optional[TextIO] = None,
    as_json: bool = False,
) -> int:
    """Run the demo; print trees (built-in receiver) or a summary (external collector). Exit code."""
    rate = sampling_rate_per_million
    if rate is None and config_file:
        rate = load_tracing_configuration(config_file).sampling_rate_per_million
    if rate is None:
        rate = 1_000_000
    external = endpoint or (resolve_settings().endpoint.value if _env_endpoint() else None)
    receiver = None if external else OTLPReceiver().start()
    target = external or (receiver.endpoint if receiver else None)
    try:
        # The apiserver samples by the rate; the webhook, like every component, follows its parent.
        apiserver = k8s_otel.configure(
            install=False, endpoint=target, sampling_rate_per_million=rate, service_name="apiserver"
        )
        webhook = k8s_otel.configure(install=False, endpoint=target, service_name="demo-webhook")
        simulator = APIServerSimulator(apiserver.tracer_provider)
        app = WSGIMiddleware(
            example_webhook(webhook.tracer_provider),
            tracer_provider=webhook.tracer_provider,
            webhook_type="validating",
        )
        latencies: list[float] = []
        sampled = denied = 0
        with serve_webhook(app) as url:
            for index in range(requests):
                started = time.perf_counter()
                was_sampled, response = simulator.call(url, _review(index))
                latencies.append((time.perf_counter() - started) * 1000)
                sampled += was_sampled
                denied += not response["response"]["allowed"]
                if progress is not None and (index % 10 == 9 or index == requests - 1):
                    progress.write(f"\r{index + 1}/{requests} requests")
                    progress.flush()
        if progress is not None:
            progress.write("\n")
        webhook.shutdown(10)
        apiserver.shutdown(10)
        spans = receiver.spans() if receiver else []
    finally:
        if receiver is not None:
            receiver.stop()
    expected = sampled * 5  # apiserver: server, call, client; webhook: server, policy check
    summary = {
        "requests": requests,
        "denied": denied,
        "sampled": sampled,
        "samplingRatePerMillion": rate,
        "spans_exported": len(spans) if receiver else None,
        "traces_received": len({s.trace_id for s in spans}) if receiver else None,
        "exported_to": target,
        "latency_ms": {
            "mean": round(statistics.fmean(latencies), 2),
            "p50": round(statistics.median(latencies), 2),
            "max": round(max(latencies), 2),
        },
    }
    if as_json:
        report = {"summary": summary, "traces": trace_trees(spans), "spans": [span_as_dict(s) for s in spans]}
        out.write(json.dumps(report, sort_keys=True, default=list) + "\n")
    else:
        _print_report(spans, summary, out, external is not None)
    return 0 if external or len(spans) == expected else 1


def _env_endpoint() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _print_report(spans: list[Any], summary: dict[str, Any], out: TextIO, external: bool) -> None:
    if not external:
        render_trees(spans, out)
        resources: dict[str, dict[str, Any]] = {}
        for span in spans:
            resources.setdefault(str(span.resource.get("service.name")), span.resource)
        out.write("\nresources:\n")
        for service, attributes in sorted(resources.items()):
            shown = ", ".join(f"{k}={v}" for k, v in sorted(attributes.items()))
            out.write(f"  {service}: {shown}\n")
    latency = summary["latency_ms"]
    out.write(
        f"\nrequests: {summary['requests']} (denied {summary['denied']}), sampled: {summary['sampled']} "
        f"at samplingRatePerMillion={summary['samplingRatePerMillion']}"
    )
    if external:
        out.write(f", exported to {summary['exported_to']}\n")
    else:
        out.write(
            f", traces received: {summary['traces_received']}, spans exported: {summary['spans_exported']}\n"
        )
    out.write(f"latency: mean {latency['mean']} ms, p50 {latency['p50']} ms, max {latency['max']} ms\n")
