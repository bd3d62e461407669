"""One vocabulary: every attribute key is spelled once, in ``k8s_otel._attributes``, and one rule
decides it (kube-apiserver's keys where a span joins the apiserver's, the OTel conventions elsewhere)."""

from __future__ import annotations

import ast
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fake_cluster import FakeCluster
from k8s_otel import _attributes
from k8s_otel.instrumentation._kopf import KopfInstrumentor
from k8s_otel.instrumentation._kubernetes import KubernetesClientInstrumentor
from k8s_otel.objects import reconcile_span
from k8s_otel.webhook import WSGIMiddleware
from recording import recording_provider
from test_instrumentation_kopf import Operator, example, wait_for
from webhook_support import make_wsgi_app, review

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "k8s_otel"
KEYS = _attributes.keys()
# Keys that are also ordinary words (JSON field names of Kubernetes objects): checked only where an
# attribute key goes. Dotted and odd-cased keys are checked everywhere.
WORD_KEYS = {key for key in KEYS.values() if re.fullmatch(r"[a-z]+", key)}
# The same text that is not an attribute key: the X.509 short name of ``userId`` in a subject DN, and
# the pod's own downward-API ``fieldRef`` path that doctor tells a manifest to set.
NOT_KEYS = {("src/k8s_otel/webhook/_tls.py", "UID"), ("src/k8s_otel/_resource.py", "metadata.uid")}


def _attribute_key_nodes(tree: ast.AST) -> list[ast.expr]:
    """The expressions used as attribute keys: ``set_attribute(KEY, …)``, the keys of a dict given as
    ``attributes=``/to ``set_attributes``/``Link``/``Resource``, ``attributes[KEY]`` and
    ``attributes.get(KEY)`` (also on ``.resource``/``.attributes`` of a span)."""
    found: list[ast.expr] = []

    def dict_keys(node: ast.AST) -> None:
        if isinstance(node, ast.Dict):
            found.extend(key for key in node.keys if key is not None)

    def is_attributes(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):  # span.attributes, span.resource, resource.attributes
            return "attributes" in node.attr or node.attr == "resource"
        name = getattr(node, "id", "")  # a local dict of attributes (a ``resource`` local is JSON)
        return isinstance(name, str) and ("attributes" in name or name in ("explicit", "http"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "set_attribute" and node.args:
                found.append(node.args[0])
            if name in ("set_attributes", "Resource", "Link", "add_event") and len(node.args) >= 1:
                for arg in node.args:
                    dict_keys(arg)
            for keyword in node.keywords:
                if keyword.arg == "attributes":
                    dict_keys(keyword.value)
            if (
                name in ("get", "setdefault", "add")
                and isinstance(func, ast.Attribute)
                and node.args
                and (
                    is_attributes(func.value)
                    or (isinstance(func.value, ast.Name) and func.value.id == "keys")
                )
            ):
                found.append(node.args[0])
        elif isinstance(node, ast.Subscript) and is_attributes(node.value):
            found.append(node.slice)
        elif (
            isinstance(node, ast.Compare)
            and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
            and any(is_attributes(c) for c in node.comparators)
        ):
            found.append(node.left)
    return found


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(ROOT) if ROOT in path.parents else path.name
    problems = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in KEYS.values()
            and node.value not in WORD_KEYS
            and (str(where), node.value) not in NOT_KEYS
        ):
            problems.append(f"{where}:{node.lineno}: {node.value!r} is spelled outside _attributes")
    for node in _attribute_key_nodes(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            problems.append(f"{where}:{node.lineno}: attribute key {node.value!r} is a literal")
        elif isinstance(node, ast.JoinedStr):
            problems.append(f"{where}:{node.lineno}: attribute key built from a format string")
    return problems


def test_every_key_is_spelled_once_in_the_attributes_module() -> None:
    modules = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "_attributes.py")
    assert len(modules) > 40
    assert [problem for path in modules for problem in _violations(path)] == []


def test_the_checker_finds_literal_keys(tmp_path: Path) -> None:
    """A test that cannot fail is a defect: each form the checker knows is caught, JSON fields are not."""
    sample = tmp_path / "sample.py"
    source = (
        "span.set_attribute('namespace', 1)\n"
        "span.set_attributes({'kopf.retry': 1})\n"
        "tracer.start_span('x', attributes={'verb': 'GET'})\n"
        "attributes['name'] = 'x'\n"
        "span.resource.get('team')\n"
        "x = 'k8s.namespace.name'\n"
        "span.set_attribute(f'k8s.{kind}.name', 1)\n"
        "metadata.get('name')\n"  # a JSON field, not a key: allowed
        "resource.get('group')\n"  # a JSON mapping named resource: allowed
    )
    sample.write_text(source)
    problems = _violations(sample)
    assert sorted(int(problem.split(":")[1]) for problem in problems) == [1, 2, 2, 3, 4, 5, 6, 7]
    assert "'k8s.namespace.name' is spelled outside _attributes" in problems[0]


def test_published_constants_are_the_ones_used() -> None:
    from opentelemetry.semconv.attributes import error_attributes, http_attributes, service_attributes

    assert _attributes.ERROR_TYPE == error_attributes.ERROR_TYPE == "error.type"
    assert _attributes.HTTP_RESPONSE_STATUS_CODE == http_attributes.HTTP_RESPONSE_STATUS_CODE
    assert _attributes.SERVICE_NAME == service_attributes.SERVICE_NAME == "service.name"
    assert _attributes.K8S_NAMESPACE_NAME == "k8s.namespace.name"
    # One fact, one key: no two constants spell the same key.
    values = list(KEYS.values())
    assert sorted({v for v in values if values.count(v) > 1}) == []


def test_the_conventions_page_lists_every_key() -> None:
    docs = (ROOT / "docs" / "conventions.md").read_text()
    section = docs[docs.index("## Attribute keys") :]
    # Each key in backticks in the key column of a table row, not just mentioned in prose.
    cells = {
        cell.strip()
        for line in section.splitlines()
        if line.startswith("| `")
        for cell in [line.split("|")[1]]
    }
    listed = {match for cell in cells for match in re.findall(r"`([^`]+)`", cell)}
    assert sorted(set(KEYS.values()) - listed) == []
    assert sorted(listed - set(KEYS.values())) == []


# --- the rule, on real spans ----------------------------------------------------------------------


def _keys_holding(span: ReadableSpan, value: str) -> list[str]:
    return sorted(key for key, held in (span.attributes or {}).items() if held == value)


@pytest.fixture
def instrumented() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider, memory = recording_provider()
    kopf_instrumentor, client_instrumentor = KopfInstrumentor(), KubernetesClientInstrumentor()
    kopf_instrumentor.instrument(tracer_provider=provider)
    client_instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider, memory
    finally:
        kopf_instrumentor.uninstrument()
        client_instrumentor.uninstrument()


def test_kopf_webhook_client_and_reconcile_spans_carry_the_namespace_under_one_key(
    instrumented: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The same object in team-a, seen by each adapter: one key for its namespace, and its name."""
    provider, exporter = instrumented
    with FakeCluster().running() as cluster:
        made = _observe_one_object(provider, exporter, cluster)

    by_kind: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        if "team-a" in (span.attributes or {}).values():
            scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
            by_kind.setdefault(f"{span.kind.name} {scope}", []).append(span)
    assert set(by_kind) >= {
        "CONSUMER k8s_otel.instrumentation.kopf",  # the handler
        "CLIENT k8s_otel.instrumentation.kopf",  # kopf's own API call
        "CLIENT k8s_otel.instrumentation.kubernetes",  # the kubernetes client
        "SERVER k8s_otel.webhook",  # the admission webhook
        "CONSUMER test",  # the reconcile span
    }, sorted(by_kind)
    for kind, members in by_kind.items():
        for span in members:
            assert _keys_holding(span, "team-a") == ["k8s.namespace.name"], (kind, span.name)
            assert (span.attributes or {}).get("name") == "ex1", (kind, span.name)
    # The AdmissionReview uid and the object's uid are different facts with different keys.
    [server] = by_kind["SERVER k8s_otel.webhook"]
    [handler] = by_kind["CONSUMER k8s_otel.instrumentation.kopf"]
    [reconcile] = by_kind["CONSUMER test"]
    assert (server.attributes or {})["UID"] == review()["request"]["uid"]
    for span in (handler, reconcile):
        assert "UID" not in (span.attributes or {})
        assert (span.attributes or {})["metadata.uid"] == made["metadata"]["uid"]


def _observe_one_object(
    provider: TracerProvider, exporter: InMemorySpanExporter, cluster: FakeCluster
) -> dict[str, Any]:
    operator = Operator(cluster, exporter)
    operator.noop(kopf.on.create, id="created")
    with operator.running():
        made = cluster.create("kopfexamples", example("ex1", namespace="team-a"))
        operator.wait_spans("kopf.on.create kopfexamples.kopf.dev")
        # the kopf handler's patch is a CLIENT span through kopf's own session
        wait_for(lambda: [s for s in operator.spans() if s.kind.name == "CLIENT"])
        # a kubernetes-client read of the same object: a CLIENT span
        configuration = kubernetes.client.Configuration(host=cluster.host)
        configuration.retries = 0
        api = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(configuration))
        api.get_namespaced_custom_object("kopf.dev", "v1", "team-a", "kopfexamples", "ex1")
    # the admission webhook's SERVER span for a review of the same object
    app = WSGIMiddleware(make_wsgi_app(provider), tracer_provider=provider)
    body = json.dumps(
        review(
            name="ex1",
            namespace="team-a",
            resource={"group": "kopf.dev", "version": "v1", "resource": "kopfexamples"},
        )
    ).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/validate",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "https",
    }
    result = app(environ, lambda *_: None)
    try:
        assert b'"allowed": true' in b"".join(result)
    finally:
        result.close()  # type: ignore[attr-defined]  # the span ends when the server closes it
    # a reconcile span (KEP-5915) for the object as stored
    with reconcile_span("reconcile", made, tracer=provider.get_tracer("test")):
        pass
    return made
