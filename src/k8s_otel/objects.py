"""Trace context stored in Kubernetes objects (KEP-5915): stamp on write, link on reconcile.

A writer stamps its current W3C context into the object's annotations under ``tracing.k8s.io/``
(``tracing.k8s.io/traceparent``; the carrier appends the propagator's key to the prefix). A
reconcile, which may run minutes later and be triggered by several writes, is a new root span of
kind CONSUMER with a span *link* to the stored context, never a child: a link grafts nothing into
the writer's trace and decides nothing about sampling (unless ``PerMillionSampler(...,
sample_linked=True)`` is chosen). The stored value is untrusted input: it is bounded, parsed by the
same W3C code as headers, and a malformed one is ignored.

Three object forms are understood: JSON-shaped mappings (manifests, kopf bodies and patches, custom
objects), ``kubernetes``/``kubernetes_asyncio`` models (``obj.metadata.annotations``), and bare
metadata (a mapping or a ``V1ObjectMeta``).
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Callable, Optional

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import Attributes

from k8s_otel import __version__
from k8s_otel._attributes import (
    API_GROUP,
    API_VERSION,
    K8S_NAMESPACE_NAME,
    LINK_ANNOTATION,
    NAME,
    OBJECT_KEYS_BY_KIND,
    OBJECT_KEYS_BY_RESOURCE,
    OBJECT_UID,
)
from k8s_otel._errors import bounded, record_error, record_messages_from_env
from k8s_otel._exceptions import check_tracer_provider
from k8s_otel._propagation import BAGGAGE, TRACEPARENT, TRACESTATE, extract_from_values, inject

__all__ = [
    "ANNOTATION_PREFIX",
    "BAGGAGE_ANNOTATION",
    "TRACEPARENT_ANNOTATION",
    "TRACESTATE_ANNOTATION",
    "AnnotationCarrier",
    "annotation_getter",
    "annotation_setter",
    "extract_context",
    "inject_context",
    "reconcile_span",
    "start_reconcile_span",
    "stored_span_context",
]

_logger = logging.getLogger("k8s_otel.objects")

SCOPE = "k8s_otel.objects"
ANNOTATION_PREFIX = "tracing.k8s.io/"
TRACEPARENT_ANNOTATION = ANNOTATION_PREFIX + TRACEPARENT
TRACESTATE_ANNOTATION = ANNOTATION_PREFIX + TRACESTATE
BAGGAGE_ANNOTATION = ANNOTATION_PREFIX + BAGGAGE

_STAMPED = ((TRACESTATE, TRACESTATE_ANNOTATION),)
_STAMPED_WITH_BAGGAGE = ((TRACESTATE, TRACESTATE_ANNOTATION), (BAGGAGE, BAGGAGE_ANNOTATION))

# Bigger than any valid value (a traceparent is 55 bytes; tracestate and baggage are bounded again
# by their parsers): a hostile annotation is dropped before anything scans it.
_MAX_VALUE_LENGTH = 8192

# Keys that only a bare metadata mapping has at its top level (an object has them under metadata).
_METADATA_KEYS = frozenset({"annotations", "name", "generateName", "namespace", "uid", "labels"})
_OBJECT_KEYS = frozenset({"apiVersion", "kind", "spec", "status", "data"})


# --- the three object forms --------------------------------------------------------------------


def _is_bare_metadata(obj: Mapping[str, Any]) -> bool:
    return (
        "metadata" not in obj
        and not _OBJECT_KEYS.intersection(obj)
        and bool(_METADATA_KEYS.intersection(obj))
    )


def _metadata_of(obj: Any) -> Any:
    """The object's metadata (mapping or model), or None when it has none."""
    if isinstance(obj, Mapping):
        if _is_bare_metadata(obj):
            return obj
        return obj.get("metadata")
    if hasattr(obj, "annotations") and not hasattr(obj, "metadata"):
        return obj  # a V1ObjectMeta
    return getattr(obj, "metadata", None)


def _annotations_of(obj: Any) -> Optional[Mapping[str, Any]]:
    """The object's annotations for reading, or None."""
    if type(obj) is dict:  # the common case, without the ABC checks
        metadata = obj.get("metadata")
        if type(metadata) is dict:
            annotations = metadata.get("annotations")
            return annotations if type(annotations) is dict else None
    metadata = _metadata_of(obj)
    if isinstance(metadata, Mapping):
        annotations = metadata.get("annotations")
    else:
        annotations = getattr(metadata, "annotations", None)
    return annotations if isinstance(annotations, Mapping) else None


def _new_object_meta(model: Any) -> Any:
    """A ``V1ObjectMeta`` from the same client package as ``model`` (kubernetes or kubernetes_asyncio)."""
    import importlib

    package = type(model).__module__.split(".", 1)[0]
    return importlib.import_module(f"{package}.client").V1ObjectMeta()


def _writable_annotations(obj: Any) -> Optional[MutableMapping[str, Any]]:
    """The object's annotations for writing, created where they are missing; None when impossible."""
    if type(obj) is dict:  # the common case, without the ABC checks
        found = obj.get("metadata")
        if type(found) is dict:
            existing = found.get("annotations")
            if type(existing) is dict:
                return existing
    if isinstance(obj, Mapping):
        if not isinstance(obj, MutableMapping):
            return None  # read-only (a kopf Body): stamp its patch instead
        if _is_bare_metadata(obj):
            metadata: Any = obj
        else:
            metadata = obj.get("metadata")
            if metadata is None:
                metadata = obj["metadata"] = {}
    elif hasattr(obj, "annotations") and not hasattr(obj, "metadata"):
        metadata = obj
    elif hasattr(obj, "metadata"):
        metadata = obj.metadata
        if metadata is None:
            obj.metadata = _new_object_meta(obj)
            metadata = obj.metadata  # kubernetes 37's pydantic models copy what is assigned
    else:
        return None
    if isinstance(metadata, MutableMapping):
        annotations = metadata.get("annotations")
        if annotations is None:
            annotations = metadata["annotations"] = {}
    elif isinstance(metadata, Mapping) or metadata is None:
        return None  # read-only (a kopf Body): stamp its patch instead
    else:
        annotations = getattr(metadata, "annotations", None)
        if annotations is None:
            metadata.annotations = {}
            annotations = metadata.annotations
    return annotations if isinstance(annotations, MutableMapping) else None


class AnnotationCarrier:
    """A text-map carrier over an object's ``tracing.k8s.io/`` annotations.

    A propagator's key ``k`` is the annotation ``tracing.k8s.io/k``. Use it with any
    ``TextMapPropagator`` and ``annotation_getter``/``annotation_setter``; ``inject_context`` and
    ``extract_context`` are the short way for the Kubernetes propagators.
    """

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def get(self, key: str) -> Optional[str]:
        """The annotation's value when it is a string of a sane length, else None."""
        return _value(_annotations_of(self.obj), ANNOTATION_PREFIX + key)

    def set(self, key: str, value: str) -> bool:
        """Write the annotation; False when the object cannot take it (read-only, no metadata)."""
        annotations = _writable_annotations(self.obj)
        if annotations is None:
            return False
        annotations[ANNOTATION_PREFIX + key] = value
        return True

    def delete(self, key: str) -> None:
        """Remove the annotation, if the object has it and can lose it."""
        annotations = _annotations_of(self.obj)
        if isinstance(annotations, MutableMapping):
            annotations.pop(ANNOTATION_PREFIX + key, None)

    def keys(self) -> list[str]:
        """The propagator keys present (annotation names without the prefix)."""
        annotations = _annotations_of(self.obj) or {}
        return [
            k[len(ANNOTATION_PREFIX) :]
            for k in annotations
            if isinstance(k, str) and k.startswith(ANNOTATION_PREFIX)
        ]


def _value(annotations: Optional[Mapping[str, Any]], name: str) -> Optional[str]:
    """Annotation ``name`` when it is a string of a sane length, else None (logged at debug)."""
    if annotations is None:
        return None
    value = annotations.get(name)
    if value is None or (type(value) is str and len(value) <= _MAX_VALUE_LENGTH):
        return value
    _logger.debug("k8s_otel: ignoring a %s annotation that is not a short string", name)
    return None


class _AnnotationGetter(Getter[AnnotationCarrier]):
    def get(self, carrier: AnnotationCarrier, key: str) -> Optional[list[str]]:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: AnnotationCarrier) -> list[str]:
        return carrier.keys()


class _AnnotationSetter(Setter[AnnotationCarrier]):
    def set(self, carrier: AnnotationCarrier, key: str, value: str) -> None:
        carrier.set(key, value)


annotation_getter = _AnnotationGetter()
annotation_setter = _AnnotationSetter()


# --- inject and extract ------------------------------------------------------------------------


def inject_context(obj: Any, context: Optional[Context] = None, *, baggage: bool = False) -> bool:
    """Stamp the span context of ``context`` (default: the current one) into ``obj``'s annotations.

    Sampled or not, as the KEP does: an unsampled write overwrites a stale sampled stamp, so the
    stored flag is always the last writer's. A ``tracestate`` is written with it, and a stale one
    removed. Baggage only with ``baggage=True`` (it goes to everyone who can read the object).
    Without a valid span context nothing is written. Returns whether a stamp was written; never
    raises.
    """
    try:
        headers: dict[str, str] = {}
        inject(headers, context)
        traceparent = headers.get(TRACEPARENT)
        if traceparent is None:
            return False
        annotations = _writable_annotations(obj)
        if annotations is None:
            return False
        annotations[TRACEPARENT_ANNOTATION] = traceparent
        for key, name in _STAMPED_WITH_BAGGAGE if baggage else _STAMPED:
            value = headers.get(key)
            if value:
                annotations[name] = value
            elif name in annotations:
                del annotations[name]  # it belonged to an older stamp
        return True
    except Exception:  # telemetry never breaks the writer
        _logger.debug("k8s_otel: could not stamp the trace context into an object", exc_info=True)
        return False


def extract_context(obj: Any, context: Optional[Context] = None, *, baggage: bool = False) -> Context:
    """The context stored in ``obj``'s annotations, on top of ``context`` (default: an empty one).

    A malformed or oversized value is ignored (logged at debug level), never raised. Baggage is
    read only with ``baggage=True``: whoever can write the object chooses it.
    """
    base = context if context is not None else Context()
    try:
        annotations = _annotations_of(obj)
        if annotations is None:
            return base
        traceparent = _value(annotations, TRACEPARENT_ANNOTATION)
        stored_baggage = _value(annotations, BAGGAGE_ANNOTATION) if baggage else None
        if traceparent is None and stored_baggage is None:
            return base
        tracestate = _value(annotations, TRACESTATE_ANNOTATION) if traceparent is not None else None
        result = extract_from_values(traceparent, tracestate, stored_baggage, base)
        if traceparent is not None and not trace.get_current_span(result).get_span_context().is_valid:
            _logger.debug("k8s_otel: ignoring a malformed %s annotation", TRACEPARENT_ANNOTATION)
        return result
    except Exception:
        _logger.debug("k8s_otel: could not read the trace context of an object", exc_info=True)
        return base


def stored_span_context(obj: Any) -> Optional[trace.SpanContext]:
    """The valid span context stored in ``obj``, or None."""
    span_context = trace.get_current_span(extract_context(obj)).get_span_context()
    return span_context if span_context.is_valid else None


# --- the object's identity ---------------------------------------------------------------------


def semconv_keys(group: str, *, plural: str = "", kind: str = "") -> Optional[tuple[str, Optional[str]]]:
    """The conventions' (name key, uid key) for the kind (``k8s.pod.name``, ``k8s.pod.uid``), or None."""
    if plural:
        return OBJECT_KEYS_BY_RESOURCE.get((group, plural))
    return OBJECT_KEYS_BY_KIND.get((group, kind))


def object_identity(metadata: Any, *, group: str = "", plural: str = "", kind: str = "") -> dict[str, Any]:
    """The object's identity as every adapter gives it: ``name``, ``k8s.namespace.name``,
    ``metadata.uid``, and the semantic conventions' ``k8s.<kind>.name``/``.uid`` where they exist.
    Values are bounded."""
    if isinstance(metadata, Mapping):
        name, namespace, uid = metadata.get("name"), metadata.get("namespace"), metadata.get("uid")
    else:
        name = getattr(metadata, "name", None)
        namespace = getattr(metadata, "namespace", None)
        uid = getattr(metadata, "uid", None)
    attributes: dict[str, Any] = {}
    if name:
        attributes[NAME] = bounded(str(name))
    if namespace:
        attributes[K8S_NAMESPACE_NAME] = bounded(str(namespace))
    if uid:
        attributes[OBJECT_UID] = bounded(str(uid))
    keys = semconv_keys(group, plural=plural, kind=kind)
    if keys is not None:
        name_key, uid_key = keys
        if name:
            attributes[name_key] = attributes[NAME]
        if uid and uid_key is not None:
            attributes[uid_key] = attributes[OBJECT_UID]
    return attributes


def _type_identity(obj: Any) -> tuple[str, str, dict[str, Any]]:
    """(group, kind, attributes) from the object's ``apiVersion``/``kind``."""
    if isinstance(obj, Mapping):
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
    else:
        api_version, kind = getattr(obj, "api_version", None), getattr(obj, "kind", None)
    attributes: dict[str, Any] = {}
    group = ""
    if isinstance(api_version, str) and api_version:
        group, _, version = api_version.rpartition("/")
        if group:
            attributes[API_GROUP] = bounded(group)
        attributes[API_VERSION] = bounded(version)
    return group, kind if isinstance(kind, str) else "", attributes


# --- reconcile spans ---------------------------------------------------------------------------


_GLOBAL_TRACER = trace.ProxyTracer(SCOPE, __version__)
_TRACERS: weakref.WeakKeyDictionary[trace.TracerProvider, trace.Tracer] = weakref.WeakKeyDictionary()
_last: tuple[Callable[[], Optional[trace.TracerProvider]], trace.Tracer] = (
    lambda: None,
    trace.NoOpTracer(),
)  # the last provider asked for (weakly) and its tracer, replaced as one tuple


def _tracer(
    tracer_provider: Optional[trace.TracerProvider], tracer: Optional[trace.Tracer], stacklevel: int
) -> trace.Tracer:
    """Our tracer from ``tracer_provider`` (one per provider, kept while it lives), or the global one."""
    if tracer is None:
        if tracer_provider is None:  # the API's proxy follows the global provider, set now or later
            return _GLOBAL_TRACER
        global _last
        last_provider, last_tracer = _last
        if last_provider() is tracer_provider:  # a controller has one provider: the usual case
            return last_tracer
        check_tracer_provider(tracer_provider, "start_reconcile_span()")
        try:
            found = _TRACERS.get(tracer_provider)
            if found is None:
                found = _TRACERS[tracer_provider] = trace.get_tracer(
                    SCOPE, __version__, tracer_provider=tracer_provider
                )
            _last = (weakref.ref(tracer_provider), found)
        except TypeError:  # a provider that takes no weak reference
            return trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        return found
    warnings.warn(
        "tracer= is deprecated: pass tracer_provider=, the name every k8s_otel entry point takes",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return tracer


def start_reconcile_span(
    name: str,
    obj: Any,
    *,
    tracer_provider: Optional[trace.TracerProvider] = None,
    attributes: Attributes = None,
    tracer: Optional[trace.Tracer] = None,
) -> Span:
    """Start a new root CONSUMER span for reconciling ``obj``, linked to the context stored in it.

    Always a root (whatever span is current): the reconcile is its own trace. With no valid stored
    context the span has no link. The object's identity is added when the span is recording. The
    caller ends the span (or uses ``reconcile_span``). ``tracer_provider``: where the span goes
    (default: the global one); ``tracer`` is its deprecated predecessor (a DeprecationWarning).
    """
    return _start(name, obj, _tracer(tracer_provider, tracer, 3), attributes)


def _start(name: str, obj: Any, tracer: trace.Tracer, attributes: Attributes) -> Span:
    links: Optional[list[Link]] = None
    try:
        span_context = stored_span_context(obj)
        if span_context is not None:
            links = [Link(span_context, {LINK_ANNOTATION: TRACEPARENT_ANNOTATION})]
    except Exception:
        _logger.debug("k8s_otel: no link for a reconcile span", exc_info=True)
    try:
        span = tracer.start_span(name, Context(), kind=SpanKind.CONSUMER, attributes=attributes, links=links)
    except Exception:  # a broken span processor or sampler: the reconcile runs untraced
        _logger.debug("k8s_otel: could not start a reconcile span", exc_info=True)
        return trace.INVALID_SPAN
    if span.is_recording():  # unsampled: the object is not read
        try:
            group, kind, keys = _type_identity(obj)
            keys.update(object_identity(_metadata_of(obj), group=group, kind=kind))
            for key in list(keys):
                if attributes and key in attributes:
                    del keys[key]  # the caller's attributes win
            span.set_attributes(keys)
        except Exception:
            _logger.debug("k8s_otel: no identity for a reconcile span", exc_info=True)
    return span


@contextmanager
def reconcile_span(
    name: str,
    obj: Any,
    *,
    tracer_provider: Optional[trace.TracerProvider] = None,
    attributes: Attributes = None,
    record_exception_messages: Optional[bool] = None,
    tracer: Optional[trace.Tracer] = None,
) -> Iterator[Span]:
    """``start_reconcile_span`` as a context manager that makes the span current and ends it.

    An exception from the body is recorded (type and frames; its message only with
    ``record_exception_messages``, default ``K8S_OTEL_RECORD_EXCEPTION_MESSAGES``) and re-raised.
    Objects written inside the block with ``inject_context`` (or the client instrumentation's
    ``inject_object_context``) are stamped with this span.
    """
    # stacklevel 4: _tracer, this generator, contextlib's __enter__, the caller's ``with``.
    span = _start(name, obj, _tracer(tracer_provider, tracer, 4), attributes)
    with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
        try:
            yield span
        except Exception as error:
            if span.is_recording():
                messages = (
                    record_messages_from_env()
                    if record_exception_messages is None
                    else record_exception_messages
                )
                record_error(span, error, record_message=messages)
            raise
        finally:
            try:
                span.end()
            except Exception:
                _logger.debug("k8s_otel: a span processor failed in on_end", exc_info=True)
