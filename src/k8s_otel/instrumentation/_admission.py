"""Admission spans without code: ``opentelemetry-instrument`` gives Flask and FastAPI/Starlette apps one.

``AdmissionInstrumentor`` (entry point ``k8s_admission`` in ``opentelemetry_instrumentor``; off with
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=k8s_admission``) wraps every Flask app's ``wsgi_app`` and
every Starlette/FastAPI middleware stack in the webhook middleware, for requests that look like an
AdmissionReview: ``POST`` with a JSON content type, on a path that ``K8S_OTEL_ADMISSION_ROUTES``
allows (unset: every path). Everything else goes straight to the app.

One SERVER span per request, whatever else is installed and in whichever order it was loaded: if a
SERVER span is already current when a request reaches us (the contrib WSGI/ASGI middleware or the
contrib FastAPI instrumentation wrap the app outside us, FastAPI's own telemetry starts one before
its middleware), we add the admission attributes to that span instead of starting another; if
not, ours is the SERVER span, and a contrib layer inside it (the contrib Flask instrumentation starts
its span in ``before_request``, inside ``wsgi_app``) makes an INTERNAL span by its own rule.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import Attributes, AttributeValue

from k8s_otel._admission import ReviewRequest
from k8s_otel._trust import TrustArgument
from k8s_otel.instrumentation._wrapt import wrap_function_wrapper
from k8s_otel.webhook._core import (
    DEFAULT_MAX_BODY_BYTES,
    WEBHOOK_TYPES,
    PathFilter,
    WebhookOptions,
    WebhookTracer,
    is_json_content_type,
)

__all__ = [
    "ROUTES_ENV",
    "WEBHOOK_TYPE_ENV",
    "AdmissionInstrumentor",
    "RouteFilter",
    "looks_like_admission",
    "parse_routes",
]

_logger = logging.getLogger("k8s_otel.instrumentation.admission")

ROUTES_ENV = "K8S_OTEL_ADMISSION_ROUTES"
WEBHOOK_TYPE_ENV = "K8S_OTEL_ADMISSION_WEBHOOK_TYPE"
_MIDDLEWARE_KEY = "_k8s_otel_admission_middleware"


@dataclass(frozen=True)
class RouteFilter:
    """Which paths get an admission span: shell-style patterns (``*`` spans ``/`` too); none = all."""

    patterns: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=(), compare=False)

    def allows(self, path: str) -> bool:
        return not self.patterns or any(fnmatch.fnmatchcase(path, pattern) for pattern in self.patterns)

    __call__ = allows  # a RouteFilter is a path test, as a ``paths`` function is


def parse_routes(text: Optional[str]) -> RouteFilter:
    """``/validate,/mutate/*``: comma-separated paths or patterns. Bad entries are reported, not used.

    An entry must start with ``/`` (a request path always does); empty entries are skipped. If every
    entry is bad the filter is still not "all paths": it matches nothing, so a typo never traces
    what the operator meant to leave out.
    """
    if text is None or not text.strip():
        return RouteFilter()
    patterns: list[str] = []
    problems: list[str] = []
    for position, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        if not entry.startswith("/"):
            problems.append(
                f"{ROUTES_ENV} entry {position} ({entry[:64]!r}) does not start with '/': ignored"
            )
            continue
        patterns.append(entry)
    if not patterns and problems:
        return RouteFilter(patterns=("\x00",), problems=tuple(problems))  # matches no real path
    return RouteFilter(patterns=tuple(patterns), problems=tuple(problems))


def looks_like_admission(
    method: str, content_type: Optional[str], path: str, routes: Callable[[str], bool]
) -> bool:
    """kube-apiserver POSTs ``application/json`` AdmissionReviews; probes and the rest are left alone.

    ``routes`` is the path test (a RouteFilter, or the tracer's ``accepts_path``)."""
    return method == "POST" and is_json_content_type(content_type) and routes(path)


class _BorrowedSpan(Span):
    """Another instrumentation's SERVER span, lent to the webhook tracer: everything but ``end``."""

    def __init__(self, span: Span) -> None:
        self._span = span

    def end(self, end_time: Optional[int] = None) -> None:
        pass  # its owner ends it

    def get_span_context(self) -> trace.SpanContext:
        return self._span.get_span_context()

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._span.set_attributes(attributes)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: Attributes = None, timestamp: Optional[int] = None) -> None:
        if name != "exception":  # the owner records (or not) the exception: one event, not two
            self._span.add_event(name, attributes, timestamp)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_status(self, status: Any, description: Optional[str] = None) -> None:
        self._span.set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: Optional[int] = None,
        escaped: bool = False,
    ) -> None:
        pass  # the owner records (or not) the exception; the webhook tracer sets error.type and status


class _EnrichingWebhookTracer(WebhookTracer):
    """A WebhookTracer that adds to a SERVER span already current instead of starting a second one."""

    def start(self, *args: Any, **kwargs: Any) -> tuple[Span, Context]:
        # Arguments passed through as they come: the middleware and WebhookTracer agree on them.
        current = trace.get_current_span()
        if current.is_recording() and getattr(current, "kind", None) is SpanKind.SERVER:
            return _BorrowedSpan(current), trace.set_span_in_context(current)
        started: tuple[Span, Context] = super().start(*args, **kwargs)
        return started


def _every_path(path: str) -> bool:
    return True


@dataclass
class _State:
    enabled: bool = False
    routes: Callable[[str], bool] = _every_path
    tracer: Optional[_EnrichingWebhookTracer] = None


_state = _State()


def _webhook_type() -> Optional[str]:
    value = os.environ.get(WEBHOOK_TYPE_ENV, "").strip().lower()
    if not value:
        return None
    if value not in WEBHOOK_TYPES:
        _logger.error(
            "k8s_otel: %s=%r is not 'validating' or 'mutating': ignored", WEBHOOK_TYPE_ENV, value[:64]
        )
        return None
    return value


def _tracer_for(middleware: Any) -> None:
    if _state.tracer is not None:
        middleware.tracer = _state.tracer


# --- Flask (WSGI) ---------------------------------------------------------------------------------


def _flask_wsgi_app(
    wrapped: Callable[..., Iterable[bytes]], instance: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Any:
    try:
        environ = args[0] if args else kwargs["environ"]
        wanted = _state.enabled and looks_like_admission(
            environ.get("REQUEST_METHOD", ""),
            environ.get("CONTENT_TYPE"),
            environ.get("PATH_INFO", ""),
            _state.routes,
        )
        middleware = instance.__dict__.get(_MIDDLEWARE_KEY) if wanted else None
        if wanted and middleware is None:
            from k8s_otel.webhook._wsgi import WSGIMiddleware

            middleware = WSGIMiddleware(wrapped)
            _tracer_for(middleware)
            instance.__dict__[_MIDDLEWARE_KEY] = middleware
    except Exception:  # tracing must never stop a webhook
        _logger.debug("k8s_otel: admission instrumentation skipped a request", exc_info=True)
        middleware = None
    if middleware is None:
        return wrapped(*args, **kwargs)
    outer = trace.get_current_span()
    result = middleware(*args, **kwargs)
    if outer.is_recording() and getattr(outer, "kind", None) is SpanKind.SERVER:
        return _ClosedInSpan(result, outer)
    return result


class _ClosedInSpan:
    """The response, closed with the borrowed SERVER span current again.

    The contrib WSGI middleware closes the response after its ``use_span`` block and detaches its
    context before that, so without this the outcome (and the webhook's warning, with its trace
    ids) would be recorded outside any span.
    """

    def __init__(self, result: Iterable[bytes], span: Span) -> None:
        self._result = result
        self._span = span

    def __iter__(self) -> Any:
        return iter(self._result)

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is None:
            return
        with trace.use_span(self._span, end_on_exit=False):
            close()


# --- Starlette and FastAPI (ASGI) -----------------------------------------------------------------


class _AdmissionASGI:
    """Sends AdmissionReview-looking HTTP requests through ASGIMiddleware, everything else past it."""

    def __init__(self, app: Any) -> None:
        from k8s_otel.webhook._asgi import ASGIMiddleware

        self.app = app
        self.middleware = ASGIMiddleware(app)
        _tracer_for(self.middleware)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not (_state.enabled and self._wanted(scope)):
            await self.app(scope, receive, send)
            return
        current = trace.get_current_span()
        if (
            _state.tracer is not None
            and current.is_recording()
            and getattr(current, "kind", None) is SpanKind.SERVER
        ):
            await self._enrich(scope, receive, send, _state.tracer, _BorrowedSpan(current))
        else:
            await self.middleware(scope, receive, send)

    async def _enrich(self, scope: Any, receive: Any, send: Any, tracer: WebhookTracer, span: Span) -> None:
        """Add the admission attributes to the SERVER span around us, before its owner ends it.

        The contrib ASGI middleware and FastAPI's own telemetry end their span when the last body
        message is sent, so the outcome is recorded just before that message goes out.
        """
        review = ReviewRequest()
        replay: list[Any] = []
        try:
            body, replay = await _buffer_body(receive, tracer.max_body_bytes)
            review = tracer.record_request(span, body)
        except Exception:  # the app meets the same receive() problem itself
            _logger.debug("k8s_otel: admission request not inspected", exc_info=True)

        async def replay_receive() -> Any:
            return replay.pop(0) if replay else await receive()

        status: Optional[int] = None
        chunks: Optional[list[bytes]] = []
        size = 0
        finished = False

        async def traced_send(message: Any) -> None:
            nonlocal status, chunks, size, finished
            kind = message.get("type")
            if kind == "http.response.start":
                status = message.get("status")
            elif kind == "http.response.body" and not finished:
                if chunks is not None:
                    size += len(message.get("body", b""))
                    chunks = None if size > tracer.max_body_bytes else [*chunks, message.get("body", b"")]
                if not message.get("more_body", False):
                    finished = True
                    tracer.finish(
                        span, review, status=status, body=b"".join(chunks) if chunks is not None else None
                    )
            await send(message)

        try:
            await self.app(scope, replay_receive, traced_send)
        except BaseException as error:
            if not finished:
                tracer.finish(span, review, status=status, body=None, error=error)
            raise

    @staticmethod
    def _wanted(scope: Any) -> bool:
        try:
            if scope.get("type") != "http":
                return False
            content_type = None
            for name, value in scope.get("headers") or ():
                if name.lower() == b"content-type":
                    content_type = value.decode("latin-1")
                    break
            return looks_like_admission(
                scope.get("method", ""), content_type, scope.get("path", ""), _state.routes
            )
        except Exception:
            return False


async def _buffer_body(receive: Any, limit: int) -> tuple[Optional[bytes], list[Any]]:
    """The request body (None past ``limit`` or on a disconnect), and every message, for replay."""
    messages: list[Any] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message.get("type") != "http.request":
            return None, messages
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, messages  # the rest stays in the server's receive(), read by the app
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def _build_middleware_stack(
    wrapped: Callable[[], Any], instance: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Any:
    stack = wrapped(*args, **kwargs)
    try:
        if isinstance(stack, _AdmissionASGI):
            return stack
        inner = getattr(stack, "app", None)
        if type(stack).__name__ == "ServerErrorMiddleware" and inner is not None:
            # Inside the outermost ServerErrorMiddleware, so the stack keeps the type the contrib
            # FastAPI instrumentation checks for (it skips a stack it does not recognise).
            if not isinstance(inner, _AdmissionASGI):
                stack.app = _AdmissionASGI(inner)
            return stack
        return _AdmissionASGI(stack)
    except Exception:
        _logger.debug("k8s_otel: admission instrumentation left a middleware stack alone", exc_info=True)
        return stack


class AdmissionInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Admission spans for Flask and Starlette/FastAPI apps, with no code in the app.

    ``instrument()`` takes the options every webhook entry point takes (``WebhookOptions``), so a
    zero-code webhook can be tuned like a wrapped one. Two are also read from the environment when
    not given, since ``opentelemetry-instrument`` passes none: ``paths``
    (``K8S_OTEL_ADMISSION_ROUTES``, comma-separated paths or patterns) and ``webhook_type``
    (``K8S_OTEL_ADMISSION_WEBHOOK_TYPE``). Requests on other paths get no span from us at all (the
    contrib instrumentations own them). ``routes=`` (a comma-separated string) is the old name of
    ``paths``: it still works for one release, with a DeprecationWarning.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # Flask and Starlette are each optional: whichever is installed is instrumented

    def instrument(
        self,
        *,
        tracer_provider: Optional[trace.TracerProvider] = None,
        trust: TrustArgument = "trust",
        webhook_type: Optional[str] = None,
        record_user: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        record_exception_messages: Optional[bool] = None,
        paths: PathFilter = None,
        fast_reader: bool = True,
        **kwargs: Any,
    ) -> None:
        """Instrument Flask and Starlette/FastAPI (``kwargs``: ``BaseInstrumentor``'s own, and the
        deprecated ``routes``)."""
        super().instrument(
            tracer_provider=tracer_provider,
            trust=trust,
            webhook_type=webhook_type,
            record_user=record_user,
            max_body_bytes=max_body_bytes,
            record_exception_messages=record_exception_messages,
            paths=paths,
            fast_reader=fast_reader,
            **kwargs,
        )

    def _instrument(self, **kwargs: Any) -> None:
        paths = kwargs.get("paths")
        routes = kwargs.get("routes")
        if routes is not None:
            warnings.warn(
                "AdmissionInstrumentor.instrument(routes=...) is deprecated: use paths=[...] "
                "(the same paths and patterns, as a collection), the name every webhook entry point takes",
                DeprecationWarning,
                stacklevel=4,
            )
        if paths is None:
            parsed = parse_routes(os.environ.get(ROUTES_ENV) if routes is None else routes)
            for problem in parsed.problems:
                _logger.error("k8s_otel: %s", problem)
            paths = parsed.patterns or None
        webhook_type = kwargs.get("webhook_type") or _webhook_type()
        options = WebhookOptions(
            tracer_provider=kwargs.get("tracer_provider"),
            trust=kwargs.get("trust", "trust"),
            webhook_type=webhook_type,
            record_user=kwargs.get("record_user", False),
            max_body_bytes=kwargs.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES),
            record_exception_messages=kwargs.get("record_exception_messages"),
            paths=paths,
            fast_reader=kwargs.get("fast_reader", True),
        )
        _state.tracer = _EnrichingWebhookTracer(options)
        _state.routes = _state.tracer.accepts_path
        self._patched: list[tuple[Any, str]] = []
        for module, owner, method, wrapper in (
            ("flask.app", "Flask", "wsgi_app", _flask_wsgi_app),
            ("starlette.applications", "Starlette", "build_middleware_stack", _build_middleware_stack),
            ("fastapi.applications", "FastAPI", "build_middleware_stack", _build_middleware_stack),
        ):
            try:
                imported = __import__(module, fromlist=[owner])
            except ImportError:
                continue
            wrap_function_wrapper(module, f"{owner}.{method}", wrapper)
            self._patched.append((getattr(imported, owner), method))
        _state.enabled = True

    def _uninstrument(self, **kwargs: Any) -> None:
        _state.enabled = False  # stacks and apps already built pass everything through
        _state.routes = _every_path
        for owner, method in getattr(self, "_patched", []):
            unwrap(owner, method)
        self._patched = []
