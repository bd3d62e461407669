"""A plain watch-loop controller on the ``kubernetes`` client, traced by KEP-5915 links.

    pip install 'k8s-otel[kubernetes]'
    OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4317 \
    OTEL_TRACES_SAMPLER=k8s_per_million OTEL_TRACES_SAMPLER_ARG=10000 K8S_OTEL_SAMPLE_LINKED=true \
    python watch_controller.py --namespace default

It watches ConfigMaps labelled ``k8s-otel.io/example=parent`` and gives each one a child ConfigMap
(``<name>-child``) holding a copy of its data. Each reconcile is ``reconcile_span``: a new root
CONSUMER span linked to the context stored in the parent's ``tracing.k8s.io/traceparent``
annotation (written by the stamping webhook, a KEP-5915 kube-apiserver, or an instrumented
client). The child is stamped in turn (``inject_context``), so the next controller links to this
reconcile: request -> parent -> reconcile -> child -> the next reconcile, one link at a time.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional

import kubernetes
from opentelemetry import trace

import k8s_otel
from k8s_otel.instrumentation import KubernetesClientInstrumentor
from k8s_otel.objects import inject_context, reconcile_span

SELECTOR = "k8s-otel.io/example=parent"


def child_of(parent: Any) -> dict[str, Any]:
    """The child ConfigMap the parent asks for, stamped with the current (reconcile) context."""
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{parent.metadata.name}-child", "labels": {"k8s-otel.io/example": "child"}},
        "data": dict(parent.data or {}),
    }
    inject_context(child)  # the same stamp KubernetesClientInstrumentor(inject_object_context=True) writes
    return child


def reconcile(api: kubernetes.client.CoreV1Api, parent: Any) -> str:
    """Create or update the parent's child; returns what was done."""
    namespace = parent.metadata.namespace
    child = child_of(parent)
    try:
        api.replace_namespaced_config_map(child["metadata"]["name"], namespace, child)
        return "updated"
    except kubernetes.client.ApiException as error:
        if error.status != 404:
            raise
    api.create_namespaced_config_map(namespace, child)
    return "created"


def run(
    api: kubernetes.client.CoreV1Api,
    namespace: str,
    *,
    max_events: Optional[int] = None,
    timeout: int = 300,
    tracer_provider: Optional[trace.TracerProvider] = None,
) -> int:
    """Watch the parents and reconcile each ADDED or MODIFIED one; returns how many were reconciled."""
    done = 0
    watch = kubernetes.watch.Watch()
    for event in watch.stream(
        api.list_namespaced_config_map, namespace, label_selector=SELECTOR, timeout_seconds=timeout
    ):
        if event["type"] not in ("ADDED", "MODIFIED"):
            continue
        parent = event["object"]
        with reconcile_span(
            "reconcile ConfigMap",
            parent,
            tracer_provider=tracer_provider,
            attributes={"controller": "example-child"},
        ) as span:
            span.set_attribute("outcome", reconcile(api, parent))
        done += 1
        if max_events is not None and done >= max_events:
            watch.stop()
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="default")
    options = parser.parse_args()
    k8s_otel.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "example-child-controller"))
    KubernetesClientInstrumentor().instrument()
    kubernetes.config.load_config()
    run(kubernetes.client.CoreV1Api(), options.namespace)


if __name__ == "__main__":
    main()
