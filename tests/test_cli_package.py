"""The command line is its own package: the library never imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import subprocess_scripts


def test_library_never_imports_the_cli_package() -> None:
    result = subprocess.run(
        subprocess_scripts.command("library_use"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=subprocess_scripts.environment(
            {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        ),
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
