"""``configure(log_correlation=True)`` with the JSON formatter: one JSON log line a backend links on."""

from __future__ import annotations

import logging
import sys

from opentelemetry import trace

import k8s_otel
from k8s_otel._logs import JSONFormatter


def main(endpoint: str) -> None:
    handle = k8s_otel.configure(
        endpoint=endpoint,
        sampling_rate_per_million=1_000_000,
        service_name="configured",
        log_correlation=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("apps.configured")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    with trace.get_tracer("apps.configured").start_as_current_span("reconcile"):
        logger.info("inside")
    logger.info("outside")
    print("root handlers:", len(logging.getLogger().handlers), flush=True)
    handle.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
