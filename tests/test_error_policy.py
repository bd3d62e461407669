"""The error policy (docs/configuration.md, "Errors"), rule by rule.

1. Code errors raise, from one base class (``K8sOtelError``); a bad argument names itself.
2. Environment and file problems are collected once, in ``settings.problems``, and logged once.
3. Adapters never raise: a failure inside our telemetry never reaches the app's request or reconcile.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.util.types import Attributes

import k8s_otel
import k8s_otel.instrumentation
import k8s_otel.objects
import k8s_otel.webhook
from k8s_otel import InvalidArgumentError, K8sOtelError, KubernetesPropagator

CANARY = "c2VjcmV0LWNhbmFyeS12YWx1ZQ"  # a header value: it must never appear in an error or a log
REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "name": "web-0",
        "namespace": "default",
        "operation": "CREATE",
        "userInfo": {"username": "admin"},
        "object": {"apiVersion": "v1", "kind": "Pod"},
    },
}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


# --- 1. code errors raise, from one base class -----------------------------------------------------


def _public_exception_types() -> list[type[BaseException]]:
    found = []
    for package in (k8s_otel, k8s_otel.webhook, k8s_otel.instrumentation, k8s_otel.objects):
        for name in package.__all__:
            value = getattr(package, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                found.append(value)
    return found


def test_every_public_exception_derives_from_k8s_otel_error() -> None:
    types = _public_exception_types()
    assert {t.__name__ for t in types} >= {
        "K8sOtelError",
        "InvalidArgumentError",
        "AlreadyConfiguredError",
        "TracingConfigurationError",
    }
    assert all(issubclass(t, K8sOtelError) for t in types), types


def test_exceptions_callers_can_meet_keep_their_stdlib_bases() -> None:
    from k8s_otel._conventions import RequestInfoError
    from k8s_otel._exceptions import MissingExtraError
    from k8s_otel._files import NotRegularFileError
    from k8s_otel._gourl import GoURLError
    from k8s_otel.cli._common import UserError
    from k8s_otel.cli._demo import ExportFailed

    expected: dict[type[BaseException], tuple[type[BaseException], ...]] = {
        k8s_otel.AlreadyConfiguredError: (RuntimeError,),
        k8s_otel.TracingConfigurationError: (ValueError,),
        InvalidArgumentError: (ValueError, TypeError),
        GoURLError: (ValueError,),
        RequestInfoError: (ValueError,),
        NotRegularFileError: (OSError,),
        MissingExtraError: (ModuleNotFoundError,),
        UserError: (),
        ExportFailed: (),
    }
    for kind, bases in expected.items():
        assert issubclass(kind, K8sOtelError), kind
        assert all(issubclass(kind, base) for base in bases), kind


def test_a_bad_file_raises_a_k8s_otel_error_that_is_still_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "tracing.yaml"
    path.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\nbogus: 1\n")
    with pytest.raises(K8sOtelError) as caught:
        k8s_otel.load_tracing_configuration(str(path))
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: k8s_otel.PerMillionSampler(-1), "samplingRatePerMillion"),
        (lambda: k8s_otel.PerMillionSampler(2.5), "samplingRatePerMillion"),
        (lambda: k8s_otel.SampledParentBudget(-1), "budget"),
        (lambda: k8s_otel.TrustPolicy("sometimes"), "mode"),
        (lambda: k8s_otel.TrustPolicy.parse("sometimes"), "trust policy"),
        (lambda: k8s_otel.webhook.WSGIMiddleware(lambda e, s: [], webhook_type="x"), "webhook_type"),
        (lambda: k8s_otel.webhook.ASGIMiddleware(lambda *a: None, max_body_bytes=-1), "max_body_bytes"),
        (lambda: k8s_otel.webhook.ASGIMiddleware(lambda *a: None, paths="/validate"), "paths"),
        (
            lambda: k8s_otel.instrumentation.KopfInstrumentor().instrument(traceparent_annotation=5),
            "traceparent_annotation",
        ),
        (
            lambda: k8s_otel.instrumentation.KopfInstrumentor().instrument(traceparent_annotation="a b"),
            "traceparent_annotation",
        ),
    ],
)
def test_public_constructors_raise_an_invalid_argument_error_naming_the_argument(
    build: Callable[[], object], argument: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        build()
    assert argument in str(caught.value)


_BAD_HEADERS: list[Any] = [
    {"authorization": f"Bearer {CANARY}\nx-injected: 1"},
    {"not a token": CANARY},
    {"x-api-key": f"{CANARY}\u00e9"},
    [("authorization", CANARY, "extra")],
    [("authorization", 5)],
    {"authorization": CANARY.encode()},
    f"authorization=Bearer%20{CANARY},{CANARY}",
    f"authorization {CANARY}",
    f"x-api-key={CANARY}%0Ainjected",
    {CANARY: "x"},  # a token pasted where the name goes
    f"{CANARY}=x",
]
_NOT_BOOL = st.one_of(st.integers(), st.text(max_size=5), st.floats(allow_nan=False), st.lists(st.none()))
_NOT_TEXT = st.one_of(st.integers(), st.floats(allow_nan=False), st.binary(max_size=5), st.lists(st.none()))
_BAD_ARGUMENTS: dict[str, st.SearchStrategy[Any]] = {
    "endpoint": st.one_of(_NOT_TEXT, st.sampled_from(["", "   ", "http://[::1", "https://[zz]:80/x"])),
    "protocol": st.one_of(
        _NOT_TEXT,
        st.text(max_size=12).filter(lambda t: t.strip().lower() not in ("grpc", "http/protobuf")),
    ),
    "sampling_rate_per_million": st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=1_000_001),
        st.floats().filter(lambda f: not (f.is_integer() and 0 <= f <= 1_000_000)),
        st.text(max_size=5),
        st.booleans(),
    ),
    "shutdown_timeout": st.one_of(
        st.floats(max_value=0),
        st.integers(max_value=0),
        st.sampled_from([math.inf, math.nan]),
        st.text(max_size=5),
        st.booleans(),
    ),
    "resource": st.one_of(
        st.integers(),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.integers(), st.text(max_size=3), min_size=1, max_size=2),
        st.dictionaries(
            st.text(min_size=1, max_size=5),
            st.one_of(st.none(), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)),
            min_size=1,
            max_size=2,
        ),
    ),
    "service_name": st.one_of(_NOT_TEXT, st.sampled_from(["", "  "])),
    "config_file": st.one_of(st.integers(), st.binary(max_size=3), st.sampled_from(["", " "])),
    "insecure": _NOT_BOOL,
    "log_correlation": _NOT_BOOL,
    "sample_linked": _NOT_BOOL,
    "install": st.one_of(_NOT_BOOL, st.none()),
    "headers": st.one_of(
        st.integers(),
        st.sets(st.integers(), max_size=2),
        st.lists(st.integers(), min_size=1, max_size=2),
        st.sampled_from(_BAD_HEADERS),
    ),
}


@pytest.mark.parametrize("argument", sorted(_BAD_ARGUMENTS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_bad_configure_argument_raises_naming_it(argument: str, data: st.DataObject) -> None:
    value = data.draw(_BAD_ARGUMENTS[argument], label=argument)
    with pytest.raises(InvalidArgumentError) as caught:
        k8s_otel.configure(**{"install": False, argument: value})
    error = caught.value
    assert isinstance(error, ValueError) and isinstance(error, TypeError)  # what callers caught before
    assert error.argument == argument
    assert argument in str(error)
    assert CANARY not in str(error)


@pytest.mark.parametrize("headers", _BAD_HEADERS, ids=range(len(_BAD_HEADERS)))
def test_a_header_argument_that_cannot_be_sent_raises_without_its_value(headers: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        k8s_otel.configure(install=False, headers=headers)
    assert caught.value.argument == "headers"
    assert CANARY not in str(caught.value) and CANARY not in repr(caught.value.args)


def test_good_arguments_still_build_a_handle() -> None:
    handle = k8s_otel.configure(
        install=False,
        endpoint="http://127.0.0.1:4318/v1/traces",
        protocol=" HTTP/Protobuf ",
        headers={"authorization": f"Bearer {CANARY}"},
        sampling_rate_per_million=10,
        shutdown_timeout=1,
        resource={"deployment.environment": "test", "ports": [1, 2]},
        service_name="svc",
        insecure=True,
        sample_linked=False,
    )
    try:
        assert handle.settings.problems == ()
        assert handle.settings.protocol.value == "http/protobuf"
    finally:
        handle.shutdown(0)


# --- 2. environment and file problems: once in settings.problems, logged once ----------------------


def _bad_tracing_config(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "tracing.yaml"
    path.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\nbogus: 1\n")
    return {"K8S_OTEL_TRACING_CONFIG": str(path)}


_ENV_PROBLEMS: dict[str, Callable[[Path], dict[str, str]]] = {
    "http/json": lambda _: {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
    "OTEL_EXPORTER_OTLP_COMPRESSION": lambda _: {"OTEL_EXPORTER_OTLP_COMPRESSION": "brotli"},
    "OTEL_TRACES_SAMPLER_ARG": lambda _: {
        "OTEL_TRACES_SAMPLER": "k8s_per_million",
        "OTEL_TRACES_SAMPLER_ARG": "often",
    },
    "OTEL_TRACES_SAMPLER=": lambda _: {"OTEL_TRACES_SAMPLER": "traceidratio"},
    "OTEL_TRACES_EXPORTER": lambda _: {"OTEL_TRACES_EXPORTER": "console"},
    "OTEL_BSP_MAX_QUEUE_SIZE": lambda _: {"OTEL_BSP_MAX_QUEUE_SIZE": "-3"},
    "OTEL_EXPORTER_OTLP_INSECURE": lambda _: {"OTEL_EXPORTER_OTLP_INSECURE": "perhaps"},
    "missing.pem": lambda tmp: {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(tmp / "missing.pem")},
    "OTEL_EXPORTER_OTLP_HEADERS": lambda _: {"OTEL_EXPORTER_OTLP_HEADERS": f"authorization {CANARY}"},
    "K8S_OTEL_SHUTDOWN_TIMEOUT": lambda _: {"K8S_OTEL_SHUTDOWN_TIMEOUT": "soon"},
    "K8S_OTEL_SAMPLE_LINKED": lambda _: {"K8S_OTEL_SAMPLE_LINKED": "maybe"},
    "OTEL_SPAN_EVENT_COUNT_LIMIT": lambda _: {"OTEL_SPAN_EVENT_COUNT_LIMIT": "lots"},
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": lambda _: {"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "-1"},
    "bogus": _bad_tracing_config,
}


def _mentioning(records: Sequence[logging.LogRecord], marker: str) -> list[logging.LogRecord]:
    return [r for r in records if marker in r.getMessage()]


@pytest.mark.parametrize("marker", sorted(_ENV_PROBLEMS))
def test_each_environment_or_file_problem_is_in_settings_once_and_logged_once(
    marker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in _ENV_PROBLEMS[marker](tmp_path).items():
        monkeypatch.setenv(name, value)
    # A sampled span makes the exporter start (it reads the TLS files then); the sampler cases need
    # the rate unset, or the argument would win over the variables.
    rate = {"sampling_rate_per_million": 1_000_000} if marker == "missing.pem" else {}
    with caplog.at_level(logging.DEBUG):
        handle = k8s_otel.configure(install=False, **rate)  # never raises for the environment
    try:
        with handle.tracer_provider.get_tracer("t").start_as_current_span("s"):
            pass
        if marker == "missing.pem":
            handle.force_flush(1)  # the exporter reads the TLS files when it first exports
        assert len([p for p in handle.settings.problems if marker in p]) == 1, handle.settings.problems
        assert len(_mentioning(caplog.records, marker)) == 1, caplog.text
        assert CANARY not in caplog.text and CANARY not in " ".join(handle.settings.problems)
    finally:
        handle.shutdown(0)


def test_http_protobuf_without_its_exporter_is_one_problem_and_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    with caplog.at_level(logging.DEBUG):
        handle = k8s_otel.configure(install=False)
    try:
        assert len([p for p in handle.settings.problems if "k8s-otel[http]" in p]) == 1
        assert len(_mentioning(caplog.records, "k8s-otel[http]")) == 1
    finally:
        handle.shutdown(0)


@pytest.mark.parametrize("protocol", ["http/json", "http/protobuf"])
def test_doctor_reports_a_protocol_it_cannot_honour_once(protocol: str) -> None:
    from subprocess_scripts import run

    # The http/protobuf case runs with the OTLP/HTTP exporter made to look uninstalled.
    blocked = "opentelemetry.exporter.otlp.proto.http" if protocol == "http/protobuf" else "no_such_module"
    env = {**os.environ, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    result = run("without", blocked, "cli", "doctor", "--json", "--timeout", "1", env=env)
    findings = [f["message"] for f in json.loads(result.stdout)["findings"]]
    assert len([m for m in findings if m.startswith("OTLP protocol")]) == 1, findings


def test_the_same_problem_reached_twice_is_listed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from k8s_otel._settings import resolve_settings

    # Both header variables are read: the signal-specific one wins, a problem in it is one entry.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad entry,bad entry")
    problems = resolve_settings().problems
    assert len(problems) == len(set(problems))


def test_the_file_configuration_sampler_logs_each_problem_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from k8s_otel._file_config import RATE_ENV, per_million_sampler

    monkeypatch.setenv(RATE_ENV, "often")
    with caplog.at_level(logging.DEBUG):
        sampler = per_million_sampler()
    assert "AlwaysOff" in sampler.get_description()
    assert len(_mentioning(caplog.records, RATE_ENV)) == 1, caplog.text


# --- 3. adapters never raise ------------------------------------------------------------------------


class _RaisingTracer(trace.Tracer):
    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        raise RuntimeError("tracer exploded")

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer exploded")


class RaisingTracerProvider(trace.TracerProvider):
    """Span creation raises."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _RaisingTracer()


class BrokenSpan(trace.Span):
    """A span whose every method raises, but its context: what a buggy SDK or processor looks like."""

    def __init__(self, recording_raises: bool) -> None:
        self._context = SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1)
        )
        self._recording_raises = recording_raises

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        if self._recording_raises:
            raise RuntimeError("is_recording exploded")
        return True

    def end(self, end_time: Optional[int] = None) -> None:
        raise RuntimeError("end exploded")

    def set_attributes(self, attributes: Any) -> None:
        raise RuntimeError("set_attributes exploded")

    def set_attribute(self, key: str, value: Any) -> None:
        raise RuntimeError("set_attribute exploded")

    def add_event(self, name: str, attributes: Attributes = None, timestamp: Optional[int] = None) -> None:
        raise RuntimeError("add_event exploded")

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        raise RuntimeError("add_link exploded")

    def update_name(self, name: str) -> None:
        raise RuntimeError("update_name exploded")

    def set_status(self, status: Any, description: Optional[str] = None) -> None:
        raise RuntimeError("set_status exploded")

    def record_exception(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("record_exception exploded")


class _BrokenSpanTracer(trace.Tracer):
    def __init__(self, recording_raises: bool) -> None:
        self.recording_raises = recording_raises

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return BrokenSpan(self.recording_raises)

    @contextmanager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        span = BrokenSpan(self.recording_raises)
        with trace.use_span(span, end_on_exit=False):
            yield span


class BrokenSpanTracerProvider(trace.TracerProvider):
    def __init__(self, recording_raises: bool = False) -> None:
        self.recording_raises = recording_raises

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _BrokenSpanTracer(self.recording_raises)


BROKEN_PROVIDERS = {
    "span creation raises": RaisingTracerProvider,
    "every span method raises": lambda: BrokenSpanTracerProvider(False),
    "is_recording raises too": lambda: BrokenSpanTracerProvider(True),
}


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("propagator exploded")


def _answer(document: Any) -> bytes:
    request = (document or {}).get("request") or {}
    response = {"uid": request.get("uid", ""), "allowed": True}
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    ).encode()


def wsgi_webhook(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = _answer(json.loads(environ["wsgi.input"].read(size) or b"{}"))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_webhook(scope: dict[str, Any], receive: Any, send: Any) -> None:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = _answer(json.loads(b"".join(chunks) or b"{}"))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def post_review(port: int) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST",
            "/validate?timeout=10s",
            body=json.dumps(REVIEW),
            headers={"Content-Type": "application/json", "traceparent": TRACEPARENT},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _assert_allowed(status: int, document: dict[str, Any]) -> None:
    assert status == 200
    assert document["response"] == {"uid": REVIEW["request"]["uid"], "allowed": True}  # type: ignore[index]


@pytest.mark.parametrize("broken", sorted(BROKEN_PROVIDERS))
def test_the_wsgi_wrapper_never_raises_into_the_webhook(broken: str) -> None:
    from webhook_support import wsgi_server

    app = k8s_otel.webhook.WSGIMiddleware(wsgi_webhook, tracer_provider=BROKEN_PROVIDERS[broken]())
    with wsgi_server(app) as port:
        for _ in range(2):
            _assert_allowed(*post_review(port))


@pytest.mark.parametrize("broken", sorted(BROKEN_PROVIDERS))
def test_the_asgi_wrapper_never_raises_into_the_webhook(broken: str) -> None:
    from webhook_support import asgi_server

    app = k8s_otel.webhook.ASGIMiddleware(asgi_webhook, tracer_provider=BROKEN_PROVIDERS[broken]())
    with asgi_server(app) as port:
        for _ in range(2):
            _assert_allowed(*post_review(port))


@pytest.mark.parametrize("broken", sorted(BROKEN_PROVIDERS))
def test_the_handler_decorator_never_raises_into_the_handler(broken: str) -> None:
    @k8s_otel.webhook.admission_handler(tracer_provider=BROKEN_PROVIDERS[broken]())
    def handle(review: dict[str, Any]) -> dict[str, Any]:
        return dict(json.loads(_answer(review)))

    for headers in (None, {"traceparent": TRACEPARENT}):
        document = handle(REVIEW, headers=headers)
        assert document["response"]["allowed"] is True


@pytest.mark.parametrize("broken", sorted(BROKEN_PROVIDERS))
def test_the_zero_code_admission_instrumentor_never_raises_into_a_flask_app(broken: str) -> None:
    import flask

    from webhook_support import wsgi_server

    instrumentor = k8s_otel.instrumentation.AdmissionInstrumentor()
    instrumentor.instrument(tracer_provider=BROKEN_PROVIDERS[broken](), webhook_type="validating")
    try:
        app = flask.Flask(__name__)

        @app.post("/validate")
        def validate() -> Any:
            return flask.Response(_answer(flask.request.get_json()), content_type="application/json")

        with wsgi_server(app) as port:
            for _ in range(2):
                _assert_allowed(*post_review(port))
    finally:
        instrumentor.uninstrument()


def test_the_webhook_wrappers_survive_a_broken_propagation(monkeypatch: pytest.MonkeyPatch) -> None:
    from recording import recording_provider
    from webhook_support import asgi_server, wsgi_server

    monkeypatch.setattr("k8s_otel.webhook._core.extract_from_values", _broken)
    monkeypatch.setattr("k8s_otel.webhook._handler.extract", _broken)
    provider, _ = recording_provider()
    with wsgi_server(k8s_otel.webhook.WSGIMiddleware(wsgi_webhook, tracer_provider=provider)) as port:
        _assert_allowed(*post_review(port))
    with asgi_server(k8s_otel.webhook.ASGIMiddleware(asgi_webhook, tracer_provider=provider)) as port:
        _assert_allowed(*post_review(port))

    @k8s_otel.webhook.admission_handler(tracer_provider=provider)
    def handle(review: dict[str, Any]) -> dict[str, Any]:
        return dict(json.loads(_answer(review)))

    assert handle(REVIEW, headers={"traceparent": TRACEPARENT})["response"]["allowed"] is True


class _ExplodingGetter(Getter[Any]):
    def get(self, carrier: Any, key: str) -> Optional[list[str]]:
        raise RuntimeError("getter exploded")

    def keys(self, carrier: Any) -> list[str]:
        raise RuntimeError("getter exploded")


class _HostileHeaders:
    """A carrier whose every access raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("carrier exploded")

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("carrier exploded")

    def __setitem__(self, key: str, value: str) -> None:
        raise RuntimeError("carrier exploded")


def test_the_propagator_never_raises() -> None:
    propagator = KubernetesPropagator()
    context = Context()
    assert propagator.extract({"traceparent": TRACEPARENT}, context, getter=_ExplodingGetter()) is context
    assert isinstance(propagator.extract(_HostileHeaders()), Context)
    with trace.use_span(trace.NonRecordingSpan(BrokenSpan(False).get_span_context())):
        propagator.inject(_HostileHeaders())  # nothing written, nothing raised


@pytest.mark.parametrize("broken", [*sorted(BROKEN_PROVIDERS), "propagation raises"])
def test_the_kubernetes_client_instrumentor_never_raises_into_the_controller(
    broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubernetes

    from fake_cluster import FakeCluster
    from recording import recording_provider

    if broken == "propagation raises":
        monkeypatch.setattr("k8s_otel.instrumentation._kubernetes.inject", _broken)
        provider: trace.TracerProvider = recording_provider()[0]
    else:
        provider = BROKEN_PROVIDERS[broken]()
    instrumentor = k8s_otel.instrumentation.KubernetesClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with FakeCluster.with_pods("web-0").running() as apiserver:
            configuration = kubernetes.client.Configuration(host=apiserver.host)
            configuration.retries = 0
            api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
            assert api.read_namespaced_pod("web-0", "default").metadata.name == "web-0"
            with pytest.raises(kubernetes.client.ApiException) as caught:  # the app's own error, unchanged
                api.read_namespaced_pod("missing", "default")
            assert caught.value.status == 404
    finally:
        instrumentor.uninstrument()


@pytest.mark.parametrize(
    "broken", ["every span method raises", "is_recording raises too", "propagation raises"]
)
def test_the_kopf_instrumentor_never_raises_into_a_handler(
    broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kopf

    from fake_cluster import FakeCluster
    from recording import recording_provider
    from test_instrumentation_kopf import EXAMPLES, Operator, example, wait_for

    if broken == "propagation raises":
        monkeypatch.setattr("k8s_otel.instrumentation._kopf.inject", _broken)
        monkeypatch.setattr("k8s_otel.instrumentation._kopf.extract", _broken)
        monkeypatch.setattr("k8s_otel.instrumentation._kopf.parse_traceparent", _broken)
        provider: trace.TracerProvider = recording_provider()[0]
    else:
        provider = BROKEN_PROVIDERS[broken]()
    _, memory = recording_provider()
    instrumentor = k8s_otel.instrumentation.KopfInstrumentor()
    instrumentor.instrument(tracer_provider=provider, traceparent_annotation="k8s-otel.io/traceparent")
    calls: list[int] = []
    try:
        with FakeCluster().running() as cluster:
            operator = Operator(cluster, memory)

            @kopf.on.create(*EXAMPLES, registry=operator.registry, id="created")
            def created(retry: int, patch: kopf.Patch, **_: Any) -> None:
                calls.append(retry)
                patch.status["done"] = True

            with operator.running():
                cluster.create(
                    "kopfexamples",
                    example("ex1", annotations={"k8s-otel.io/traceparent": TRACEPARENT}),
                )
                wait_for(lambda: cluster.field("kopfexamples", "default", "ex1", "status", "done"))
    finally:
        instrumentor.uninstrument()
    assert calls == [0]  # called once: kopf never saw a failure


@pytest.mark.parametrize("value", ["x", "-1", "unset", "1.5"])
def test_a_bad_span_attribute_count_limit_is_a_problem_not_an_import_crash(value: str) -> None:
    # The SDK reads this one variable when opentelemetry.sdk.trace is imported, and raises.
    from subprocess_scripts import run

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}
    env["OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"] = value
    stock = run("probes", "sdk_alone", env=env)
    assert stock.returncode != 0 and "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT" in stock.stderr  # the trap is real
    ours = run("probes", "configure_under_env", env=env)
    assert ours.returncode == 0, ours.stderr
    problems = json.loads(ours.stdout.splitlines()[-1])
    assert len([p for p in problems if "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT" in p]) == 1
    assert len([line for line in ours.stderr.splitlines() if "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT" in line]) == 1


@pytest.mark.parametrize("value", ["", " 7 ", "+3", "0"])
def test_a_good_span_attribute_count_limit_is_no_problem(value: str) -> None:
    from subprocess_scripts import run

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}
    env["OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"] = value
    ours = run("probes", "configure_under_env", env=env)
    assert ours.returncode == 0, ours.stderr
    assert [p for p in json.loads(ours.stdout.splitlines()[-1]) if "LIMIT" in p] == []


def _wrong_types() -> dict[str, Callable[[], object]]:
    import k8s_otel.instrumentation
    import k8s_otel.objects
    import k8s_otel.webhook

    def app(environ: object, start_response: object) -> list[bytes]:
        return []

    return {
        "SampledParentBudget(rate)": lambda: k8s_otel.SampledParentBudget("many"),  # type: ignore[arg-type]
        "load_tracing_configuration(path)": lambda: k8s_otel.load_tracing_configuration(123),  # type: ignore[arg-type]
        "KopfInstrumentor tracer_provider": lambda: k8s_otel.instrumentation.KopfInstrumentor().instrument(
            tracer_provider=5
        ),
        "KopfInstrumentor record_exception_messages": lambda: (
            k8s_otel.instrumentation.KopfInstrumentor().instrument(record_exception_messages="yes")
        ),
        "KubernetesClientInstrumentor tracer_provider": lambda: (
            k8s_otel.instrumentation.KubernetesClientInstrumentor().instrument(tracer_provider=5)
        ),
        "KubernetesClientInstrumentor inject_object_context": lambda: (
            k8s_otel.instrumentation.KubernetesClientInstrumentor().instrument(inject_object_context="yes")
        ),
        "instrument_flask_app(app)": lambda: k8s_otel.webhook.instrument_flask_app(5),  # type: ignore[arg-type]
        "instrument_fastapi_app(app)": lambda: k8s_otel.webhook.instrument_fastapi_app(5),
        "WSGIMiddleware tracer_provider": lambda: k8s_otel.webhook.WSGIMiddleware(app, tracer_provider=5),  # type: ignore[arg-type]
        "start_reconcile_span tracer_provider": lambda: k8s_otel.objects.start_reconcile_span(
            "reconcile",
            {},
            tracer_provider=5,  # type: ignore[arg-type]
        ),
    }


@pytest.mark.parametrize("case", sorted(_wrong_types()))
def test_an_argument_of_the_wrong_type_raises_an_invalid_argument_error(case: str) -> None:
    with pytest.raises(k8s_otel.InvalidArgumentError) as caught:
        _wrong_types()[case]()
    assert isinstance(caught.value, k8s_otel.K8sOtelError)
    assert caught.value.argument is not None and caught.value.argument in str(caught.value)


def test_a_hand_built_configuration_with_a_string_rate_is_a_validation_error_not_a_crash() -> None:
    config = k8s_otel.TracingConfiguration(sampling_rate_per_million="1000")  # type: ignore[arg-type]
    [error] = k8s_otel.validate_tracing_configuration(config)
    assert "samplingRatePerMillion" in error


def test_an_unreadable_tls_file_is_one_problem_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A Secret mounted 0600 for another user. These tests run as root, who reads any file, so the
    # permission check itself is what is made to fail (the one thing that cannot run here).
    certificate = tmp_path / "ca.pem"
    certificate.write_text("not read")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: path != str(certificate) and real_access(path, mode))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(certificate))
    with caplog.at_level(logging.DEBUG):
        handle = k8s_otel.configure(install=False, sampling_rate_per_million=1_000_000)
    try:
        with handle.tracer_provider.get_tracer("t").start_as_current_span("s"):
            pass
        handle.force_flush(1)  # the exporter reads the TLS files when it first exports
        assert len([p for p in handle.settings.problems if "ca.pem" in p]) == 1, handle.settings.problems
        assert len(_mentioning(caplog.records, "ca.pem")) == 1, caplog.text
    finally:
        handle.shutdown(0)
