"""The demo's asynchronous half (KEP-5915): stamp on admission, a linked reconcile, a stamped child.

Development tooling, not library: it drives the real stamping webhook app and the real
``k8s_otel.objects`` readers with a simulated kube-apiserver and a simulated watch.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any, Optional

from opentelemetry import trace

from k8s_otel._attributes import CONFIGURATION, OPERATION, WEBHOOK
from k8s_otel._propagation import TRACEPARENT, inject
from k8s_otel.webhook._stamp import DEFAULT_PATH, wsgi_app

__all__ = ["exported_span_count", "run_async_demo"]

#: Spans each step's trace adds: the Deployment's admission (server, call, client, the webhook's
#: span); the reconcile with the ReplicaSet's admission inside it; nothing new; the last reconcile.
_SPANS_PER_STEP = (4, 5, 0, 1)


def exported_span_count(steps: list[tuple[str, str]]) -> int:
    """How many spans the steps' sampled traces exported (a traceparent's flags say sampled)."""
    total = 0
    for (_, traceparent), spans in zip(steps, _SPANS_PER_STEP):
        parts = traceparent.split("-")
        if len(parts) == 4 and int(parts[3], 16) & 1:
            total += spans
    return total


def _apply_stamp_patch(obj: dict[str, Any], operations: list[dict[str, Any]]) -> None:
    """Apply the operations ``stamp_review`` writes (``add``/``remove`` under /metadata) to ``obj``."""
    for operation in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        target: Any = obj
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        if operation["op"] == "add":
            target[parts[-1]] = operation["value"]
        else:
            target.pop(parts[-1], None)


def run_async_demo(
    apiserver_provider: trace.TracerProvider,
    webhook_provider: Optional[trace.TracerProvider] = None,
    controller_provider: Optional[trace.TracerProvider] = None,
) -> list[tuple[str, str]]:
    """KEP-5915's asynchronous half, in process: returns ``(step, traceparent)`` for each stamp and link.

    A simulated kube-apiserver admits a Deployment (server span, ``Call mutating webhook``, the
    webhook's HTTP POST) through the real stamping webhook app, applies its patch and stores the
    object; a controller takes it from the watch and reconciles it in a CONSUMER root linked to the
    stamp; it creates a ReplicaSet, which the same apiserver and webhook stamp in the reconcile's
    trace; a second controller's reconcile links to that. Each side's spans go to its own provider
    (the apiserver's by default), so the drawing shows three services.
    """
    from opentelemetry.trace import SpanKind

    from k8s_otel.objects import reconcile_span, stored_span_context

    apiserver = apiserver_provider.get_tracer("k8s.io/component-base/tracing")
    webhook = wsgi_app(tracer_provider=webhook_provider or apiserver_provider)
    watch: list[dict[str, Any]] = []
    steps: list[tuple[str, str]] = []

    def traceparent(span_context: Optional[trace.SpanContext]) -> str:
        if span_context is None:
            return "-"
        return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"

    def admit(obj: dict[str, Any], group: str, resource: str) -> None:
        path = f"/apis/{group}/v1/namespaces/{{:namespace}}/{resource}"
        with apiserver.start_as_current_span(f"POST {path}", kind=SpanKind.SERVER):
            with (
                apiserver.start_as_current_span(
                    "Call mutating webhook",
                    attributes={
                        CONFIGURATION: "k8s-otel-stamp",
                        WEBHOOK: "stamp.k8s-otel.io",
                        OPERATION: "CREATE",
                    },
                ),
                apiserver.start_as_current_span("HTTP POST", kind=SpanKind.CLIENT),
            ):
                headers: dict[str, str] = {}
                inject(headers)
                review = {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": {
                        "uid": f"demo-{len(steps)}",
                        "kind": {"group": group, "version": "v1", "kind": obj["kind"]},
                        "resource": {"group": group, "version": "v1", "resource": resource},
                        "name": obj["metadata"]["name"],
                        "namespace": "default",
                        "operation": "CREATE",
                        "userInfo": {"username": "demo"},
                        "object": obj,
                        "dryRun": False,
                    },
                }
                body = json.dumps(review).encode()
                environ = {
                    "REQUEST_METHOD": "POST",
                    "PATH_INFO": DEFAULT_PATH,
                    "CONTENT_LENGTH": str(len(body)),
                    "HTTP_TRACEPARENT": headers.get(TRACEPARENT, ""),
                    "wsgi.input": io.BytesIO(body),
                    "wsgi.url_scheme": "https",
                }
                result = webhook(environ, lambda *_: None)
                try:
                    answer = json.loads(b"".join(result))
                finally:
                    getattr(result, "close", lambda: None)()
            patch = answer["response"].get("patch")
            if patch:
                _apply_stamp_patch(obj, json.loads(base64.b64decode(patch)))
            watch.append(obj)  # stored; the watch delivers it

    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2},
    }
    admit(deployment, "apps", "deployments")  # kubectl apply
    steps.append(("Deployment web stamped by the webhook", traceparent(stored_span_context(deployment))))
    controllers = controller_provider or apiserver_provider
    parent = watch.pop(0)
    with reconcile_span("reconcile Deployment", parent, tracer_provider=controllers) as span:
        steps.append(
            ("deployment controller: CONSUMER root linked to it", traceparent(span.get_span_context()))
        )
        replicaset = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-5d8f7", "namespace": "default"},
            "spec": {"replicas": 2},
        }
        admit(replicaset, "apps", "replicasets")  # the controller's create, inside its reconcile
    steps.append(
        (
            "ReplicaSet web-5d8f7 stamped in the reconcile's trace",
            traceparent(stored_span_context(replicaset)),
        )
    )
    child = watch.pop(0)
    with reconcile_span("reconcile ReplicaSet", child, tracer_provider=controllers) as span:
        steps.append(
            ("replicaset controller: CONSUMER root linked to it", traceparent(span.get_span_context()))
        )
    return steps
