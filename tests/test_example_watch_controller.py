"""examples/watch_controller.py against the stateful fake apiserver: linked reconciles, stamped children."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes

from fake_cluster import FakeCluster
from k8s_otel.objects import TRACEPARENT_ANNOTATION
from recording import recording_provider
from test_instrumentation_kopf import wait_for

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "watch_controller.py"
STAMP = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("watch_controller", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["watch_controller"] = module
    spec.loader.exec_module(module)
    return module


def parent(name: str, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"k8s-otel.io/example": "parent"}, "annotations": annotations},
        "data": {"colour": "blue"},
    }


def test_the_watch_loop_links_each_reconcile_and_stamps_the_child() -> None:
    example = load_example()
    provider, memory = recording_provider()
    with FakeCluster().running() as cluster:
        configuration = kubernetes.client.Configuration(host=cluster.host)
        api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
        result: list[int] = []
        thread = threading.Thread(
            target=lambda: result.append(
                example.run(api, "default", max_events=3, timeout=20, tracer_provider=provider)
            ),
            daemon=True,
        )
        thread.start()
        wait_for(lambda: any("watch=true" in r.query.lower() for r in cluster.seen("GET", "/configmaps")))
        cluster.create("configmaps", parent("stamped", **{TRACEPARENT_ANNOTATION: STAMP}))
        cluster.create("configmaps", parent("plain"))
        wait_for(lambda: cluster.get("configmaps", "default", "plain-child"))
        cluster.update("configmaps", "default", "plain", {"data": {"colour": "red"}})
        thread.join(20)
        assert result == [3]
        children = {
            name: cluster.get("configmaps", "default", f"{name}-child") for name in ("stamped", "plain")
        }

    spans = [s for s in memory.get_finished_spans() if s.name == "reconcile ConfigMap"]
    assert len(spans) == 3
    assert all(s.kind.name == "CONSUMER" and s.parent is None for s in spans)
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(str((span.attributes or {})["name"]), []).append(span)
    [stamped] = by_name["stamped"]
    assert [(link.context.trace_id, link.context.span_id) for link in stamped.links] == [
        (0x4BF92F3577B34DA6A3CE929D0E0E4737, 0x00F067AA0BA902B7)
    ]
    first, second = by_name["plain"]
    assert not first.links and not second.links  # nobody stamped the plain parent
    assert (stamped.attributes or {})["outcome"] == "created"
    assert {(s.attributes or {})["outcome"] for s in (first, second)} == {"created", "updated"}
    # Each child carries the context of the reconcile that wrote it: the next link in the chain.
    for name, reconciled in (("stamped", stamped), ("plain", second)):
        child = children[name]
        assert child is not None
        value = child["metadata"]["annotations"][TRACEPARENT_ANNOTATION]
        assert (
            value
            == f"00-{reconciled.context.trace_id:032x}-{reconciled.context.span_id:016x}-{reconciled.context.trace_flags:02x}"
        )
    assert children["plain"]["data"] == {"colour": "red"}  # type: ignore[index]
