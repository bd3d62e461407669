"""The admission-webhook span, shared by the WSGI and ASGI wrappers and the handler decorator.

The SERVER span starts in the context kube-apiserver sent (or links to it, per the trust policy),
so it is a child of the apiserver's ``HTTP POST`` client span, itself under ``Call validating
webhook`` / ``Call mutating webhook``. Its attributes reuse that span's keys (``UID``,
``operation``, ``resource``, …) so one query joins both sides; the rest follow the OpenTelemetry
conventions (``k8s.namespace.name``, ``http.*``), see ``k8s_otel._attributes``. When the span is not sampled, the
request goes through untouched: no body is buffered, nothing is parsed. Only requests that look
like an AdmissionReview (POST, a JSON content type, a route the ``paths`` option accepts) are read.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from k8s_otel import __version__
from k8s_otel._admission import ReviewRequest, ReviewResponse, check_review_response, parse_review_request
from k8s_otel._attributes import (
    ALLOWED,
    CLIENT_ADDRESS,
    DRY_RUN,
    ERROR_TYPE,
    GROUPS,
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
    K8S_NAMESPACE_NAME,
    KIND,
    MATCHED_RESOURCE,
    NAME,
    NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT,
    NETWORK_PROTOCOL_VERSION,
    OPERATION,
    PATCH_OPERATIONS,
    PATCH_TYPE,
    PROBLEMS,
    RESOURCE,
    REVIEW_VERSION,
    SERVER_ADDRESS,
    SERVER_PORT,
    STATUS_CODE,
    SUBRESOURCE,
    UID,
    URL_PATH,
    URL_QUERY,
    URL_SCHEME,
    USER_AGENT_ORIGINAL,
    USERNAME,
    WARNINGS,
    WEBHOOK_TYPE,
)
from k8s_otel._errors import MAX_ATTRIBUTE_LENGTH, bounded, record_error, record_messages_from_env
from k8s_otel._exceptions import InvalidArgumentError, check_tracer_provider
from k8s_otel._propagation import extract_from_values
from k8s_otel._trust import Caller, TrustArgument, TrustPolicy

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "PathFilter",
    "WebhookMiddleware",
    "WebhookOptions",
    "WebhookTracer",
    "attribute_keys",
    "name_after_route",
    "span_name",
]

_logger = logging.getLogger("k8s_otel.webhook")

DEFAULT_MAX_BODY_BYTES = 8 << 20
"""Bodies larger than this are passed through without being read for attributes (8 MiB)."""

SCOPE = "k8s_otel.webhook"
_MAX_NAME_PATH = 128
_KNOWN_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
WEBHOOK_TYPES = ("validating", "mutating")

DISCONNECTED = "the client disconnected before the response was complete"

NOT_READ = ReviewRequest()

PathFilter = Union[Collection[str], Callable[[str], bool], None]
"""Which paths' POSTs are admission reviews: paths or shell-style patterns (``*`` spans ``/`` too),
a function of the path, or None (every path)."""

_PATTERN_CHARACTERS = frozenset("*?[")


def span_name(method: str, target: Optional[str]) -> str:
    """The admission span's name, one rule for every entry point: the HTTP server convention.

    ``<method> <target>``, where the target is the matched route or, for a POST, the path (webhook
    paths are few and fixed: ``clientConfig.service.path``; a hostile long one is cut); the bare
    method without one. A method the convention does not know is ``HTTP``.
    """
    known = method if method == "POST" or method in _KNOWN_METHODS else "HTTP"
    return f"{known} {target[:_MAX_NAME_PATH]}" if target else known


def name_after_route(span: Span, method: str, route: Any) -> None:
    """Once the framework has matched a route, name the span after its template. Never raises."""
    try:
        if isinstance(route, str) and route:
            span.update_name(span_name(method, route))
            span.set_attribute(HTTP_ROUTE, bounded(route))
    except Exception:  # a broken span: keep the name we have
        return


def path_matcher(paths: PathFilter) -> Optional[Callable[[str], bool]]:
    """A test for ``paths`` (None: every path). Exact paths are a set lookup; patterns use fnmatch;
    a function that raises rejects the path (it is not inspected; the request is never failed)."""
    if paths is None:
        return None
    if callable(paths):
        test = paths

        def guarded(path: str) -> bool:
            try:
                return bool(test(path))
            except Exception:  # a broken filter: do not inspect, never fail the request
                return False

        return guarded
    exact = frozenset(p for p in paths if _PATTERN_CHARACTERS.isdisjoint(p))
    patterns = tuple(p for p in paths if not _PATTERN_CHARACTERS.isdisjoint(p))
    if not patterns:
        return exact.__contains__
    return lambda path: path in exact or any(fnmatch.fnmatchcase(path, p) for p in patterns)


@dataclass(frozen=True)
class WebhookOptions:
    """The options every admission-webhook entry point takes: one name, type, default and meaning.

    ``WSGIMiddleware``, ``ASGIMiddleware``, ``admission_handler``, ``instrument_flask_app``,
    ``instrument_fastapi_app`` and ``AdmissionInstrumentor.instrument`` each take exactly these as
    keyword arguments and pass them through here, where they are checked (a bad one raises
    ``InvalidArgumentError`` naming it, when the app is wrapped, never per request).

    - ``tracer_provider``: where the spans go (None: the global provider, looked up on first use);
    - ``trust``: the incoming ``traceparent``'s fate: a ``TrustPolicy``, ``"trust"`` (parent),
      ``"link"`` (new root with a link), ``"kube-apiserver"`` (kube-apiserver's own rule), or a rule
      ``(Caller) -> bool`` deciding per request;
    - ``webhook_type``: ``"validating"``/``"mutating"`` enables kube-apiserver's patch checks;
    - ``record_user``: record the end user's name and groups (off by default);
    - ``max_body_bytes``: larger requests and responses pass through without being read;
    - ``record_exception_messages``: record an exception's text (None:
      ``K8S_OTEL_RECORD_EXCEPTION_MESSAGES``);
    - ``paths``: which paths' POSTs are admission reviews (``PathFilter``; None: every path);
    - ``fast_reader``: read a review in kube-apiserver's field order from its prefix and tail only.
    """

    tracer_provider: Optional[trace.TracerProvider] = None
    trust: TrustArgument = "trust"
    webhook_type: Optional[str] = None
    record_user: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    record_exception_messages: Optional[bool] = None
    paths: PathFilter = None
    fast_reader: bool = True

    def __post_init__(self) -> None:
        check_tracer_provider(self.tracer_provider, "webhook options")
        if self.webhook_type is not None and self.webhook_type not in WEBHOOK_TYPES:
            raise InvalidArgumentError(
                f"webhook_type must be 'validating', 'mutating' or None, not {self.webhook_type!r}"
            )
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int):
            raise InvalidArgumentError(
                f"max_body_bytes must be a whole number of bytes, not {type(self.max_body_bytes).__name__}"
            )
        if self.max_body_bytes < 0:
            raise InvalidArgumentError(f"max_body_bytes must not be negative, not {self.max_body_bytes!r}")
        if isinstance(self.paths, (str, bytes)):
            raise InvalidArgumentError(
                f"paths must be a collection of paths or a function, not the string {self.paths!r}"
            )
        if self.paths is not None and not callable(self.paths):
            bad = [p for p in self.paths if not isinstance(p, str)]
            if bad:
                raise InvalidArgumentError(f"paths must hold strings, not {type(bad[0]).__name__}")
        for name in ("record_user", "fast_reader"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgumentError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if self.record_exception_messages is not None and not isinstance(
            self.record_exception_messages, bool
        ):
            raise InvalidArgumentError(
                f"record_exception_messages must be True, False or None, not {self.record_exception_messages!r}"
            )
        TrustPolicy.parse(self.trust)  # a bad policy raises here, naming what it was given


def attribute_keys() -> tuple[str, ...]:
    """Every admission key the wrappers may set (tests check that docs/webhooks.md lists each one)."""
    return (
        UID, OPERATION, RESOURCE, SUBRESOURCE, NAME, K8S_NAMESPACE_NAME, KIND, REVIEW_VERSION, MATCHED_RESOURCE,
        DRY_RUN, USERNAME, GROUPS, ALLOWED, STATUS_CODE, PATCH_TYPE, PATCH_OPERATIONS, WARNINGS, PROBLEMS,
        WEBHOOK_TYPE,
    )  # fmt: skip


def is_json_content_type(value: Optional[str]) -> bool:
    """``application/json`` (any parameters, any case) or a ``+json`` type: what a review is sent as."""
    if not value:
        return False
    media = value.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _shown_content_type(value: Optional[str]) -> str:
    if not value:
        return "request has no Content-Type"
    text = value[:64].encode("ascii", "backslashreplace").decode("ascii")
    return f"request Content-Type is {text!r}"


class WebhookTracer:
    """Starts and finishes admission spans. One per wrapped app; thread- and task-safe."""

    def __init__(self, options: Optional[WebhookOptions] = None) -> None:
        options = options if options is not None else WebhookOptions()
        self.options = options
        self._tracer_provider = options.tracer_provider
        self._tracer: Optional[trace.Tracer] = None
        self.policy = TrustPolicy.parse(options.trust)
        self.webhook_type = options.webhook_type
        self.record_user = options.record_user
        self.max_body_bytes = options.max_body_bytes
        self.record_exception_messages = (
            record_messages_from_env()
            if options.record_exception_messages is None
            else options.record_exception_messages
        )
        self._accepts = path_matcher(options.paths)
        self.fast_reader = options.fast_reader

    @property
    def tracer(self) -> trace.Tracer:
        # Looked up on first use, so that wrapping an app before configure() still works.
        if self._tracer is None:
            self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=self._tracer_provider)
        return self._tracer

    def start(
        self,
        method: str,
        path: str,
        traceparent: Optional[str],
        tracestate: Optional[str],
        baggage: Optional[str],
        route: Optional[str] = None,
        caller: Optional[Callable[[], Caller]] = None,
    ) -> tuple[Span, Context]:
        """Start the SERVER span; returns it and the context to run the app in.

        ``caller`` makes the trust rule's Caller; it is called only when the policy has a rule.
        """
        incoming = extract_from_values(traceparent, tracestate, baggage)
        parent, links = self.policy.resolve(incoming, caller=caller)
        span = self.tracer.start_span(
            span_name(method, route or (path if method == "POST" else None)),
            context=parent,
            kind=SpanKind.SERVER,
            links=links,
        )
        return span, trace.set_span_in_context(span, parent)

    def inspection(self, method: str, path: str, content_type: Optional[str]) -> tuple[bool, Optional[str]]:
        """Whether to read the body of this request, and the problem to record when it is not read.

        Only what looks like an AdmissionReview is read: a POST with a JSON content type on a path
        the ``paths`` option accepts. Anything else passes through unbuffered and unparsed.
        """
        if method != "POST" or not self.accepts_path(path):
            return False, None
        if not is_json_content_type(content_type):
            return False, f"{_shown_content_type(content_type)}, not application/json: not inspected"
        return True, None

    def accepts_path(self, path: str) -> bool:
        """Whether the ``paths`` option takes POSTs to ``path`` for admission reviews."""
        return self._accepts is None or self._accepts(path)

    @staticmethod
    def not_inspected(span: Span, problem: Optional[str]) -> ReviewRequest:
        """The request was not read; record why, when there is something to say."""
        if problem is None:
            return NOT_READ
        span.set_attribute(PROBLEMS, (problem,))
        return ReviewRequest(problems=(problem,))

    def record_request(
        self, span: Span, body: Union[bytes, Mapping[str, Any], None], http: Optional[dict[str, Any]] = None
    ) -> ReviewRequest:
        """Set the request attributes from the body (None: too large), with ``http`` (the HTTP
        attributes, set in the same call). Never raises."""
        try:
            return self._record_request(span, body, http or {})
        except Exception as error:  # telemetry never breaks the webhook
            _logger.debug("k8s_otel: failed to record the admission request", exc_info=True)
            return ReviewRequest(problems=(f"request could not be read: {type(error).__name__}",))

    def _record_request(
        self, span: Span, body: Union[bytes, Mapping[str, Any], None], attributes: dict[str, Any]
    ) -> ReviewRequest:
        if body is None:
            problem = f"request body larger than {self.max_body_bytes} bytes: not inspected"
            attributes[PROBLEMS] = (problem,)
            span.set_attributes(attributes)
            return ReviewRequest(problems=(problem,))
        review = parse_review_request(body, fast=self.fast_reader)
        if review.api_version:
            attributes[REVIEW_VERSION] = bounded(review.api_version)
        if review.uid is not None:
            attributes[UID] = bounded(review.uid)
        for key, value in (
            (OPERATION, review.operation),
            (RESOURCE, review.resource),
            (MATCHED_RESOURCE, review.matched_resource),
            (NAME, review.name),
            (K8S_NAMESPACE_NAME, review.namespace),
            (KIND, review.kind),
        ):
            if value:
                attributes[key] = bounded(value)
        if review.has_request:
            attributes[SUBRESOURCE] = bounded(review.subresource)  # "" when none, as the apiserver sets it
        if review.dry_run is not None:
            attributes[DRY_RUN] = review.dry_run
        if self.record_user:
            attributes[USERNAME] = bounded(review.username)
            attributes[GROUPS] = review.groups
        if self.webhook_type:
            attributes[WEBHOOK_TYPE] = self.webhook_type
        if review.problems:
            attributes[PROBLEMS] = review.problems
        span.set_attributes(attributes)
        return review

    def finish(
        self,
        span: Span,
        review: ReviewRequest,
        *,
        status: Optional[int],
        body: Union[bytes, Mapping[str, Any], None],
        error: Optional[BaseException] = None,
        disconnected: bool = False,
    ) -> None:
        """Record the outcome and end the span. Never raises; the span always ends.

        ``body`` None: the response was too large or absent. ``disconnected``: the client went
        away before the response was complete, which is not the webhook's error.
        """
        try:
            self._record_outcome(
                span, review, status=status, body=body, error=error, disconnected=disconnected
            )
        except Exception:  # never let tracing break a webhook
            _logger.debug("k8s_otel: failed to record the admission response", exc_info=True)
        finally:
            try:
                span.end()
            except Exception:
                _logger.debug("k8s_otel: failed to end the admission span", exc_info=True)

    def _record_outcome(
        self,
        span: Span,
        review: ReviewRequest,
        *,
        status: Optional[int],
        body: Union[bytes, Mapping[str, Any], None],
        error: Optional[BaseException],
        disconnected: bool,
    ) -> None:
        problems = list(review.problems)
        attributes: dict[str, Any] = {}  # set in one call: the SDK's cost is per call and per key
        if status is not None:
            attributes[HTTP_RESPONSE_STATUS_CODE] = status
        if error is not None:
            record_error(span, error, record_message=self.record_exception_messages)
            attributes[ERROR_TYPE] = type(error).__qualname__
        elif status is not None and status >= 500:
            attributes[ERROR_TYPE] = str(status)
            span.set_status(Status(StatusCode.ERROR))
        if status is not None and not 200 <= status < 300 and error is None and review is not NOT_READ:
            problems.append(
                f"HTTP {status}: kube-apiserver treats any status outside 2xx as a failed webhook call"
            )
        answered = error is None and (status is None or 200 <= status < 300)  # None: no HTTP layer
        if disconnected:
            problems.append(DISCONNECTED)
        elif review.is_review and body is not None and answered:
            outcome = check_review_response(review, body, self.webhook_type)
            _response_attributes(attributes, outcome)
            if outcome.problems:
                _logger.warning(
                    "k8s_otel: kube-apiserver would reject this admission response (uid %s): %s",
                    bounded(review.uid or "", 64),
                    "; ".join(outcome.problems),
                )
            problems.extend(outcome.problems)
        elif review.is_review and body is None and answered:
            problems.append(f"response body larger than {self.max_body_bytes} bytes: not inspected")
        if problems:
            attributes[PROBLEMS] = problems
        if attributes:
            span.set_attributes(attributes)


def _response_attributes(attributes: dict[str, Any], outcome: ReviewResponse) -> None:
    if outcome.allowed is not None:
        attributes[ALLOWED] = outcome.allowed
    if outcome.status_code is not None:
        attributes[STATUS_CODE] = outcome.status_code
    if outcome.patch_type is not None:
        attributes[PATCH_TYPE] = outcome.patch_type
    if outcome.patch_operations is not None:
        attributes[PATCH_OPERATIONS] = outcome.patch_operations
    attributes[WARNINGS] = outcome.warnings


def http_server_attributes(
    *,
    method: str,
    scheme: str,
    path: str,
    query: str,
    host: Optional[str],
    server: Optional[tuple[str, Optional[int]]],
    client: Optional[tuple[str, Optional[int]]],
    user_agent: Optional[str],
    protocol_version: Optional[str],
    route: Optional[str] = None,
) -> dict[str, Any]:
    """The stable OTel HTTP server attributes for the admission span, each value bounded."""
    attributes: dict[str, Any] = {
        HTTP_REQUEST_METHOD: bounded(method, 64),
        URL_SCHEME: bounded(scheme, 64),
        URL_PATH: bounded(path),
    }
    if query:
        attributes[URL_QUERY] = bounded(query)
    address, port = _host_port(host) if host else (server or (None, None))
    if address:
        attributes[SERVER_ADDRESS] = bounded(address, 255)
    if port:
        attributes[SERVER_PORT] = port
    if client:
        attributes[CLIENT_ADDRESS] = attributes[NETWORK_PEER_ADDRESS] = bounded(client[0], 255)
        if client[1]:
            attributes[NETWORK_PEER_PORT] = client[1]
    if user_agent:
        attributes[USER_AGENT_ORIGINAL] = bounded(user_agent, MAX_ATTRIBUTE_LENGTH)
    if protocol_version:
        attributes[NETWORK_PROTOCOL_VERSION] = bounded(protocol_version, 16)
    if route:
        attributes[HTTP_ROUTE] = bounded(route)
    return attributes


def _host_port(host: str) -> tuple[Optional[str], Optional[int]]:
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and len(port) <= 5 and not name.endswith(":"):
        return name.strip("[]"), int(port)
    return host.strip("[]"), None


def is_recording(span: Span) -> bool:
    """``span.is_recording()``, False when a broken span raises: the request then goes on untraced."""
    try:
        return bool(span.is_recording())
    except Exception:
        _logger.debug("k8s_otel: a span failed to say whether it records", exc_info=True)
        return False


def detach(token: object) -> None:
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
    except Exception:  # a token from another context (a generator closed elsewhere): harmless
        _logger.debug("k8s_otel: context detach failed", exc_info=True)


class WebhookMiddleware:
    """What the WSGI and ASGI wrappers share: the wrapped app and their WebhookTracer.

    Options: ``WebhookOptions`` (the same keyword arguments on every webhook entry point).
    """

    def __init__(
        self,
        app: Any,
        *,
        tracer_provider: Optional[trace.TracerProvider] = None,
        trust: TrustArgument = "trust",
        webhook_type: Optional[str] = None,
        record_user: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        record_exception_messages: Optional[bool] = None,
        paths: PathFilter = None,
        fast_reader: bool = True,
    ) -> None:
        self.app = app
        self.tracer = WebhookTracer(
            WebhookOptions(
                tracer_provider=tracer_provider,
                trust=trust,
                webhook_type=webhook_type,
                record_user=record_user,
                max_body_bytes=max_body_bytes,
                record_exception_messages=record_exception_messages,
                paths=paths,
                fast_reader=fast_reader,
            )
        )
