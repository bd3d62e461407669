"""Endpoint translation: every accepted form becomes the target or URL its exporter takes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k8s_otel._endpoint import (
    DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT,
    GRPC,
    HTTP_PROTOBUF,
    default_endpoint,
    grpc_target,
    http_url,
    port,
    scheme,
    traces_url,
)

CANARY = "pw-c4n4ry"


@pytest.mark.parametrize(
    ("endpoint", "target"),
    [
        ("localhost:4317", "localhost:4317"),
        ("http://collector:4317", "collector:4317"),
        ("https://collector:4317/ignored/path", "collector:4317"),
        ("HTTP://collector:4317", "collector:4317"),
        ("dns://google.com:4317", "dns:///google.com:4317"),
        ("dns:///collector:4317", "dns:///collector:4317"),
        ("dns://8.8.8.8/collector:4317", "dns://8.8.8.8/collector:4317"),
        ("unix:///var/run/otel.sock", "unix:///var/run/otel.sock"),
        ("[::1]:4317", "[::1]:4317"),
        (f"http://user:{CANARY}@collector:4317", "collector:4317"),
    ],
)
def test_grpc_targets(endpoint: str, target: str) -> None:
    assert grpc_target(endpoint) == target


def test_defaults_are_the_otel_ones() -> None:
    assert default_endpoint(GRPC) == DEFAULT_GRPC_ENDPOINT == "localhost:4317"
    assert default_endpoint(HTTP_PROTOBUF) == DEFAULT_HTTP_ENDPOINT == "http://localhost:4318/v1/traces"


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://gw/otlp//", "https://gw/otlp/v1/traces"),
    ],
)
def test_the_base_endpoint_gets_the_traces_path(base: str, url: str) -> None:
    assert traces_url(base) == url


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("collector:4318", "http://collector:4318"),
        ("http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
        ("HTTPS://collector:4318", "HTTPS://collector:4318"),
    ],
)
def test_otlp_http_gets_a_url(endpoint: str, url: str) -> None:
    assert http_url(endpoint) == url


@pytest.mark.parametrize(
    ("endpoint", "expected_scheme", "expected_port"),
    [
        ("localhost:4318", "", "4318"),
        ("https://collector:4318/v1/traces", "https", "4318"),
        ("dns://collector:4317", "dns", "4317"),
        ("unix:///var/run/otel.sock", "unix", ""),
        ("collector", "", ""),
    ],
)
def test_scheme_and_port(endpoint: str, expected_scheme: str, expected_port: str) -> None:
    assert (scheme(endpoint), port(endpoint)) == (expected_scheme, expected_port)


hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z0-9-]{1,10}){0,2}", fullmatch=True)
ports = st.integers(min_value=1, max_value=65535).map(str)


@given(hosts, ports, st.sampled_from(["http", "https", "HTTP"]), st.text(max_size=30))
def test_a_url_becomes_its_host_and_port(host: str, number: str, url_scheme: str, path: str) -> None:
    # Everything up to the last "@" is userinfo (``split_userinfo``): an OTLP path has no "@".
    path = "".join(c for c in path if c not in "@#?")
    endpoint = f"{url_scheme}://user:{CANARY}@{host}:{number}/{path}"
    assert grpc_target(endpoint) == f"{host}:{number}"
    assert port(endpoint) == number


@given(st.text(max_size=200))
def test_translation_never_keeps_userinfo_nor_raises_but_value_error(text: str) -> None:
    endpoint = f"https://me:{CANARY}@{text}"
    try:
        target = grpc_target(endpoint)
    except ValueError:  # urlsplit refuses it: settings report it and use the default
        return
    assert CANARY not in target
    port(endpoint)
    assert http_url(endpoint) == endpoint  # a URL is left as it is
