"""``configure()``'s global install, each scenario in its own interpreter (tests/test_wiring.py)."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Optional

from opentelemetry import trace

import k8s_otel


def second_call(endpoint: str, token: str) -> None:
    """Two equal calls share one handle and one exporter; a different third call raises."""
    first = k8s_otel.configure(
        endpoint=endpoint, headers={"x-token": token}, sampling_rate_per_million=1000000
    )
    second = k8s_otel.configure(
        endpoint=endpoint, headers={"x-token": token}, sampling_rate_per_million=1000000
    )
    assert first is second and first.installed
    assert trace.get_tracer_provider() is first.tracer_provider
    with trace.get_tracer("t").start_as_current_span("once"):
        pass
    assert first.force_flush(10)
    try:
        k8s_otel.configure(endpoint="other:4317", headers={"x-token": "changed"})
    except k8s_otel.AlreadyConfiguredError as error:
        print(type(error).__name__, error)


def userinfo_conflict(canary: str) -> None:
    """The handle's repr, then a second call with another endpoint: neither shows the password."""
    handle = k8s_otel.configure(endpoint=f"http://u:{canary}@127.0.0.1:1")
    print(repr(handle))
    try:
        k8s_otel.configure(endpoint=f"http://u:{canary}@127.0.0.1:2")
    except k8s_otel.AlreadyConfiguredError as error:
        print(type(error).__name__, error)
    handle.shutdown(0.5)


def _ready_then_wait() -> None:
    print("ready", flush=True)
    time.sleep(60)


def sigterm_flush(endpoint: str) -> None:
    k8s_otel.configure(endpoint=endpoint, sampling_rate_per_million=1000000)
    with trace.get_tracer("t").start_as_current_span("before-sigterm"):
        pass
    _ready_then_wait()


def sigterm_chain(endpoint: str) -> None:
    def app_handler(signum: int, frame: Optional[FrameType]) -> None:
        print("app handler ran", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, app_handler)
    k8s_otel.configure(endpoint=endpoint, sampling_rate_per_million=1000000)
    with trace.get_tracer("t").start_as_current_span("chained"):
        pass
    _ready_then_wait()


def exit_flush(endpoint: str, name: str) -> None:
    """One span, then a normal exit: atexit flushes it (or gives up within the budget)."""
    k8s_otel.configure(endpoint=endpoint, sampling_rate_per_million=1000000)
    with trace.get_tracer("t").start_as_current_span(name):
        pass


def sdk_disabled(endpoint: str) -> None:
    from opentelemetry.propagate import extract, inject

    handle = k8s_otel.configure(endpoint=endpoint, sampling_rate_per_million=1000000)
    incoming = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    outgoing: dict[str, str] = {}
    with trace.get_tracer("t").start_as_current_span("noop", context=extract(incoming)):
        inject(outgoing)
    print(type(handle.tracer_provider).__name__, outgoing["traceparent"])


def foreign_provider() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    theirs = TracerProvider()
    trace.set_tracer_provider(theirs)
    handle = k8s_otel.configure()
    print(handle.installed, trace.get_tracer_provider() is theirs)


def sdk_configurator() -> None:
    """The zero-code path: the SDK's own configurator loads the sampler by entry-point name."""
    from opentelemetry.sdk._configuration import _OTelSDKConfigurator
    from opentelemetry.sdk.trace import TracerProvider

    _OTelSDKConfigurator().configure()  # type: ignore[no-untyped-call]
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    print(provider.sampler.get_description())
    tracer = trace.get_tracer("t")
    for _ in range(20):
        with tracer.start_as_current_span("root"):
            pass
    provider.shutdown()


SCENARIOS: dict[str, Callable[..., None]] = {
    function.__name__: function
    for function in (
        second_call,
        userinfo_conflict,
        sigterm_flush,
        sigterm_chain,
        exit_flush,
        sdk_disabled,
        foreign_provider,
        sdk_configurator,
    )
}


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    SCENARIOS[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
