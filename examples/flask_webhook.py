"""A validating admission webhook in Flask, traced by k8s-otel.

    pip install './k8s-otel[flask]'                     # from a clone: not on PyPI yet
    K8S_OTEL_TRACING_CONFIG=manifests/tracing-apiserver.yaml python flask_webhook.py

Deployments may have at most 10 replicas. kube-apiserver's `traceparent` makes this webhook's span a
child of the apiserver's `Call validating webhook` span.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request

import k8s_otel
from k8s_otel.webhook import instrument_flask_app

MAX_REPLICAS = 10

app = Flask(__name__)


@app.post("/validate")
def validate() -> Any:
    review = request.get_json(force=True)
    admission = review.get("request") or {}
    replicas = ((admission.get("object") or {}).get("spec") or {}).get("replicas", 1)
    allowed = isinstance(replicas, int) and replicas <= MAX_REPLICAS
    response: dict[str, Any] = {"uid": admission.get("uid", ""), "allowed": allowed}
    if not allowed:
        response["status"] = {"code": 403, "message": f"replicas must be at most {MAX_REPLICAS}"}
    return jsonify({"apiVersion": review.get("apiVersion"), "kind": "AdmissionReview", "response": response})


@app.get("/healthz")
def healthz() -> str:
    return "ok"


def create_app() -> Flask:
    """Configure tracing (env and K8S_OTEL_TRACING_CONFIG) and wrap the app; call once per process."""
    k8s_otel.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "replicas-webhook"))
    instrument_flask_app(app, webhook_type="validating")
    return app


if __name__ == "__main__":
    # In a cluster, serve TLS (kube-apiserver only calls https webhooks), e.g. with gunicorn:
    #   gunicorn --certfile tls.crt --keyfile tls.key -b 0.0.0.0:8443 'flask_webhook:create_app()'
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "8443")))
