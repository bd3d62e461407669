"""OTLP endpoints, translated into what each exporter takes. Which endpoint wins is ``_settings``'.

A TracingConfiguration gives gRPC targets (``host:port``, ``dns://``, ``unix://``), the OTel variables
give URLs. The gRPC exporter takes a target and the OTLP/HTTP exporter a URL with the signal's path,
so every accepted form is turned here into the one the chosen protocol needs, and nowhere else.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from k8s_otel._redact import split_userinfo

__all__ = [
    "DEFAULT_GRPC_ENDPOINT",
    "DEFAULT_HTTP_ENDPOINT",
    "GRPC",
    "HTTP_PROTOBUF",
    "TRACES_PATH",
    "default_endpoint",
    "grpc_target",
    "http_url",
    "port",
    "scheme",
    "traces_url",
]

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
DEFAULT_GRPC_ENDPOINT = "localhost:4317"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318/v1/traces"
TRACES_PATH = "/v1/traces"
"""What OTLP/HTTP appends to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (never to the ``_TRACES_`` one): the spec's rule."""


def default_endpoint(protocol: str) -> str:
    """The OTel default for ``protocol``: the collector on localhost, on the protocol's port."""
    return DEFAULT_HTTP_ENDPOINT if protocol == HTTP_PROTOBUF else DEFAULT_GRPC_ENDPOINT


def traces_url(base: str) -> str:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` as the traces URL of OTLP/HTTP: the base with ``/v1/traces``."""
    return base.rstrip("/") + TRACES_PATH


def scheme(endpoint: str) -> str:
    """The endpoint's scheme, lower-cased; ``""`` for a bare ``host:port``."""
    return endpoint.partition("://")[0].lower() if "://" in endpoint else ""


def http_url(endpoint: str) -> str:
    """An endpoint OTLP/HTTP can use: a URL as it is, a bare ``host:port`` with ``http://`` before it."""
    return endpoint if scheme(endpoint) in ("http", "https") else f"http://{endpoint}"


def grpc_target(endpoint: str) -> str:
    """Turn any accepted endpoint form into what ``grpc.insecure_channel``/``secure_channel`` take.

    ``http(s)://host:port[/path]`` becomes ``host:port``. ``dns://host:port`` (a TracingConfiguration
    form that kube-apiserver validation accepts) means the host, not a DNS server authority, so it
    becomes ``dns:///host:port``. ``dns:///…``, ``unix:…`` and ``unix-abstract:…`` pass through.
    Userinfo is never part of a target. Raises ValueError for what ``urlsplit`` cannot parse.
    """
    endpoint = split_userinfo(endpoint)[0]
    lowered = endpoint.lower()
    if lowered.startswith(("http://", "https://")):
        return urlsplit(endpoint).netloc
    if lowered.startswith("dns://") and not lowered.startswith("dns:///"):
        authority, slash, _ = endpoint[len("dns://") :].partition("/")
        if not slash:
            return "dns:///" + authority
        return endpoint
    return endpoint


def port(endpoint: str) -> str:
    """The port the endpoint's target names, ``""`` when it names none (a unix socket, a bare host)."""
    host_port = grpc_target(endpoint).rpartition("/")[2]
    return host_port.rpartition(":")[2] if ":" in host_port else ""
