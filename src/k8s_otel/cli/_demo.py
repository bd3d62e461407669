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
import textwrap
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry import trace
from opentelemetry.trace import SpanKind

import k8s_otel
from k8s_otel._admission import format_group_version_resource
from k8s_otel._attributes import (
    CONFIGURATION,
    DEMO_MAX_REPLICAS,
    HTTP_TARGET,
    OPERATION,
    RESOURCE,
    SERVICE_NAME,
    SUBRESOURCE,
    UID,
    WEBHOOK,
)
from k8s_otel._config import load_tracing_configuration
from k8s_otel._conventions import span_name
from k8s_otel._exceptions import K8sOtelError
from k8s_otel._propagation import inject
from k8s_otel._settings import resolve_settings
from k8s_otel.cli._collector import export_failure
from k8s_otel.cli._receiver import OTLPReceiver, ReceivedSpan
from k8s_otel.cli._waterfall import (
    DEFAULT_WIDTH,
    Charset,
    fit,
    printable,
    render_waterfall,
    span_as_dict,
    trace_trees,
)
from k8s_otel.webhook._wsgi import WSGIMiddleware

__all__ = ["APIServerSimulator", "DemoRun", "asynchronous_half", "example_webhook", "run_demo"]

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
            span.set_attribute(DEMO_MAX_REPLICAS, MAX_REPLICAS)
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
            span_name("POST", path), kind=SpanKind.SERVER, attributes={HTTP_TARGET: path}
        ) as server_span:
            with self.tracer.start_as_current_span(
                f"Call {webhook} webhook",
                attributes={
                    CONFIGURATION: "demo-policy",
                    WEBHOOK: "replicas.demo.k8s-otel.io",
                    RESOURCE: format_group_version_resource(
                        resource["group"], resource["version"], resource["resource"]
                    ),
                    SUBRESOURCE: request.get("subResource", ""),
                    OPERATION: request["operation"],
                    UID: request["uid"],
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


@dataclass
class DemoRun:
    """What one run did, for the summary and ``--json``."""

    requests: int
    rate: int
    target: str
    external: bool
    sampled: int = 0
    denied: int = 0
    latencies: list[float] = field(default_factory=list)
    #: request UID -> allowed, for the sampled requests, in order
    outcomes: dict[str, bool] = field(default_factory=dict)
    spans: list[ReceivedSpan] = field(default_factory=list)
    #: the asynchronous half: (step, traceparent) for each stamp and each linked reconcile
    async_steps: list[tuple[str, str]] = field(default_factory=list)


def asynchronous_half(run: DemoRun) -> list[tuple[str, str]]:
    """The asynchronous half (KEP-5915): the stamping webhook, a linked reconcile, a stamped child.

    Returns ``(step, traceparent)`` pairs; their traces are drawn after the admission traces.
    """
    from k8s_otel.cli._demo_objects import run_async_demo

    handles = [
        k8s_otel.configure(
            install=False, endpoint=run.target, sampling_rate_per_million=run.rate, service_name=name
        )
        for name in ("apiserver", "k8s-otel-stamp", "demo-controller")
    ]
    try:
        return run_async_demo(*(handle.tracer_provider for handle in handles))
    finally:
        for handle in handles:
            handle.shutdown(5)


def _run_requests(run: DemoRun, progress: Optional[TextIO]) -> list[str]:
    """Send the requests through a simulated kube-apiserver to the wrapped webhook; shut down."""
    # The apiserver samples by the rate; the webhook, like every component, follows its parent.
    apiserver = k8s_otel.configure(
        install=False, endpoint=run.target, sampling_rate_per_million=run.rate, service_name="apiserver"
    )
    webhook = k8s_otel.configure(install=False, endpoint=run.target, service_name="demo-webhook")
    simulator = APIServerSimulator(apiserver.tracer_provider)
    app = WSGIMiddleware(
        example_webhook(webhook.tracer_provider),
        tracer_provider=webhook.tracer_provider,
        webhook_type="validating",
    )
    with serve_webhook(app) as url:
        for index in range(run.requests):
            review = _review(index)
            started = time.perf_counter()
            was_sampled, response = simulator.call(url, review)
            run.latencies.append((time.perf_counter() - started) * 1000)
            allowed = bool(response["response"]["allowed"])
            run.denied += not allowed
            if was_sampled:
                run.sampled += 1
                run.outcomes[review["request"]["uid"]] = allowed
            if progress is not None and (index % 10 == 9 or index == run.requests - 1):
                progress.write(f"\r{index + 1}/{run.requests} requests")
                progress.flush()
    if progress is not None:
        progress.write("\n")
    run.async_steps = asynchronous_half(run)
    webhook.shutdown(5)
    apiserver.shutdown(5)
    failures = [f for f in (export_failure(webhook), export_failure(apiserver)) if f]
    if failures:
        raise ExportFailed(f"spans were not delivered to {run.target}: {'; '.join(failures)}")
    return [step[1].split("-")[1] for step in run.async_steps[:2] if step[1].count("-") == 3]


class ExportFailed(K8sOtelError):
    """The spans did not reach the collector: one line for the user, a non-zero exit."""


def run_demo(
    *,
    requests: int = 20,
    sampling_rate_per_million: Optional[int] = None,
    config_file: Optional[str] = None,
    endpoint: Optional[str] = None,
    out: TextIO,
    err: Optional[TextIO] = None,
    progress: Optional[TextIO] = None,
    as_json: bool = False,
    verbose: bool = False,
    width: int = DEFAULT_WIDTH,
) -> int:
    """Run the demo and report it: header, waterfalls, summary (or JSON). Returns the exit code."""
    rate = sampling_rate_per_million
    if rate is None and config_file:
        rate = load_tracing_configuration(config_file).sampling_rate_per_million
    if rate is None:
        rate = 1_000_000
    external = endpoint or (resolve_settings().endpoint.value if _env_endpoint() else None)
    if external:
        failure = _unreachable(external)
        if failure:
            (err or out).write(f"k8s-otel demo: cannot export to {external}: {failure}\n")
            return 1
    receiver = None if external else OTLPReceiver().start()
    run = DemoRun(requests=requests, rate=rate, target=external or receiver.endpoint, external=bool(external))  # type: ignore[union-attr]
    try:
        extra_traces = _run_requests(run, progress)
        run.spans = receiver.spans() if receiver else []
    except ExportFailed as error:
        (err or out).write(f"k8s-otel demo: {error}\n")
        return 1
    finally:
        if receiver is not None:
            receiver.stop()
    summary = _summary(run)
    if as_json:
        report = {
            "summary": summary,
            "traces": trace_trees(run.spans),
            "spans": [span_as_dict(s) for s in run.spans],
        }
        out.write(json.dumps(report, sort_keys=True, default=list) + "\n")
    else:
        _print_report(run, summary, extra_traces, out, verbose=verbose, width=width)
    from k8s_otel.cli._demo_objects import exported_span_count

    expected = run.sampled * SPANS_PER_REQUEST + exported_span_count(run.async_steps)
    return 0 if external or len(run.spans) == expected else 1


#: apiserver: server, call, client; webhook: server, policy check
SPANS_PER_REQUEST = 5


def _unreachable(endpoint: str) -> Optional[str]:
    """Why nothing could be exported to ``endpoint``, checked before any request is sent."""
    from k8s_otel.cli._collector import check_connection, exporter_refusal

    settings = resolve_settings(endpoint=endpoint)
    refusal = exporter_refusal(settings) or next(iter(settings.problems), None)
    if refusal:
        return refusal
    reachable, detail = check_connection(settings, timeout=3.0)
    return None if reachable else detail


def _env_endpoint() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _joined(spans: list[ReceivedSpan]) -> tuple[int, int]:
    """(webhook SERVER spans whose parent is the apiserver's ``HTTP POST`` span, webhook SERVER spans)."""
    clients = {(s.trace_id, s.span_id) for s in spans if s.kind == "CLIENT" and _service(s) == "apiserver"}
    servers = [s for s in spans if s.kind == "SERVER" and _service(s) == "demo-webhook"]
    return sum((s.trace_id, s.parent_span_id) in clients for s in servers), len(servers)


def _service(span: ReceivedSpan) -> str:
    return str(span.resource.get(SERVICE_NAME, ""))


def _summary(run: DemoRun) -> dict[str, Any]:
    joined, webhook_spans = _joined(run.spans)
    return {
        "requests": run.requests,
        "allowed": run.requests - run.denied,
        "denied": run.denied,
        "sampled": run.sampled,
        "sampler_decisions": {"sampled": run.sampled, "not_sampled": run.requests - run.sampled},
        "samplingRatePerMillion": run.rate,
        "webhook_spans_joined": None if run.external else joined,
        "webhook_spans": None if run.external else webhook_spans,
        "spans_exported": None if run.external else len(run.spans),
        "traces_received": None if run.external else len({s.trace_id for s in run.spans}),
        "exported_to": run.target,
        "latency_ms": {
            "mean": round(statistics.fmean(run.latencies), 2),
            "p50": round(statistics.median(run.latencies), 2),
            "max": round(max(run.latencies), 2),
        },
    }


def _traces_to_draw(run: DemoRun) -> list[str]:
    """The first allowed and the first denied sampled request's traces."""
    wanted: dict[bool, str] = {}
    for uid, allowed in run.outcomes.items():
        wanted.setdefault(allowed, uid)
    uids = set(wanted.values())
    by_uid = {
        str(s.attributes.get(UID)): s.trace_id for s in run.spans if s.name == "Call validating webhook"
    }
    return [by_uid[uid] for uid in sorted(uids, key=list(run.outcomes).index) if uid in by_uid]


def _print_report(
    run: DemoRun, summary: dict[str, Any], extra_traces: list[str], out: TextIO, *, verbose: bool, width: int
) -> None:
    where = (
        f"the collector at {run.target}"
        if run.external
        else f"the demo's own OTLP/gRPC receiver on {run.target} (drawn below)"
    )
    header = [
        f"k8s-otel demo: {run.requests} AdmissionReview requests (CREATE Deployment) to an example validating "
        "webhook wrapped by WSGIMiddleware, on 127.0.0.1.",
        '  simulated: kube-apiserver. Its spans, service "apiserver" (POST /apis/apps/v1/..., Call validating '
        f"webhook, HTTP POST), stand in for the real ones; it samples at samplingRatePerMillion={run.rate} and "
        "sends traceparent with each AdmissionReview.",
        '  real: the webhook and its spans, service "demo-webhook" (POST /validate, policy check), '
        "W3C propagation, the OTLP/gRPC export.",
        f"  spans went to: {where}.",
    ]
    out.write(_wrap(header, width))
    charset = Charset.for_encoding(getattr(out, "encoding", None))
    by_trace = {
        trace_id: [s for s in run.spans if s.trace_id == trace_id] for trace_id in _traces_to_draw(run)
    }
    if run.async_steps:
        lines = [
            "",
            "the asynchronous half (KEP-5915): the stamping webhook writes tracing.k8s.io/traceparent into "
            "each admitted object; a controller's reconcile is a new CONSUMER root that links to it:",
        ]
        lines += [f"  {step}: {traceparent}" for step, traceparent in run.async_steps]
        out.write(_wrap(lines, width))
    for trace_id in extra_traces:
        by_trace[trace_id] = [s for s in run.spans if s.trace_id == trace_id]
    for trace_id, members in by_trace.items():
        outcome = {True: "allowed", False: "denied"}.get(
            next(
                (
                    run.outcomes[str(s.attributes.get(UID))]
                    for s in members
                    if str(s.attributes.get(UID)) in run.outcomes
                ),
                None,
            ),  # type: ignore[arg-type]
            "",
        )
        title = f"trace {trace_id}" + (f" ({outcome})" if outcome else "")
        out.write(
            "\n"
            + "\n".join(render_waterfall(members, width=width, verbose=verbose, charset=charset, title=title))
            + "\n"
        )
    if verbose and not run.external:
        resources: dict[str, dict[str, Any]] = {}
        for span in run.spans:
            resources.setdefault(_service(span), span.resource)
        out.write("\nresources:\n")
        for service, attributes in sorted(resources.items()):
            out.write(
                fit(
                    f"  {printable(service)}: "
                    + ", ".join(f"{k}={printable(v)}" for k, v in sorted(attributes.items())),
                    width,
                )
                + "\n"
            )
    latency = summary["latency_ms"]
    lines = [
        "",
        f"requests: {run.requests} ({summary['allowed']} allowed, {run.denied} denied); "
        f"sampler decisions: {run.requests} ({run.sampled} sampled, {run.requests - run.sampled} not) "
        f"at samplingRatePerMillion={run.rate}",
    ]
    if run.external:
        lines.append(
            f"exported to {run.target}: see them there (or run `k8s-otel receive` and point --endpoint at it)"
        )
    else:
        lines.append(
            f"webhook spans joined to their apiserver parent: {summary['webhook_spans_joined']} of "
            f"{summary['webhook_spans']}; spans received: {len(run.spans)} in {summary['traces_received']} traces"
            + ("" if verbose else "; --verbose shows every attribute")
        )
    lines.append(f"latency: mean {latency['mean']} ms, p50 {latency['p50']} ms, max {latency['max']} ms")
    out.write(_wrap(lines, width))


def _wrap(paragraphs: list[str], width: int) -> str:
    """Each paragraph wrapped to ``width``, continuation lines indented under its text."""
    lines = []
    for paragraph in paragraphs:
        if not paragraph:
            lines.append("")
            continue
        indent = " " * (len(paragraph) - len(paragraph.lstrip()) + 2)
        lines.extend(
            fit(line, width)
            for line in textwrap.wrap(paragraph, width, subsequent_indent=indent, break_on_hyphens=False)
        )
    return "\n".join(lines) + "\n"
