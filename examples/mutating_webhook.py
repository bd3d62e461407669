"""A mutating admission webhook in Flask, traced by k8s-otel.

    pip install './k8s-otel[flask]'                     # from a clone: not on PyPI yet
    K8S_OTEL_TRACING_CONFIG=manifests/tracing-apiserver.yaml python mutating_webhook.py

Every Pod, Deployment or other object without a ``team`` label gets ``team: unassigned`` (a
JSONPatch). ``webhook_type="mutating"`` turns on kube-apiserver's checks for mutating responses:
the span records the patch type and the number of operations (never the patch itself), and an
answer kube-apiserver would reject (a patch without ``patchType``, a patch that is not a JSON list)
shows in ``admission.problems``. kube-apiserver's ``traceparent`` makes the span a child of its
``Call mutating webhook`` span.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from flask import Flask, jsonify, request

import k8s_otel
from k8s_otel.webhook import instrument_flask_app

LABEL, DEFAULT = "team", "unassigned"

app = Flask(__name__)


def label_patch(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSONPatch that adds the default label, or nothing when the object has one."""
    labels = (obj.get("metadata") or {}).get("labels")
    if isinstance(labels, dict) and LABEL in labels:
        return []
    if isinstance(labels, dict):
        return [{"op": "add", "path": f"/metadata/labels/{LABEL}", "value": DEFAULT}]
    return [{"op": "add", "path": "/metadata/labels", "value": {LABEL: DEFAULT}}]


@app.post("/mutate")
def mutate() -> Any:
    review = request.get_json(force=True)
    admission = review.get("request") or {}
    response: dict[str, Any] = {"uid": admission.get("uid", ""), "allowed": True}
    patch = label_patch(admission.get("object") or {})
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return jsonify({"apiVersion": review.get("apiVersion"), "kind": "AdmissionReview", "response": response})


@app.get("/healthz")
def healthz() -> str:
    return "ok"


def create_app() -> Flask:
    """Configure tracing (env and K8S_OTEL_TRACING_CONFIG) and wrap the app; call once per process."""
    k8s_otel.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "labels-webhook"))
    instrument_flask_app(app, webhook_type="mutating")
    return app


if __name__ == "__main__":
    # In a cluster, serve TLS (kube-apiserver only calls https webhooks), e.g. with gunicorn:
    #   gunicorn --certfile tls.crt --keyfile tls.key -b 0.0.0.0:8443 'mutating_webhook:create_app()'
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "8443")))
