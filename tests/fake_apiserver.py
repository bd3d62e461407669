"""A small fake kube-apiserver on 127.0.0.1:0 for client tests: discovery, pods, watch, errors.

It records every request's method, path, query and headers (so ``traceparent`` injection can be
asserted), serves realistic JSON, and answers 404/409/500 for chosen names.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def pod(name: str, namespace: str = "default", version: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"00000000-0000-0000-0000-{abs(hash(name)) % 10**12:012d}",
            "resourceVersion": version,
            "labels": {"app": "web"},
        },
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.7"},
    }


def status(code: int, reason: str, message: str) -> dict[str, Any]:
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


class FakeAPIServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.pods = {"web-0": pod("web-0"), "web-1": pod("web-1")}
        self.watch_events = 3
        self._server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

            def _record(self) -> tuple[str, dict[str, list[str]]]:
                parts = urlsplit(self.path)
                fake.requests.append(
                    Recorded(
                        self.command, parts.path, parts.query, {k.lower(): v for k, v in self.headers.items()}
                    )
                )
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                return parts.path, parse_qs(parts.query)

            def _json(self, code: int, body: dict[str, Any]) -> None:
                send_json(self, code, body)

            def _pod_or_error(self, name: str) -> None:
                if name == "boom":
                    self._json(500, status(500, "InternalError", "etcd is having a bad day"))
                elif name == "conflict":
                    self._json(409, status(409, "Conflict", "the object has been modified"))
                elif name in fake.pods:
                    self._json(200, fake.pods[name])
                else:
                    self._json(404, status(404, "NotFound", f'pods "{name}" not found'))

            def do_GET(self) -> None:
                path, query = self._record()
                parts = path.strip("/").split("/")
                if path == "/api":
                    self._json(200, {"kind": "APIVersions", "versions": ["v1"]})
                elif path == "/apis":
                    self._json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
                elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "pods":
                    self._pod_or_error(parts[5])
                elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "pods":
                    if query.get("watch", ["false"])[0].lower() in ("true", "1"):  # clients send True or true
                        self._watch()
                    else:
                        items = list(fake.pods.values())
                        self._json(
                            200,
                            {
                                "apiVersion": "v1",
                                "kind": "PodList",
                                "metadata": {"resourceVersion": "9"},
                                "items": items,
                            },
                        )
                else:
                    self._json(
                        404, status(404, "NotFound", "the server could not find the requested resource")
                    )

            def _watch(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for index in range(fake.watch_events):
                    line = (
                        json.dumps(
                            {"type": "MODIFIED", "object": pod("web-0", version=str(10 + index))}
                        ).encode()
                        + b"\n"
                    )
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def do_PATCH(self) -> None:
                path, _ = self._record()
                self._pod_or_error(path.rsplit("/", 1)[-1])

            def do_POST(self) -> None:
                self._record()
                self._json(
                    201,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "made", "namespace": "default"},
                    },
                )

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeAPIServer]:
        with serving(self._handler()) as self._server:
            yield self
