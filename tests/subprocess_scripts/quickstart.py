"""Run the README's Flask quickstart around an existing webhook, as a reader would (tests/test_docs.py).

``python -m subprocess_scripts.quickstart FILE``: FILE holds the quickstart block. It runs with
``app`` (an existing Flask webhook) in scope, then one AdmissionReview is posted with a
``traceparent`` and the spans are flushed to ``OTEL_EXPORTER_OTLP_ENDPOINT``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import flask

REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "u-1",
        "operation": "CREATE",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
    },
}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def existing_app() -> flask.Flask:
    app = flask.Flask("existing")

    @app.post("/validate")
    def validate() -> dict[str, Any]:
        uid = flask.request.get_json()["request"]["uid"]
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }

    return app


def main(argv: list[str]) -> None:
    namespace: dict[str, Any] = {"app": existing_app(), "__name__": "quickstart"}
    exec(compile(Path(argv[0]).read_text(encoding="utf-8"), "README.md quickstart", "exec"), namespace)
    app: flask.Flask = namespace["app"]
    answer = app.test_client().post("/validate", json=REVIEW, headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 200, answer.data
    answer.close()  # the server span ends when the WSGI response is closed
    import k8s_otel

    k8s_otel.configure(service_name="my-webhook").shutdown(10)


if __name__ == "__main__":
    main(sys.argv[1:])
