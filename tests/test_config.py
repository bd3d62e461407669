"""TracingConfiguration files: the upstream test cases, with kube-apiserver's and the kubelet's messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_otel import _gourl
from k8s_otel._config import (
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


# Hostile files (issue 11): whatever is in the file, the only outcome is a TracingConfiguration or a
# TracingConfigurationError that quotes nothing long and nothing that looks like a credential.

CANARY = "c2VjcmV0LWNhbmFyeS0xMjM0NTY3ODkw"  # base64 of a secret: what a pasted token looks like
HEADER = "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "samplingRatePerMillion: 2001-13-45\n",
            "line 3, column 25 cannot be decoded (PyYAML raised ValueError)",
        ),
        ("samplingRatePerMillion: !!int x\n", "cannot be decoded (PyYAML raised ValueError)"),
        ("? !!set {a}\n: 1\n", "found unhashable key at line 3, column 3"),
        ("samplingRatePerMillion: " + "9" * 5000 + "\n", "unable to decode tracing configuration data: "),
        ("endpoint: !!binary x\n", "failed to decode base64 data"),
        ("endpoint: !!timestamp x\n", "cannot be decoded"),
        ("endpoint: !!python/object:os.system x\n", "could not determine a constructor for the tag"),
        ("a: *undefined\n", "found undefined alias at line 3, column 4"),
    ],
)
def test_pyyaml_constructor_failures_become_configuration_errors(text: str, needle: str) -> None:
    with pytest.raises(TracingConfigurationError) as error:
        parse_tracing_configuration(HEADER + text)
    assert needle in str(error.value)
    assert len(str(error.value)) < 300


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[" * 100_000, "nesting"),
        ("a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 200)), "nesting deeper than 32 levels"),
        ("---\n" * 200_000, "more than 16 YAML documents"),
        ("a: &a [x]\nb: [" + ", ".join(["*a"] * 80_000) + "]\n", "more than 64 YAML aliases"),
        ("endpoint: " + "x" * ((1 << 20) - 20), "a value longer than 16384 characters at line 1, column 11"),
        ("".join(f"k{i}: v\n" for i in range(60_000)), "more than 20000 YAML nodes"),
    ],
)
def test_costly_files_are_refused_by_the_limits(text: str, needle: str) -> None:
    assert len(text.encode()) <= 1 << 20
    with pytest.raises(TracingConfigurationError) as error:
        parse_tracing_configuration(text)
    assert needle in str(error.value)
    assert len(str(error.value)) < 300


def test_errors_quote_at_most_40_escaped_characters_of_the_file() -> None:
    long_kind = "K" * 1_000_000
    with pytest.raises(TracingConfigurationError) as error:
        parse_tracing_configuration(f"apiVersion: v1\nkind: {long_kind[:16000]}\n")
    assert 'no kind "KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK..." is registered for version "v1"' in str(
        error.value
    )
    with pytest.raises(TracingConfigurationError) as error:
        parse_tracing_configuration(HEADER + "".join(f"field{i}: 1\n" for i in range(100)))
    assert str(error.value).endswith('unknown field "field4", and 95 more unknown fields')
    with pytest.raises(TracingConfigurationError) as error:
        parse_tracing_configuration("a: [\x1b[31m\n")
    assert "\x1b" not in str(error.value)


@pytest.mark.parametrize(
    "text",
    [
        f"{HEADER}{CANARY}: 1\n",
        f"apiVersion: v1\nkind: {CANARY}\n",
        f"apiVersion: {CANARY}\nkind: X\n",
        "apiVersion: v1\nkind: Bearer abc\n",
        f"{HEADER}endpoint: !{CANARY} x\n",
        f"{HEADER}endpoint: !a'{CANARY} x\n",
        f"{HEADER}endpoint: !<tag:{CANARY}> x\n",
        f"{HEADER}endpoint: [{CANARY}\n",
        f"{HEADER}token: {CANARY} [\n",
        f"{HEADER}endpoint: {CANARY}\nendpoint: x\n",
        f"{HEADER}{CANARY}: 1\n{CANARY}: 2\n",
        f"{HEADER}endpoint: http://user:{CANARY}@host:4317\n",
        f"{HEADER}endpoint: dns://{CANARY}:4317/%zz\n",
        f"{HEADER}endpoint: {CANARY}:abc\n",
    ],
)
def test_errors_never_show_a_value_that_looks_like_a_credential(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TracingConfigurationError) as error:
        load_tracing_configuration(path)
    assert CANARY not in str(error.value) and "Bearer" not in str(error.value)
    assert CANARY not in " ".join(error.value.errors)


def test_userinfo_in_a_file_endpoint_is_hidden_in_validation_errors() -> None:
    errors = validate_tracing_configuration(TracingConfiguration(endpoint="http://user:pw@host:4317"))
    assert errors == [
        'endpoint: Invalid value: "http://<redacted>@host:4317": ' + SCHEME_DETAIL.format("http")
    ]


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(TracingConfigurationError) as error:
        load_tracing_configuration(fifo)
    assert str(error.value) == (
        f'unable to read tracing configuration from "{fifo}": read {fifo}: not a regular file (a FIFO, socket or device)'
    )
    assert error.value.reason == "read"


def test_a_device_is_refused_without_reading_it() -> None:
    with pytest.raises(TracingConfigurationError, match="not a regular file"):
        load_tracing_configuration("/dev/zero")


def test_a_nul_byte_in_the_path_is_a_read_error() -> None:
    with pytest.raises(TracingConfigurationError, match="unable to read tracing configuration"):
        load_tracing_configuration("bad\x00path")


# A grammar of YAML: tokens, tags, anchors, aliases, flow and block nesting, documents, and the
# canary in every position. Whatever comes out, nothing but TracingConfigurationError is raised and
# the canary never appears in a message.
_SCALARS = st.sampled_from(
    [
        "x",
        "1",
        "-1",
        "2001-13-45",
        "2001-01-01",
        "1e999",
        ".nan",
        "0x1f",
        "0o17",
        "~",
        "null",
        "true",
        "yes",
        "''",
        '""',
        "'a''b'",
        '"\\x00"',
        '"\\ud800"',
        "9" * 400,
        CANARY,
        f"Bearer {CANARY}",
        "localhost:4317",
        "http://u:" + CANARY + "@h:1",
        "[::1]:1",
        "=",
        "<<",
        "TracingConfiguration",
        "apiserver.config.k8s.io/v1",
        "\t",
        "%",
        "@",
        "`",
        "|",
        ">",
    ]
)
_TAGS = st.sampled_from(
    [
        "",
        "!!int ",
        "!!float ",
        "!!bool ",
        "!!null ",
        "!!str ",
        "!!binary ",
        "!!timestamp ",
        "!!set ",
        "!!omap ",
        "!!pairs ",
        "!!map ",
        "!!seq ",
        "!!merge ",
        "!!python/tuple ",
        "!local ",
        f"!{CANARY} ",
        f"!a'{CANARY} ",
        f"!<x:{CANARY}> ",
        "!<tag:yaml.org,2002:int> ",
    ]
)
_KEYS = st.sampled_from(
    ["apiVersion", "kind", "endpoint", "samplingRatePerMillion", "tracing", CANARY, "? x", "<<", "1"]
)


def _flow(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(_KEYS, children), max_size=4).map(
            lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        ),
    )


_NODES = st.recursive(
    st.one_of(st.tuples(_TAGS, _SCALARS).map("".join), st.sampled_from(["*a", "*b", f"*{CANARY}"])),
    lambda children: st.one_of(
        _flow(children),
        st.tuples(_TAGS, _flow(children)).map("".join),
        st.tuples(st.sampled_from(["&a ", "&b ", f"&{CANARY} "]), children).map("".join),
    ),
    max_leaves=12,
)
_LINES = st.lists(
    st.one_of(
        st.tuples(_KEYS, _NODES).map(lambda kv: f"{kv[0]}: {kv[1]}"),
        st.tuples(_KEYS, _NODES).map(lambda kv: f"  {kv[0]}: {kv[1]}"),
        _NODES.map(lambda node: f"- {node}"),
        st.sampled_from(
            ["---", "...", "%YAML 1.1", "%TAG ! tag:x,2000:", "#" + CANARY, "key: |", "  " + CANARY]
        ),
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(st.booleans(), _LINES)
def test_generated_yaml_raises_only_the_documented_error(with_header: bool, lines: list[str]) -> None:
    text = (HEADER if with_header else "") + "\n".join(lines)
    try:
        config = parse_tracing_configuration(text)
    except TracingConfigurationError as error:
        message = str(error)
        assert message.startswith("unable to decode tracing configuration data: ")
        assert CANARY not in message and "\n" not in message
        return
    errors = validate_tracing_configuration(config, field_path=config.field_path)
    assert all(CANARY not in error for error in errors)


def test_pyyaml_is_imported_only_when_a_file_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n")
    import subprocess_scripts

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}
    result = subprocess_scripts.run("probes", "yaml_import", str(path), env=env)
    assert result.stdout.split() == ["False", "True"], result.stderr


# Go 1.26 net/url parseHost (issue 14): brackets only at the start of the host, only around an
# IPv6 literal (checked with net/netip.ParseAddr, whose messages are Go's too).
@pytest.mark.parametrize(
    ("endpoint", "detail"),
    [
        ("[127.0.0.1]:4317", "invalid IP-literal"),
        ("dns://[collector]:4317", 'invalid host: ParseAddr("collector"): unable to parse IP'),
        ("a[b]:1", "invalid IP-literal"),
        ("dns://x[::1]:1", "invalid IP-literal"),
        ("[]:1", 'invalid host: ParseAddr(""): unable to parse IP'),
        ("[1::2::3]:1", 'invalid host: ParseAddr("1::2::3"): multiple :: in address (at ":3")'),
        (
            "[12345::]:1",
            'invalid host: ParseAddr("12345::"): each group must have 4 or less digits (at "12345::")',
        ),
        ("[1.2.3]:1", 'invalid host: ParseAddr("1.2.3"): IPv4 address too short'),
        ("[01.2.3.4]:1", 'invalid host: ParseAddr("01.2.3.4"): IPv4 field has octet with leading zero'),
        ("[fe80::1%25]:1", 'invalid host: ParseAddr("fe80::1%"): zone must be a non-empty string'),
        ("[%25x]:1", 'invalid host: ParseAddr("%x"): missing IPv6 address'),
        (
            "[::1:2:3:4:5:6:7:8]:1",
            'invalid host: ParseAddr("::1:2:3:4:5:6:7:8"): the :: must expand to at least one field of zeros',
        ),
        (
            "[1:2:3:4:5:6:7:8:9]:1",
            'invalid host: ParseAddr("1:2:3:4:5:6:7:8:9"): trailing garbage after address (at "9")',
        ),
        (
            "[1:2:3:4:5:6:7:8::]:1",
            'invalid host: ParseAddr("1:2:3:4:5:6:7:8::"): the :: must expand to at least one field of zeros',
        ),
        ("[1:2]:1", 'invalid host: ParseAddr("1:2"): address string too short'),
        ("[1.2.3.4:5]:1", 'invalid host: ParseAddr("1.2.3.4:5"): unexpected character (at ":5")'),
        ("[::1.2.3.256]:1", 'invalid host: ParseAddr("::1.2.3.256"): IPv4 field has value >255'),
        (
            "[1:1.2.3.4]:1",
            'invalid host: ParseAddr("1:1.2.3.4"): embedded IPv4 address must replace the final 2 fields of the address (at "1.2.3.4")',
        ),
    ],
)
def test_go_1_26_bracketed_hosts(endpoint: str, detail: str) -> None:
    url = endpoint if "//" in endpoint else "dns://" + endpoint
    assert validate_tracing_configuration(TracingConfiguration(endpoint=endpoint)) == [
        f'endpoint: Invalid value: "{url}": parse "{url}": {detail}'
    ]


@pytest.mark.parametrize(
    "endpoint",
    ["[::1]:4317", "[fe80::1%25en0]:4317", "[::ffff:127.0.0.1]:4317", "dns://[2001:db8::1]:4317", "[::]:1"],
)
def test_go_1_26_accepts_ipv6_literals(endpoint: str) -> None:
    assert validate_tracing_configuration(TracingConfiguration(endpoint=endpoint)) == []


def test_go_1_26_strict_colons_only_for_http() -> None:
    assert _gourl.parse("dns://a:1:2").host == "a:1:2"  # other schemes: the last colon is the port
    with pytest.raises(_gourl.GoURLError, match=r'^parse "http://a:1:2": invalid port ":1:2" after host$'):
        _gourl.parse("http://a:1:2")


def test_loading_drops_userinfo_from_a_valid_endpoint(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}endpoint: dns://u:{CANARY}@collector:4317\n")
    config = load_tracing_configuration(path)
    assert (config.endpoint, config.userinfo_dropped) == ("dns://collector:4317", True)
    assert CANARY not in repr(config)


@pytest.mark.parametrize("key", ["c2VjcmV0LXZhbHVl", "Q0FOQVJZLXNlY3JldA"])
def test_a_short_base64_key_is_never_quoted_in_a_duplicate_field_error(key: str) -> None:
    with pytest.raises(TracingConfigurationError) as caught:
        parse_tracing_configuration(f"{key}: 1\n{key}: 1\n")
    assert key not in str(caught.value)
    assert "duplicate field" in str(caught.value)
