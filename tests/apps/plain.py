"""A process with no tracing code: it makes one span, reports what auto-instrumentation set up, waits.

The test sends SIGTERM; there is no handler of the application's, so k8s-otel's flushes and the
process dies of SIGTERM, as it would have without tracing.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from opentelemetry import metrics, propagate, trace


def main() -> None:
    provider = trace.get_tracer_provider()
    tracer = trace.get_tracer("apps.plain")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("apps.plain").warning("inside the span")
        context = span.get_span_context()
    logging.getLogger("apps.plain").warning("outside the span")
    report = {
        "provider": type(provider).__name__,
        "sampler": getattr(provider, "sampler", None) and provider.sampler.get_description(),  # type: ignore[attr-defined]
        "propagator": type(propagate.get_global_textmap()).__name__,
        "meter_provider": type(metrics.get_meter_provider()).__name__,
        "trace_id": f"{context.trace_id:032x}",
        "resource": dict(getattr(provider, "resource", None).attributes)
        if hasattr(provider, "resource")
        else {},  # type: ignore[union-attr]
    }
    print(json.dumps(report, default=str), flush=True)
    time.sleep(60)  # until SIGTERM
    sys.exit(3)


if __name__ == "__main__":
    main()
