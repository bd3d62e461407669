"""The command line is its own package: the library never imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

LIBRARY_USE = """
import json, sys
import k8s_otel
handle = k8s_otel.configure(install=False, endpoint="127.0.0.1:1", sampling_rate_per_million=1_000_000)
with handle.tracer_provider.get_tracer("t").start_as_current_span("s"):
    pass
import k8s_otel.webhook._wsgi, k8s_otel.webhook._handler, k8s_otel._propagation, k8s_otel._sampling
import k8s_otel._config, k8s_otel._resource, k8s_otel._settings, k8s_otel._wiring, k8s_otel._admission
handle.shutdown(0.1)
print(json.dumps(sorted(name for name in sys.modules if name.startswith("k8s_otel"))))
"""


def test_library_never_imports_the_cli_package() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LIBRARY_USE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    modules = json.loads(result.stdout.splitlines()[-1])
    assert "k8s_otel._wiring" in modules  # the probe really ran the library
    assert [name for name in modules if name == "k8s_otel.cli" or name.startswith("k8s_otel.cli.")] == []


def test_the_command_runs_as_a_module_and_as_a_script() -> None:
    as_module = subprocess.run(
        [sys.executable, "-m", "k8s_otel", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert as_module.returncode == 0
    assert "receive" in as_module.stdout
    script = os.path.join(os.path.dirname(sys.executable), "k8s-otel")
    as_script = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert as_script.returncode == 0
    assert as_script.stdout == as_module.stdout
