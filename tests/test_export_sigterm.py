"""SIGTERM and exit against each collector fault, in a subprocess: bounded by the shutdown budget,
and over at once when delivery is impossible. Times are measured from SIGTERM (or from the end of
the script) to the process's exit, with the system-wide monotonic clock."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Optional

import grpc
import pytest

import subprocess_scripts
from fault_collector import Blackhole, FaultReceiver, SilentProxy, free_port

BUDGET = 2.0


def lost_at_shutdown(stderr: str) -> str:
    """The loss summary written at shutdown (docs/export.md): one k8s_otel line saying spans were lost."""
    [line] = [
        line for line in stderr.splitlines() if "k8s_otel" in line and "shutdown" in line and "lost" in line
    ]
    return line


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}
    env.update({"K8S_OTEL_SHUTDOWN_TIMEOUT": str(int(BUDGET * 1000)), "OTEL_BSP_SCHEDULE_DELAY": "100"})
    env.update(extra)
    return env


def start(
    endpoint: str, spans: int, mode: str, extra: Sequence[str] = (), **env: str
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        subprocess_scripts.command("export_child", endpoint, str(spans), mode, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_scripts.environment(child_env(**env)),
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        pytest.fail(f"child did not start: {line!r} {process.communicate()[1][-2000:]}")
    return process


def sigterm(
    endpoint: str,
    spans: int = 50,
    *,
    settle: float = 1.0,
    extra: Sequence[str] = (),
    mode: str = "wait",
    before: Optional[Callable[[], None]] = None,
    **env: str,
) -> tuple[float, str]:
    """Start, let export run for ``settle`` s, SIGTERM; (seconds from SIGTERM to exit, stderr)."""
    process = start(endpoint, spans, mode, extra, **env)
    try:
        time.sleep(settle)
        if before is not None:
            before()
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        elapsed = time.monotonic() - sent
        assert process.returncode == -signal.SIGTERM, stderr[-2000:]
        return elapsed, stderr
    finally:
        process.kill()
        process.wait()


def exit_time(endpoint: str, spans: int = 50) -> tuple[float, str]:
    """Run to the script's end; (seconds from its last line to the process's exit, stderr)."""
    process = start(endpoint, spans, "exit")
    try:
        assert process.stdout is not None
        ended = float(process.stdout.readline())  # read through the same buffer that read "ready"
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0, stderr[-2000:]
        return time.monotonic() - ended, stderr
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def receiver() -> Iterator[FaultReceiver]:
    made = FaultReceiver().start()
    try:
        yield made
    finally:
        made.stop()


def refused_endpoint() -> str:
    return f"127.0.0.1:{free_port()}"


def test_sigterm_with_a_live_collector_delivers_all_1050(receiver: FaultReceiver) -> None:
    process = start(receiver.endpoint, 1050, "wait", OTEL_BSP_SCHEDULE_DELAY="5000")
    try:
        process.send_signal(signal.SIGTERM)  # at once: most spans are still queued
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGTERM
    assert len({span.name for span in receiver.spans()}) == 1050
    assert not [line for line in stderr.splitlines() if "lost" in line]


@pytest.mark.parametrize("target", ["down-refused", "dns"])
def test_sigterm_gives_up_at_once_when_delivery_is_impossible(target: str) -> None:
    endpoint = refused_endpoint() if target == "down-refused" else "dns:///no-such-collector.invalid:4317"
    elapsed, stderr = sigterm(endpoint)
    assert elapsed < 1.5, stderr[-2000:]
    assert "50" in lost_at_shutdown(stderr)
    assert "UNAVAILABLE" in stderr


def test_sigterm_before_any_export_was_tried_gives_up_at_once() -> None:
    elapsed, stderr = sigterm(refused_endpoint(), settle=0.0, OTEL_BSP_SCHEDULE_DELAY="5000")
    assert elapsed < 1.5, stderr[-2000:]
    assert "50" in lost_at_shutdown(stderr)


def test_exit_gives_up_at_once_when_delivery_is_impossible() -> None:
    elapsed, stderr = exit_time(refused_endpoint())
    assert elapsed < 1.5, stderr[-2000:]
    assert "50" in lost_at_shutdown(stderr)


@pytest.mark.parametrize("fault", ["blackhole", "silent", "slow", "refusing"])
def test_sigterm_is_bounded_by_the_budget(fault: str, receiver: FaultReceiver) -> None:
    cleanup: Optional[object] = None
    before: Optional[Callable[[], None]] = None
    mode = "wait"
    if fault == "blackhole":
        cleanup = hole = Blackhole()
        endpoint = hole.endpoint
    elif fault == "silent":
        # Spans flow through the proxy for a second, then its connection goes silent (no FIN, no
        # RST) while the child keeps making spans; new connections would reach a dead port.
        cleanup = proxy = SilentProxy(receiver.port)
        endpoint, mode = proxy.endpoint, "trickle"

        def before() -> None:
            proxy.upstream = free_port()
            proxy.go_silent()
            time.sleep(0.5)
    elif fault == "slow":
        receiver.delay = 30
        endpoint = receiver.endpoint
    else:
        receiver.status_code = grpc.StatusCode.UNAVAILABLE  # the collector's memory limiter says so
        endpoint = receiver.endpoint
    try:
        elapsed, stderr = sigterm(endpoint, mode=mode, before=before)
    finally:
        if cleanup is not None:
            cleanup.stop()  # type: ignore[attr-defined]
    assert BUDGET - 0.5 < elapsed < BUDGET + 1.0, stderr[-2000:]
    assert lost_at_shutdown(stderr)
    if fault == "silent":
        assert len(receiver.spans()) >= 50  # it did flow before the silence


def test_exit_against_a_blackhole_is_bounded_by_the_budget() -> None:
    hole = Blackhole()
    try:
        elapsed, stderr = exit_time(hole.endpoint)
    finally:
        hole.stop()
    assert BUDGET - 0.5 < elapsed < BUDGET + 1.0, stderr[-2000:]


def test_the_shutdown_timeout_argument_beats_the_env_var() -> None:
    hole = Blackhole()
    try:
        elapsed, stderr = sigterm(hole.endpoint, extra=("--shutdown-timeout", "0.5"))
    finally:
        hole.stop()
    assert elapsed < 0.5 + 1.0, stderr[-2000:]


def test_sigterm_with_an_application_handler_skips_a_futile_flush() -> None:
    process = subprocess.Popen(
        subprocess_scripts.command("export_child", refused_endpoint(), "50", "wait", "--app-handler"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_scripts.environment(child_env()),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # the first exports were refused
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        elapsed = time.monotonic() - sent
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr[-2000:]
    assert elapsed < 1.5, stderr[-2000:]  # no flush into a refused port, and atexit gives up at once
    assert "50" in lost_at_shutdown(stderr)
