"""A kopf operator with no tracing code, against the fake kube-apiserver in ``K8S_OTEL_TEST_APISERVER``."""

from __future__ import annotations

import os
from typing import Any

import kopf


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=os.environ["K8S_OTEL_TEST_APISERVER"], insecure=True)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.networking.error_backoffs = [0.02]
    settings.watching.reconnect_backoff = 0.05
    settings.posting.enabled = False


@kopf.on.create("kopf.dev", "v1", "kopfexamples")
def created(name: str, logger: Any, patch: kopf.Patch, **_: Any) -> None:
    logger.info("reconciling %s", name)  # kopf's per-object logger: it carries the handler span's ids
    patch.status["seen"] = name


def main() -> None:
    print('{"ready": true}', flush=True)
    kopf.run(standalone=True, clusterwide=True)  # SIGTERM: kopf stops, the process exits, atexit flushes


if __name__ == "__main__":
    main()
