"""Every admission-webhook entry point takes the same options and treats the same review the same way.

The entry points are ``WSGIMiddleware``, ``ASGIMiddleware``, ``admission_handler``,
``instrument_flask_app``, ``instrument_fastapi_app`` and ``AdmissionInstrumentor.instrument``. Their
signatures are checked against ``WebhookOptions`` (names, kinds, defaults, annotations, resolved
types), so an option added to one and not the others fails here. The behaviour tests send one review
through each (real Flask and FastAPI apps through their test clients, bare WSGI and ASGI apps, the
decorator called directly, the zero-code instrumentor on a real Flask app) and compare the spans.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import json
import math
import typing
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import fastapi
import flask
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan

from k8s_otel import Caller, SampledParentBudget, TrustPolicy
from k8s_otel.instrumentation import AdmissionInstrumentor
from k8s_otel.webhook import (
    ASGIMiddleware,
    WSGIMiddleware,
    admission_handler,
    instrument_fastapi_app,
    instrument_flask_app,
)
from k8s_otel.webhook._core import WEBHOOK_TYPES, WebhookOptions, path_matcher
from recording import recording_provider
from webhook_support import review

OPTIONS = dataclasses.fields(WebhookOptions)
ENTRY_POINTS: dict[str, Callable[..., Any]] = {
    "WSGIMiddleware": WSGIMiddleware,
    "ASGIMiddleware": ASGIMiddleware,
    "admission_handler": admission_handler,
    "instrument_flask_app": instrument_flask_app,
    "instrument_fastapi_app": instrument_fastapi_app,
    "AdmissionInstrumentor.instrument": AdmissionInstrumentor.instrument,
}
# What each entry point takes besides the shared options: the thing it wraps, or BaseInstrumentor's own.
OWN = {
    "WSGIMiddleware": {"app"},
    "ASGIMiddleware": {"app"},
    "admission_handler": {"func"},
    "instrument_flask_app": {"app"},
    "instrument_fastapi_app": {"app"},
    "AdmissionInstrumentor.instrument": {"self", "kwargs"},
}

UID = "705ab4f5-6393-11e8-b7cc-42010a800002"
PARENT_SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-4bf92f3577b34da6a3ce929d0e0e4736-{PARENT_SPAN_ID:016x}-01"
UNLIMITED = TrustPolicy("trust", budget=SampledParentBudget(math.inf))


# --- the signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_takes_exactly_the_shared_options(entry: str) -> None:
    parameters = inspect.signature(ENTRY_POINTS[entry]).parameters
    assert set(parameters) - OWN[entry] == {option.name for option in OPTIONS}
    for option in OPTIONS:
        parameter = parameters[option.name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, option.name
        assert parameter.default == option.default, option.name
        assert parameter.annotation == option.type, option.name  # the same spelling of the type


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_resolves_the_options_to_the_same_types(entry: str) -> None:
    expected = typing.get_type_hints(WebhookOptions)
    function = ENTRY_POINTS[entry]
    hints = typing.get_type_hints(function.__init__ if inspect.isclass(function) else function)
    assert {option.name: hints[option.name] for option in OPTIONS} == expected


def test_trust_admits_exactly_what_the_policy_parser_accepts() -> None:
    hints = typing.get_type_hints(WebhookOptions)
    admitted = set(typing.get_args(hints["trust"]))
    assert TrustPolicy in admitted and str in admitted
    assert any(typing.get_origin(form) is not None for form in admitted)  # Callable[[Caller], bool]
    assert typing.get_type_hints(TrustPolicy.parse)["value"] == hints["trust"]


@pytest.mark.parametrize("helper", [instrument_flask_app, instrument_fastapi_app])
def test_the_framework_helpers_return_none_as_contrib_does(helper: Callable[..., Any]) -> None:
    assert inspect.signature(helper).return_annotation == "None"


# --- one review through each entry point ---------------------------------------------------------


def _answer(document: dict[str, Any]) -> dict[str, Any]:
    uid = (document.get("request") or {}).get("uid", "")
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": uid, "allowed": True}}  # fmt: skip


def _wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.dumps(_answer(json.loads(environ["wsgi.input"].read(length)))).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps(_answer(json.loads(b"".join(chunks)))).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _flask_app() -> Any:
    app = flask.Flask(__name__)

    @app.post("/validate")
    def validate() -> Any:
        return flask.jsonify(_answer(flask.request.get_json()))

    return app


def _fastapi_app() -> Any:
    app = fastapi.FastAPI()

    @app.post("/validate")
    async def validate(request: fastapi.Request) -> dict[str, Any]:
        return _answer(await request.json())

    return app


def _headers(body: bytes) -> dict[str, str]:
    return {"traceparent": TRACEPARENT, "content-type": "application/json", "content-length": str(len(body))}


def _post_wsgi(app: Any, body: bytes) -> dict[str, Any]:
    from werkzeug.test import Client

    response = Client(app).post("/validate", data=body, headers=_headers(body), buffered=True)
    assert response.status_code == 200
    return typing.cast("dict[str, Any]", json.loads(response.get_data()))


def _post_asgi(app: Any, body: bytes) -> dict[str, Any]:
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        response = client.post("/validate", content=body, headers=_headers(body))
    assert response.status_code == 200
    return typing.cast("dict[str, Any]", response.json())


def _through_wsgi(body: bytes, **options: Any) -> dict[str, Any]:
    return _post_wsgi(WSGIMiddleware(_wsgi_app, **options), body)


def _through_asgi(body: bytes, **options: Any) -> dict[str, Any]:
    return _post_asgi(ASGIMiddleware(_asgi_app, **options), body)


def _through_handler(body: bytes, **options: Any) -> dict[str, Any]:
    handler = admission_handler(_answer_raw, **options)
    return typing.cast("dict[str, Any]", handler(body, headers=_headers(body), path="/validate"))


def _answer_raw(document: Any) -> dict[str, Any]:
    return _answer(json.loads(document) if isinstance(document, bytes) else document)


def _through_flask(body: bytes, **options: Any) -> dict[str, Any]:
    app = _flask_app()
    instrument_flask_app(app, **options)
    return _post_wsgi(app, body)


def _through_fastapi(body: bytes, **options: Any) -> dict[str, Any]:
    app = _fastapi_app()
    instrument_fastapi_app(app, **options)
    return _post_asgi(app, body)


@contextmanager
def _instrumented(**options: Any) -> Iterator[None]:
    instrumentor = AdmissionInstrumentor()
    instrumentor.instrument(**options)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def _through_instrumentor(body: bytes, **options: Any) -> dict[str, Any]:
    with _instrumented(**options):
        return _post_wsgi(_flask_app(), body)


THROUGH: dict[str, Callable[..., dict[str, Any]]] = {
    "WSGIMiddleware": _through_wsgi,
    "ASGIMiddleware": _through_asgi,
    "admission_handler": _through_handler,
    "instrument_flask_app": _through_flask,
    "instrument_fastapi_app": _through_fastapi,
    "AdmissionInstrumentor.instrument": _through_instrumentor,
}


def _admission_span(through: str, body: bytes, **options: Any) -> tuple[dict[str, Any], ReadableSpan]:
    provider, memory = recording_provider()
    answer = THROUGH[through](body, tracer_provider=provider, **options)
    spans = [
        s
        for s in memory.get_finished_spans()
        if s.instrumentation_scope and s.instrumentation_scope.name == "k8s_otel.webhook"
    ]
    assert len(spans) == 1, [s.name for s in spans]
    return answer, spans[0]


def test_the_entry_points_cover_every_public_one() -> None:
    assert set(THROUGH) == set(ENTRY_POINTS)


@pytest.mark.parametrize("through", THROUGH)
def test_the_same_review_gets_the_same_span_name_and_identity(through: str) -> None:
    answer, span = _admission_span(through, json.dumps(review()).encode(), trust=UNLIMITED)
    assert answer["response"] == {"uid": UID, "allowed": True}
    assert span.name == "POST /validate"
    assert span.kind.name == "SERVER"
    assert span.attributes is not None
    assert span.attributes["UID"] == UID
    assert span.attributes["response.allowed"] is True
    assert "admission.problems" not in span.attributes


@pytest.mark.parametrize("through", THROUGH)
def test_an_over_limit_review_reaches_the_app_and_the_span_says_so(through: str) -> None:
    body = json.dumps(review()).encode()
    limit = len(body) // 2
    answer, span = _admission_span(through, body, trust=UNLIMITED, max_body_bytes=limit)
    assert answer["response"] == {"uid": UID, "allowed": True}  # the app read the whole review itself
    assert span.attributes is not None
    assert "UID" not in span.attributes  # not read
    problems = span.attributes["admission.problems"]
    assert isinstance(problems, tuple) and len(problems) == 1
    assert str(limit) in str(problems[0])
    assert span.name == "POST /validate"


@pytest.mark.parametrize("through", THROUGH)
def test_a_review_within_the_limit_is_read(through: str) -> None:
    body = json.dumps(review()).encode()
    _, span = _admission_span(through, body, trust=UNLIMITED, max_body_bytes=len(body))
    assert span.attributes is not None and span.attributes["UID"] == UID


def test_the_decorator_measures_a_parsed_review_by_its_content_length() -> None:
    provider, memory = recording_provider()
    body = json.dumps(review()).encode()
    handler = admission_handler(_answer, tracer_provider=provider, trust=UNLIMITED, max_body_bytes=10)
    assert handler(review(), headers=_headers(body), path="/validate")["response"]["uid"] == UID
    [span] = memory.get_finished_spans()
    assert span.attributes is not None and "UID" not in span.attributes
    assert span.attributes["admission.problems"]


def _trusted(span: ReadableSpan) -> bool:
    if span.parent is not None and span.parent.span_id == PARENT_SPAN_ID:
        assert not span.links
        return True
    assert span.parent is None
    assert [link.context.span_id for link in span.links] == [PARENT_SPAN_ID]
    return False


def _rule(verdict: bool) -> Callable[[Caller], bool]:
    def rule(caller: Caller) -> bool:
        assert isinstance(caller, Caller)
        return verdict

    return rule


TRUST_FORMS: dict[str, tuple[Any, bool]] = {
    "TrustPolicy trust": (UNLIMITED, True),
    "TrustPolicy link": (TrustPolicy("link"), False),
    "'trust'": ("trust", True),
    "'link'": ("link", False),
    "'kube-apiserver'": ("kube-apiserver", False),  # a webhook caller has no groups: not privileged
    "rule True": (_rule(True), True),
    "rule False": (_rule(False), False),
}


@pytest.mark.parametrize("form", TRUST_FORMS)
@pytest.mark.parametrize("through", THROUGH)
def test_every_entry_point_accepts_every_form_of_trust(through: str, form: str) -> None:
    trust, trusted = TRUST_FORMS[form]
    answer, span = _admission_span(through, json.dumps(review()).encode(), trust=trust)
    assert answer["response"]["uid"] == UID
    assert _trusted(span) is trusted


def test_a_rule_sees_the_callers_request_on_every_entry_point() -> None:
    seen: list[Any] = []
    for through in THROUGH:
        seen.clear()

        def rule(caller: Caller) -> bool:
            seen.append(caller)
            return True

        _admission_span(through, json.dumps(review()).encode(), trust=rule)
        assert len(seen) == 1 and seen[0].request is not None, through


# --- the options are checked where they are parsed -----------------------------------------------

BAD_OPTIONS: list[dict[str, Any]] = [
    {"max_body_bytes": -1},
    {"max_body_bytes": 1.5},
    {"max_body_bytes": True},
    {"webhook_type": "admission"},
    {"trust": "sometimes"},
    {"trust": 3},
    {"paths": "/validate"},
    {"paths": [b"/validate"]},
    {"record_user": "yes"},
    {"fast_reader": None},
    {"record_exception_messages": "false"},
]


def _construct(entry: str, **options: Any) -> None:
    if entry in ("WSGIMiddleware", "ASGIMiddleware"):
        ENTRY_POINTS[entry](_wsgi_app, **options)
    elif entry == "admission_handler":
        admission_handler(_answer, **options)
    elif entry == "instrument_flask_app":
        instrument_flask_app(_flask_app(), **options)
    elif entry == "instrument_fastapi_app":
        instrument_fastapi_app(_fastapi_app(), **options)
    else:
        with _instrumented(**options):
            pass


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=lambda bad: repr(bad))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_bad_option_raises_value_error_on_every_entry_point_naming_it(entry: str, bad: dict[str, Any]) -> None:  # fmt: skip
    [name] = bad
    with pytest.raises(ValueError, match=name.split("_")[0]):
        _construct(entry, **bad)
    if entry == "AdmissionInstrumentor.instrument":
        assert not AdmissionInstrumentor()._is_instrumented_by_opentelemetry  # nothing was patched


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_max_body_bytes_is_any_whole_number_of_bytes_from_zero(value: int) -> None:
    if value < 0:
        with pytest.raises(ValueError, match="max_body_bytes"):
            WebhookOptions(max_body_bytes=value)
    else:
        assert WebhookOptions(max_body_bytes=value).max_body_bytes == value


@given(st.one_of(st.sampled_from([*WEBHOOK_TYPES, "Validating", " mutating"]), st.text(max_size=12)))
def test_webhook_type_is_validating_mutating_or_none(value: str) -> None:
    if value in WEBHOOK_TYPES:
        assert WebhookOptions(webhook_type=value).webhook_type == value
    else:
        with pytest.raises(ValueError, match="webhook_type"):
            WebhookOptions(webhook_type=value)


@given(st.one_of(st.sampled_from(["trust", "LINK", " kube-apiserver "]), st.text(max_size=16)))
def test_trust_names_are_the_three_policies_in_any_case(value: str) -> None:
    if value.strip().lower() in ("trust", "link", "kube-apiserver"):
        assert WebhookOptions(trust=value).trust == value
    else:
        with pytest.raises(ValueError, match="trust"):
            WebhookOptions(trust=value)


_PATH = st.text(alphabet="/abc*?[]-", max_size=10)


@given(st.lists(_PATH, max_size=5), _PATH)
def test_paths_match_as_shell_patterns_with_exact_paths_fast(entries: list[str], path: str) -> None:
    """The oracle is fnmatch on every entry, which is what the zero-code ``K8S_OTEL_ADMISSION_ROUTES`` did."""
    accepts = path_matcher(entries)
    assert accepts is not None
    assert accepts(path) == any(fnmatch.fnmatchcase(path, entry) for entry in entries)


def test_a_paths_function_that_raises_rejects_the_path() -> None:
    def broken(path: str) -> bool:
        raise RuntimeError(path)

    accepts = path_matcher(broken)
    assert accepts is not None and accepts("/validate") is False
    assert path_matcher(None) is None


@pytest.mark.parametrize("through", THROUGH)
def test_paths_leave_other_paths_unread_on_every_entry_point(through: str) -> None:
    provider, memory = recording_provider()
    THROUGH[through](json.dumps(review()).encode(), tracer_provider=provider, trust=UNLIMITED, paths=["/mutate*"])  # fmt: skip
    for span in memory.get_finished_spans():
        assert span.attributes is None or "UID" not in span.attributes


# --- the return convention and the deprecated name -----------------------------------------------


@pytest.mark.parametrize("through", ["instrument_flask_app", "instrument_fastapi_app"])
def test_a_second_instrument_call_changes_nothing(through: str, caplog: pytest.LogCaptureFixture) -> None:
    provider, memory = recording_provider()
    app = _flask_app() if through == "instrument_flask_app" else _fastapi_app()
    helper = ENTRY_POINTS[through]
    assert helper(app, tracer_provider=provider, trust=UNLIMITED) is None  # contrib's convention
    assert helper(app, tracer_provider=provider, trust=UNLIMITED) is None
    assert caplog.records  # said once, as contrib says it
    body = json.dumps(review()).encode()
    (_post_wsgi if through == "instrument_flask_app" else _post_asgi)(app, body)
    assert len(memory.get_finished_spans()) == 1


def test_routes_still_works_with_a_deprecation_warning() -> None:
    provider, memory = recording_provider()
    body = json.dumps(review()).encode()
    instrumentor = AdmissionInstrumentor()
    with pytest.warns(DeprecationWarning, match="paths"):
        instrumentor.instrument(tracer_provider=provider, trust=UNLIMITED, routes="/mutate,/validate")
    try:
        _post_wsgi(_flask_app(), body)
    finally:
        instrumentor.uninstrument()
    [span] = memory.get_finished_spans()
    assert span.attributes is not None and span.attributes["UID"] == UID
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _instrumented(tracer_provider=provider, paths=["/validate"]):
            pass


# --- one name, one type for the same argument across the public API ------------------------------

PUBLIC_PACKAGES = ("k8s_otel", "k8s_otel.webhook", "k8s_otel.instrumentation", "k8s_otel.objects")
# The old names kept for one release, each warning; nothing else may use them.
DEPRECATED = {("reconcile_span", "tracer"), ("start_reconcile_span", "tracer")}
# Names the public API must not use for what it calls otherwise (left: the old name; right: the name).
# (``headers`` is not one: on configure() it means the OTLP headers; extract's carrier is checked apart.)
RETIRED = {"tracer": "tracer_provider", "routes": "paths", "record_message": "record_exception_messages",
           "record_messages": "record_exception_messages"}  # fmt: skip


def _public_callables() -> Iterator[tuple[str, Callable[..., Any]]]:
    import importlib

    for package in PUBLIC_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value):
                yield name, value.__init__
                for attribute, member in vars(value).items():
                    if callable(member) and not attribute.startswith("_"):
                        yield f"{name}.{attribute}", member
            elif callable(value):
                yield name, value


def test_an_argument_that_a_webhook_option_names_has_its_type_and_default_everywhere() -> None:
    shared = {option.name: option for option in OPTIONS}
    expected = typing.get_type_hints(WebhookOptions)
    checked = set()
    for name, function in _public_callables():
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):
            continue  # a builtin or a C-level signature: nothing of ours
        for parameter in parameters.values():
            option = shared.get(parameter.name)
            if option is None or parameter.default is inspect.Parameter.empty:
                continue
            assert parameter.default == option.default, (name, parameter.name)
            # Resolved in the function's own module (its other hints may not resolve: OTel's Attributes).
            resolved = eval(parameter.annotation, inspect.unwrap(function).__globals__)
            assert resolved == expected[parameter.name], (name, parameter.name)
            checked.add(name.split(".")[0])
    # The controller side and the stamping webhook share them too, not only the six entry points.
    assert {"KopfInstrumentor", "stamp_wsgi_app", "stamp_asgi_app", "reconcile_span"} <= checked


def test_no_public_callable_uses_a_retired_name_except_its_deprecated_alias() -> None:
    found = set()
    for name, function in _public_callables():
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):
            continue
        for parameter in parameters:
            if parameter in RETIRED:
                found.add((name, parameter))
    assert found == DEPRECATED


def test_extract_and_inject_call_the_carrier_by_one_name() -> None:
    from k8s_otel import extract, inject

    assert next(iter(inspect.signature(extract).parameters)) == "carrier"
    assert next(iter(inspect.signature(inject).parameters)) == "carrier"
    assert (
        inspect.signature(extract).parameters["headers"].kind is inspect.Parameter.KEYWORD_ONLY
    )  # deprecated
