"""Export one span from its own process; print its traceparent (tests/test_cli_receive.py).

``python -m subprocess_scripts.otlp_sender ENDPOINT PROTOCOL SERVICE TRACEPARENT``, with ``-`` for no
parent: the span is ``"<SERVICE> work"`` with ``UID = "<SERVICE>-uid"``.
"""

from __future__ import annotations

import sys

import k8s_otel
from k8s_otel._propagation import extract, inject


def main(argv: list[str]) -> None:
    endpoint, protocol, service, traceparent = argv[:4]
    handle = k8s_otel.configure(
        install=False,
        endpoint=endpoint,
        protocol=protocol,
        sampling_rate_per_million=1_000_000,
        service_name=service,
    )
    tracer = handle.tracer_provider.get_tracer("sender")
    context = extract({"traceparent": traceparent}) if traceparent != "-" else None
    carrier: dict[str, str] = {}
    with tracer.start_as_current_span(
        f"{service} work", context=context, attributes={"UID": f"{service}-uid"}
    ):
        inject(carrier)
    handle.shutdown(10)
    print(carrier["traceparent"])


if __name__ == "__main__":
    main(sys.argv[1:])
