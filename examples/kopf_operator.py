"""A kopf operator traced by k8s-otel.

    pip install './k8s-otel[kopf,kubernetes]'          # from a clone: not on PyPI yet
    kubectl apply -f manifests/kopfexample-crd.yaml
    k8s-otel receive &                                  # or OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4317
    kopf run kopf_operator.py --standalone -A

So that the first run shows the reconcile trace, this example samples every reconcile unless a rate
is configured (``OTEL_TRACES_SAMPLER=k8s_per_million OTEL_TRACES_SAMPLER_ARG=10000`` for 1 %, or a
TracingConfiguration in ``K8S_OTEL_TRACING_CONFIG``). A production operator should set a rate: as in
the Kubernetes components, with none set ``configure()`` samples no new trace. Either way, kopf's
own API calls outside a handler (start-up scans, watches) start no trace of their own here: they
would be one-span traces burying the reconciles.

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
from collections.abc import Sequence
from typing import Any, Optional

import kopf
import kubernetes
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

import k8s_otel
from k8s_otel.instrumentation import KopfInstrumentor, KubernetesClientInstrumentor


class NoRootClientSpans(Sampler):
    """Drops API calls made outside any trace (kopf's start-up scans and watches); else ``inner``."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: Optional[Context],
        trace_id: int,
        name: str,
        kind: Optional[SpanKind] = None,
        attributes: Attributes = None,
        links: Optional[Sequence[Link]] = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoRootClientSpans{{{self.inner.get_description()}}}"


# Before kopf starts: the provider (env and K8S_OTEL_TRACING_CONFIG), then the instrumentors.
_rate_configured = bool(os.environ.get("OTEL_TRACES_SAMPLER") or os.environ.get("K8S_OTEL_TRACING_CONFIG"))
handle = k8s_otel.configure(
    service_name=os.environ.get("OTEL_SERVICE_NAME", "kopfexample-operator"),
    sampling_rate_per_million=None if _rate_configured else 1_000_000,
)
if hasattr(handle.tracer_provider, "sampler"):  # the SDK provider: tracers made from now on use it
    handle.tracer_provider.sampler = NoRootClientSpans(handle.tracer_provider.sampler)
KopfInstrumentor().instrument(traceparent_annotation="k8s-otel.io/traceparent")  # the older convention, too
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
