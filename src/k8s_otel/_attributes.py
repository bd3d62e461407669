"""Every span, link, event and resource attribute key the package sets or reads, and the rule.

The rule, applied to every adapter:

1. **kube-apiserver's exact keys where a span joins kube-apiserver's spans**, for the facts
   kube-apiserver writes on the span it joins. The admission webhook's SERVER span is the child of
   the apiserver's ``Call validating webhook`` / ``Call mutating webhook`` span (through otelhttp's
   ``HTTP POST``), so it carries that span's keys as the dispatchers write them: ``configuration``,
   ``webhook``, ``resource`` (``GroupVersionResource.String()``), ``subresource``, ``operation``,
   ``UID`` (the AdmissionReview uid). A query for ``UID=<uid>`` finds both sides.
2. **The OpenTelemetry semantic conventions everywhere else**, for every fact they name: the
   object's namespace is ``k8s.namespace.name`` on every span (webhook, API client, kopf handler,
   reconcile), resource attributes are ``k8s.*``/``container.*``/``service.*``, HTTP is
   ``http.*``/``url.*``/``server.*``/``client.*``/``network.*``/``user_agent.*``, failures are
   ``error.type`` and the ``exception.*`` event keys; ``k8s.<kind>.name``/``.uid`` where the
   conventions name the kind (pods, deployments, …).
3. Facts that neither names keep kube-apiserver's spelling for the same fact on its REST spans
   (``api-group``, ``api-version``, ``resource``, ``subresource``, ``name``, ``verb``), so a
   controller's span reads like the apiserver's; what only we know is namespaced (``kopf.*``,
   ``admission.*``, ``k8s_otel.*``) or named by its AdmissionReview field path (``request.dryRun``).

One fact has one key: ``resource`` is the one overload kube-apiserver itself makes (the webhook
call span writes ``apps/v1, Resource=deployments``, its REST spans the plural ``deployments``), and
each of our spans follows the apiserver span it sits beside. Published constants are imported from
``opentelemetry-semantic-conventions`` (stable modules only; they cost about 2 ms to import); the
``k8s.*`` and ``container.*`` modules became stable in 0.65b0, so with an older package the same
strings are spelled here. docs/conventions.md lists every key (a test keeps the two in step).
"""

from __future__ import annotations

from typing import Optional

from opentelemetry.semconv.attributes import client_attributes as _client
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.semconv.attributes import exception_attributes as _exception
from opentelemetry.semconv.attributes import http_attributes as _http
from opentelemetry.semconv.attributes import network_attributes as _network
from opentelemetry.semconv.attributes import server_attributes as _server
from opentelemetry.semconv.attributes import service_attributes as _service
from opentelemetry.semconv.attributes import url_attributes as _url
from opentelemetry.semconv.attributes import user_agent_attributes as _user_agent

__all__ = [
    "ALLOWED",
    "API_GROUP",
    "API_VERSION",
    "CLIENT_ADDRESS",
    "CONFIGURATION",
    "CONTAINER_ID",
    "DEMO_MAX_REPLICAS",
    "DRY_RUN",
    "ERROR_TYPE",
    "EXCEPTION_ESCAPED",
    "EXCEPTION_EVENT",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_STACKTRACE",
    "EXCEPTION_TYPE",
    "GROUPS",
    "HTTP_REQUEST_METHOD",
    "HTTP_RESPONSE_STATUS_CODE",
    "HTTP_ROUTE",
    "HTTP_TARGET",
    "K8S_CLUSTER_NAME",
    "K8S_CLUSTER_UID",
    "K8S_CONTAINER_NAME",
    "K8S_CRONJOB_NAME",
    "K8S_CRONJOB_UID",
    "K8S_DAEMONSET_NAME",
    "K8S_DAEMONSET_UID",
    "K8S_DEPLOYMENT_NAME",
    "K8S_DEPLOYMENT_UID",
    "K8S_JOB_NAME",
    "K8S_JOB_UID",
    "K8S_NAMESPACE_NAME",
    "K8S_NODE_NAME",
    "K8S_NODE_UID",
    "K8S_POD_IP",
    "K8S_POD_NAME",
    "K8S_POD_UID",
    "K8S_REPLICASET_NAME",
    "K8S_REPLICASET_UID",
    "K8S_STATEFULSET_NAME",
    "K8S_STATEFULSET_UID",
    "KIND",
    "KOPF_EVENT_TYPE",
    "KOPF_HANDLER_ID",
    "KOPF_HANDLER_TYPE",
    "KOPF_OUTCOME",
    "KOPF_RETRY",
    "KOPF_RETRY_DELAY",
    "LINK_ANNOTATION",
    "MATCHED_RESOURCE",
    "NAME",
    "NETWORK_PEER_ADDRESS",
    "NETWORK_PEER_PORT",
    "NETWORK_PROTOCOL_VERSION",
    "OBJECT_KEYS_BY_KIND",
    "OBJECT_KEYS_BY_RESOURCE",
    "OBJECT_UID",
    "OPERATION",
    "PATCH_OPERATIONS",
    "PATCH_TYPE",
    "PROBLEMS",
    "RESOURCE",
    "REVIEW_VERSION",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "SERVICE_NAME",
    "STATUS_CODE",
    "SUBRESOURCE",
    "TELEMETRY_AUTO_VERSION",
    "UID",
    "URL_FULL",
    "URL_PATH",
    "URL_QUERY",
    "URL_SCHEME",
    "USERNAME",
    "USER_AGENT_ORIGINAL",
    "VERB",
    "WARNINGS",
    "WEBHOOK",
    "WEBHOOK_TYPE",
    "keys",
]

try:  # stable since opentelemetry-semantic-conventions 0.65b0
    from opentelemetry.semconv.attributes import (  # type: ignore[attr-defined,unused-ignore]
        container_attributes as _container,
    )
    from opentelemetry.semconv.attributes import k8s_attributes as _k8s  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # pragma: no cover - older semantic conventions: the same keys, spelled below
    _container = _k8s = None  # type: ignore[assignment,unused-ignore]


def _semconv(module: object, name: str, key: str) -> str:
    """The published constant when the installed conventions have it, else the same key."""
    return str(getattr(module, name, key))


# --- 1. kube-apiserver's admission call span (the webhook SERVER span joins it) ----------------
# kubernetes/apiserver pkg/admission/plugin/webhook/{mutating,validating}/dispatcher.go.
CONFIGURATION = "configuration"
WEBHOOK = "webhook"
RESOURCE = "resource"
SUBRESOURCE = "subresource"
OPERATION = "operation"
UID = "UID"
"""The AdmissionReview request uid, as kube-apiserver writes it on the call span (not an object's uid)."""

# --- kube-apiserver's own spans (component-base WithTracing, REST handler traceFields) -----------
HTTP_TARGET = "http.target"
"""component-base ``WithTracing`` / the apiserver server span: ``r.URL.RequestURI()``."""
API_GROUP = "api-group"
API_VERSION = "api-version"
NAME = "name"
VERB = "verb"

# --- OpenTelemetry semantic conventions: HTTP (client spans as otelhttp writes them, server spans) --
HTTP_REQUEST_METHOD = _http.HTTP_REQUEST_METHOD
HTTP_RESPONSE_STATUS_CODE = _http.HTTP_RESPONSE_STATUS_CODE
HTTP_ROUTE = _http.HTTP_ROUTE
URL_FULL = _url.URL_FULL
URL_SCHEME = _url.URL_SCHEME
URL_PATH = _url.URL_PATH
URL_QUERY = _url.URL_QUERY
SERVER_ADDRESS = _server.SERVER_ADDRESS
SERVER_PORT = _server.SERVER_PORT
CLIENT_ADDRESS = _client.CLIENT_ADDRESS
NETWORK_PEER_ADDRESS = _network.NETWORK_PEER_ADDRESS
NETWORK_PEER_PORT = _network.NETWORK_PEER_PORT
NETWORK_PROTOCOL_VERSION = _network.NETWORK_PROTOCOL_VERSION
USER_AGENT_ORIGINAL = _user_agent.USER_AGENT_ORIGINAL

# --- failures: the span attribute and the ``exception`` event --------------------------------------
ERROR_TYPE = _error.ERROR_TYPE
EXCEPTION_TYPE = _exception.EXCEPTION_TYPE
EXCEPTION_MESSAGE = _exception.EXCEPTION_MESSAGE
EXCEPTION_STACKTRACE = _exception.EXCEPTION_STACKTRACE
EXCEPTION_ESCAPED = _exception.EXCEPTION_ESCAPED
EXCEPTION_EVENT = "exception"
"""The event name (not a key) that carries the ``exception.*`` keys."""

# --- Kubernetes semantic conventions: span object identity and resource attributes ----------------
K8S_NAMESPACE_NAME = _semconv(_k8s, "K8S_NAMESPACE_NAME", "k8s.namespace.name")
"""The object's namespace on every span, and the pod's namespace on the resource."""
K8S_CLUSTER_NAME = _semconv(_k8s, "K8S_CLUSTER_NAME", "k8s.cluster.name")
K8S_CLUSTER_UID = _semconv(_k8s, "K8S_CLUSTER_UID", "k8s.cluster.uid")
K8S_POD_NAME = _semconv(_k8s, "K8S_POD_NAME", "k8s.pod.name")
K8S_POD_UID = _semconv(_k8s, "K8S_POD_UID", "k8s.pod.uid")
K8S_POD_IP = _semconv(_k8s, "K8S_POD_IP", "k8s.pod.ip")  # incubating only: spelled here
K8S_NODE_NAME = _semconv(_k8s, "K8S_NODE_NAME", "k8s.node.name")
K8S_NODE_UID = _semconv(_k8s, "K8S_NODE_UID", "k8s.node.uid")
K8S_CONTAINER_NAME = _semconv(_k8s, "K8S_CONTAINER_NAME", "k8s.container.name")
K8S_DEPLOYMENT_NAME = _semconv(_k8s, "K8S_DEPLOYMENT_NAME", "k8s.deployment.name")
K8S_DEPLOYMENT_UID = _semconv(_k8s, "K8S_DEPLOYMENT_UID", "k8s.deployment.uid")
K8S_REPLICASET_NAME = _semconv(_k8s, "K8S_REPLICASET_NAME", "k8s.replicaset.name")
K8S_REPLICASET_UID = _semconv(_k8s, "K8S_REPLICASET_UID", "k8s.replicaset.uid")
K8S_STATEFULSET_NAME = _semconv(_k8s, "K8S_STATEFULSET_NAME", "k8s.statefulset.name")
K8S_STATEFULSET_UID = _semconv(_k8s, "K8S_STATEFULSET_UID", "k8s.statefulset.uid")
K8S_DAEMONSET_NAME = _semconv(_k8s, "K8S_DAEMONSET_NAME", "k8s.daemonset.name")
K8S_DAEMONSET_UID = _semconv(_k8s, "K8S_DAEMONSET_UID", "k8s.daemonset.uid")
K8S_JOB_NAME = _semconv(_k8s, "K8S_JOB_NAME", "k8s.job.name")
K8S_JOB_UID = _semconv(_k8s, "K8S_JOB_UID", "k8s.job.uid")
K8S_CRONJOB_NAME = _semconv(_k8s, "K8S_CRONJOB_NAME", "k8s.cronjob.name")
K8S_CRONJOB_UID = _semconv(_k8s, "K8S_CRONJOB_UID", "k8s.cronjob.uid")
CONTAINER_ID = _semconv(_container, "CONTAINER_ID", "container.id")
SERVICE_NAME = _service.SERVICE_NAME
TELEMETRY_AUTO_VERSION = "telemetry.auto.version"
"""Deprecated in the conventions (incubating only), still what opentelemetry-instrument's distro sets."""

# The kinds the conventions name: (group, plural) and (group, kind) -> (name key, uid key or None).
# A Namespace's name is ``k8s.namespace.name``; the conventions give it no uid key.
_KIND_KEYS: dict[tuple[str, str, str], tuple[str, Optional[str]]] = {
    ("", "pods", "Pod"): (K8S_POD_NAME, K8S_POD_UID),
    ("", "nodes", "Node"): (K8S_NODE_NAME, K8S_NODE_UID),
    ("", "namespaces", "Namespace"): (K8S_NAMESPACE_NAME, None),
    ("apps", "deployments", "Deployment"): (K8S_DEPLOYMENT_NAME, K8S_DEPLOYMENT_UID),
    ("apps", "replicasets", "ReplicaSet"): (K8S_REPLICASET_NAME, K8S_REPLICASET_UID),
    ("apps", "statefulsets", "StatefulSet"): (K8S_STATEFULSET_NAME, K8S_STATEFULSET_UID),
    ("apps", "daemonsets", "DaemonSet"): (K8S_DAEMONSET_NAME, K8S_DAEMONSET_UID),
    ("batch", "jobs", "Job"): (K8S_JOB_NAME, K8S_JOB_UID),
    ("batch", "cronjobs", "CronJob"): (K8S_CRONJOB_NAME, K8S_CRONJOB_UID),
}
OBJECT_KEYS_BY_RESOURCE = {(group, plural): keys for (group, plural, _), keys in _KIND_KEYS.items()}
OBJECT_KEYS_BY_KIND = {(group, kind): keys for (group, _, kind), keys in _KIND_KEYS.items()}

# --- objects (KEP-5915 reconcile spans and kopf handler spans): ours ------------------------------
OBJECT_UID = "metadata.uid"
"""An object's uid, for every kind (its field path; ``UID`` is the AdmissionReview uid). Like
``name``, it is joined by ``k8s.<kind>.uid`` for the kinds the conventions name."""
LINK_ANNOTATION = "k8s_otel.link.annotation"
"""On a reconcile span's link: the annotation the stored context came from."""

# --- the admission webhook span: ours, named by the AdmissionReview field they come from ----------
KIND = "kind"
"""``GroupVersionKind.String()`` of the reviewed object (``apps/v1, Kind=Deployment``)."""
REVIEW_VERSION = "request.apiVersion"
MATCHED_RESOURCE = "request.resource"
DRY_RUN = "request.dryRun"
USERNAME = "request.userInfo.username"
GROUPS = "request.userInfo.groups"
ALLOWED = "response.allowed"
STATUS_CODE = "response.status.code"
PATCH_TYPE = "response.patchType"
PATCH_OPERATIONS = "response.patch.operations"
WARNINGS = "response.warnings.count"
PROBLEMS = "admission.problems"
WEBHOOK_TYPE = "admission.webhook.type"

# --- kopf handler spans: ours ---------------------------------------------------------------------
KOPF_HANDLER_ID = "kopf.handler.id"
KOPF_HANDLER_TYPE = "kopf.handler.type"
KOPF_EVENT_TYPE = "kopf.event.type"
KOPF_RETRY = "kopf.retry"
KOPF_OUTCOME = "kopf.outcome"
KOPF_RETRY_DELAY = "kopf.retry.delay"

# --- the CLI demo's example webhook ---------------------------------------------------------------
DEMO_MAX_REPLICAS = "policy.max_replicas"


def keys() -> dict[str, str]:
    """Every key defined here, by constant name (the tests and the docs check against this)."""
    return {
        name: value
        for name, value in globals().items()
        if name.isupper() and isinstance(value, str) and name != "EXCEPTION_EVENT"
    }
