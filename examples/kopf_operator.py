"""A kopf operator traced by k8s-otel.

    pip install 'k8s-otel[kopf,kubernetes]'
    kubectl apply -f manifests/kopfexample-crd.yaml
    OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4317 \
    OTEL_TRACES_SAMPLER=k8s_per_million OTEL_TRACES_SAMPLER_ARG=10000 \
    kopf run kopf_operator.py --standalone -A

As in the Kubernetes components, with no sampling rate set no new trace is sampled; 10000 per
million samples 1% of reconciles (and everything under a sampled parent).

Each KopfExample asks for ``spec.size`` pods labelled ``app=<its name>``; the operator counts them
and writes ``status.ready``. Every handler call is a span (``kopf.on.create kopfexamples.kopf.dev``)
with the object's identity; the pod listing (kubernetes client) and kopf's status PATCH are its
children. Each handler span is a CONSUMER root (KEP-5915) linked to the context stored in the
object's ``tracing.k8s.io/traceparent`` annotation (written by the stamping webhook,
``k8s_otel.objects.inject_context``, or an instrumented client), and to ``k8s-otel.io/traceparent``
as well, the older key this example also reads.
"""

from __future__ import annotations

import os
from typing import Any

import kopf
import kubernetes

import k8s_otel
from k8s_otel.instrumentation.kopf import DEFAULT_TRACEPARENT_ANNOTATION, KopfInstrumentor
from k8s_otel.instrumentation.kubernetes import KubernetesClientInstrumentor

# Before kopf starts: the provider (env and K8S_OTEL_TRACING_CONFIG), then the instrumentors.
k8s_otel.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "kopfexample-operator"))
KopfInstrumentor().instrument(traceparent_annotation=DEFAULT_TRACEPARENT_ANNOTATION)
KubernetesClientInstrumentor().instrument()

GROUP, VERSION, PLURAL = "kopf.dev", "v1", "kopfexamples"


@kopf.on.startup()
def load_client_configuration(**_: Any) -> None:
    """The kubernetes client reads the same credentials as kopf: in-cluster, else KUBECONFIG."""
    kubernetes.config.load_config()


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
def reconcile(spec: kopf.Spec, name: str, namespace: str, patch: kopf.Patch, **_: Any) -> dict[str, Any]:
    size = spec.get("size")
    if not isinstance(size, int) or size < 0:
        raise kopf.PermanentError(f"spec.size must be a non-negative integer, not {size!r}")
    pods = kubernetes.client.CoreV1Api().list_namespaced_pod(namespace, label_selector=f"app={name}")
    running = sum(1 for pod in pods.items if pod.status and pod.status.phase == "Running")
    if running < size and spec.get("wait", False):
        raise kopf.TemporaryError(f"{running} of {size} pods are running", delay=30)
    patch.status["ready"] = f"{running}/{size}"
    return {"observed": running}
