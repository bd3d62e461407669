"""Can spans leave? What ``doctor`` and ``demo`` both ask before they say "ok" or "exported to".

``exporter_refusal`` asks the very function ``configure()`` uses to build its exporter
(``k8s_otel._exporter.build_exporter``); ``check_connection`` opens a connection the way the
exporter would, and gives up at once on a refused connection instead of waiting out the timeout.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Optional
from urllib.parse import urlsplit

from k8s_otel._endpoint import GRPC
from k8s_otel._settings import EffectiveSettings

__all__ = ["check_connection", "export_failure", "exporter_refusal"]


def exporter_refusal(settings: EffectiveSettings) -> Optional[str]:
    """Why ``configure()`` with these settings would export nothing, or None when it would export."""
    if settings.sdk_disabled.value:
        return None
    from k8s_otel._exporter import build_exporter

    exporter, refusal = build_exporter(settings)
    if exporter is not None:
        exporter.shutdown()  # lazy: no channel was made
    return refusal


def _grpc_connection(settings: EffectiveSettings, timeout: float) -> tuple[bool, str]:
    import grpc

    target = settings.grpc_target
    channel = (
        grpc.insecure_channel(target)
        if settings.insecure.value
        else grpc.secure_channel(target, grpc.ssl_channel_credentials())
    )
    decided = threading.Event()
    states: list[Any] = []

    def watch(state: Any) -> None:
        states.append(state)
        if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            decided.set()

    channel.subscribe(watch, try_to_connect=True)
    try:
        decided.wait(timeout)
    finally:
        channel.unsubscribe(watch)
        channel.close()
    if grpc.ChannelConnectivity.READY in states:
        return True, f"gRPC connection to {target} established"
    if grpc.ChannelConnectivity.TRANSIENT_FAILURE in states:
        return False, f"no gRPC connection to {target}: the connection failed (refused, or no such host)"
    return False, f"no gRPC connection to {target} within {timeout:g} s"


def _tcp_connection(endpoint: str, timeout: float) -> tuple[bool, str]:
    parts = urlsplit(endpoint)
    host, port = parts.hostname or "localhost", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True, f"TCP connection to {host}:{port} established"
    except OSError as error:
        return False, f"no TCP connection to {host}:{port}: {error.strerror or error}"


def check_connection(settings: EffectiveSettings, timeout: float) -> tuple[bool, str]:
    """Whether the collector accepts a connection, and a one-line account of what happened."""
    if settings.protocol.value == GRPC:
        return _grpc_connection(settings, timeout)
    return _tcp_connection(settings.endpoint.value, timeout)


def export_failure(handle: Any) -> Optional[str]:
    """After ``handle.shutdown()``: why some spans did not leave, or None when all of them did.

    Uses ``TracingHandle.statistics()`` (``exported``/``dropped``/``failed``/``pending``) when the
    handle has it. Until then nothing in the handle says whether export worked, so this answers
    None and the demo relies on ``check_connection`` beforehand. This is the one place to switch.
    """
    statistics = getattr(handle, "statistics", None)
    if statistics is None:
        return None
    counts = statistics()
    lost = {name: getattr(counts, name, 0) for name in ("dropped", "failed", "pending")}
    if not any(lost.values()):
        return None
    return ", ".join(f"{value} {name}" for name, value in lost.items() if value) + (
        f" of {getattr(counts, 'ended', '?')} spans"
    )
