"""OTEL_CONFIG_FILE: the k8s_per_million sampler, the k8s detector and propagator from the SDK's file
configuration, and the file check behind ``k8s-otel doctor``/``validate``.

The end-to-end test needs ``opentelemetry-configuration`` (Python >= 3.10, pins the SDK): it runs in
the ``file-config`` tox environment and is skipped where the package is not installed.
"""

from __future__ import annotations

import logging
import os
import signal
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.util._importlib_metadata import entry_points

from k8s_otel._file_config import RATE_ENV, check_config_file, per_million_sampler, sampler_rate
from zero_code import OTLPReceiver, distro_env, instrumented, one, read_report, stop

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "otel-config.yaml"
TRACING = (
    "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\nsamplingRatePerMillion: {rate}\n"
)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "otel.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_sampler_entry_point_is_in_the_group_the_file_configuration_reads() -> None:
    [entry_point] = entry_points(group="opentelemetry_sampler", name="k8s_per_million")
    assert entry_point.load() is per_million_sampler


def test_the_rate_comes_from_the_tracing_configuration_then_the_variable(tmp_path: Path) -> None:
    tracing = tmp_path / "tracing.yaml"
    tracing.write_text(TRACING.format(rate=250))
    both = {"K8S_OTEL_TRACING_CONFIG": str(tracing), RATE_ENV: "10"}
    assert sampler_rate(environ=both).rate == 250
    assert sampler_rate(environ={RATE_ENV: "10"}).rate == 10
    assert sampler_rate({"sampling_rate_per_million": 7}, both).rate == 7  # once upstream passes properties
    unset = sampler_rate(environ={})
    assert unset.rate is None and unset.problems == ()


def test_bad_rates_are_named_and_never_sample_roots(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracing = tmp_path / "tracing.yaml"
    tracing.write_text(TRACING.format(rate=2000000))
    monkeypatch.setenv("K8S_OTEL_TRACING_CONFIG", str(tracing))
    monkeypatch.setenv(RATE_ENV, "ten")
    with caplog.at_level(logging.WARNING):
        sampler = per_million_sampler()
    assert sampler.get_description().startswith("ParentBased{root:AlwaysOffSampler,")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("samplingRatePerMillion" in w and "2000000" in w for w in warnings)  # the file's rate
    assert any(RATE_ENV in w and "'ten'" in w for w in warnings)  # and the variable's


@given(st.text(max_size=30))
def test_any_rate_text_gives_a_sampler(text: str) -> None:
    assert per_million_sampler.__name__ and sampler_rate(environ={RATE_ENV: text}).origin in (
        RATE_ENV,
        "unset",
    )


def test_the_example_file_checks_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    report = check_config_file(EXAMPLE, environ={RATE_ENV: "100"})
    assert report.ok, report.problems
    try:
        import opentelemetry.configuration  # noqa: F401

        assert report.schema_checked  # the SDK's own loader accepted it
    except ImportError:
        assert "opentelemetry-configuration" in report.notes[0]  # names what would check the schema
    assert any("100" in note and RATE_ENV in note for note in report.notes)  # the rate, and where from


def test_the_check_names_every_problem(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        """
        file_format: "1.0"
        resource:
          detection/development:
            detectors:
              - k8s: {rooot: /host, env_names: [POD]}
        propagator:
          composite:
            - k8s: {trust: link}
        tracer_provider:
          sampler:
            parent_based:
              root:
                k8s_per_million: {sampling_rate_per_million: 100}
        """,
    )
    report = check_config_file(path, environ={})
    # Four of ours; with opentelemetry-configuration installed, the SDK's schema check adds its own.
    ours = [problem for problem in report.problems if "configuration schema" not in problem]
    assert len(ours) == 4, report.problems

    def named(*tokens: str) -> bool:
        return any(all(token in problem for token in tokens) for problem in report.problems)

    assert named("detector k8s", "'rooot'", "'root'")  # the unknown key, and the one meant
    assert named("detector k8s", "env_names")
    assert named("propagator k8s")
    assert named("k8s_per_million")
    assert any("sampling_rate_per_million" in note and "SDK" in note for note in report.notes)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: [b", "not YAML or JSON: "),
        ("- 1\n", "the top level must be a mapping, not list"),
        ("!!python/name:os.system x", "not YAML or JSON: "),
    ],
)
def test_unreadable_files_are_reported_not_raised(tmp_path: Path, text: str, problem: str) -> None:
    report = check_config_file(config(tmp_path, text))
    (found,) = report.problems
    assert found.startswith(f"{tmp_path / 'otel.yaml'}: {problem}")
    (missing,) = check_config_file(tmp_path / "missing.yaml").problems
    assert missing.startswith(f"{tmp_path / 'missing.yaml'}: ") and "FileNotFoundError" in missing


@given(st.text(max_size=200))
def test_any_file_content_gives_a_report(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "c.yaml"
        path.write_text(text, encoding="utf-8")
        assert isinstance(check_config_file(path, environ={}).problems, list)


def test_an_app_under_opentelemetry_instrument_with_otel_config_file(
    otlp_receiver: OTLPReceiver, tmp_path: Path
) -> None:
    pytest.importorskip("opentelemetry.configuration")
    path = config(
        tmp_path,
        f"""
        file_format: "1.0"
        resource:
          attributes:
            - name: service.name
              value: file-configured
          detection/development:
            detectors:
              - k8s:
                  env_names: {{MY_POD: k8s.pod.name}}
        propagator:
          composite:
            - k8s:
        tracer_provider:
          processors:
            - batch:
                schedule_delay: 60000
                exporter:
                  otlp_grpc:
                    endpoint: http://{otlp_receiver.endpoint}
          sampler:
            k8s_per_million:
        """,
    )
    assert check_config_file(path, environ={RATE_ENV: "1000000"}).ok
    env = distro_env(otlp_receiver, OTEL_CONFIG_FILE=str(path), MY_POD="web-0")
    env[RATE_ENV] = "1000000"
    env["OTEL_TRACES_SAMPLER_ARG"] = "0"  # ignored with a file: the file's sampler decides
    env["OTEL_PYTHON_LOG_CORRELATION"] = "true"
    with instrumented("apps.plain", env) as process:
        report = read_report(process)
        returncode, stderr = stop(process)
    assert report["sampler"].startswith("ParentBased{root:TraceIDRatioBased{1},"), stderr
    assert report["propagator"] == "CompositePropagator"
    assert report["resource"]["k8s.pod.name"] == "web-0"  # the detector got its settings from the file
    assert returncode == -signal.SIGTERM, stderr
    span = one(otlp_receiver.wait_for_spans(1, timeout=5), "span")  # delivered by the SIGTERM flush
    assert span.resource["service.name"] == "file-configured"
    assert span.trace_id == report["trace_id"]
    inside = next(line for line in stderr.splitlines() if "inside the span" in line)
    assert f"trace_id={span.trace_id}" in inside


def test_a_schema_error_names_where_never_the_value(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.configuration")
    canary = "Bearer canary-4f1c9e"
    path = config(
        tmp_path,
        f"""
        file_format: "1.0"
        tracer_provider:
          processors:
            - batch:
                exporter:
                  otlp_grpc:
                    endpoint: http://127.0.0.1:4317
                    headers: "{canary}"
          sampler:
            k8s_per_million:
        """,
    )
    report = check_config_file(path, environ={RATE_ENV: "1"})
    [problem] = report.problems
    assert "tracer_provider -> processors -> 0" in problem  # where in the file
    assert canary not in problem and "canary" not in repr(report)


def test_validate_and_doctor_report_an_sdk_configuration_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from k8s_otel.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "otel-config.yaml"
    assert main(["validate", str(example)]) == 1  # no rate anywhere: roots would never be sampled
    assert "k8s_per_million" in capsys.readouterr().out
    monkeypatch.setenv("K8S_OTEL_SAMPLING_RATE_PER_MILLION", "100")
    assert main(["validate", str(example)]) == 0
    assert "valid SDK configuration file" in capsys.readouterr().out
    monkeypatch.setenv("OTEL_CONFIG_FILE", str(example))
    main(["doctor"])
    assert "OTEL_*" in capsys.readouterr().out  # says the variables are not used


def test_check_config_file_never_blocks_on_a_fifo_nor_echoes_the_file(tmp_path: Path) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    assert "cannot be read" in check_config_file(fifo).problems[0]
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text("file_format: '1.0'\ntoken: !!int Bearer-c2VjcmV0LWNhbmFyeQ\n")
    (problem,) = check_config_file(hostile).problems
    assert "c2VjcmV0LWNhbmFyeQ" not in problem
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 100_000)
    assert check_config_file(deep).problems
