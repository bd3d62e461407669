"""Run as a script: use the library the way an app does, then print which k8s_otel modules loaded.

tests/test_public_api.py runs this in a fresh interpreter, so that nothing the test process
imported earlier (the CLI, the receiver) can hide an import the library makes.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    import k8s_otel
    import k8s_otel.instrumentation
    import k8s_otel.objects
    import k8s_otel.webhook

    handle = k8s_otel.configure(install=False, endpoint="127.0.0.1:1", sampling_rate_per_million=1_000_000)
    with handle.tracer_provider.get_tracer("probe").start_as_current_span("s"):
        pass
    for package in (k8s_otel, k8s_otel.webhook, k8s_otel.instrumentation, k8s_otel.objects):
        for name in package.__all__:
            getattr(package, name)
    handle.shutdown(0.1)
    print(json.dumps(sorted(name for name in sys.modules if name.startswith("k8s_otel"))))


if __name__ == "__main__":
    main()
