"""Shared fixtures: a real OTLP/gRPC receiver on 127.0.0.1:0 and a clean OTel environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from k8s_otel._resource import DEFAULT_ENV_NAMES
from k8s_otel.cli._receiver import OTLPReceiver


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    """A real OTLP gRPC trace receiver; records requests and metadata."""
    receiver = OTLPReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(autouse=True)
def _clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start with no OTEL_*/K8S_OTEL_* variables and no in-pod variables from the host."""
    in_pod = {"KUBERNETES_SERVICE_HOST", *(name for names in DEFAULT_ENV_NAMES.values() for name in names)}
    for name in list(os.environ):
        if name.startswith(("OTEL_", "K8S_OTEL_")) or name in in_pod:
            monkeypatch.delenv(name, raising=False)
    # The sampled-parent budget is per process: each test starts with a full one, read from its env.
    from k8s_otel._env import forget_reported
    from k8s_otel._trust import reset_process_budget

    reset_process_budget()
    forget_reported()  # an adapter's bad boolean variable is warned about once per process
