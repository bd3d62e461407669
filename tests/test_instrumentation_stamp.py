"""Writers (KEP-5915): the client instrumentation stamps creates and main-resource updates, nothing else.

Real ``kubernetes`` (37) and ``kubernetes_asyncio`` clients against the stateful fake apiserver,
which records every body it receives and applies the patches.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import jsonpatch
import kubernetes
import kubernetes_asyncio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from fake_cluster import FakeCluster
from k8s_otel.instrumentation._kubernetes import KubernetesClientInstrumentor
from k8s_otel.instrumentation._stamp import stamped_body
from k8s_otel.objects import TRACEPARENT_ANNOTATION
from recording import recording_provider

TP = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with FakeCluster().running() as fake:
        yield fake


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider, _ = recording_provider()
    instrumentor = KubernetesClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider, inject_object_context=True)
    try:
        yield provider
    finally:
        instrumentor.uninstrument()


def client(cluster: FakeCluster) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration(host=cluster.host)
    configuration.retries = 0
    return kubernetes.client.ApiClient(configuration)


def configmap(name: str, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **metadata},
        "data": {"a": "1"},
    }


def deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }


def sent(cluster: FakeCluster, method: str, path: str) -> Any:
    """The last body the fake received for ``method path``."""
    [*_, (_, _, _, body)] = [b for b in cluster.bodies if b[0] == method and b[1] == path]
    return body


def sent_header(cluster: FakeCluster, method: str, path: str, name: str) -> str:
    [*_, request] = cluster.seen(method, path)
    return request.headers[name]


def stamp_of(body: Any) -> Any:
    if not isinstance(body, dict):
        return None
    return ((body.get("metadata") or {}).get("annotations") or {}).get(TRACEPARENT_ANNOTATION)


CM = "/api/v1/namespaces/default/configmaps"


def test_create_and_replace_are_stamped_with_the_calls_context(
    provider: TracerProvider, cluster: FakeCluster
) -> None:
    api = kubernetes.client.CoreV1Api(client(cluster))
    mine = configmap("cm", annotations={"team": "a"})
    original = copy.deepcopy(mine)
    with provider.get_tracer("t").start_as_current_span("reconcile"):
        api.create_namespaced_config_map("default", mine)
        stored = cluster.get("configmaps", "default", "cm")
        assert stored is not None
        stored["data"] = {"a": "2"}
        stored["metadata"]["annotations"].pop(TRACEPARENT_ANNOTATION)
        api.replace_namespaced_config_map("cm", "default", stored)
    assert mine == original  # the caller's body is never changed
    created = sent(cluster, "POST", CM)
    assert stamp_of(created) == sent_header(cluster, "POST", CM, "traceparent")
    assert created["metadata"]["annotations"]["team"] == "a"
    assert stamp_of(sent(cluster, "PUT", f"{CM}/cm")) == sent_header(
        cluster, "PUT", f"{CM}/cm", "traceparent"
    )
    assert cluster.field(
        "configmaps", "default", "cm", "metadata", "annotations", TRACEPARENT_ANNOTATION
    ) == (sent_header(cluster, "PUT", f"{CM}/cm", "traceparent"))


@pytest.mark.parametrize(
    ("content_type", "sent_as"),
    [
        (None, "application/strategic-merge-patch+json"),  # kubernetes 37: a dict as json-patch, rewritten
        ("application/merge-patch+json", "application/merge-patch+json"),
        ("application/strategic-merge-patch+json", "application/strategic-merge-patch+json"),
        ("application/apply-patch+yaml", "application/apply-patch+yaml"),
    ],
)
def test_every_object_patch_type_is_stamped(
    provider: TracerProvider, cluster: FakeCluster, content_type: str | None, sent_as: str
) -> None:
    cluster.create("configmaps", configmap("cm"))
    api_client = client(cluster)
    body: dict[str, Any] = {"data": {"a": "2"}}
    if content_type == "application/apply-patch+yaml":
        body = configmap("cm")
    with provider.get_tracer("t").start_as_current_span("reconcile"):
        if content_type is None:  # the generated API chooses (kubernetes 37: json-patch, then rewritten)
            kubernetes.client.CoreV1Api(api_client).patch_namespaced_config_map("cm", "default", body)
        else:  # older clients cannot force a content type: the request the generated API would make
            query = "?fieldManager=test" if content_type == "application/apply-patch+yaml" else ""
            api_client.rest_client.request(
                "PATCH",
                f"{cluster.host}{CM}/cm{query}",
                headers={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
            )
    assert sent_header(cluster, "PATCH", f"{CM}/cm", "content-type") == sent_as
    assert stamp_of(sent(cluster, "PATCH", f"{CM}/cm")) == sent_header(
        cluster, "PATCH", f"{CM}/cm", "traceparent"
    )
    assert cluster.field("configmaps", "default", "cm", "metadata", "annotations", TRACEPARENT_ANNOTATION)


def test_a_json_patch_is_left_alone_unless_the_add_cannot_fail(
    provider: TracerProvider, cluster: FakeCluster
) -> None:
    cluster.create("configmaps", configmap("bare"))  # no annotations at all
    api = kubernetes.client.CoreV1Api(client(cluster))
    plain = [{"op": "replace", "path": "/data/a", "value": "2"}]
    with provider.get_tracer("t").start_as_current_span("reconcile"):
        api.patch_namespaced_config_map("bare", "default", plain)
    assert sent(cluster, "PATCH", f"{CM}/bare") == plain  # an add would have failed: untouched
    assert cluster.field("configmaps", "default", "bare", "data", "a") == "2"
    assert cluster.field("configmaps", "default", "bare", "metadata", "annotations") is None

    sets_them = [{"op": "add", "path": "/metadata/annotations", "value": {"team": "a"}}]
    with provider.get_tracer("t").start_as_current_span("reconcile"):
        api.patch_namespaced_config_map("bare", "default", sets_them)
    body = sent(cluster, "PATCH", f"{CM}/bare")
    assert body[-1] == {
        "op": "add",
        "path": "/metadata/annotations/tracing.k8s.io~1traceparent",
        "value": sent_header(cluster, "PATCH", f"{CM}/bare", "traceparent"),
    }
    assert cluster.field("configmaps", "default", "bare", "metadata", "annotations", "team") == "a"
    assert cluster.field("configmaps", "default", "bare", "metadata", "annotations", TRACEPARENT_ANNOTATION)


def test_status_scale_delete_lease_and_event_are_never_stamped(
    provider: TracerProvider, cluster: FakeCluster
) -> None:
    cluster.create("deployments", deployment("web"))
    cluster.create("configmaps", configmap("cm"))
    apps = kubernetes.client.AppsV1Api(client(cluster))
    core = kubernetes.client.CoreV1Api(client(cluster))
    leases = kubernetes.client.CoordinationV1Api(client(cluster))
    status_body = {"status": {"replicas": 1}}
    with provider.get_tracer("t").start_as_current_span("reconcile"):
        apps.patch_namespaced_deployment_status("web", "default", status_body)
        stored = cluster.get("deployments", "default", "web")
        apps.replace_namespaced_deployment_status("web", "default", stored)
        apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
        core.delete_namespaced_config_map("cm", "default", body=kubernetes.client.V1DeleteOptions())
        leases.create_namespaced_lease(
            "default", {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "me"}}
        )
        leases.patch_namespaced_lease("leader", "default", {"spec": {"holderIdentity": "you"}})
        core.create_namespaced_event(
            "default", {"metadata": {"name": "ev"}, "involvedObject": {"name": "web"}, "reason": "Scaled"}
        )
    writes = [b for b in cluster.bodies if b[0] in ("POST", "PUT", "PATCH", "DELETE")]
    assert len(writes) == 7
    assert [(m, p) for m, p, _, body in writes if stamp_of(body) or TRACEPARENT_ANNOTATION in str(body)] == []
    assert cluster.field("deployments", "default", "web", "spec", "replicas") == 3  # the calls still worked


def test_off_by_default_and_on_through_the_env(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    provider, _ = recording_provider()
    for env, expected in ((None, False), ("true", True), ("nonsense", False)):
        if env is not None:
            monkeypatch.setenv("K8S_OTEL_KUBERNETES_INJECT_OBJECT_CONTEXT", env)
        instrumentor = KubernetesClientInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            with provider.get_tracer("t").start_as_current_span("reconcile"):
                kubernetes.client.CoreV1Api(client(cluster)).create_namespaced_config_map(
                    "default", configmap(f"cm-{env}")
                )
        finally:
            instrumentor.uninstrument()
        assert (stamp_of(sent(cluster, "POST", CM)) is not None) is expected, env


def test_an_unsampled_call_is_stamped_too(cluster: FakeCluster) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    instrumentor = KubernetesClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider, inject_object_context=True)
    try:
        kubernetes.client.CoreV1Api(client(cluster)).create_namespaced_config_map("default", configmap("cm"))
    finally:
        instrumentor.uninstrument()
    stamp = stamp_of(sent(cluster, "POST", CM))
    assert stamp is not None and not int(stamp[-2:], 16) & 1  # the unsampled flag, as the KEP writes it


def test_no_span_context_means_no_stamp(cluster: FakeCluster) -> None:
    instrumentor = KubernetesClientInstrumentor()
    instrumentor.instrument(tracer_provider=trace.NoOpTracerProvider(), inject_object_context=True)
    try:
        kubernetes.client.CoreV1Api(client(cluster)).create_namespaced_config_map("default", configmap("cm"))
    finally:
        instrumentor.uninstrument()
    assert stamp_of(sent(cluster, "POST", CM)) is None


def test_kubernetes_asyncio_creates_and_patches_are_stamped(
    provider: TracerProvider, cluster: FakeCluster
) -> None:
    async def calls() -> None:
        configuration = kubernetes_asyncio.client.Configuration(host=cluster.host)
        async with kubernetes_asyncio.client.ApiClient(configuration) as api_client:
            api = kubernetes_asyncio.client.CoreV1Api(api_client)
            with provider.get_tracer("t").start_as_current_span("reconcile"):
                await api.create_namespaced_config_map("default", configmap("cm"))
                await api.patch_namespaced_config_map("cm", "default", {"data": {"a": "2"}})
                await api.patch_namespaced_config_map(
                    "cm", "default", [{"op": "replace", "path": "/data/a", "value": "3"}]
                )
                await api.create_namespaced_pod(
                    "default", {"metadata": {"name": "p"}, "spec": {"containers": []}}
                )
                await api.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})

    asyncio.run(calls())
    assert stamp_of(sent(cluster, "POST", CM)) == sent_header(cluster, "POST", CM, "traceparent")
    patches = [b for b in cluster.bodies if b[0] == "PATCH"]
    assert [ct for _, _, ct, _ in patches] == [
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
    ]
    assert stamp_of(patches[0][3]) is not None
    assert patches[1][3] == [{"op": "replace", "path": "/data/a", "value": "3"}]
    assert stamp_of(patches[2][3]) is None  # /status
    assert stamp_of(sent(cluster, "POST", "/api/v1/namespaces/default/pods")) is not None
    assert cluster.field("configmaps", "default", "cm", "data", "a") == "3"


# --- the rules, directly -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "content_type", "body", "stamped"),
    [
        ("POST", "/api/v1/namespaces/a/pods", "application/json", {"metadata": {}}, True),
        ("POST", "/api/v1/namespaces/a/pods", "", {}, True),
        ("POST", "/api/v1/namespaces/a/pods/p/eviction", "application/json", {}, False),
        ("POST", "/api/v1/namespaces/a/pods/p/binding", "application/json", {}, False),
        ("POST", "/api/v1/namespaces/a/serviceaccounts/s/token", "application/json", {}, False),
        ("POST", "/apis/events.k8s.io/v1/namespaces/a/events", "application/json", {}, False),
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews", "application/json", {}, False),
        ("POST", "/apis/coordination.k8s.io/v1/namespaces/a/leases", "application/json", {}, False),
        ("POST", "/api/v1/namespaces", "application/json", {"metadata": {"name": "n"}}, True),
        ("PUT", "/apis/apps/v1/namespaces/a/deployments/d", "application/json", {}, True),
        ("PUT", "/apis/apps/v1/namespaces/a/deployments/d/status", "application/json", {}, False),
        ("PUT", "/apis/apps/v1/namespaces/a/deployments/d/scale", "application/json", {}, False),
        ("PUT", "/apis/apps/v1/namespaces/a/deployments", "application/json", {}, False),
        ("PATCH", "/apis/apps/v1/namespaces/a/deployments/d", "application/merge-patch+json", {}, True),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d",
            "application/merge-patch+json; charset=utf-8",
            {},
            True,
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d",
            "application/merge-patch+json",
            {"metadata": None},
            False,
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d",
            "application/merge-patch+json",
            {"metadata": {"annotations": None}},
            False,
        ),
        ("PATCH", "/apis/apps/v1/namespaces/a/deployments/d", "application/merge-patch+json", [], False),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d",
            "application/json-patch+json",
            {},
            False,
        ),  # not rewritten
        ("PATCH", "/apis/apps/v1/namespaces/a/deployments/d", "text/plain", {}, False),
        ("PATCH", "/apis/apps/v1/namespaces/a/deployments/d", "application/merge-patch+json", "{}", False),
        ("DELETE", "/apis/apps/v1/namespaces/a/deployments/d", "application/json", {}, False),
        ("GET", "/apis/apps/v1/namespaces/a/deployments/d", "", None, False),
        ("POST", "/healthz", "application/json", {}, False),
        ("POST", "/api/v1/namespaces/a/pods", "application/json", {"metadata": "x"}, False),
        (
            "POST",
            "/api/v1/namespaces/a/pods",
            "application/json",
            {"metadata": {"annotations": ["x"]}},
            False,
        ),
    ],
)
def test_the_writer_rules(method: str, path: str, content_type: str, body: Any, stamped: bool) -> None:
    result = stamped_body(method, path, content_type, body, TP)
    assert (result is not None) is stamped
    if stamped:
        assert stamp_of(result) == TP


_POINTERS = st.sampled_from(
    [
        "",
        "/metadata",
        "/metadata/annotations",
        "/metadata/annotations/a",
        "/metadata/labels",
        "/spec",
        "/spec/x",
        "/meta",
    ]
)
_VALUES = st.one_of(
    st.none(),
    st.integers(0, 3),
    st.just({}),
    st.just({"a": "1"}),
    st.just({"annotations": {}}),
    st.just({"annotations": None}),
    st.just({"metadata": {"annotations": {}}}),
    st.just({"metadata": {}}),
)
_OPERATIONS = st.builds(
    lambda op, path, value, source: {"op": op, "path": path, "value": value, "from": source},
    st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]),
    _POINTERS,
    _VALUES,
    _POINTERS,
)
_DOCUMENTS = st.sampled_from(
    [
        {"metadata": {"name": "x"}},
        {"metadata": {"name": "x", "annotations": {"a": "1"}}},
        {"metadata": {"name": "x", "annotations": None}},
        {"metadata": {"name": "x", "labels": {}}, "spec": {"x": 1}},
    ]
)


@settings(max_examples=400, deadline=None)
@given(operations=st.lists(_OPERATIONS, max_size=5), document=_DOCUMENTS)
def test_a_stamped_json_patch_never_fails_where_the_original_succeeds(
    operations: list[dict[str, Any]], document: dict[str, Any]
) -> None:
    for operation in operations:
        if operation["op"] not in ("move", "copy"):
            del operation["from"]
        if operation["op"] in ("remove", "move", "copy"):
            del operation["value"]
    result = stamped_body(
        "PATCH", "/api/v1/namespaces/a/configmaps/c", "application/json-patch+json", operations, TP
    )
    if result is None:
        return
    assert result[:-1] == operations
    try:
        expected = jsonpatch.apply_patch(copy.deepcopy(document), operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
        return  # the original fails: ours may fail the same way
    patched = jsonpatch.apply_patch(copy.deepcopy(document), result)  # must not raise
    assert patched["metadata"]["annotations"][TRACEPARENT_ANNOTATION] == TP
    del patched["metadata"]["annotations"][TRACEPARENT_ANNOTATION]
    assert patched == expected


def test_a_kopf_handler_stamps_the_child_it_creates_and_kopfs_own_patches_are_never_stamped(
    cluster: FakeCluster,
) -> None:
    import kopf

    from k8s_otel.instrumentation._kopf import KopfInstrumentor
    from test_instrumentation_kopf import EXAMPLES, Operator, example, wait_for

    provider, memory = recording_provider()
    kopf_instrumentor, client_instrumentor = KopfInstrumentor(), KubernetesClientInstrumentor()
    kopf_instrumentor.instrument(tracer_provider=provider)
    client_instrumentor.instrument(tracer_provider=provider, inject_object_context=True)
    try:
        operator = Operator(cluster, memory)

        @kopf.on.create(*EXAMPLES, registry=operator.registry, id="makes-child")
        def makes_child(name: str, patch: kopf.Patch, **_: Any) -> None:
            kubernetes.client.CoreV1Api(client(cluster)).create_namespaced_config_map(
                "default", configmap(f"{name}-child")
            )
            patch.status["child"] = f"{name}-child"

        with operator.running():
            cluster.create("kopfexamples", example("ex1", annotations={TRACEPARENT_ANNOTATION: TP}))
            [handler] = operator.wait_spans("kopf.on.create kopfexamples.kopf.dev")
            wait_for(lambda: cluster.field("kopfexamples", "default", "ex1", "status", "child"))
    finally:
        kopf_instrumentor.uninstrument()
        client_instrumentor.uninstrument()
    assert handler.kind.name == "CONSUMER" and handler.links[0].context.trace_id == int(TP[3:35], 16)
    stamp = cluster.field(
        "configmaps", "default", "ex1-child", "metadata", "annotations", TRACEPARENT_ANNOTATION
    )
    assert stamp is not None and stamp[3:35] == f"{handler.context.trace_id:032x}"  # the handler's trace
    kopf_patches = [
        body for method, path, _, body in cluster.bodies if method == "PATCH" and "kopfexamples" in path
    ]
    # (kopf's own record of the object quotes the object's annotations, the stored stamp among them.)
    assert kopf_patches and all(stamp_of(body) is None for body in kopf_patches)
