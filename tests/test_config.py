"""TracingConfiguration files: the upstream test cases, with kube-apiserver's and the kubelet's messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_otel import _gourl
from k8s_otel.config import (
    TracingConfiguration,
    TracingConfigurationError,
    aggregate,
    load_tracing_configuration,
    parse_tracing_configuration,
    validate_tracing_configuration,
)

SCHEME_DETAIL = (
    "unsupported scheme: {}.  Options are none, dns, unix, or unix-abstract.  "
    "See https://github.com/grpc/grpc/blob/master/doc/naming.md"
)


def write(tmp_path: Path, text: str, name: str = "tracing.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# kubernetes/apiserver pkg/server/options/tracing_test.go, TestReadTracingConfiguration.
# Error strings there are prefix matches.


def test_read_empty(tmp_path: Path) -> None:
    assert load_tracing_configuration(write(tmp_path, "")) == TracingConfiguration()


def test_read_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TracingConfigurationError) as error:
        load_tracing_configuration("test-tracing-config-absent")
    assert str(error.value) == (
        'unable to read tracing configuration from "test-tracing-config-absent": '
        "open test-tracing-config-absent: no such file or directory"
    )


def test_read_duplicate_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apiVersion: apiserver.config.k8s.io/v1alpha1\nkind: TracingConfiguration\n"
        "endpoint: localhost:4317\nendpoint: localhost:4318\n",
    )
    with pytest.raises(TracingConfigurationError) as error:
        load_tracing_configuration(path)
    assert str(error.value).startswith("unable to decode tracing configuration data: strict decoding error")
    assert '"endpoint"' in str(error.value)


def test_read_unknown_field(tmp_path: Path) -> None:
    path = write(
        tmp_path, "apiVersion: apiserver.config.k8s.io/v1alpha1\nkind: TracingConfiguration\nfoo: bar\n"
    )
    with pytest.raises(TracingConfigurationError) as error:
        load_tracing_configuration(path)
    assert (
        str(error.value)
        == 'unable to decode tracing configuration data: strict decoding error: unknown field "foo"'
    )


def test_read_v1alpha1(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apiVersion: apiserver.config.k8s.io/v1alpha1\nkind: TracingConfiguration\n"
        "endpoint: localhost:4317\nsamplingRatePerMillion: 12345\n",
    )
    assert load_tracing_configuration(path) == TracingConfiguration("localhost:4317", 12345)


def test_read_ip_address(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apiVersion: apiserver.config.k8s.io/v1alpha1\nkind: TracingConfiguration\nendpoint: 127.0.0.1:4317\n",
    )
    assert load_tracing_configuration(path) == TracingConfiguration("127.0.0.1:4317", None)


def test_read_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: apps/v1\nkind: DaemonSet\n")
    with pytest.raises(TracingConfigurationError) as error:
        load_tracing_configuration(path)
    assert str(error.value).startswith(
        'unable to decode tracing configuration data: no kind "DaemonSet" is registered for version "apps/v1" in scheme'
    )


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1", "v1"])
def test_every_apiserver_version_decodes(tmp_path: Path, version: str) -> None:
    path = write(
        tmp_path,
        f"apiVersion: apiserver.config.k8s.io/{version}\nkind: TracingConfiguration\nsamplingRatePerMillion: 100\n",
    )
    assert load_tracing_configuration(path).sampling_rate_per_million == 100


def test_json_files(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"apiVersion": "apiserver.config.k8s.io/v1", "kind": "TracingConfiguration", "endpoint": "collector:4317"}',
        "tracing.json",
    )
    assert load_tracing_configuration(path) == TracingConfiguration("collector:4317", None)


def test_json_duplicate_field(tmp_path: Path) -> None:
    text = '{"apiVersion": "apiserver.config.k8s.io/v1", "kind": "TracingConfiguration", "endpoint": "a", "endpoint": "b"}'
    with pytest.raises(TracingConfigurationError, match='strict decoding error: duplicate field "endpoint"'):
        parse_tracing_configuration(text)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (
            "samplingRatePerMillion: abc",
            "json: cannot unmarshal string into Go struct field TracingConfiguration.samplingRatePerMillion of type int32",
        ),
        (
            "samplingRatePerMillion: 1.5",
            "json: cannot unmarshal number 1.5 into Go struct field "
            "TracingConfiguration.samplingRatePerMillion of type int32",
        ),
        (
            "samplingRatePerMillion: true",
            "json: cannot unmarshal bool into Go struct field TracingConfiguration.samplingRatePerMillion of type int32",
        ),
        (
            "samplingRatePerMillion: 3000000000",
            "json: cannot unmarshal number 3000000000 into Go struct field "
            "TracingConfiguration.samplingRatePerMillion of type int32",
        ),
        (
            "endpoint: 4317",
            "json: cannot unmarshal number 4317 into Go struct field TracingConfiguration.endpoint of type string",
        ),
        (
            "endpoint: [a, b]",
            "json: cannot unmarshal array into Go struct field TracingConfiguration.endpoint of type string",
        ),
    ],
)
def test_wrong_field_types(text: str, detail: str) -> None:
    with pytest.raises(TracingConfigurationError) as error:
        parse_tracing_configuration(
            f"apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n{text}\n"
        )
    assert str(error.value) == f"unable to decode tracing configuration data: {detail}"


def test_integral_float_rate_is_accepted_as_go_yaml_does() -> None:
    text = (
        "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\nsamplingRatePerMillion: 100.0\n"
    )
    assert parse_tracing_configuration(text).sampling_rate_per_million == 100


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("apiVersion: apiserver.config.k8s.io/v1\nendpoint: x\n", "Object 'Kind' is missing"),
        (
            "apiVersion: apiserver.k8s.io/v1beta1\nkind: TracingConfiguration\n",
            'no kind "TracingConfiguration" is registered for version "apiserver.k8s.io/v1beta1"',
        ),
        ("- a\n- b\n", "couldn't get version/kind; json parse error: json: cannot unmarshal array"),
        ("just text", "couldn't get version/kind; json parse error: json: cannot unmarshal string"),
        ("a: [\n", "unable to decode tracing configuration data: while parsing"),
        ("kind: A\n---\nkind: B\n", "more than one YAML document"),
    ],
)
def test_malformed_documents(text: str, needle: str) -> None:
    with pytest.raises(TracingConfigurationError) as error:
        parse_tracing_configuration(text)
    assert needle in str(error.value)
    assert str(error.value).startswith("unable to decode tracing configuration data: ")


def test_kubelet_configuration_takes_tracing_and_ignores_the_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        "cgroupDriver: systemd\nmaxPods: 110\n"
        "tracing:\n  endpoint: localhost:4317\n  samplingRatePerMillion: 12\n",
    )
    config = load_tracing_configuration(path)
    assert config == TracingConfiguration("localhost:4317", 12)
    assert config.field_path == "tracing"


def test_kubelet_configuration_without_tracing(tmp_path: Path) -> None:
    path = write(
        tmp_path, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: 110\n"
    )
    assert load_tracing_configuration(path) == TracingConfiguration()


def test_kubelet_tracing_is_decoded_strictly() -> None:
    text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ntracing:\n  foo: 1\n"
    with pytest.raises(TracingConfigurationError, match='strict decoding error: unknown field "foo"'):
        parse_tracing_configuration(text)
    text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ntracing: 3\n"
    with pytest.raises(TracingConfigurationError, match=r"KubeletConfiguration\.tracing of type"):
        parse_tracing_configuration(text)


def test_kubelet_errors_use_the_tracing_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        "tracing:\n  samplingRatePerMillion: -1\n",
    )
    with pytest.raises(TracingConfigurationError) as error:
        load_tracing_configuration(path)
    assert error.value.errors == (
        "tracing.samplingRatePerMillion: Invalid value: -1: sampling rate must be positive",
    )
    assert str(error.value) == (
        "failed to validate tracing configuration: "
        "tracing.samplingRatePerMillion: Invalid value: -1: sampling rate must be positive"
    )


def test_loading_validates_and_reports_every_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n"
        "endpoint: http://localhost:4317\nsamplingRatePerMillion: 1000001\n",
    )
    with pytest.raises(TracingConfigurationError) as error:
        load_tracing_configuration(path)
    # The apiserver validates with a nil field path: bare field names.
    assert error.value.errors == (
        "samplingRatePerMillion: Invalid value: 1000001: sampling rate per million must be less than or equal to one million",
        'endpoint: Invalid value: "http://localhost:4317": ' + SCHEME_DETAIL.format("http"),
    )
    assert str(error.value).startswith("failed to validate tracing configuration: [samplingRatePerMillion: ")
    assert error.value.path == str(path)


def test_directory_and_oversized_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(TracingConfigurationError) as error:
        load_tracing_configuration(tmp_path)
    assert (
        str(error.value)
        == f'unable to read tracing configuration from "{tmp_path}": read {tmp_path}: is a directory'
    )
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(TracingConfigurationError, match="larger than 1048576 bytes"):
        load_tracing_configuration(big)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(TracingConfigurationError, match=r"^unable to decode tracing configuration data: "):
        load_tracing_configuration(binary)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: x")
    path.chmod(0)
    with pytest.raises(TracingConfigurationError, match="permission denied"):
        load_tracing_configuration(path)


def test_empty_path() -> None:
    with pytest.raises(TracingConfigurationError, match=r"^tracing config file was empty$"):
        load_tracing_configuration("")


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_arbitrary_input_only_ever_raises_the_documented_error(data: str | bytes) -> None:
    try:
        parse_tracing_configuration(data)
    except TracingConfigurationError as error:
        assert str(error).startswith("unable to decode tracing configuration data: ")


# kubernetes/component-base tracing/api/v1/config_test.go, TestValidateTracingConfiguration
# (field path "tracing"), with the messages of the kubelet's validation_test.go where it has them.
@pytest.mark.parametrize(
    ("name", "config", "expected"),
    [
        ("sampling-rate-valid", TracingConfiguration(sampling_rate_per_million=12378), []),
        (
            "sampling-rate-negative",
            TracingConfiguration(sampling_rate_per_million=-1),
            ["tracing.samplingRatePerMillion: Invalid value: -1: sampling rate must be positive"],
        ),
        (
            "sampling-rate-negative (1000001)",
            TracingConfiguration(sampling_rate_per_million=1000001),
            [
                "tracing.samplingRatePerMillion: Invalid value: 1000001: "
                "sampling rate per million must be less than or equal to one million"
            ],
        ),
        ("default Endpoint", TracingConfiguration(endpoint="localhost:4317"), []),
        ("dns Endpoint", TracingConfiguration(endpoint="dns://google.com:4317"), []),
        ("unix Endpoint", TracingConfiguration(endpoint="unix://path/to/socket"), []),
        (
            "invalid Endpoint",
            TracingConfiguration(endpoint="http://localhost:4317"),
            ['tracing.endpoint: Invalid value: "http://localhost:4317": ' + SCHEME_DETAIL.format("http")],
        ),
        (
            "invalid url",
            TracingConfiguration(endpoint="dn%2s://localhost:4317"),
            [
                'tracing.endpoint: Invalid value: "dn%2s://localhost:4317": parse "dn%2s://localhost:4317": '
                "first path segment in URL cannot contain colon"
            ],
        ),
    ],
)
def test_validate_upstream_cases(name: str, config: TracingConfiguration, expected: list[str]) -> None:
    assert validate_tracing_configuration(config, field_path="tracing") == expected


@pytest.mark.parametrize(
    "endpoint",
    [
        "",
        "127.0.0.1:4317",
        "[::1]:4317",
        "localhost",
        "otel-collector.observability.svc:4317",
        "unix:///var/run/otel.sock",
        "dns:///collector:4317",
        "unix:/run/otel.sock",
    ],
)
def test_validate_valid_edge_endpoints(endpoint: str) -> None:
    assert validate_tracing_configuration(TracingConfiguration(endpoint=endpoint)) == []


@pytest.mark.parametrize(
    ("endpoint", "error"),
    [
        (
            "unix-abstract:abc",
            'endpoint: Invalid value: "dns://unix-abstract:abc": parse "dns://unix-abstract:abc": '
            'invalid port ":abc" after host',
        ),
        (
            "localhost:abc",
            'endpoint: Invalid value: "dns://localhost:abc": parse "dns://localhost:abc": invalid port ":abc" after host',
        ),
        (
            "a b:4317",
            'endpoint: Invalid value: "dns://a b:4317": parse "dns://a b:4317": invalid character " " in host name',
        ),
        ("grpc://x:1", 'endpoint: Invalid value: "grpc://x:1": ' + SCHEME_DETAIL.format("grpc")),
        ("HTTP://x:1", 'endpoint: Invalid value: "HTTP://x:1": ' + SCHEME_DETAIL.format("http")),
        ("//x:1", 'endpoint: Invalid value: "//x:1": ' + SCHEME_DETAIL.format("")),
        (
            "dns://x:1/%zz",
            'endpoint: Invalid value: "dns://x:1/%zz": parse "dns://x:1/%zz": invalid URL escape "%zz"',
        ),
        (
            "x:1\n",
            'endpoint: Invalid value: "dns://x:1\\n": parse "dns://x:1\\n": net/url: invalid control character in URL',
        ),
    ],
)
def test_validate_invalid_edge_endpoints(endpoint: str, error: str) -> None:
    assert validate_tracing_configuration(TracingConfiguration(endpoint=endpoint)) == [error]


def test_validate_none_and_empty() -> None:
    assert validate_tracing_configuration(None) == []
    assert validate_tracing_configuration(TracingConfiguration()) == []


def test_aggregate_formatting() -> None:
    assert aggregate(["a"]) == "a"
    assert aggregate(["a", "b", "a"]) == "[a, b]"


@given(st.text(max_size=80))
def test_go_url_parse_never_raises_anything_else(text: str) -> None:
    try:
        _gourl.parse(text)
    except _gourl.GoURLError as error:
        assert str(error).startswith("parse ")
