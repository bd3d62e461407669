"""Small checks that need a fresh interpreter: what an import loads, what the environment selects.

``python -m subprocess_scripts.probes SCENARIO [ARGS...]``; each scenario prints what the test
asserts on. Used by test_config, test_logs, test_propagation, test_resource, test_webhook and
test_webhook_stamp.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Callable


def yaml_import(config_file: str) -> None:
    """Whether PyYAML is loaded after configure() without a file, then with one."""
    import k8s_otel

    handle = k8s_otel.configure(install=False)
    print("yaml" in sys.modules)
    handle.shutdown()
    handle = k8s_otel.configure(install=False, config_file=config_file)
    print("yaml" in sys.modules)
    handle.shutdown()


def log_levels() -> None:
    """configure() under the environment's OTEL_PYTHON_LOG_* settings, then one record per level."""
    import k8s_otel

    k8s_otel.configure()
    logger = logging.getLogger("app")
    logger.debug("debug")
    logger.info("info")
    logger.warning("warning")


def global_propagator(traceparent: str) -> None:
    """The first propagator OTEL_PROPAGATORS installs, and what it extracts."""
    from opentelemetry.propagate import extract, get_global_textmap
    from opentelemetry.propagators.composite import CompositePropagator

    textmap = get_global_textmap()
    first = textmap._propagators[0] if isinstance(textmap, CompositePropagator) else textmap
    print(type(first).__name__, extract({"tracestate": "1a=b", "traceparent": traceparent}))


def sdk_resource(key: str = "") -> None:
    """The SDK's Resource.create() under the environment: all its attributes as JSON, or one."""
    from opentelemetry.sdk.resources import Resource

    attributes = dict(Resource.create().attributes)
    print(attributes[key] if key else json.dumps(attributes))


def webhook_imports() -> None:
    """The frameworks loaded by using the webhook package's names."""
    from k8s_otel import webhook

    for name in ("WSGIMiddleware", "ASGIMiddleware", "admission_handler"):  # loaded lazily: load them
        getattr(webhook, name)
    frameworks = ("flask", "fastapi", "starlette", "werkzeug", "uvicorn", "django")
    print([name for name in frameworks if name in sys.modules])


def serve_stamp(cert: str, key: str) -> None:
    """The stamping webhook over HTTPS until SIGTERM: prints its port, then ``stopped``."""
    from k8s_otel.webhook._stamp import serve_https

    serve_https("127.0.0.1", 0, cert, key, ready=lambda address: print(address[1], flush=True))
    print("stopped", flush=True)


def sdk_alone() -> None:
    """Import the SDK's tracing package with no k8s_otel: what a stock app meets."""
    import opentelemetry.sdk.trace  # noqa: F401

    print("imported")


def configure_under_env() -> None:
    """configure() and one span under the environment; prints the problems as JSON."""
    import k8s_otel

    handle = k8s_otel.configure(install=False, endpoint="127.0.0.1:1", sampling_rate_per_million=1_000_000)
    with handle.tracer_provider.get_tracer("probe").start_as_current_span("s") as span:
        span.set_attribute("a", 1)
    handle.shutdown(0.1)
    print(json.dumps(list(handle.settings.problems)))


SCENARIOS: dict[str, Callable[..., None]] = {
    f.__name__: f
    for f in (
        yaml_import,
        log_levels,
        global_propagator,
        sdk_resource,
        webhook_imports,
        serve_stamp,
        sdk_alone,
        configure_under_env,
    )
}


def main(argv: list[str]) -> None:
    SCENARIOS[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
