"""The stamping mutating webhook: stamp_review's rules, the WSGI/ASGI apps, and a real HTTPS round trip."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import http.client
import io
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from k8s_otel._admission import check_review_response, parse_review_request
from k8s_otel.objects import TRACEPARENT_ANNOTATION, TRACESTATE_ANNOTATION
from k8s_otel.webhook._stamp import asgi_app, make_https_server, stamp_review, wsgi_app
from recording import recording_provider

FIXTURES = Path(__file__).parent / "fixtures" / "admission"
APISERVER = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"  # "Call mutating webhook"'s HTTP POST
WEBHOOK = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4737, 0x1111111111111111, False, TraceFlags(1))
STAMP = "00-4bf92f3577b34da6a3ce929d0e0e4737-1111111111111111-01"


def current(span_context: SpanContext = WEBHOOK) -> Context:
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def deployment(**metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team-a", **metadata},
        "spec": {"replicas": 1},
        "status": {"replicas": 1},
    }


def review(
    operation: str,
    obj: Any = None,
    old: Any = None,
    *,
    version: str = "v1",
    subresource: str = "",
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": "web",
        "namespace": "team-a",
        "operation": operation,
        "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }
    if subresource:
        request["subResource"] = request["requestSubResource"] = subresource
    return {"apiVersion": f"admission.k8s.io/{version}", "kind": "AdmissionReview", "request": request}


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]] | None:
    response = answer["response"]
    if "patch" not in response:
        assert "patchType" not in response
        return None
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))  # type: ignore[no-any-return]


def stamp_in(answer: dict[str, Any], obj: Any = None) -> str:
    """The traceparent the patch writes, read back by applying it to ``obj`` (default: deployment())."""
    patch = patch_of(answer)
    assert patch is not None
    patched = jsonpatch.apply_patch(copy.deepcopy(obj if obj is not None else deployment()), patch)
    return str(patched["metadata"]["annotations"][TRACEPARENT_ANNOTATION])


def apiserver_accepts(request: dict[str, Any], answer: dict[str, Any]) -> None:
    outcome = check_review_response(parse_review_request(request), answer, "mutating")
    assert outcome.problems == ()
    assert answer["response"]["allowed"] is True


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
@pytest.mark.parametrize(
    "metadata",
    [{"annotations": {"team": "a"}}, {}, {"annotations": None}, None],
    ids=["with annotations", "without annotations", "null annotations", "without metadata"],
)
def test_a_create_is_stamped_with_the_webhooks_span(version: str, metadata: dict[str, Any] | None) -> None:
    obj = deployment(**(metadata or {}))
    if metadata is None:
        del obj["metadata"]
    request = review("CREATE", obj, version=version)
    answer = stamp_review(request, current())
    assert answer["apiVersion"] == f"admission.k8s.io/{version}" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == request["request"]["uid"]
    apiserver_accepts(request, answer)
    patch = patch_of(answer)
    assert patch is not None
    if metadata and metadata.get("annotations"):
        assert patch == [
            {"op": "add", "path": "/metadata/annotations/tracing.k8s.io~1traceparent", "value": STAMP}
        ]
    patched = jsonpatch.apply_patch(copy.deepcopy(obj), patch)
    assert patched["metadata"]["annotations"][TRACEPARENT_ANNOTATION] == STAMP
    if metadata and metadata.get("annotations"):
        assert patched["metadata"]["annotations"]["team"] == "a"
    assert {k: v for k, v in patched.items() if k != "metadata"} == {
        k: v for k, v in obj.items() if k != "metadata"
    }


def test_the_stamp_defaults_to_the_current_span_and_unsampled_stamps_too() -> None:
    provider, _ = recording_provider()
    with provider.get_tracer("t").start_as_current_span("webhook") as span:
        answer = stamp_review(review("CREATE", deployment()))
    assert stamp_in(answer).split("-")[2] == f"{span.get_span_context().span_id:016x}"
    unsampled = SpanContext(WEBHOOK.trace_id, WEBHOOK.span_id, False, TraceFlags(0))
    assert stamp_in(stamp_review(review("CREATE", deployment()), current(unsampled))).endswith("-00")


def test_no_span_context_no_patch() -> None:
    answer = stamp_review(review("CREATE", deployment()), Context())
    assert answer["response"] == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


@pytest.mark.parametrize(
    ("change", "stamped"),
    [
        (lambda o: o["spec"].update(replicas=3), True),
        (lambda o: o["metadata"].setdefault("labels", {}).update(tier="web"), True),
        (lambda o: o["status"].update(replicas=3), False),
        (
            lambda o: o["metadata"].setdefault("annotations", {}).update({TRACEPARENT_ANNOTATION: APISERVER}),
            False,
        ),
        (
            lambda o: (
                o["metadata"].setdefault("annotations", {}).update({"kopf.zalando.org/last-handled": "{}"})
            ),
            False,
        ),
        (
            lambda o: o["metadata"].update(
                resourceVersion="7", generation=2, managedFields=[{"manager": "x"}]
            ),
            False,
        ),
        (lambda o: o["metadata"].update(finalizers=["kopf.zalando.org/KopfFinalizerMarker"]), False),
        (lambda o: None, False),
    ],
    ids=[
        "spec",
        "label",
        "status only",
        "the stamp alone",
        "another annotation",
        "server-managed",
        "finalizer",
        "nothing",
    ],
)
def test_an_update_is_stamped_only_when_intent_changed(change: Any, stamped: bool) -> None:
    old = deployment(resourceVersion="6")
    new = copy.deepcopy(old)
    change(new)
    request = review("UPDATE", new, old)
    answer = stamp_review(request, current())
    apiserver_accepts(request, answer)
    assert (patch_of(answer) is not None) is stamped


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
@pytest.mark.parametrize(
    ("operation", "subresource"),
    [("UPDATE", "status"), ("UPDATE", "scale"), ("CREATE", "binding"), ("DELETE", ""), ("CONNECT", "")],
)
def test_subresources_deletes_and_connects_are_never_stamped(
    version: str, operation: str, subresource: str
) -> None:
    old = deployment()
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    request = review(
        operation, new if operation != "DELETE" else None, old, version=version, subresource=subresource
    )
    answer = stamp_review(request, current())
    apiserver_accepts(request, answer)
    assert patch_of(answer) is None


def test_a_stale_tracestate_goes_and_a_current_one_comes() -> None:
    old = deployment(annotations={TRACEPARENT_ANNOTATION: APISERVER, TRACESTATE_ANNOTATION: "old=1"})
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 2
    patch = patch_of(stamp_review(review("UPDATE", new, old), current()))
    assert patch is not None
    patched = jsonpatch.apply_patch(copy.deepcopy(new), patch)
    assert patched["metadata"]["annotations"] == {TRACEPARENT_ANNOTATION: STAMP}
    with_state = SpanContext(
        WEBHOOK.trace_id, WEBHOOK.span_id, False, TraceFlags(1), TraceState([("k8s", "a")])
    )
    patch = patch_of(stamp_review(review("CREATE", deployment()), current(with_state)))
    assert patch is not None
    assert (
        jsonpatch.apply_patch(deployment(), patch)["metadata"]["annotations"][TRACESTATE_ANNOTATION]
        == "k8s=a"
    )


def test_the_fixtures_and_broken_reviews_are_answered_allowed() -> None:
    for name in ("admission.k8s.io.v1.AdmissionReview.json", "admission.k8s.io.v1beta1.AdmissionReview.json"):
        request = json.loads((FIXTURES / name).read_text())
        answer = stamp_review(request, current())
        assert answer["apiVersion"] == request["apiVersion"]
        assert answer["response"] == {"uid": "uidValue", "allowed": True}  # "operationValue": no stamp
    for broken in (
        {},
        {"request": None},
        {"request": {"uid": 5}},
        {"apiVersion": "x", "request": {"operation": "CREATE"}},
    ):
        answer = stamp_review(broken, current())  # type: ignore[arg-type]
        assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["response"]["allowed"] is True


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    operation=st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "operationValue", None, 3]),
    metadata=st.one_of(
        _JSON,
        st.fixed_dictionaries(
            {
                "annotations": st.one_of(
                    st.none(), st.dictionaries(st.text(max_size=30), st.text(max_size=5), max_size=3)
                )
            }
        ),
    ),
    spec=_JSON,
    old_spec=_JSON,
)
def test_any_review_is_allowed_and_any_patch_applies(
    operation: Any, metadata: Any, spec: Any, old_spec: Any
) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": spec}
    old = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": old_spec}
    request = review(operation, obj, old)
    answer = stamp_review(request, current())
    assert answer["response"]["allowed"] is True
    patch = patch_of(answer)
    if patch is not None:
        patched = jsonpatch.apply_patch(copy.deepcopy(obj), patch)  # kube-apiserver applies it: never fails
        assert patched["metadata"]["annotations"][TRACEPARENT_ANNOTATION] == STAMP


# --- the apps ----------------------------------------------------------------------------------


def wsgi_call(app: Any, body: bytes, path: str = "/stamp", method: str = "POST") -> tuple[str, bytes]:
    import io

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "timeout=10s",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_TRACEPARENT": APISERVER,
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "https",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8443",
    }
    started: list[str] = []
    result = app(environ, lambda status, headers, exc_info=None: started.append(status))
    try:
        data = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return started[0], data


def test_the_wsgi_app_stamps_the_webhook_span_a_child_of_kube_apiservers() -> None:
    provider, memory = recording_provider()
    app = wsgi_app(tracer_provider=provider)
    status, body = wsgi_call(app, json.dumps(review("CREATE", deployment())).encode())
    assert status == "200 OK"
    [span] = memory.get_finished_spans()
    assert span.kind.name == "SERVER" and span.name == "POST /stamp"
    assert span.parent is not None and span.parent.span_id == 0x00F067AA0BA902B7  # kube-apiserver's
    patch = patch_of(json.loads(body))
    assert patch is not None
    assert stamp_in(json.loads(body)) == f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"
    attributes = dict(span.attributes or {})
    assert attributes["admission.webhook.type"] == "mutating"
    assert attributes["response.patch.operations"] == len(patch)
    assert "admission.problems" not in attributes
    assert wsgi_call(app, b"{}", path="/healthz", method="GET")[0] == "200 OK"
    assert wsgi_call(app, b"not json")[0] == "400 Bad Request"
    assert wsgi_call(app, b"{}", path="/other")[0] == "404 Not Found"


def test_the_wsgi_app_unsampled_still_stamps_a_child_context() -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    unsampled = APISERVER[:-2] + "00"
    app = wsgi_app(tracer_provider=provider)
    import io

    body = json.dumps(review("CREATE", deployment())).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/stamp",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_TRACEPARENT": unsampled,
        "wsgi.input": io.BytesIO(body),
    }
    result = app(environ, lambda *a: None)
    try:
        data = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    trace_id, span_id, flags = stamp_in(json.loads(data)).split("-")[1:]
    assert trace_id == APISERVER.split("-")[1] and span_id != APISERVER.split("-")[2] and flags == "00"


def test_the_asgi_app() -> None:
    provider, memory = recording_provider()
    app = asgi_app(tracer_provider=provider)
    body = json.dumps(review("CREATE", deployment(), version="v1beta1")).encode()
    sent: list[dict[str, Any]] = []

    async def call(path: str, method: str = "POST") -> None:
        messages = [
            {"type": "http.request", "body": body[:10], "more_body": True},
            {"type": "http.request", "body": body[10:]},
        ]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": b"timeout=10s",
            "headers": [(b"traceparent", APISERVER.encode()), (b"content-type", b"application/json")],
        }
        await app(scope, receive, send)

    asyncio.run(call("/stamp"))
    assert sent[0]["status"] == 200
    answer = json.loads(sent[1]["body"])
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
    [span] = memory.get_finished_spans()
    assert stamp_in(answer).split("-")[2] == f"{span.context.span_id:016x}"
    sent.clear()
    asyncio.run(call("/healthz", "GET"))
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"


# --- HTTPS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (``cryptography`` when installed, else the openssl CLI)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "tls.crt", directory / "tls.key"
    try:
        _certificate_with_cryptography(cert, key)
    except ImportError:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=stamp.test",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
    return str(cert), str(key)


def _certificate_with_cryptography(cert: Path, key: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stamp.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def client_context(cert: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cert)
    return context


@pytest.fixture
def https(certificate: tuple[str, str]) -> Iterator[tuple[Any, str, Any]]:
    provider, memory = recording_provider()
    server = make_https_server("127.0.0.1", 0, *certificate, tracer_provider=provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, certificate[0], memory
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_real_https_round_trip_with_keep_alive(https: tuple[Any, str, Any]) -> None:
    server, cert, memory = https
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.server_address[1], context=client_context(cert), timeout=10
    )
    try:
        answers = []
        for operation in ("CREATE", "DELETE"):
            body = json.dumps(review(operation, deployment(), deployment()))
            connection.request(
                "POST",
                "/stamp?timeout=10s",
                body=body,
                headers={"Content-Type": "application/json", "traceparent": APISERVER},
            )
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("Content-Type") == "application/json"
            answers.append(json.loads(response.read()))
        connection.request("GET", "/healthz")
        health = connection.getresponse()
        assert (health.status, health.read()) == (200, b"ok")
    finally:
        connection.close()
    created, deleted = answers
    spans = [s for s in memory.get_finished_spans() if s.name == "POST /stamp"]
    assert len(spans) == 2 and all(
        s.parent is not None and s.parent.span_id == 0x00F067AA0BA902B7 for s in spans
    )
    assert stamp_in(created).split("-")[2] == f"{spans[0].context.span_id:016x}"
    assert patch_of(deleted) is None
    assert dict(spans[0].attributes or {})["url.scheme"] == "https"


def test_plain_http_and_a_failed_handshake_do_not_stop_the_server(https: tuple[Any, str, Any]) -> None:
    import socket

    server, cert, _ = https
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as plain:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionResetError, socket.timeout):
            assert not plain.recv(100).startswith(b"HTTP/1.1 200")
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.server_address[1], context=client_context(cert), timeout=10
    )
    connection.request("GET", "/healthz")
    assert connection.getresponse().status == 200
    connection.close()


def test_serve_https_runs_until_sigterm(certificate: tuple[str, str]) -> None:
    import subprocess_scripts

    process = subprocess.Popen(
        subprocess_scripts.command("probes", "serve_stamp", *certificate),
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_scripts.environment(),
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, context=client_context(certificate[0]), timeout=10
        )
        connection.request(
            "POST",
            "/stamp",
            body=json.dumps(review("CREATE", deployment())),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(connection.getresponse().read())
        connection.close()
        assert answer["response"]["allowed"] is True  # no tracer provider set: a no-op span, no stamp
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert process.stdout.read().strip() == "stopped"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


@pytest.mark.parametrize(
    "resource",
    [
        {"group": "coordination.k8s.io", "version": "v1", "resource": "leases"},
        {"group": "", "version": "v1", "resource": "events"},
        {"group": "events.k8s.io", "version": "v1", "resource": "events"},
    ],
)
def test_leases_and_events_are_never_stamped_whatever_the_rules_send(resource: dict[str, str]) -> None:
    old = {"apiVersion": "x", "kind": "y", "metadata": {"name": "n"}, "spec": {"renewTime": "1"}}
    new = copy.deepcopy(old)
    new["spec"]["renewTime"] = "2"
    for request in (review("CREATE", new), review("UPDATE", new, old)):
        request["request"]["resource"] = request["request"]["requestResource"] = resource
        assert patch_of(stamp_review(request, current())) is None


def test_the_async_demo_chains_request_stamp_reconcile_and_child() -> None:
    from k8s_otel.cli._demo_objects import run_async_demo

    provider, memory = recording_provider()
    steps = run_async_demo(provider)
    assert [step for step, _ in steps] == [
        "Deployment web stamped by the webhook",
        "deployment controller: CONSUMER root linked to it",
        "ReplicaSet web-5d8f7 stamped in the reconcile's trace",
        "replicaset controller: CONSUMER root linked to it",
    ]
    spans = {s.name: s for s in memory.get_finished_spans()}
    request = spans["POST /apis/apps/v1/namespaces/{:namespace}/deployments"]
    webhook_spans = [s for s in memory.get_finished_spans() if s.name == "POST /stamp"]
    assert len(webhook_spans) == 2
    first_webhook = min(webhook_spans, key=lambda s: s.start_time or 0)
    # The stamp is the webhook's span, in the request's trace, under "Call mutating webhook".
    assert steps[0][1].split("-")[1:3] == [
        f"{first_webhook.context.trace_id:032x}",
        f"{first_webhook.context.span_id:016x}",
    ]
    assert first_webhook.context.trace_id == request.context.trace_id
    deployment_reconcile = spans["reconcile Deployment"]
    assert deployment_reconcile.kind.name == "CONSUMER" and deployment_reconcile.parent is None
    assert deployment_reconcile.links[0].context.span_id == first_webhook.context.span_id
    # The ReplicaSet's create ran in the reconcile's trace, so its stamp is there too.
    assert steps[2][1].split("-")[1] == f"{deployment_reconcile.context.trace_id:032x}"
    replicaset_reconcile = spans["reconcile ReplicaSet"]
    assert replicaset_reconcile.links[0].context.trace_id == deployment_reconcile.context.trace_id
    assert replicaset_reconcile.context.trace_id != deployment_reconcile.context.trace_id


def test_an_oversized_review_is_refused_before_it_is_read() -> None:
    import io

    app = wsgi_app(tracer_provider=recording_provider()[0])
    started: list[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/stamp",
        "CONTENT_LENGTH": str(32 << 20),
        "wsgi.input": io.BytesIO(b""),
    }
    result = app(environ, lambda status, headers, exc_info=None: started.append(status))
    try:
        body = b"".join(result)
    finally:
        result.close()  # as every WSGI server does: the middleware detaches its context here
    assert started == ["413 Request Entity Too Large"] and b"too large" in body


def test_a_renewed_certificate_is_served_without_a_restart(
    certificate: tuple[str, str], tmp_path: Path
) -> None:
    import shutil
    import socket

    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(certificate[0], cert)
    shutil.copy(certificate[1], key)
    server = make_https_server("127.0.0.1", 0, str(cert), str(key))
    server.RELOAD_SECONDS = 0.0  # type: ignore[attr-defined]  # the documented interval: check on every connection
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def served() -> bytes:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as raw:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            with context.wrap_socket(raw) as tls:
                return tls.getpeercert(binary_form=True) or b""

    try:
        before = served()
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=renewed",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        os.utime(
            cert, (os.stat(cert).st_atime, os.stat(cert).st_mtime + 5)
        )  # a later mtime, whatever the clock
        after = served()
        assert after != before
        cert.write_text("half-written")  # a renewal caught mid-write: the current certificate stays
        os.utime(cert, (os.stat(cert).st_atime, os.stat(cert).st_mtime + 10))
        assert served() == after
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_k8s_otel_stamp_command_serves_and_exports(
    certificate: tuple[str, str], otlp_receiver: Any
) -> None:
    import socket
    import time

    with socket.socket() as probe:  # a free port for the command line (it cannot report one it picked)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp_receiver.endpoint}",
        "OTEL_SERVICE_NAME": "stamp-cli",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "k8s_otel", "stamp", "--host", "127.0.0.1", "--port", str(port),
         "--cert", certificate[0], "--key", certificate[1]],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = http.client.HTTPSConnection(
                    "127.0.0.1", port, context=client_context(certificate[0]), timeout=5
                )
                body = json.dumps(review("CREATE", deployment()))
                connection.request(
                    "POST",
                    "/stamp",
                    body=body,
                    headers={"Content-Type": "application/json", "traceparent": APISERVER},
                )
                answer = json.loads(connection.getresponse().read())
                connection.close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "k8s-otel stamp did not come up"
                time.sleep(0.1)
        assert stamp_in(answer).split("-")[1] == APISERVER.split("-")[1]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    spans = otlp_receiver.wait_for_spans(1, timeout=10)
    assert any(s.name == "POST /stamp" and s.resource.get("service.name") == "stamp-cli" for s in spans)


def test_a_chunked_review_is_read_to_its_end() -> None:
    """A terminated input (chunked Transfer-Encoding) carries no CONTENT_LENGTH: read it all."""
    provider, _ = recording_provider()
    app = wsgi_app(tracer_provider=provider)
    body = json.dumps(review("CREATE", deployment())).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/stamp",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRACEPARENT": APISERVER,
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.url_scheme": "https",
    }
    statuses: list[str] = []
    result = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    answer = json.loads(b"".join(result))
    getattr(result, "close", lambda: None)()
    assert statuses == ["200 OK"]
    assert stamp_in(answer).split("-")[1] == APISERVER.split("-")[1]
