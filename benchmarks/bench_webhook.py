"""Per-request overhead of the webhook wrappers over the bare app, against the stock contrib middleware.

Each group runs the bare app, the stock ``opentelemetry-instrumentation-wsgi``/``-asgi`` middleware and
ours on the same app and the same TracerProvider, in one run, for AdmissionReview bodies of 1 KB,
100 KB, 1 MiB and 5 MiB (an UPDATE of a ConfigMap: ``object`` and ``oldObject`` each about half the
body, fields in kube-apiserver's order, compact, as the apiserver sends them). ``ratios.py``
reports (ours - bare) / (stock - bare). Unsampled: rate 100 per million, no parent (what most
requests are). Sampled: a sampled parent from kube-apiserver; spans go to a processor that drops
them, so the cost measured is the instrumentation's, not an exporter's.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import random
import sys
import time
from typing import Any, Callable, Optional

import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as StockASGI
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as StockWSGI
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from k8s_otel._sampling import PerMillionSampler
from k8s_otel._trust import SampledParentBudget, TrustPolicy
from k8s_otel.webhook import ASGIMiddleware, WSGIMiddleware

SIZES = {"1 KB": 1000, "100 KB": 100_000, "1 MiB": 1 << 20, "5 MiB": 5 << 20}
UID = "705ab4f5-6393-11e8-b7cc-42010a800002"
SAMPLED_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CALLS = 20


def _pod(size: int) -> dict[str, Any]:
    """A Pod of about ``size`` bytes made of many small fields (the worst case for a scanner)."""
    containers: list[dict[str, Any]] = []
    while len(json.dumps(containers)) < size:
        index = len(containers)
        containers.append({"name": f"c{index}", "image": "nginx:1.25", "env": [{"name": "A", "value": "b"}],
                           "ports": [{"containerPort": 80 + index % 100, "protocol": "TCP"}]})  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "big"},
        "spec": {"containers": containers},
    }


def review_body(size: int, *, many_fields: bool = False) -> bytes:
    """A compact AdmissionReview in kube-apiserver's field order, about ``size`` bytes long."""
    data_bytes = max(0, size - 900) // 2
    value = base64.b64encode(bytes(range(256)) * (data_bytes // 340 + 1)).decode()[:data_bytes]
    chunk = 10_000
    data = {f"key-{i}": value[i : i + chunk] for i in range(0, len(value), chunk)} or {"key": ""}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big", "namespace": "default"},
                 "data": data}  # fmt: skip
    if many_fields:
        configmap = _pod(data_bytes)
    request = {
        "uid": UID,
        "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "requestKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "requestResource": {"group": "", "version": "v1", "resource": "configmaps"},
        "name": "big",
        "namespace": "default",
        "operation": "UPDATE",
        "userInfo": {"username": "admin", "uid": "014fbff9a07c", "groups": ["system:authenticated"]},
        "object": configmap,
        "oldObject": configmap,
        "dryRun": False,
        "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    document = {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}
    return json.dumps(document, separators=(",", ":")).encode()


BODIES = {label: review_body(size) for label, size in SIZES.items()}
ANSWER = json.dumps(
    {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": UID, "allowed": True},
    }
).encode()


class _Drop(SpanProcessor):
    pass


PROVIDER = TracerProvider(sampler=PerMillionSampler(100))
PROVIDER.add_span_processor(_Drop())
# The budget of sampled parents is a defence against floods, not what is measured here.
TRUST = TrustPolicy("trust", budget=SampledParentBudget(math.inf))


def bare_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


async def bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": ANSWER})


WSGI_APPS: dict[str, Any] = {
    "bare": bare_wsgi,
    "stock": StockWSGI(bare_wsgi, tracer_provider=PROVIDER),
    "k8s_otel": WSGIMiddleware(bare_wsgi, tracer_provider=PROVIDER, webhook_type="validating", trust=TRUST),
}
ASGI_APPS: dict[str, Any] = {
    "bare": bare_asgi,
    "stock": StockASGI(bare_asgi, tracer_provider=PROVIDER),
    "k8s_otel": ASGIMiddleware(bare_asgi, tracer_provider=PROVIDER, webhook_type="validating", trust=TRUST),
}


def _environ(body: bytes, traceparent: str | None) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/validate",
        "QUERY_STRING": "timeout=10s",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",
        "REMOTE_PORT": "51234",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "webhook.default.svc:443",
        "HTTP_USER_AGENT": "kube-apiserver-admission",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
    }
    if traceparent:
        environ["HTTP_TRACEPARENT"] = traceparent
    return environ


def _start_response(status: str, headers: Any, exc_info: Any = None) -> None:
    return None


def _run_wsgi(app: Any, body: bytes, traceparent: str | None) -> None:
    for _ in range(CALLS):
        result = app(_environ(body, traceparent), _start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()


def _scope(traceparent: str | None) -> dict[str, Any]:
    headers = [
        (b"host", b"webhook.default.svc:443"),
        (b"user-agent", b"kube-apiserver-admission"),
        (b"accept", b"application/json, */*"),
        (b"content-type", b"application/json"),
        (b"accept-encoding", b"gzip"),
    ]
    if traceparent:
        headers.append((b"traceparent", traceparent.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/validate",
        "raw_path": b"/validate",
        "query_string": b"timeout=10s",
        "headers": headers,
        "server": ("127.0.0.1", 8443),
        "client": ("10.0.0.1", 51234),
    }


async def _asgi_calls(app: Any, body: bytes, traceparent: str | None) -> None:
    async def send(message: Any) -> None:
        return None

    for _ in range(CALLS):
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await app(_scope(traceparent), receive, send)


CASES = [(size, implementation) for size in SIZES for implementation in WSGI_APPS]


@pytest.mark.parametrize(("size", "implementation"), CASES)
def test_wsgi_unsampled(benchmark: Any, size: str, implementation: str) -> None:
    benchmark.group = f"wsgi unsampled, {size}, {CALLS} requests"
    benchmark(_run_wsgi, WSGI_APPS[implementation], BODIES[size], None)


@pytest.mark.parametrize(("size", "implementation"), CASES)
def test_wsgi_sampled(benchmark: Any, size: str, implementation: str) -> None:
    benchmark.group = f"wsgi sampled, {size}, {CALLS} requests"
    benchmark(_run_wsgi, WSGI_APPS[implementation], BODIES[size], SAMPLED_PARENT)


@pytest.mark.parametrize(("size", "implementation"), CASES)
def test_asgi_unsampled(benchmark: Any, size: str, implementation: str) -> None:
    benchmark.group = f"asgi unsampled, {size}, {CALLS} requests"
    loop = asyncio.new_event_loop()
    try:
        benchmark(lambda: loop.run_until_complete(_asgi_calls(ASGI_APPS[implementation], BODIES[size], None)))
    finally:
        loop.close()


@pytest.mark.parametrize(("size", "implementation"), CASES)
def test_asgi_sampled(benchmark: Any, size: str, implementation: str) -> None:
    benchmark.group = f"asgi sampled, {size}, {CALLS} requests"
    loop = asyncio.new_event_loop()
    try:
        benchmark(
            lambda: loop.run_until_complete(
                _asgi_calls(ASGI_APPS[implementation], BODIES[size], SAMPLED_PARENT)
            )
        )
    finally:
        loop.close()


# --- interleaved ratios, with their spread: python benchmarks/bench_webhook.py [rounds] -------------


def _time_wsgi(app: Any, body: bytes, traceparent: str | None) -> float:
    start = time.perf_counter()
    _run_wsgi(app, body, traceparent)
    return (time.perf_counter() - start) / CALLS


def _time_asgi(loop: asyncio.AbstractEventLoop, app: Any, body: bytes, traceparent: str | None) -> float:
    start = time.perf_counter()
    loop.run_until_complete(_asgi_calls(app, body, traceparent))
    return (time.perf_counter() - start) / CALLS


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)

    def at(quantile: float) -> float:
        return ordered[min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))]

    return at(0.25), at(0.5), at(0.75)


def interleaved(rounds: int) -> None:
    """Per round: bare, stock and ours, in a shuffled order, on the same body; the overhead ratio
    (ours - bare) / (stock - bare) of each round, then its median and interquartile range."""
    loop = asyncio.new_event_loop()
    print(
        "| server | sampled | body | bare µs | stock overhead µs | ours overhead µs | ratio median | ratio p25-p75 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for server, apps in (("wsgi", WSGI_APPS), ("asgi", ASGI_APPS)):
        for sampled in (False, True):
            parent = SAMPLED_PARENT if sampled else None
            for size, body in BODIES.items():
                times: dict[str, list[float]] = {name: [] for name in apps}
                for _ in range(rounds):
                    for name in random.sample(list(apps), len(apps)):
                        if server == "wsgi":
                            times[name].append(_time_wsgi(apps[name], body, parent))
                        else:
                            times[name].append(_time_asgi(loop, apps[name], body, parent))
                ratios = [
                    (o - b) / (s - b)
                    for b, s, o in zip(times["bare"], times["stock"], times["k8s_otel"])
                    if s > b
                ]
                p25, median, p75 = _quartiles(ratios)
                bare = _quartiles(times["bare"])[1]
                stock = _quartiles([s - b for b, s in zip(times["bare"], times["stock"])])[1]
                ours = _quartiles([o - b for b, o in zip(times["bare"], times["k8s_otel"])])[1]
                print(f"| {server} | {'yes' if sampled else 'no'} | {size} | {bare * 1e6:.1f} | {stock * 1e6:.1f} | "
                      f"{ours * 1e6:.1f} | {median:.2f}x | {p25:.2f}-{p75:.2f}x |")  # fmt: skip
    loop.close()


def readers(rounds: int) -> None:
    """What reading the request costs, by body size: the prefix/tail reader, json.loads, msgspec."""
    from k8s_otel._review_reader import read_review_fields

    candidates: dict[str, Callable[[bytes], Any]] = {
        "prefix+tail": read_review_fields,
        "json.loads": json.loads,
    }
    try:
        import importlib

        msgspec: Any = importlib.import_module("msgspec")  # only to compare: not a dependency

        from k8s_otel._admission import REQUEST_FIELDS

        request = msgspec.defstruct("Request", [(name, Any, None) for name in REQUEST_FIELDS])
        review = msgspec.defstruct(
            "Review", [("kind", Any, None), ("apiVersion", Any, None), ("request", Optional[request], None)]
        )
        candidates["msgspec (unknown fields skipped)"] = msgspec.json.Decoder(review).decode
    except ImportError:
        pass
    print("| body | " + " | ".join(candidates) + " |")
    print("| --- |" + " --- |" * len(candidates))
    bodies = {**BODIES, "1 MiB Pod, many small fields": review_body(1 << 20, many_fields=True)}
    for size, body in bodies.items():
        cells = []
        for read in candidates.values():
            best = min(_once(read, body) for _ in range(rounds))
            cells.append(f"{best * 1e6:.1f} µs")
        print(f"| {size} | " + " | ".join(cells) + " |")


def _once(read: Callable[[bytes], Any], body: bytes) -> float:
    start = time.perf_counter()
    read(body)
    return time.perf_counter() - start


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    interleaved(count)
    print()
    readers(count)
