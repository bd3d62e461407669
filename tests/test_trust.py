"""Trust policy: parent, or new root with a link, as kube-apiserver decides for its callers."""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from k8s_otel._propagation import extract
from k8s_otel._sampling import PerMillionSampler
from k8s_otel._trust import (
    DEFAULT_SAMPLED_PARENTS_PER_SECOND,
    LINK,
    SAMPLED_PARENTS_ENV,
    TRUST,
    Caller,
    SampledParentBudget,
    TrustPolicy,
    kube_apiserver_rule,
    process_budget,
    reset_process_budget,
)
from k8s_otel.webhook import ASGIMiddleware, WSGIMiddleware, admission_handler
from webhook_support import review

INCOMING = extract(
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage": "tenant=a"}
)


def start(policy: TrustPolicy, **kwargs: object) -> trace.Span:
    """Start a real SDK span the way the adapters do, and return it ended."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    parent, links = policy.resolve(INCOMING, **kwargs)  # type: ignore[arg-type]
    provider.get_tracer("t").start_span("server", context=parent, links=links).end()
    [span] = exporter.get_finished_spans()
    return span  # type: ignore[return-value]


def test_trust_makes_the_incoming_context_the_parent() -> None:
    span = start(TRUST)
    assert span.parent is not None and span.parent.span_id == 0x00F067AA0BA902B7  # type: ignore[attr-defined]
    assert span.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736  # type: ignore[attr-defined]
    assert not span.links  # type: ignore[attr-defined]
    assert TRUST.resolve(INCOMING)[0] is INCOMING


def test_link_starts_a_new_root_with_a_link_and_drops_baggage() -> None:
    span = start(LINK)
    assert span.parent is None  # type: ignore[attr-defined]
    assert span.context.trace_id != 0x4BF92F3577B34DA6A3CE929D0E0E4736  # type: ignore[attr-defined]
    [link] = span.links  # type: ignore[attr-defined]
    assert (link.context.trace_id, link.context.span_id) == (
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
    )
    parent, _ = LINK.resolve(INCOMING)
    assert baggage.get_all(parent) == {}


def test_untrusted_baggage_can_be_kept() -> None:
    parent, links = TrustPolicy("link", keep_untrusted_baggage=True).resolve(INCOMING)
    assert baggage.get_all(parent) == {"tenant": "a"}
    assert not trace.get_current_span(parent).get_span_context().is_valid
    assert len(links) == 1


def test_link_without_incoming_context_has_no_link() -> None:
    _, links = LINK.resolve(extract({}))
    assert links == ()


@pytest.mark.parametrize(
    ("groups", "trusted"),
    [
        (["system:masters"], True),
        (["system:authenticated", "system:monitoring"], True),
        (["system:authenticated"], False),
        ([], False),
        (None, False),
    ],
)
def test_the_kube_apiserver_rule(groups: list[str] | None, trusted: bool) -> None:
    assert kube_apiserver_rule(Caller(groups)) is trusted
    policy = TrustPolicy.parse("kube-apiserver")
    parent, links = policy.resolve(INCOMING, groups=groups)
    assert (parent is INCOMING) is trusted
    assert len(links) == (0 if trusted else 1)


def test_a_rule_sees_the_request_and_a_broken_rule_does_not_trust() -> None:
    seen: list[object] = []

    def rule(caller: Caller) -> bool:
        seen.append(caller.request)
        return caller.request == "from-the-apiserver"

    policy = TrustPolicy.decide_with(rule)
    assert policy.resolve(INCOMING, request="from-the-apiserver")[0] is INCOMING
    assert policy.resolve(INCOMING, request="other")[0] is not INCOMING
    assert seen == ["from-the-apiserver", "other"]

    def broken(caller: Caller) -> bool:
        raise RuntimeError("boom")

    assert TrustPolicy.parse(broken).resolve(INCOMING)[0] is not INCOMING


def test_parse() -> None:
    assert TrustPolicy.parse("trust") is TRUST
    assert TrustPolicy.parse(" LINK ") is LINK
    assert TrustPolicy.parse(LINK) is LINK
    for bad in ("parent", ""):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):  # names the value refused
            TrustPolicy.parse(bad)
    with pytest.raises(ValueError, match="int"):  # names the type refused
        TrustPolicy.parse(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'maybe'"):
        TrustPolicy("maybe")
    with pytest.raises(ValueError, match="rule"):
        TrustPolicy("rule")


# --- the caller: request, peer and verified client certificate --------------------------------

SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _recording() -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=PerMillionSampler(1_000_000))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


def test_wsgi_asgi_and_handler_rules_see_the_caller() -> None:
    seen: list[Caller] = []

    def rule(caller: Caller) -> bool:
        seen.append(caller)
        return True

    provider, _ = _recording()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/v", "REMOTE_ADDR": "10.0.0.7", "HTTP_TRACEPARENT": SAMPLED,
        "SSL_CLIENT_VERIFY": "SUCCESS", "SSL_CLIENT_S_DN": "CN=kube-apiserver,O=k8s",
        "wsgi.input": io.BytesIO(b""),
    }  # fmt: skip
    result: Any = WSGIMiddleware(_wsgi_app, tracer_provider=provider, trust=rule)(environ, lambda *a: None)
    b"".join(result)
    result.close()  # PEP 3333: the server always closes the response (the span ends there)

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    scope = {
        "type": "http", "method": "POST", "path": "/v", "headers": [(b"traceparent", SAMPLED.encode())],
        "client": ("10.0.0.8", 4242),
        "extensions": {"tls": {"client_cert_name": "CN=kube-apiserver", "client_cert_error": None}},
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    asyncio.run(ASGIMiddleware(asgi_app, tracer_provider=provider, trust=rule)(scope, receive, send))

    handler = admission_handler(lambda r: r, tracer_provider=provider, trust=rule)
    handler(review(), headers={"traceparent": SAMPLED}, peer_address="10.0.0.9", client_subject="CN=x")

    wsgi, asgi, handled = seen
    assert (wsgi.request, wsgi.peer_address, wsgi.client_subject) == (
        environ,
        "10.0.0.7",
        "CN=kube-apiserver,O=k8s",
    )
    assert (asgi.request, asgi.peer_address, asgi.client_subject) == (scope, "10.0.0.8", "CN=kube-apiserver")
    assert (handled.request, handled.peer_address, handled.client_subject) == (
        {"traceparent": SAMPLED},
        "10.0.0.9",
        "CN=x",
    )


def test_an_unverified_certificate_is_no_subject() -> None:
    from k8s_otel.webhook._tls import asgi_client_subject, wsgi_client_subject

    assert (
        wsgi_client_subject({"SSL_CLIENT_VERIFY": "FAILED", "SSL_CLIENT_S_DN": "CN=kube-apiserver"}) is None
    )
    assert (
        asgi_client_subject({"extensions": {"tls": {"client_cert_name": "CN=a", "client_cert_error": "x"}}})
        is None
    )
    assert asgi_client_subject({}) is None


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _certificates(directory: Path) -> dict[str, Path]:
    paths = {name: directory / name for name in ("ca.key", "ca.crt", "server.key", "server.crt", "good.key",
                                                  "good.crt", "other.key", "other.crt")}  # fmt: skip
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(paths["ca.key"]), "-out",
             str(paths["ca.crt"]), "-days", "1", "-subj", "/CN=test-ca")  # fmt: skip
    for name, subject, ext in (("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                               ("good", "/O=system:masters/CN=kube-apiserver", None),
                               ("other", "/CN=someone-else", None)):  # fmt: skip
        csr = directory / f"{name}.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(paths[f"{name}.key"]), "-out", str(csr),
                 "-subj", subject)  # fmt: skip
        extra = []
        if ext:
            (directory / f"{name}.ext").write_text(ext + "\n")
            extra = ["-extfile", str(directory / f"{name}.ext")]
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(paths["ca.crt"]), "-CAkey", str(paths["ca.key"]),
                 "-CAcreateserial", "-out", str(paths[f"{name}.crt"]), "-days", "1", *extra)  # fmt: skip
    return paths


def test_a_rule_that_trusts_only_the_mtls_verified_apiserver(tmp_path: Path) -> None:
    import http.client

    certs = _certificates(tmp_path)

    def apiserver_over_mtls(caller: Caller) -> bool:  # the rule docs/propagation.md shows
        return caller.client_subject is not None and "CN=kube-apiserver" in caller.client_subject.split(",")

    provider, memory = _recording()
    policy = TrustPolicy.decide_with(apiserver_over_mtls, budget=SampledParentBudget(math.inf))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certs["server.crt"], certs["server.key"])
    server_context.load_verify_locations(certs["ca.crt"])
    server_context.verify_mode = ssl.CERT_OPTIONAL  # a client without a certificate is still served
    app = WSGIMiddleware(_wsgi_app, tracer_provider=provider, trust=policy)

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=server_context)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for client_cert in ("good", "other", None):
            context = ssl.create_default_context(cafile=str(certs["ca.crt"]))
            if client_cert:
                context.load_cert_chain(certs[f"{client_cert}.crt"], certs[f"{client_cert}.key"])
            connection = http.client.HTTPSConnection(
                "127.0.0.1", server.server_port, context=context, timeout=10
            )
            body = json.dumps(review()).encode()
            connection.request("POST", "/validate", body=body,
                               headers={"traceparent": SAMPLED, "Content-Type": "application/json"})  # fmt: skip
            assert connection.getresponse().read() == b"{}"
            connection.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    good, other, anonymous = memory.get_finished_spans()
    assert good.parent is not None and good.parent.span_id == 0x00F067AA0BA902B7 and not good.links
    for span in (other, anonymous):
        assert span.parent is None
        assert [link.context.span_id for link in span.links] == [0x00F067AA0BA902B7]


# --- the sampled-parent budget ----------------------------------------------------------------


def test_the_budget_honours_at_most_its_rate_and_counts_refusals() -> None:
    budget = SampledParentBudget(5)
    policy = TrustPolicy("trust", budget=budget)
    results = [policy.resolve(INCOMING) for _ in range(8)]
    assert [parent is INCOMING for parent, _ in results] == [True] * 5 + [False] * 3
    assert (budget.honoured, budget.refused) == (5, 3)
    parent, links = results[-1]
    # Past the budget: a new root (the sampler decides) with a link to what was sent, no baggage.
    assert not trace.get_current_span(parent).get_span_context().is_valid
    assert [link.context.span_id for link in links] == [0x00F067AA0BA902B7]
    assert baggage.get_all(parent) == {}


def test_unsampled_parents_cost_nothing_and_the_bucket_refills(monkeypatch: pytest.MonkeyPatch) -> None:
    import time as time_module

    clock = [1000.0]
    monkeypatch.setattr(time_module, "monotonic", lambda: clock[0])
    budget = SampledParentBudget(2)
    unsampled = extract({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"})
    policy = TrustPolicy("trust", budget=budget)
    assert all(policy.resolve(unsampled)[0] is unsampled for _ in range(10))
    assert [budget.take() for _ in range(3)] == [True, True, False]
    clock[0] += 0.5
    assert [budget.take() for _ in range(2)] == [True, False]
    assert budget.refused == 2
    assert not SampledParentBudget(0).take()
    assert all(SampledParentBudget(math.inf).take() for _ in range(1000))
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="budget"):
            SampledParentBudget(bad)


def test_the_process_budget_comes_from_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        reset_process_budget()
        assert process_budget().rate == DEFAULT_SAMPLED_PARENTS_PER_SECOND == 100
        monkeypatch.setenv(SAMPLED_PARENTS_ENV, "2.5")
        reset_process_budget()
        assert process_budget().rate == 2.5
        monkeypatch.setenv(SAMPLED_PARENTS_ENV, "many")
        reset_process_budget()
        assert process_budget().rate == DEFAULT_SAMPLED_PARENTS_PER_SECOND
        monkeypatch.setenv(SAMPLED_PARENTS_ENV, "inf")
        reset_process_budget()
        assert process_budget().take() and process_budget().rate == math.inf
    finally:
        monkeypatch.delenv(SAMPLED_PARENTS_ENV)
        reset_process_budget()


def test_a_burst_and_the_caller_is_built_only_for_a_rule() -> None:
    budget = SampledParentBudget(1, burst=3)
    assert [budget.take() for _ in range(4)] == [True, True, True, False]

    looked_up: list[str] = []

    class Watched(dict):  # type: ignore[type-arg]
        def get(self, key: str, default: Any = None) -> Any:
            looked_up.append(key)
            return super().get(key, default)

    provider, _ = _recording()
    for trust, built in (("trust", False), (lambda caller: True, True)):
        looked_up.clear()
        environ = Watched({"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "wsgi.input": io.BytesIO(b"")})
        result: Any = WSGIMiddleware(_wsgi_app, tracer_provider=provider, trust=trust)(
            environ, lambda *a: None
        )
        result.close()
        assert ("SSL_CLIENT_VERIFY" in looked_up) is built
