"""What the zero-code webhook apps share: the admission decision and how the test chose to instrument.

``K8S_OTEL_TEST_MODE`` says what else traces the app: ``alone`` and ``contrib`` leave it to
``opentelemetry-instrument``'s entry points; ``contrib-first`` and ``ours-first`` instrument in that
order here (the test disables both entry points), ``middleware`` wraps the app in the contrib
WSGI/ASGI middleware, as a user who added it by hand would.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable

MODE = os.environ.get("K8S_OTEL_TEST_MODE", "alone")


def decide(review: dict[str, Any], *, bad_uid: bool = False) -> dict[str, Any]:
    uid = "not-the-request-uid" if bad_uid else review["request"]["uid"]
    logging.getLogger("apps.webhook").warning("deciding %s", uid)
    return {
        "apiVersion": review["apiVersion"],
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": True},
    }


def instrument_in_order(contrib: Callable[[], Any]) -> None:
    from k8s_otel.instrumentation._admission import AdmissionInstrumentor

    if MODE == "contrib-first":
        contrib().instrument()
        AdmissionInstrumentor().instrument()
    elif MODE == "ours-first":
        AdmissionInstrumentor().instrument()
        contrib().instrument()


def report(port: int) -> None:
    print(json.dumps({"port": port, "mode": MODE}), flush=True)
