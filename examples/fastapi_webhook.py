"""A validating admission webhook in FastAPI, traced by k8s-otel.

    pip install './k8s-otel[fastapi]' uvicorn           # from a clone: not on PyPI yet
    K8S_OTEL_TRACING_CONFIG=manifests/tracing-apiserver.yaml uvicorn fastapi_webhook:app --port 8443

Pods must set resource limits. kube-apiserver's `traceparent` makes this webhook's span a child of
the apiserver's `Call validating webhook` span.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

import k8s_otel
from k8s_otel.webhook import instrument_fastapi_app

app = FastAPI()


@app.post("/validate")
async def validate(review: dict[str, Any]) -> dict[str, Any]:
    admission = review.get("request") or {}
    containers = (((admission.get("object") or {}).get("spec") or {}).get("containers")) or []
    unlimited = [c.get("name", "?") for c in containers if not (c.get("resources") or {}).get("limits")]
    response: dict[str, Any] = {"uid": admission.get("uid", ""), "allowed": not unlimited}
    if unlimited:
        response["status"] = {"code": 403, "message": f"containers without limits: {', '.join(unlimited)}"}
    return {"apiVersion": review.get("apiVersion"), "kind": "AdmissionReview", "response": response}


@app.get("/healthz")
async def healthz() -> str:
    return "ok"


k8s_otel.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "limits-webhook"))
instrument_fastapi_app(app, webhook_type="validating")
