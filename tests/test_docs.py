"""README.md and docs/: the commands CI runs, the quickstart, the demo picture, and the links hold."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from k8s_otel.cli._receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}


def block_after(heading: str, language: str) -> str:
    section = README[README.index(heading) :]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, heading
    return match.group(1)


def test_the_readme_opens_with_the_two_commands_ci_runs() -> None:
    assert README.startswith(
        "# k8s-otel\n\n```sh\npip install . && k8s-otel demo\n```\n\n```sh\npip install -e '.[test]' && pytest -q\n```\n"
    )


def test_the_readme_says_the_package_is_not_on_pypi() -> None:
    assert "**not published on PyPI yet**: `pip install k8s-otel` fails" in README
    assert "pip install k8s-otel " not in README.replace("pip install k8s-otel` fails", "")
    # No page installs the package from an index: every install names a path (a clone or a wheel).
    for path in _markdown_files():
        text = path.read_text(encoding="utf-8").replace("`pip install k8s-otel` fails", "")
        assert re.findall(r"pip install '?k8s[-_]otel", text) == [], path.name


def test_the_readme_names_every_extra_a_user_installs() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    table = pyproject[pyproject.index("[project.optional-dependencies]") :].split("\n[", 1)[0]
    extras = set(re.findall(r"^([\w-]+) = \[", table, re.MULTILINE)) - {"test", "lint"}
    assert {"http", "flask", "auto", "file-config"} <= extras
    sentence = README[README.index("Extras: ") :].split("\n\n", 1)[0]
    assert extras == set(re.findall(r"`([\w-]+)`", re.sub(r"\([^)]*\)", "", sentence))), sentence


def test_the_flask_quickstart_joins_the_caller_s_trace(tmp_path: Path) -> None:
    quickstart = block_after("## Quickstart: an existing Flask webhook", "python")
    assert len(quickstart.strip().splitlines()) == 5
    import subprocess_scripts

    block = tmp_path / "quickstart.py"
    block.write_text(quickstart, encoding="utf-8")
    with OTLPReceiver() as receiver:
        result = subprocess_scripts.run(
            "quickstart",
            str(block),
            env={**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{receiver.endpoint}"},
        )
        assert result.returncode == 0, result.stderr
        [span] = receiver.wait_for_spans(1)
    assert (span.trace_id, span.parent_span_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert span.name == "POST /validate" and span.kind == "SERVER"
    assert span.resource["service.name"] == "my-webhook"
    assert span.attributes["UID"] == "u-1"


def test_the_readme_picture_is_what_demo_draws() -> None:
    picture = block_after("## What the demo shows", "").splitlines()
    result = subprocess.run(
        [sys.executable, "-m", "k8s_otel", "demo", "--requests", "4", "--width", "100"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**ENV, "PYTHONIOENCODING": "utf-8"},
    )
    drawn = result.stdout.splitlines()

    def shape(lines: list[str]) -> list[str]:
        """Rows without times, ids and bars: labels, services and kinds."""
        return [line.split("│")[0].rstrip() for line in lines if "│" in line][:5]

    assert shape(picture) == shape(drawn[drawn.index(next(line for line in drawn if "(allowed)" in line)) :])
    summary = picture[picture.index(next(line for line in picture if line.startswith("requests:"))) :]
    assert summary == drawn[drawn.index(summary[0]) : drawn.index(summary[0]) + len(summary)]
    assert max(len(line) for line in picture) <= 100 or all(
        "│" not in line for line in picture if len(line) > 100
    )


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_and_named_example_file_exists() -> None:
    for path in _markdown_files():
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name}: {target}"
        for named in re.findall(r"(examples/[\w./-]+\.(?:py|yaml|sh)|examples/Dockerfile)", text):
            assert (ROOT / named).exists(), f"{path.name}: {named}"


def test_the_walkthrough_applies_every_manifest_it_names() -> None:
    walkthrough = (ROOT / "docs" / "walkthrough-kind.md").read_text(encoding="utf-8")
    applied = set(re.findall(r"-f (examples/manifests/[\w.-]+\.yaml)", walkthrough))
    manifests = {
        f"examples/manifests/{p.name}"
        for p in (ROOT / "examples" / "manifests").glob("*.yaml")
        if p.name
        not in {
            "otel-collector.yaml",  # held in the collector's ConfigMap
            "kind-cluster.yaml",  # kind's own configuration, used in step 1
            "tracing-apiserver.yaml",  # the production-rate file, shown elsewhere
            "tracing-apiserver-kind.yaml",  # mounted by kind-cluster.yaml
            "kubelet-config.yaml",  # the kubelet's tracing, not part of the walkthrough
            "kopfexample-crd.yaml",  # the kopf example's
            "apiserver-tracing-flags.yaml",  # outside kind
            "instrumentation.yaml",  # needs the OpenTelemetry Operator: docs/zero-code.md
        }
    }
    assert manifests <= applied, manifests - applied


# Every ```python block in README.md and docs/ compiles, and each one that needs no cluster runs in
# a fresh interpreter. A block that leans on names from its surrounding prose gets them from a
# prelude (a Flask app, an AdmissionReview, a fake watch); a check after it asserts what the prose
# next to the block promises.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FLASK_APP = "import flask\napp = flask.Flask('docs')\n"
REVIEW = (
    "review = {'apiVersion': 'admission.k8s.io/v1', 'kind': 'AdmissionReview', 'request': {"
    "'uid': 'u-1', 'operation': 'CREATE', 'kind': {'group': '', 'version': 'v1', 'kind': 'Pod'},"
    "'resource': {'group': '', 'version': 'v1', 'resource': 'pods'}}}\n"
)
FAKE_WATCH = """
class _Watch:
    def stream(self, list_function, namespace, label_selector):
        assert label_selector == SELECTOR
        yield {"type": "ADDED", "object": {"metadata": {"name": "parent", "annotations": {
            "tracing.k8s.io/traceparent": "TRACEPARENT"}}}}
class _Api:
    created = []
    def list_namespaced_config_map(self, *args, **kwargs): ...
    def create_namespaced_config_map(self, namespace, body):
        self.created.append(body)
watch, api, namespace, SELECTOR = _Watch(), _Api(), "default", "app=docs"
from k8s_otel.objects import inject_context, reconcile_span
""".replace("TRACEPARENT", TRACEPARENT)

# (file, the block's first line) -> (prelude, check). Blocks not named here run as they are.
SNIPPETS: dict[tuple[str, str], tuple[str, str]] = {
    ("README.md", "import k8s_otel\nfrom k8s_otel.webhook"): (
        FLASK_APP,
        "assert app.wsgi_app is not None",
    ),
    ("README.md", "import k8s_otel\n\nhandle"): (
        "",
        "assert handle.settings.endpoint.value == 'localhost:4317'\n"
        "assert handle.settings.config_file.value == '/etc/kubernetes/tracing.yaml'",
    ),
    ("README.md", "from k8s_otel.webhook import WSGIMiddleware, ASGIMiddleware"): (FLASK_APP, ""),
    ("controllers.md", "import kopf"): (
        "from k8s_otel.instrumentation import KubernetesClientInstrumentor\n",
        "assert KopfInstrumentor().is_instrumented_by_opentelemetry",
    ),
    ("controllers.md", "KopfInstrumentor().instrument(traceparent"): (
        "from k8s_otel.instrumentation import KopfInstrumentor\n",
        "",
    ),
    ("logging.md", "k8s_otel.configure(log_correlation=True)"): (
        "import k8s_otel, logging\n",
        "record = logging.getLogger('x').makeRecord('x', 20, 'f', 1, 'm', (), None)\n"
        "assert record.otelTraceID == '' and record.trace_id == ''",
    ),
    ("logging.md", "import logging\nfrom k8s_otel import JSONFormatter"): (
        "import io, json, k8s_otel\nk8s_otel.configure(log_correlation=True, service_name='my-operator',"
        " sampling_rate_per_million=1000000)\n",
        "handler.stream = io.StringIO()\nlogging.getLogger().setLevel(logging.INFO)\n"
        "from opentelemetry import trace\n"
        "with trace.get_tracer('docs').start_as_current_span('work') as span:\n"
        "    logging.getLogger('kopf.objects').info(\"Handler 'create_fn' succeeded.\")\n"
        "line = json.loads(handler.stream.getvalue())\n"
        "assert line['trace_id'] == format(span.get_span_context().trace_id, '032x')\n"
        "assert line['span_id'] == format(span.get_span_context().span_id, '016x')\n"
        "assert (line['trace_sampled'], line['service.name'], line['logger']) == (True, 'my-operator', 'kopf.objects')\n"
        "assert line['level'] == 'INFO' and line['time'].endswith('Z')",
    ),
    ("objects.md", "from k8s_otel.objects import extract_context"): (
        "obj = {'metadata': {'name': 'w'}}\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "outer = trace.get_tracer('docs').start_span('request')\n"
        "token = __import__('opentelemetry.context').context.attach(trace.set_span_in_context(outer))\n",
        "stamp = obj['metadata']['annotations']['tracing.k8s.io/traceparent']\n"
        "assert stamp.split('-')[1] == format(outer.get_span_context().trace_id, '032x')\n"
        "assert span.kind == trace.SpanKind.CONSUMER and span.parent is None\n"
        "assert [link.context.trace_id for link in span.links] == [outer.get_span_context().trace_id]",
    ),
    ("objects.md", "for event in watch.stream"): (
        FAKE_WATCH + "from opentelemetry import trace\nfrom opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\n",
        "[child] = api.created\nassert 'tracing.k8s.io/traceparent' in child['metadata']['annotations']",
    ),
    ("objects.md", "KubernetesClientInstrumentor().instrument(inject_object_context"): (
        "from k8s_otel.instrumentation import KubernetesClientInstrumentor\n",
        "",
    ),
    ("propagation.md", "from opentelemetry import context as otel_context"): (
        "from types import SimpleNamespace\nfrom opentelemetry import trace\n"
        f"request = SimpleNamespace(headers={{'traceparent': '{TRACEPARENT}', 'baggage': 'tenant=a'}})\n"
        "tracer = trace.get_tracer('docs')\n",
        f"assert headers['traceparent'].split('-')[1] == '{TRACEPARENT.split('-')[1]}'\n"
        "assert headers['baggage'] == 'tenant=a'",
    ),
    ("propagation.md", "from k8s_otel import TrustPolicy, kube_apiserver_rule"): (
        "def my_rule(caller):\n    return False\n",
        "",
    ),
    ("propagation.md", "from k8s_otel import Caller, TrustPolicy"): (
        FLASK_APP + "from k8s_otel.webhook import WSGIMiddleware\n",
        "from k8s_otel import Caller\n"
        "assert apiserver_over_mtls(Caller(peer_address=None, client_subject='CN=kube-apiserver,O=system:masters'))\n"
        "assert not apiserver_over_mtls(Caller(peer_address=None, client_subject='CN=kube-apiserver-impostor'))",
    ),
    ("propagation.md", "from k8s_otel import process_budget"): (
        "",
        "assert process_budget().refused == 0 and process_budget().honoured == 0",
    ),
    ("webhooks.md", "from k8s_otel.webhook import WSGIMiddleware, ASGIMiddleware"): (FLASK_APP, ""),
    ("webhooks.md", "from k8s_otel.webhook import admission_handler"): (
        REVIEW + f"request_headers = {{'traceparent': '{TRACEPARENT}'}}\n",
        "assert response is None  # the wrapper hands back what the handler returned",
    ),
}
# Blocks run piece by piece (split at blank lines), each piece with its own prelude.
SPLIT: dict[tuple[str, str], list[str]] = {
    ("webhooks.md", "from k8s_otel.webhook import instrument_flask_app"): [
        FLASK_APP,
        "import fastapi\napp = fastapi.FastAPI()\n",
    ],
}
# Blocks that cannot run here, and why (each is still compiled).
NOT_RUN = {
    # The quickstart: test_the_flask_quickstart_joins_the_caller_s_trace runs it against a receiver.
    ("README.md", "import k8s_otel\nfrom k8s_otel.webhook"),
}


def _python_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for path in _markdown_files():
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"```python\n(.*?)```", text, re.DOTALL):
            blocks.append((path.name, text[: match.start()].count("\n") + 2, match.group(1)))
    return blocks


def _key(name: str, code: str) -> tuple[str, str]:
    for known in (*SNIPPETS, *SPLIT):
        if known[0] == name and code.startswith(known[1]):
            return known
    return (name, code.splitlines()[0])


def test_every_python_block_compiles_and_every_entry_names_a_block() -> None:
    blocks = _python_blocks()
    assert len(blocks) >= 17
    for name, line, code in blocks:
        compile(code, f"{name}:{line}", "exec")
    keys = {_key(name, code) for name, _, code in blocks}
    assert set(SNIPPETS) | set(SPLIT) <= keys, (set(SNIPPETS) | set(SPLIT)) - keys


@pytest.mark.parametrize(
    ("name", "line", "code"),
    [block for block in _python_blocks() if _key(block[0], block[2]) not in NOT_RUN],
    ids=lambda value: str(value) if not isinstance(value, str) or "\n" not in value else "",
)
def test_the_python_block_runs(name: str, line: int, code: str) -> None:
    key = _key(name, code)
    if key in SPLIT:
        pieces = [piece for piece in code.split("\n\n") if piece.strip()]
        assert len(pieces) == len(SPLIT[key])
        programs = [prelude + piece for prelude, piece in zip(SPLIT[key], pieces)]
    else:
        prelude, check = SNIPPETS.get(key, ("", ""))
        programs = [prelude + code + "\n" + check + "\n"]
    for program in programs:
        result = subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**ENV, "OTEL_BSP_SCHEDULE_DELAY": "60000"},
        )
        assert result.returncode == 0, f"{name}:{line}\n{program}\n{result.stderr}"


# Variables the export branch documents before its code is merged (docs/export.md).
PENDING_VARIABLES: set[str] = set()


def test_every_variable_the_code_reads_is_documented_and_every_documented_one_exists() -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "src").rglob("*.py"))
    read = set(re.findall(r"\"(K8S_OTEL_[A-Z0-9_]+)\"", source))
    docs = "\n".join(path.read_text(encoding="utf-8") for path in _markdown_files())
    documented = set(re.findall(r"`(K8S_OTEL_[A-Z0-9_]+)[`=]", docs))
    assert len(read) >= 10
    assert read - documented == set()
    assert documented - read - PENDING_VARIABLES == set()
    # configure()'s own variables are in configuration.md's tables, with a default column.
    configuration = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    # Each of configure()'s own variables is a whole token in a variables cell of a table there.
    from doc_tables import first_words, rows

    cells = set().union(*(first_words(cell) for row in rows(configuration) for cell in row))
    for name in ("K8S_OTEL_TRACING_CONFIG", "K8S_OTEL_SAMPLE_LINKED", "K8S_OTEL_RECORD_EXCEPTION_MESSAGES"):
        assert name in cells, name


def test_configuration_md_states_the_defaults_the_code_uses() -> None:
    from k8s_otel._settings import resolve_settings
    from k8s_otel._trust import DEFAULT_SAMPLED_PARENTS_PER_SECOND

    defaults = resolve_settings(environ={})
    http = resolve_settings(environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    configuration = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    row = {
        line.split("|")[1].strip(): line.split("|")[-2].strip()
        for line in configuration.splitlines()
        if line.startswith("| ")
    }
    assert row["collector endpoint"] == f"`{defaults.endpoint.value}` (gRPC), `{http.endpoint.value}` (HTTP)"
    assert row["protocol"] == f"`{defaults.protocol.value}`"
    assert row["export timeout"] == f"{defaults.timeout_millis.value:.0f} ms"
    assert row["compression"] == f"`{defaults.compression.value}`"
    assert row["batching"] == (
        f"{defaults.schedule_delay_millis.value:.0f} ms, {defaults.max_queue_size.value}, "
        f"{defaults.max_export_batch_size.value}, {defaults.export_timeout_millis.value:.0f} ms"
    )
    assert row["`K8S_OTEL_TRUSTED_SAMPLED_PARENTS_PER_SECOND`"] == f"{DEFAULT_SAMPLED_PARENTS_PER_SECOND:.0f}"
    assert defaults.sampling_rate_per_million.value is None and row["sampling"].startswith("unset")


def test_cli_md_lists_every_command_and_documents_every_option() -> None:
    import argparse

    from k8s_otel.cli import _parser

    cli = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    [commands] = [action for action in _parser()._actions if isinstance(action, argparse._SubParsersAction)]
    rows = [line.split("|")[1] for line in cli.splitlines() if line.startswith("| `k8s-otel ")]
    assert sorted(row.split()[1].strip("`") for row in rows) == sorted(commands.choices)
    counted = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}[len(commands.choices)]
    assert f"has {counted} commands" in cli
    # Each option is a whole token (`--json`, `--requests N`) in its own command's section (the
    # commands that draw waterfalls share that section's), or, for a command without a section,
    # in its row of the command table: not wherever another command documents the same flag.
    from doc_tables import section

    def documented(name: str) -> set[str]:
        try:
            text = section(cli, f"## `{name}`")
        except ValueError:
            [text] = [line for line in cli.splitlines() if line.startswith(f"| `k8s-otel {name}")]
        if name in ("demo", "receive"):
            text += section(cli, "## Waterfalls")
        return set(re.findall(r"`(--[a-z0-9-]+)[ `=]", text))

    missing = [
        f"{name} {option}"
        for name, parser in commands.choices.items()
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help" and option not in documented(name)
    ]
    assert missing == []


def test_webhooks_md_lists_every_option_with_the_default_the_code_uses() -> None:
    import inspect

    from k8s_otel.webhook import ASGIMiddleware, WSGIMiddleware

    webhooks = (ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
    table = webhooks[webhooks.index("| option | default | meaning |") :].split("\n\n", 1)[0]
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[2].strip() for line in table.splitlines()[2:]
    }
    for middleware in (WSGIMiddleware, ASGIMiddleware):
        options = {
            name: parameter.default
            for name, parameter in inspect.signature(middleware.__init__).parameters.items()
            if name not in ("self", "app")
        }
        assert set(options) == set(rows), middleware
    # The defaults the code uses, as the table words them.
    assert options["max_body_bytes"] == 8 << 20 and rows["max_body_bytes"] == "8 MiB"
    for name in ("trust", "webhook_type", "record_user", "fast_reader"):
        assert rows[name] == f"`{options[name]!r}`".replace("'", '"'), name
    assert options["paths"] is None and rows["paths"] == "every path"
    assert options["record_exception_messages"] is None and "default off" in rows["record_exception_messages"]


def test_logging_md_shows_the_format_the_code_uses() -> None:
    from k8s_otel._logs import DEFAULT_LOGGING_FORMAT

    logging_md = (ROOT / "docs" / "logging.md").read_text(encoding="utf-8")
    assert f"```\n{DEFAULT_LOGGING_FORMAT}\n```" in logging_md
