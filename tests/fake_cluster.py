"""The tests' one fake kube-apiserver: stateful, on 127.0.0.1:0, for client tests and a real kopf operator.

It serves discovery for a core group (pods, configmaps, events), ``apps/v1`` deployments (with
status and scale subresources), ``coordination.k8s.io/v1`` leases and a CRD group
(``kopf.dev/v1`` ``kopfexamples`` with a status subresource); list, get, a watch that stays open and
streams every change as it happens, merge, strategic-merge, apply and JSON patch (object, status,
scale), replace (PUT), create and delete with finalizers, like the real API server. Every request
is recorded with its headers and JSON body (so ``traceparent`` injection can be asserted), and
chosen requests can be made to fail with a status code and message (``failures``).

Client tests seed it with pods (``FakeCluster.with_pods("web-0")``) and change objects with
``update`` while a client watches (``wait_for_watch`` says when the watch is open).
"""

from __future__ import annotations

import copy
import datetime
import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import jsonpatch


def pod(name: str, namespace: str = "default") -> dict[str, Any]:
    """A realistic running Pod labelled ``app=web``, as a client reads it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"00000000-0000-0000-0000-{abs(hash(name)) % 10**12:012d}",
            "labels": {"app": "web"},
        },
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.7"},
    }


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A failure ``Status``, as kube-apiserver answers an error."""
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def send_json(handler: BaseHTTPRequestHandler, code: int, body: Any) -> None:
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """A threading HTTP server on 127.0.0.1:0, shut down and closed on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False


KINDS = (
    Kind("", "v1", "namespaces", "Namespace", namespaced=False),
    Kind("", "v1", "pods", "Pod"),
    Kind("", "v1", "configmaps", "ConfigMap"),
    Kind("", "v1", "events", "Event"),
    Kind("apps", "v1", "deployments", "Deployment", status_subresource=True),
    Kind("coordination.k8s.io", "v1", "leases", "Lease"),
    Kind("kopf.dev", "v1", "kopfexamples", "KopfExample", status_subresource=True),
    Kind(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
    ),
)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            target[key] = _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _selected(obj: dict[str, Any], selector: str) -> bool:
    """Equality-based label selectors (``a=b,c=d``), as far as the tests use them."""
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip().lstrip("="):
            return False
    return True


# A strategic merge or apply patch is applied as a merge patch: the same for the maps these tests patch.
_MERGE_PATCHES = (
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


class FakeCluster:
    @classmethod
    def with_pods(cls, *names: str) -> FakeCluster:
        """A cluster holding these pods in ``default`` (what client tests read, list and watch)."""
        cluster = cls()
        for name in names:
            cluster.create("pods", pod(name))
        return cluster

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.bodies: list[tuple[str, str, str, Any]] = []  # (METHOD, path, Content-Type, JSON body)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name)
        # (METHOD, path suffix, status[, message]), each used once; the message is the Status's text.
        self.failures: list[tuple[Any, ...]] = []
        self._version = 100
        self._lock = threading.Lock()
        self._watchers: list[tuple[str, queue.Queue[Optional[dict[str, Any]]]]] = []
        self._stopping = threading.Event()
        self._server: Optional[ThreadingHTTPServer] = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    # --- the store, for tests and for the handler ----------------------------------------------

    def _kind(self, plural: str) -> Kind:
        return next(k for k in KINDS if k.plural == plural)

    def _bump(self, obj: dict[str, Any]) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    def _notify(self, event_type: str, plural: str, obj: dict[str, Any]) -> None:
        for watched, events in list(self._watchers):
            if watched == plural:
                events.put({"type": event_type, "object": copy.deepcopy(obj)})

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = self._kind(plural)
        with self._lock:
            obj = copy.deepcopy(body)
            obj.setdefault("apiVersion", f"{kind.group}/{kind.version}".lstrip("/"))
            obj.setdefault("kind", kind.kind)
            metadata = obj.setdefault("metadata", {})
            if kind.namespaced:
                metadata.setdefault("namespace", "default")
            metadata.setdefault("uid", f"6f1d3c2e-0000-4000-8000-{self._version:012d}")
            metadata.setdefault("creationTimestamp", "2026-11-25T12:00:00Z")
            metadata.setdefault("generation", 1)
            self._bump(obj)
            self.objects[(plural, metadata.get("namespace", ""), metadata["name"])] = obj
            self._notify("ADDED", plural, obj)
            return copy.deepcopy(obj)

    def update(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._patch(plural, namespace, name, patch)

    def _patch(self, plural: str, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        obj = self.objects[(plural, namespace, name)]
        if isinstance(patch, list):
            obj = self.objects[(plural, namespace, name)] = jsonpatch.apply_patch(obj, patch)
        else:
            _merge(obj, patch)
        self._bump(obj)
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            del self.objects[(plural, namespace, name)]
            self._notify("DELETED", plural, obj)
        else:
            self._notify("MODIFIED", plural, obj)
        return copy.deepcopy(obj)

    def delete(self, plural: str, namespace: str, name: str) -> None:
        with self._lock:
            obj = self.objects[(plural, namespace, name)]
            if obj["metadata"].get("finalizers"):
                stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                self._patch(plural, namespace, name, {"metadata": {"deletionTimestamp": stamp}})
            else:
                del self.objects[(plural, namespace, name)]
                self._bump(obj)
                self._notify("DELETED", plural, obj)

    def get(self, plural: str, namespace: str, name: str) -> Optional[dict[str, Any]]:
        with self._lock:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def field(self, plural: str, namespace: str, name: str, *path: str) -> Any:
        """A value inside a stored object (``"status", "ready"``), or None when any step is missing."""
        value: Any = self.get(plural, namespace, name)
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def wait_for_watch(self, plural: str, timeout: float = 5.0) -> None:
        """Block until a client's watch on ``plural`` is open, so changes made next reach it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if any(watched == plural for watched, _ in self._watchers):
                    return
            time.sleep(0.01)
        raise TimeoutError(f"no watch on {plural} within {timeout} s")

    def seen(self, method: str, path_suffix: str) -> list[Recorded]:
        return [r for r in list(self.requests) if r.method == method and r.path.endswith(path_suffix)]

    # --- HTTP ----------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _start(self) -> tuple[list[str], dict[str, list[str]], Any]:
                parts = urlsplit(self.path)
                cluster.requests.append(
                    Recorded(
                        self.command, parts.path, parts.query, {k.lower(): v for k, v in self.headers.items()}
                    )
                )
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                cluster.bodies.append((self.command, parts.path, self.headers.get("Content-Type", ""), body))
                return parts.path.strip("/").split("/"), parse_qs(parts.query), body

            def _json(self, code: int, body: Any) -> None:
                send_json(self, code, body)

            def _failed(self) -> bool:
                path = urlsplit(self.path).path
                with cluster._lock:
                    for failure in cluster.failures:
                        method, suffix, code = failure[:3]
                        if method == self.command and path.endswith(suffix):
                            cluster.failures.remove(failure)
                            message = failure[3] if len(failure) > 3 else f"injected {code}"
                            break
                    else:
                        return False
                reasons = {404: "NotFound", 409: "Conflict", 422: "Invalid", 500: "InternalError"}
                self._json(code, status(code, reasons.get(code, "Unknown"), message))
                return True

            def _route(self, parts: list[str]) -> Optional[tuple[Kind, Optional[str], Optional[str], str]]:
                if parts[:1] == ["api"] and len(parts) >= 3:
                    group, version, rest = "", parts[1], parts[2:]
                elif parts[:1] == ["apis"] and len(parts) >= 4:
                    group, version, rest = parts[1], parts[2], parts[3:]
                else:
                    return None
                namespace = None
                if len(rest) >= 3 and rest[0] == "namespaces":
                    namespace, rest = rest[1], rest[2:]
                kind = next(
                    (k for k in KINDS if (k.group, k.version, k.plural) == (group, version, rest[0])), None
                )
                if kind is None or len(rest) > 3:
                    return None
                name = rest[1] if len(rest) > 1 else None
                subresource = rest[2] if len(rest) > 2 else ""
                return kind, namespace, name, subresource

            def _discovery(self, parts: list[str]) -> bool:
                if parts == ["api"]:
                    self._json(200, {"kind": "APIVersions", "versions": ["v1"]})
                elif parts == ["apis"]:
                    groups = sorted({k.group for k in KINDS if k.group})
                    self._json(
                        200,
                        {
                            "kind": "APIGroupList",
                            "apiVersion": "v1",
                            "groups": [
                                {
                                    "name": g,
                                    "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                                    "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                                }
                                for g in groups
                            ],
                        },
                    )
                elif parts == ["api", "v1"] or (parts[:1] == ["apis"] and len(parts) == 3):
                    group = "" if parts[0] == "api" else parts[1]
                    resources = []
                    for k in KINDS:
                        if k.group != group:
                            continue
                        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                        resources.append(
                            {
                                "name": k.plural,
                                "singularName": "",
                                "namespaced": k.namespaced,
                                "kind": k.kind,
                                "verbs": verbs,
                            }
                        )
                        if k.status_subresource:
                            resources.append(
                                {
                                    "name": f"{k.plural}/status",
                                    "singularName": "",
                                    "namespaced": k.namespaced,
                                    "kind": k.kind,
                                    "verbs": ["get", "patch", "update"],
                                }
                            )
                    self._json(
                        200,
                        {
                            "kind": "APIResourceList",
                            "apiVersion": "v1",
                            "groupVersion": "/".join(parts[1:]),
                            "resources": resources,
                        },
                    )
                else:
                    return False
                return True

            def do_GET(self) -> None:
                parts, query, _ = self._start()
                if self._discovery(parts) or self._failed():
                    return
                route = self._route(parts)
                if route is None:
                    self._json(
                        404, status(404, "NotFound", "the server could not find the requested resource")
                    )
                    return
                kind, namespace, name, _ = route
                if name is not None:
                    obj = cluster.get(kind.plural, namespace or "", name)
                    if obj is None:
                        self._json(404, status(404, "NotFound", f'{kind.plural} "{name}" not found'))
                    else:
                        self._json(200, obj)
                elif query.get("watch", ["false"])[0].lower() in ("true", "1"):
                    timeout = float(query.get("timeoutSeconds", ["0"])[0] or 0)
                    self._watch(kind.plural, namespace, timeout, query.get("labelSelector", [""])[0])
                else:
                    with cluster._lock:
                        items = [
                            copy.deepcopy(o)
                            for (plural, ns, _), o in cluster.objects.items()
                            if plural == kind.plural
                            and namespace in (None, ns)
                            and _selected(o, query.get("labelSelector", [""])[0])
                        ]
                        version = str(cluster._version)
                    self._json(
                        200,
                        {
                            "apiVersion": f"{kind.group}/{kind.version}".lstrip("/"),
                            "kind": f"{kind.kind}List",
                            "metadata": {"resourceVersion": version},
                            "items": items,
                        },
                    )

            def _watch(
                self, plural: str, namespace: Optional[str], timeout: float, selector: str = ""
            ) -> None:
                events: queue.Queue[Optional[dict[str, Any]]] = queue.Queue()
                with cluster._lock:
                    cluster._watchers.append((plural, events))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                deadline = time.monotonic() + timeout if timeout else None
                try:
                    while not cluster._stopping.is_set() and (
                        deadline is None or time.monotonic() < deadline
                    ):
                        try:
                            event = events.get(timeout=0.05)
                        except queue.Empty:
                            continue
                        if event is None:
                            break
                        if namespace not in (None, event["object"]["metadata"].get("namespace", "")) or not (
                            _selected(event["object"], selector)
                        ):
                            continue
                        line = json.dumps(event).encode() + b"\n"
                        self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass  # the client went away
                finally:
                    with cluster._lock:
                        cluster._watchers.remove((plural, events))
                self.close_connection = True

            def do_PATCH(self) -> None:
                parts, _, body = self._start()
                if self._failed():
                    return
                route = self._route(parts)
                if route is None or route[2] is None:
                    self._json(
                        404, status(404, "NotFound", "the server could not find the requested resource")
                    )
                    return
                kind, namespace, name, subresource = route
                content_type = self.headers.get("Content-Type", "")
                if subresource == "scale":
                    self._scale(kind, namespace or "", name, body, content_type)
                    return
                if content_type == "application/json-patch+json" and isinstance(body, list):
                    wanted = ("/status",) if subresource == "status" else ("/metadata", "/spec", "/data")
                    body = [o for o in body if o["op"] == "test" or str(o["path"]).startswith(wanted)]
                elif content_type in _MERGE_PATCHES and isinstance(body, dict):
                    if subresource == "status":
                        body = {"status": body.get("status")}
                    elif kind.status_subresource:
                        body = {k: v for k, v in body.items() if k != "status"}
                else:
                    self._json(415, status(415, "UnsupportedMediaType", f"unsupported {content_type}"))
                    return
                with cluster._lock:
                    try:
                        found = (
                            cluster._patch(kind.plural, namespace or "", name, body)
                            if (kind.plural, namespace or "", name) in cluster.objects
                            else None
                        )
                    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
                        self._json(422, status(422, "Invalid", f"the patch does not apply: {error}"))
                        return
                if found is None:
                    self._json(404, status(404, "NotFound", f'{kind.plural} "{name}" not found'))
                else:
                    self._json(200, found)

            def _scale(
                self, kind: Kind, namespace: str, name: str, body: Any, content_type: str = "application/json"
            ) -> None:
                """The scale subresource: a Scale whose spec.replicas is the object's."""
                with cluster._lock:
                    obj = cluster.objects.get((kind.plural, namespace, name))
                    if obj is None:
                        self._json(404, status(404, "NotFound", f'{kind.plural} "{name}" not found'))
                        return
                    if body is not None:
                        if content_type == "application/json-patch+json":
                            self._json(415, status(415, "UnsupportedMediaType", "json patch on scale"))
                            return
                        replicas = (body.get("spec") or {}).get("replicas")
                        if replicas is not None:
                            obj = cluster._patch(
                                kind.plural, namespace, name, {"spec": {"replicas": replicas}}
                            )
                    scale = {
                        "apiVersion": "autoscaling/v1",
                        "kind": "Scale",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                        "status": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                    }
                self._json(200, scale)

            def do_PUT(self) -> None:
                parts, _, body = self._start()
                if self._failed():
                    return
                route = self._route(parts)
                if route is None or route[2] is None or not isinstance(body, dict):
                    self._json(
                        404, status(404, "NotFound", "the server could not find the requested resource")
                    )
                    return
                kind, namespace, name, subresource = route
                key = (kind.plural, namespace or "", name)
                if subresource == "scale":
                    self._scale(kind, namespace or "", name, body)
                    return
                with cluster._lock:
                    current = cluster.objects.get(key)
                    if current is None:
                        self._json(404, status(404, "NotFound", f'{kind.plural} "{name}" not found'))
                        return
                    replaced = copy.deepcopy(current)
                    if subresource == "status":
                        replaced["status"] = copy.deepcopy(body.get("status"))
                    else:
                        kept = {
                            k: replaced[k] for k in ("status",) if k in replaced and kind.status_subresource
                        }
                        server = {
                            k: current["metadata"][k]
                            for k in ("uid", "creationTimestamp", "generation", "namespace", "name")
                            if k in current["metadata"]
                        }
                        replaced = {**copy.deepcopy(body), **kept}
                        replaced["metadata"] = {**(body.get("metadata") or {}), **server}
                    cluster.objects[key] = replaced
                    cluster._bump(replaced)
                    cluster._notify("MODIFIED", kind.plural, replaced)
                    result = copy.deepcopy(replaced)
                self._json(200, result)

            def do_DELETE(self) -> None:
                parts, _, _ = self._start()
                if self._failed():
                    return
                route = self._route(parts)
                if route is None or route[2] is None:
                    self._json(
                        404, status(404, "NotFound", "the server could not find the requested resource")
                    )
                    return
                kind, namespace, name, _ = route
                try:
                    cluster.delete(kind.plural, namespace or "", name)
                except KeyError:
                    self._json(404, status(404, "NotFound", f'{kind.plural} "{name}" not found'))
                    return
                self._json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})

            def do_POST(self) -> None:
                parts, _, body = self._start()
                if self._failed():
                    return
                route = self._route(parts)
                if route is None or route[2] is not None or not isinstance(body, dict):
                    self._json(
                        404, status(404, "NotFound", "the server could not find the requested resource")
                    )
                    return
                kind, namespace, _, _ = route
                body.setdefault("metadata", {}).setdefault("namespace", namespace or "default")
                if not body["metadata"].get("name"):
                    body["metadata"]["name"] = body["metadata"].get("generateName", "obj-") + str(
                        cluster._version
                    )
                self._json(201, cluster.create(kind.plural, body))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeCluster]:
        with serving(self._handler()) as self._server:
            try:
                yield self
            finally:
                self._stopping.set()  # open watches end before serving() shuts the server down
