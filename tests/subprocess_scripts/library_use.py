"""Use the library as an app does and print every k8s_otel module loaded (tests/test_cli_package.py)."""

from __future__ import annotations

import importlib
import json
import sys

import k8s_otel

LIBRARY_MODULES = (
    "k8s_otel.webhook._wsgi",
    "k8s_otel.webhook._handler",
    "k8s_otel._propagation",
    "k8s_otel._sampling",
    "k8s_otel._config",
    "k8s_otel._resource",
    "k8s_otel._settings",
    "k8s_otel._wiring",
    "k8s_otel._admission",
)


def main() -> None:
    handle = k8s_otel.configure(install=False, endpoint="127.0.0.1:1", sampling_rate_per_million=1_000_000)
    with handle.tracer_provider.get_tracer("t").start_as_current_span("s"):
        pass
    for name in LIBRARY_MODULES:
        importlib.import_module(name)
    handle.shutdown(0.1)
    print(json.dumps(sorted(name for name in sys.modules if name.startswith("k8s_otel"))))


if __name__ == "__main__":
    main()
