"""Effective settings: precedence (argument > file > env > default), provenance, and bad input."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import k8s_otel
from k8s_otel._settings import EffectiveSettings, HeaderValue, parse_headers, resolve_settings

TOKEN = "s3cr3t-t0ken"


def config_file(tmp_path: Path, endpoint: str | None = "file-host:4317", rate: int | None = 500) -> str:
    lines = ["apiVersion: apiserver.config.k8s.io/v1", "kind: TracingConfiguration"]
    if endpoint is not None:
        lines.append(f"endpoint: {endpoint}")
    if rate is not None:
        lines.append(f"samplingRatePerMillion: {rate}")
    path = tmp_path / "tracing.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_defaults_are_the_kubernetes_ones() -> None:
    s = resolve_settings(environ={})
    assert (s.endpoint.value, s.endpoint.source) == ("localhost:4317", "default")
    assert (s.protocol.value, s.insecure.value) == ("grpc", True)
    assert s.sampling_rate_per_million.value is None
    assert s.timeout_millis.value == 10_000.0
    assert s.compression.value == "none"
    assert (s.max_queue_size.value, s.max_export_batch_size.value) == (2048, 512)
    assert (s.schedule_delay_millis.value, s.export_timeout_millis.value) == (5000.0, 30000.0)
    assert s.problems == ()


def test_precedence_argument_file_env_default(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env-host:4317",
        "OTEL_TRACES_SAMPLER": "k8s_per_million",
        "OTEL_TRACES_SAMPLER_ARG": "7",
        "K8S_OTEL_TRACING_CONFIG": path,
    }
    only_env = resolve_settings(environ={k: v for k, v in env.items() if k != "K8S_OTEL_TRACING_CONFIG"})
    assert (only_env.endpoint.value, only_env.endpoint.source, only_env.endpoint.origin) == (
        "http://env-host:4317",
        "env",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    )
    assert (only_env.sampling_rate_per_million.value, only_env.sampling_rate_per_million.origin) == (
        7,
        "OTEL_TRACES_SAMPLER_ARG",
    )

    with_file = resolve_settings(environ=env)
    assert (with_file.endpoint.value, with_file.endpoint.source, with_file.endpoint.origin) == (
        "file-host:4317",
        "file",
        path,
    )
    assert (with_file.sampling_rate_per_million.value, with_file.sampling_rate_per_million.source) == (
        500,
        "file",
    )
    assert (with_file.config_file.source, with_file.config_file.origin) == ("env", "K8S_OTEL_TRACING_CONFIG")

    with_args = resolve_settings(endpoint="arg-host:4317", sampling_rate_per_million=3, environ=env)
    assert (with_args.endpoint.value, with_args.endpoint.source) == ("arg-host:4317", "argument")
    assert (with_args.sampling_rate_per_million.value, with_args.sampling_rate_per_million.source) == (
        3,
        "argument",
    )


def test_file_argument_beats_file_env(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    s = resolve_settings(
        config_file=config_file(other, rate=9),
        environ={"K8S_OTEL_TRACING_CONFIG": config_file(tmp_path, rate=1)},
    )
    assert (s.sampling_rate_per_million.value, s.config_file.source) == (9, "argument")


def test_file_fields_left_unset_fall_through_to_env(tmp_path: Path) -> None:
    s = resolve_settings(
        config_file=config_file(tmp_path, endpoint=None, rate=20),
        environ={
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4317",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x",
        },
    )
    assert (s.endpoint.value, s.endpoint.origin) == (
        "http://traces:4317",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    )
    assert s.sampling_rate_per_million.value == 20


def test_a_bad_file_is_reported_and_ignored(tmp_path: Path) -> None:
    path = config_file(tmp_path, endpoint="http://localhost:4317")
    s = resolve_settings(
        environ={"K8S_OTEL_TRACING_CONFIG": path, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317"}
    )
    assert s.endpoint.value == "http://env:4317"
    [problem] = s.problems
    assert "failed to validate tracing configuration" in problem
    assert "unsupported scheme: http" in problem
    assert "K8S_OTEL_TRACING_CONFIG" in problem and "ignored" in problem


def test_missing_file_is_reported(tmp_path: Path) -> None:
    s = resolve_settings(config_file=tmp_path / "nope.yaml", environ={})
    assert s.endpoint.source == "default"
    assert "unable to read tracing configuration from" in s.problems[0]


@pytest.mark.parametrize(
    ("environ", "insecure", "source"),
    [
        ({}, True, "default"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317"}, False, "env"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_INSECURE": "false"},
            True,
            "env",
        ),
        ({"OTEL_EXPORTER_OTLP_INSECURE": "false"}, False, "env"),
        ({"OTEL_EXPORTER_OTLP_TRACES_INSECURE": "TRUE", "OTEL_EXPORTER_OTLP_INSECURE": "false"}, True, "env"),
        ({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/ca.pem"}, False, "env"),
    ],
)
def test_tls_decision(environ: dict[str, str], insecure: bool, source: str) -> None:
    s = resolve_settings(environ=environ)
    assert (s.insecure.value, s.insecure.source) == (insecure, source)


def test_insecure_argument_wins() -> None:
    s = resolve_settings(insecure=False, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"})
    assert (s.insecure.value, s.insecure.source) == (False, "argument")


def test_missing_certificate_file_is_reported() -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_CERTIFICATE": "/does/not/exist.pem"})
    [problem] = s.problems
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" in problem and "/does/not/exist.pem" in problem


def test_operator_injected_http_protobuf() -> None:
    s = resolve_settings(
        environ={
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        }
    )
    assert (s.protocol.value, s.protocol.source) == ("http/protobuf", "env")
    assert s.endpoint.value == "http://collector:4318/v1/traces"
    assert s.problems == ()
    default = resolve_settings(environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert default.endpoint.value == "http://localhost:4318/v1/traces"


def test_traces_endpoint_is_used_as_is_for_http() -> None:
    s = resolve_settings(
        environ={
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom",
        }
    )
    assert s.endpoint.value == "http://c:4318/custom"


def test_file_endpoint_is_grpc_even_when_env_says_http(tmp_path: Path) -> None:
    s = resolve_settings(
        config_file=config_file(tmp_path), environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    )
    assert (s.protocol.value, s.protocol.source) == ("grpc", "file")
    assert any("OTEL_EXPORTER_OTLP_PROTOCOL" in p and "http/protobuf" in p for p in s.problems)


def test_grpc_to_the_http_port_is_flagged() -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    [problem] = s.problems
    assert "collector:4318" in problem


@pytest.mark.parametrize("protocol", ["http/json", "thrift", "GRPCX"])
def test_unsupported_protocols_are_flagged(protocol: str) -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
    [problem] = s.problems
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in problem and protocol.lower() in problem.lower()


def test_http_protocol_without_scheme_gets_http() -> None:
    s = resolve_settings(protocol="http/protobuf", endpoint="collector:4318")
    assert s.endpoint.value == "http://collector:4318"
    [problem] = s.problems
    assert "collector:4318" in problem


def test_timeout_is_milliseconds_as_the_spec_says() -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"})
    assert (s.timeout_millis.value, s.timeout_millis.origin) == (2500.0, "OTEL_EXPORTER_OTLP_TIMEOUT")
    s = resolve_settings(
        environ={"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "700", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    )
    assert s.timeout_millis.value == 700.0


@pytest.mark.parametrize("value", ["abc", "-5", "0", "nan", "inf"])
def test_bad_timeout_falls_back(value: str) -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_TIMEOUT": value})
    assert (s.timeout_millis.value, s.timeout_millis.source) == (10_000.0, "default")
    [problem] = s.problems
    assert "OTEL_EXPORTER_OTLP_TIMEOUT" in problem and value in problem


@pytest.mark.parametrize(("value", "expected"), [("gzip", "gzip"), ("none", "none"), ("GZIP", "gzip")])
def test_compression(value: str, expected: str) -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_COMPRESSION": value})
    assert s.compression.value == expected
    assert s.problems == ()


def test_bad_compression_falls_back_to_none() -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "zstd"})
    assert s.compression.value == "none"
    [problem] = s.problems
    assert "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION" in problem and "zstd" in problem


def test_headers_from_env_are_parsed_and_redacted() -> None:
    s = resolve_settings(
        environ={"OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{TOKEN},x-tenant = a%2Cb ,,bad,=x"}
    )
    assert s.header_pairs() == (("authorization", f"Bearer {TOKEN}"), ("x-tenant", "a,b"))
    assert TOKEN not in repr(s) and TOKEN not in str(s.as_dict())
    assert s.as_dict()["headers"]["value"] == ["authorization", "x-tenant"]
    assert len(s.problems) == 2 and all("OTEL_EXPORTER_OTLP_HEADERS" in p for p in s.problems)


def test_traces_headers_win() -> None:
    s = resolve_settings(
        environ={"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_HEADERS": "b=2"}
    )
    assert s.header_pairs() == (("a", "1"),)


@pytest.mark.parametrize("headers", [{"X-Token": TOKEN}, [("X-Token", TOKEN)], f"x-token={TOKEN}"])
def test_headers_argument_forms(headers: object) -> None:
    s = resolve_settings(headers=headers, environ={"OTEL_EXPORTER_OTLP_HEADERS": "other=1"})  # type: ignore[arg-type]
    assert s.header_pairs() == (("x-token", TOKEN),)
    assert s.headers.source == "argument"
    assert TOKEN not in repr(s.headers)


def test_malformed_header_problem_never_shows_the_value() -> None:
    problems: list[str] = []
    parse_headers(f"{TOKEN}-no-equals-sign,ok=1,bad name={TOKEN}", problems)
    assert len(problems) == 2
    assert all(TOKEN not in p for p in problems)


def test_other_samplers_are_ignored_with_a_problem() -> None:
    s = resolve_settings(
        environ={"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    )
    assert s.sampling_rate_per_million.value is None
    [problem] = s.problems
    assert "OTEL_TRACES_SAMPLER" in problem and "parentbased_traceidratio" in problem


def test_bad_sampler_arg_is_a_problem_and_unset() -> None:
    s = resolve_settings(environ={"OTEL_TRACES_SAMPLER": "k8s_per_million", "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    assert s.sampling_rate_per_million.value is None
    [problem] = s.problems
    assert "OTEL_TRACES_SAMPLER_ARG" in problem and "0.5" in problem


def test_bad_rate_argument_raises() -> None:
    with pytest.raises(ValueError, match="sampling rate must be positive"):
        resolve_settings(sampling_rate_per_million=-1, environ={})


def test_batch_settings() -> None:
    s = resolve_settings(
        environ={
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BSP_MAX_QUEUE_SIZE": "64",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "128",
            "OTEL_BSP_EXPORT_TIMEOUT": "x",
        }
    )
    assert s.schedule_delay_millis.value == 100.0
    assert s.max_queue_size.value == 64
    assert s.max_export_batch_size.value == 64  # clamped to the queue, not a ValueError as in the SDK
    assert s.export_timeout_millis.value == 30000.0
    assert len(s.problems) == 2


def test_sdk_disabled_and_service_name() -> None:
    s = resolve_settings(environ={"OTEL_SDK_DISABLED": "True", "OTEL_SERVICE_NAME": "svc"})
    assert s.sdk_disabled.value is True
    assert (s.service_name.value, s.service_name.source) == ("svc", "env")
    assert (
        resolve_settings(service_name="x", environ={"OTEL_SERVICE_NAME": "svc"}).service_name.source
        == "argument"
    )
    bad = resolve_settings(environ={"OTEL_SDK_DISABLED": "maybe"})
    assert bad.sdk_disabled.value is False and "OTEL_SDK_DISABLED" in bad.problems[0]


def test_values_are_bounded_in_problems() -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_COMPRESSION": "x" * 100_000})
    assert len(s.problems[0]) < 200


@pytest.mark.parametrize("name", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_an_unparseable_env_endpoint_is_reported_not_raised(name: str) -> None:
    s = resolve_settings(environ={name: "http://[::1"})
    assert (s.endpoint.value, s.endpoint.source) == ("localhost:4317", "default")
    [problem] = s.problems
    assert name in problem and "http://[::1" in problem


def test_an_unparseable_endpoint_argument_raises() -> None:
    with pytest.raises(ValueError, match=r"endpoint.*http://\[::1"):
        resolve_settings(endpoint="http://[::1", environ={})


# Credentials (issue 11): header values checked once and never shown; userinfo dropped.

CANARY = "c2VjcmV0LWNhbmFyeS0xMjM0NTY3ODkw"


def shown_everywhere(s: EffectiveSettings) -> str:
    """Every way settings are commonly printed or serialised."""
    headers = s.headers.value
    return " ".join(
        [
            repr(s),
            str(s),
            str(dataclasses.asdict(s)),
            str(list(headers)),
            str([pair[1] for pair in headers]),
            " ".join(f"{value}" for _, value in headers),
            str(s.as_dict()),
            " ".join(s.problems),
        ]
    )


def test_a_token_read_from_a_file_loses_its_trailing_newline() -> None:
    s = resolve_settings(headers={"authorization": f"Bearer {CANARY}\n"}, environ={})
    assert s.header_pairs() == (("authorization", f"Bearer {CANARY}"),)
    assert s.problems == ()


@pytest.mark.parametrize(
    "text",
    [
        f"authorization=Bearer%20{CANARY}%0A",
        f"authorization=Bearer%20{CANARY}%0D%0Ax-evil=1",
        f"authorization={CANARY}%00",
    ],
)
def test_encoded_control_characters_are_refused_naming_only_the_header(text: str) -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_HEADERS": text})
    # A trailing %0A is whitespace once decoded, and stripped; anything inside refuses the header.
    if text.endswith("%0A"):
        assert s.header_pairs() == (("authorization", f"Bearer {CANARY}"),)
        return
    assert s.header_pairs() == ()
    assert len(s.problems) == 1
    assert "OTEL_EXPORTER_OTLP_HEADERS" in s.problems[0] and "'authorization'" in s.problems[0]
    assert CANARY not in shown_everywhere(s)


def test_control_characters_in_argument_values_are_refused() -> None:
    s = resolve_settings(headers=[("x-token", f"{CANARY}\nx-evil: 1"), ("ok", "1")], environ={})
    assert s.header_pairs() == (("ok", "1"),)
    [problem] = s.problems
    assert "headers" in problem and "'x-token'" in problem
    assert CANARY not in shown_everywhere(s)


def test_non_ascii_values_are_refused_for_grpc() -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_HEADERS": "x-name=caf%C3%A9"})
    assert s.header_pairs() == ()
    [problem] = s.problems
    assert "OTEL_EXPORTER_OTLP_HEADERS" in problem and "'x-name'" in problem


def test_colon_form_never_shows_the_credential() -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_HEADERS": f"Authorization: Basic {CANARY}=="})
    assert s.header_pairs() == ()
    [problem] = s.problems
    assert "OTEL_EXPORTER_OTLP_HEADERS" in problem and "entry 1" in problem
    assert "name=value" in problem  # the hint: how to write it
    assert CANARY not in problem


@pytest.mark.parametrize("text", [f"{CANARY}==", f"{CANARY}=", CANARY, f"Bearer {CANARY}", f"{CANARY}=x"])
def test_a_pasted_token_is_not_taken_for_a_header_name(text: str) -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_HEADERS": text})
    assert s.header_pairs() == ()
    [problem] = s.problems
    assert "OTEL_EXPORTER_OTLP_HEADERS" in problem and "entry 1" in problem
    assert CANARY not in shown_everywhere(s)


def test_a_raw_comma_in_a_value_never_makes_a_new_header() -> None:
    s = resolve_settings(
        environ={"OTEL_EXPORTER_OTLP_HEADERS": f"x-first=1,authorization=Basic {CANARY},rest"}
    )
    assert s.header_pairs() == (("x-first", "1"),)
    [problem] = s.problems
    assert "OTEL_EXPORTER_OTLP_HEADERS" in problem and "entry 3" in problem and "'authorization'" in problem
    assert "%2C" in problem  # the hint: how to write a comma
    assert CANARY not in problem
    encoded = resolve_settings(environ={"OTEL_EXPORTER_OTLP_HEADERS": "authorization=a%2Cb"})
    assert encoded.header_pairs() == (("authorization", "a,b"),)
    as_argument = resolve_settings(headers={"x-list": "a, b"}, environ={})
    assert as_argument.header_pairs() == (("x-list", "a, b"),)


def test_unencoded_quote_semicolon_and_backslash_are_refused_before_the_sdk_logs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        s = resolve_settings(
            environ={"OTEL_EXPORTER_OTLP_HEADERS": f'a="{CANARY}",b={CANARY};c,d=\\{CANARY}'}
        )
    assert s.header_pairs() == ()
    assert CANARY not in shown_everywhere(s) + caplog.text
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]


def test_invalid_names_are_refused_and_shown_only_if_they_are_tokens() -> None:
    s = resolve_settings(headers={"bad name": CANARY, "x-ok": "1", "\x00": CANARY}, environ={})
    assert s.header_pairs() == (("x-ok", "1"),)
    first, third = s.problems
    assert "header 1" in first and "header 3" in third
    assert CANARY not in first + third and "bad name" not in first


def test_header_values_are_hidden_by_str_repr_asdict_list_and_indexing() -> None:
    s = resolve_settings(headers={"authorization": f"Bearer {CANARY}"}, environ={})
    value = s.headers.value[0][1]
    assert isinstance(value, HeaderValue) and value.reveal() == f"Bearer {CANARY}"
    assert CANARY not in shown_everywhere(s)
    assert str(value) == "<redacted>" and f"{value:>10}" == "<redacted>"
    assert copy.copy(value) is value and copy.deepcopy(value) is value
    assert dataclasses.asdict(s)["headers"]["value"][0][1] == f"Bearer {CANARY}"  # equal, and still hidden
    assert CANARY not in repr(dataclasses.asdict(s)["headers"]["value"][0][1])


@pytest.mark.parametrize(
    ("endpoint", "stripped"),
    [
        (f"https://user:{CANARY}@collector:4318/v1/traces", "https://collector:4318/v1/traces"),
        (f"http://{CANARY}@collector:4317", "http://collector:4317"),
        (f"dns://u:{CANARY}@collector:4317", "dns://collector:4317"),
        (f"u:{CANARY}@collector:4317", "collector:4317"),
        # A password with "/", "?" or "#" unencoded, and authorities after other runs of slashes.
        (f"http://u:a/{CANARY}@collector:4317", "http://collector:4317"),
        (f"https://u:{CANARY}?x@collector:4318/v1/traces", "https://collector:4318/v1/traces"),
        (f"http://u:{CANARY}#x@collector:4317", "http://collector:4317"),
        (f"dns:///u:{CANARY}@collector:4317", "dns:///collector:4317"),
        (f"http:/u:{CANARY}@collector:4317", "http:/collector:4317"),
        (f"//u:{CANARY}@collector:4317", "//collector:4317"),
        (f"unix://u:{CANARY}@/run/otel.sock", "unix:///run/otel.sock"),
    ],
)
def test_endpoint_userinfo_is_dropped_and_reported(endpoint: str, stripped: str) -> None:
    for s in (
        resolve_settings(endpoint=endpoint, environ={}),
        resolve_settings(environ={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}),
    ):
        assert s.endpoint.value == stripped
        assert CANARY not in s.grpc_target
        assert sum("@" in p for p in s.problems) == 1  # reported once, naming what is dropped
        assert CANARY not in shown_everywhere(s)


@pytest.mark.parametrize(
    "endpoint", ["unix:///run/otel@1.sock", "unix:/run/otel@1.sock", "http://[fe80::1%25eth0]:4317"]
)
def test_an_endpoint_without_userinfo_is_kept(endpoint: str) -> None:
    s = resolve_settings(endpoint=endpoint, environ={})
    assert s.endpoint.value == endpoint
    assert not any("user information" in p for p in s.problems)


def test_endpoint_userinfo_from_a_file_is_dropped(tmp_path: Path) -> None:
    s = resolve_settings(
        config_file=config_file(tmp_path, endpoint=f"dns://u:{CANARY}@collector:4317"), environ={}
    )
    assert (s.endpoint.value, s.endpoint.source) == ("dns://collector:4317", "file")
    assert CANARY not in shown_everywhere(s)


def test_handle_repr_and_already_configured_never_show_userinfo() -> None:
    import subprocess_scripts

    # The installed handle and the error of a second, different call, in a fresh interpreter.
    result = subprocess_scripts.run("wiring", "userinfo_conflict", CANARY)
    assert result.returncode == 0, result.stderr
    assert "TracingHandle" in result.stdout and "AlreadyConfiguredError" in result.stdout
    assert "127.0.0.1:2" in result.stdout  # the error names what differs
    assert CANARY not in result.stdout + result.stderr


def test_configure_with_a_file_pyyaml_cannot_build_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tracing.yaml"
    path.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\nsamplingRatePerMillion: 2001-13-45\n"
    )
    with caplog.at_level(logging.ERROR, logger="k8s_otel"):
        handle = k8s_otel.configure(config_file=path, install=False)
    try:
        assert handle.settings.sampling_rate_per_million.value is None
        [record] = [r for r in caplog.records if r.name.startswith("k8s_otel")]
        assert record.levelno == logging.ERROR
        assert "line 3" in record.getMessage() and "ValueError" in record.getMessage()  # where, and what
    finally:
        handle.shutdown()


def test_configure_with_a_fifo_as_the_file_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    s = resolve_settings(config_file=fifo, environ={})
    [problem] = s.problems
    assert str(fifo) in problem


_HEADER_TEXT = st.lists(
    st.one_of(
        st.sampled_from(
            ["authorization", "x-api-key", "Authorization:", "bad name", "", " ", CANARY, "x" * 300]
        ),
        st.text(max_size=12),
    ),
    max_size=3,
).map(" ".join)
_VALUE_TEXT = st.lists(
    st.one_of(
        st.sampled_from(
            [
                CANARY,
                f"Bearer {CANARY}",
                "%0A",
                "%0D",
                "%00",
                "%2C",
                ",",
                "=",
                "==",
                ";",
                '"',
                "\\",
                " ",
                "\n",
                "\t",
                "%",
                "%zz",
                "é",
            ]
        ),
        st.text(max_size=8),
    ),
    max_size=5,
).map("".join)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_HEADER_TEXT, st.sampled_from(["=", ":", ": ", " = ", ""]), _VALUE_TEXT), max_size=4)
)
def test_generated_header_text_never_shows_the_canary_or_sends_a_bad_value(
    entries: list[tuple[str, str, str]],
) -> None:
    text = ",".join(name + sep + value for name, sep, value in entries)
    for s in (
        resolve_settings(environ={"OTEL_EXPORTER_OTLP_HEADERS": text}),
        resolve_settings(headers=text, environ={}),
        resolve_settings(headers=[(name, value) for name, _, value in entries], environ={}),
    ):
        assert CANARY not in shown_everywhere(s)
        for name, value in s.header_pairs():
            assert name and name == name.lower() and CANARY not in name
            assert value == value.strip() and all(0x20 <= ord(c) < 0x7F for c in value)


_PLAIN_ENV = st.sampled_from(
    [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_INSECURE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_EXPORT_TIMEOUT",
    ]
)
_PLAIN_VALUES = st.one_of(
    st.sampled_from(["http/protobuf", "grpc", "k8s_per_million", "true", "1e309", "nan", "-1", "gzip"]),
    st.text(max_size=30),
)
# Where the canary is a credential: userinfo in an endpoint, a header value.
_ENDPOINT_VALUES = st.one_of(
    st.sampled_from(
        [f"http://u:{CANARY}@h:4317", f"{CANARY}@h:1", f"https://{CANARY}@[::1]:1/v1", f"dns://:{CANARY}@h:1"]
    ),
    st.text(max_size=20).map(lambda t: f"http://u:{CANARY}@{t}"),
)
_HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            f"a={CANARY}%0A",
            f"a=Bearer%20{CANARY}",
            f"Authorization: Basic {CANARY}",
            f"{CANARY}==",
            f"a=x,{CANARY}",
        ]
    ),
    st.text(max_size=20).map(lambda t: f"x-t={CANARY}{t}"),
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_PLAIN_ENV, _PLAIN_VALUES, max_size=6),
    st.dictionaries(
        st.sampled_from(["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]),
        _ENDPOINT_VALUES,
    ),
    st.dictionaries(
        st.sampled_from(["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"]), _HEADER_VALUES
    ),
)
def test_generated_environments_never_raise_and_never_show_a_credential(
    plain: dict[str, str], endpoints: dict[str, str], headers: dict[str, str]
) -> None:
    environ = {k: v.replace("\x00", "") for k, v in {**plain, **endpoints, **headers}.items()}
    s = resolve_settings(environ=environ)
    assert CANARY not in shown_everywhere(s)
    assert CANARY not in s.grpc_target


def test_a_fifo_as_a_tls_file_is_reported_and_never_read(tmp_path: Path) -> None:
    from k8s_otel._exporter import _read

    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_CERTIFICATE": str(fifo)})
    [problem] = s.problems
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" in problem and str(fifo) in problem
    assert _read(str(fifo)) is None  # returns at once instead of waiting for a writer


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    head=st.sampled_from(["http://", "https://", "dns://", "dns:///", "http:/", "//", "", "HTTP://"]),
    user=st.text(alphabet="ab:/?#%@", max_size=4),
    around=st.tuples(st.text(alphabet="x/?#%:;", max_size=3), st.text(alphabet="x/?#%:;", max_size=3)),
    host=st.sampled_from(
        ["collector:4317", "[::1]:4317", "[fe80::1%25eth0]:4317", "collector:4318/v1/traces"]
    ),
)
def test_no_userinfo_form_keeps_the_password(
    head: str, user: str, around: tuple[str, str], host: str
) -> None:
    endpoint = f"{head}{user}:{around[0]}{CANARY}{around[1]}@{host}"
    s = resolve_settings(endpoint=endpoint, environ={})
    assert CANARY not in s.endpoint.value and CANARY not in s.grpc_target
    assert CANARY not in shown_everywhere(s)


# --- headers: the SDK's parse_env_headers, our checks on top (issue 17) ---------------------------

_ASCII_ENTRY = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24)


@hypothesis_settings(max_examples=500, deadline=None)
@given(_ASCII_ENTRY.filter(lambda t: "," not in t))
def test_an_entry_we_pass_to_the_sdk_is_one_it_reads_without_logging(entry: str) -> None:
    # The SDK is the oracle: whatever our pre-check lets through, parse_env_headers must read as one
    # header and never log (it would log the entry, value and all).
    from opentelemetry.util.re import parse_env_headers

    sdk_logger = logging.getLogger("opentelemetry.util.re")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    sdk_logger.addHandler(handler)
    try:
        problems: list[str] = []
        pairs = parse_headers(entry, problems)
        stock = parse_env_headers(entry, liberal=True)
    finally:
        sdk_logger.removeHandler(handler)
    if pairs:
        [(name, value)] = pairs
        assert dict(stock) == {name: value.reveal()}  # the SDK's reading, exactly
        assert not records  # the SDK logged nothing, for our call nor the stock one
    assert len(pairs) + len(problems) <= 1 or not entry.strip(" \t")


@pytest.mark.parametrize(
    ("text", "name"),
    [("x%41=1", "xa"), ("X-Api%2DKey=1", "x-api-key")],
)
def test_a_percent_encoded_name_is_sent_as_the_sdk_decodes_it(text: str, name: str) -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_HEADERS": text})
    assert s.header_pairs() == ((name, "1"),)
    assert s.problems == ()


@pytest.mark.parametrize("text", [f"x%0Ay={CANARY}", f"a%20b={CANARY}", f"%3A={CANARY}"])
def test_a_name_that_decodes_to_no_token_is_refused_and_reported(text: str) -> None:
    s = resolve_settings(environ={"OTEL_EXPORTER_OTLP_HEADERS": text})
    assert s.header_pairs() == ()
    assert s.problems == (
        "OTEL_EXPORTER_OTLP_HEADERS: entry 1: the header name decodes to something that is not a header token; skipped",
    )
    assert CANARY not in shown_everywhere(s)
