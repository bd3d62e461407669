"""Flask and FastAPI webhooks under ``opentelemetry-instrument`` with the k8s distro, in subprocesses.

With and without the contrib instrumentations, in either load order: exactly one SERVER span per
AdmissionReview, with the admission attributes, under the incoming traceparent, delivered on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
import requests

from webhook_support import SECRET_VALUE, review
from zero_code import (
    OTLPReceiver,
    ReceivedSpan,
    distro_env,
    instrumented,
    one,
    read_report,
    server_spans,
    stop,
)

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
CONTRIB = {"flask": "flask", "fastapi": "fastapi"}
MODES = ["alone", "contrib", "contrib-first", "ours-first", "middleware"]


def wait_for_names(receiver: OTLPReceiver, names: set[str], timeout: float = 5.0) -> list[ReceivedSpan]:
    """Every span, once spans with all of ``names`` have arrived (several Export calls may carry them)."""
    deadline = time.monotonic() + timeout
    while True:
        spans = receiver.spans()
        if names <= {span.name for span in spans} or time.monotonic() > deadline:
            return spans
        time.sleep(0.02)


def mode_env(framework: str, mode: str) -> dict[str, str]:
    disabled = {
        "alone": CONTRIB[framework],
        "contrib": "",
        "contrib-first": f"{CONTRIB[framework]},k8s_admission",
        "ours-first": f"{CONTRIB[framework]},k8s_admission",
        "middleware": CONTRIB[framework],
    }[mode]
    return {"K8S_OTEL_TEST_MODE": mode, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("framework", ["flask", "fastapi"])
def test_one_server_span_per_admission_review(otlp_receiver: OTLPReceiver, framework: str, mode: str) -> None:
    env = distro_env(otlp_receiver, OTEL_PYTHON_LOG_CORRELATION="true", **mode_env(framework, mode))
    with instrumented(f"apps.{framework}_webhook", env) as process:
        port = read_report(process)["port"]
        base = f"http://127.0.0.1:{port}"
        reply = requests.post(
            f"{base}/validate", json=review(), headers={"traceparent": TRACEPARENT}, timeout=10
        )
        assert reply.status_code == 200, reply.text
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        assert requests.post(f"{base}/validate-bad-uid", json=review(), timeout=10).status_code == 200
        assert otlp_receiver.spans() == []  # the batch delay is a minute: only the SIGTERM flush sends
        # werkzeug closes a response (which ends its span) just after the client has read it.
        time.sleep(0.3)
        returncode, stderr = stop(process)
    assert returncode in (0, -signal.SIGTERM), stderr
    spans = wait_for_names(otlp_receiver, {"POST /validate", "POST /validate-bad-uid"})
    in_trace = [span for span in spans if span.trace_id == TRACE_ID]
    server = one(server_spans(in_trace), "SERVER span in the admission trace")
    assert server.parent_span_id == PARENT_ID
    assert server.name == "POST /validate"
    assert server.attributes["UID"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert server.attributes["operation"] == "UPDATE"
    assert server.attributes["resource"] == "/v1, Resource=secrets"  # the apiserver formats it so
    assert server.attributes["response.allowed"] is True
    assert server.attributes["http.response.status_code"] == 200
    # Every other span of the request is under the SERVER span, none is a second SERVER span.
    assert all(span.kind != "SERVER" for span in in_trace if span is not server)
    # The probe is no AdmissionReview: no admission attributes on whatever span it got.
    probes = [
        span
        for span in spans
        if span.attributes.get("url.path", span.attributes.get("http.target")) == "/healthz"
    ]
    assert all("UID" not in span.attributes for span in probes)
    if mode == "alone" and framework == "flask":
        assert probes == []  # nothing else traces this app
    else:
        assert probes  # the other instrumentation (contrib, or FastAPI's own) is really active
    # The bad response: flagged on its span, and the warning line carries that span's trace id.
    bad = one([s for s in server_spans(spans) if s.name == "POST /validate-bad-uid"], "bad span")
    assert bad.attributes["admission.problems"]
    warning = one([line for line in stderr.splitlines() if "would reject" in line], "warning")
    assert f"trace_id={bad.trace_id}" in warning
    # The Secret in the reviewed object never reaches a span or a log line.
    assert SECRET_VALUE not in json.dumps([span.attributes for span in spans]) and SECRET_VALUE not in stderr


def test_disabled_instrumentations_turn_it_off(otlp_receiver: OTLPReceiver) -> None:
    env = distro_env(otlp_receiver, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="flask,k8s_admission")
    with instrumented("apps.flask_webhook", env) as process:
        port = read_report(process)["port"]
        reply = requests.post(
            f"http://127.0.0.1:{port}/validate",
            json=review(),
            headers={"traceparent": TRACEPARENT},
            timeout=10,
        )
        assert reply.status_code == 200
        stop(process)
    assert otlp_receiver.spans() == []


def test_the_route_filter_leaves_other_paths_alone(otlp_receiver: OTLPReceiver) -> None:
    env = distro_env(
        otlp_receiver,
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="flask",
        K8S_OTEL_ADMISSION_ROUTES="/validate-bad-*",
    )
    with instrumented("apps.flask_webhook", env) as process:
        port = read_report(process)["port"]
        base = f"http://127.0.0.1:{port}"
        assert requests.post(f"{base}/validate", json=review(), timeout=10).status_code == 200
        assert requests.post(f"{base}/validate-bad-uid", json=review(), timeout=10).status_code == 200
        stop(process)
    spans = otlp_receiver.wait_for_spans(1, timeout=5)
    assert [span.name for span in spans] == ["POST /validate-bad-uid"]
