"""The ``k8s-otel`` command (also ``python -m k8s_otel``): demo, doctor, validate, receive.

Built on the package's public API only. A user error prints one line and exits 2; no command
prints a stack trace for one, and none prints OTLP header values.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, TextIO

from k8s_otel.cli._waterfall import render_trees, span_as_dict, trace_trees
from k8s_otel.cli.receiver import OTLPReceiver
from k8s_otel.config import TracingConfigurationError, load_tracing_configuration
from k8s_otel.sampling import validate_samples_per_million

__all__ = ["main", "render_trees", "span_as_dict", "trace_trees"]


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda o: list(o) if isinstance(o, tuple) else str(o), sort_keys=True)


# --- validate --------------------------------------------------------------------------------


def _validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    results: list[dict[str, Any]] = []
    code = 0
    for path in args.files:
        try:
            config = load_tracing_configuration(path)
        except TracingConfigurationError as error:
            lines = list(error.errors) or [str(error)]
            results.append({"file": path, "valid": False, "reason": error.reason, "errors": lines})
            code = max(code, 2 if error.reason == "read" else 1)
            continue
        results.append(
            {
                "file": path,
                "valid": True,
                "endpoint": config.endpoint,
                "samplingRatePerMillion": config.sampling_rate_per_million,
            }
        )
    if args.json:
        out.write(_json(results) + "\n")
        return code
    for result in results:
        if result["valid"]:
            out.write(
                f"{result['file']}: valid (endpoint: {result['endpoint'] or 'unset, localhost:4317'}, "
                f"samplingRatePerMillion: {result['samplingRatePerMillion'] if result['samplingRatePerMillion'] is not None else 'unset'})\n"
            )
        else:
            for line in result["errors"]:
                out.write(f"{result['file']}: {line}\n")
    return code


# --- receive ---------------------------------------------------------------------------------


def _wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _receive(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lock = threading.Lock()

    def show(request: Any) -> None:
        spans = list(request.spans())
        with lock:
            if args.json:
                for span in spans:
                    out.write(_json(span_as_dict(span)) + "\n")
            else:
                render_trees(spans, out)
            out.flush()

    receiver = OTLPReceiver(host=args.host, port=args.port, on_request=show)
    try:
        receiver.start()
    except (OSError, RuntimeError) as error:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {error}") from None
    err.write(
        f"k8s-otel receive: listening for OTLP/gRPC on {receiver.endpoint} "
        "(a development receiver, not a collector; Ctrl-C to stop)\n"
    )
    err.flush()
    try:
        _wait_for_stop()
    finally:
        receiver.stop(grace=1)
    return 0


# --- doctor ----------------------------------------------------------------------------------

_DOWNWARD_ENV = {
    "pod name": ("POD_NAME", "OTEL_RESOURCE_ATTRIBUTES_POD_NAME"),
    "pod namespace": ("POD_NAMESPACE",),
    "pod UID": ("POD_UID", "OTEL_RESOURCE_ATTRIBUTES_POD_UID"),
    "node name": ("NODE_NAME", "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME"),
    "pod IP": ("POD_IP", "OTEL_POD_IP"),
}


def _reachable(settings: Any, timeout: float) -> tuple[bool, str]:
    if settings.protocol.value == "grpc":
        import grpc

        target = settings.grpc_target
        channel = (
            grpc.insecure_channel(target)
            if settings.insecure.value
            else grpc.secure_channel(target, grpc.ssl_channel_credentials())
        )
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
            return True, f"gRPC connection to {target} established"
        except grpc.FutureTimeoutError:
            return False, f"no gRPC connection to {target} within {timeout:g} s"
        finally:
            channel.close()
    from urllib.parse import urlsplit

    parts = urlsplit(settings.endpoint.value)
    host, port = parts.hostname or "localhost", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True, f"TCP connection to {host}:{port} established"
    except OSError as error:
        return False, f"no TCP connection to {host}:{port}: {error.strerror or error}"


def _doctor_findings(settings: Any, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    findings = [("error", problem) for problem in settings.problems]
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip()
    if sampler in ("traceidratio", "parentbased_traceidratio"):
        arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        try:
            hint = f"OTEL_TRACES_SAMPLER_ARG={round(float(arg) * 1_000_000)}"
        except ValueError:
            hint = "OTEL_TRACES_SAMPLER_ARG=<samples per million>"
        findings.append(
            (
                "warning",
                f"OTEL_TRACES_SAMPLER={sampler} is the stock ratio sampler, which decides differently from "
                f"kube-apiserver at low rates: use OTEL_TRACES_SAMPLER=k8s_per_million {hint}",
            )
        )
    if environ.get("KUBERNETES_SERVICE_HOST"):
        missing = [what for what, names in _DOWNWARD_ENV.items() if not any(environ.get(n) for n in names)]
        if missing:
            findings.append(
                (
                    "warning",
                    "running in a pod without downward-API env for "
                    + ", ".join(missing)
                    + " (set POD_NAME, POD_NAMESPACE, POD_UID, NODE_NAME, POD_IP from fieldRef): "
                    "the collector's k8sattributes processor matches pods by k8s.pod.ip and k8s.pod.uid",
                )
            )
    return findings


def _doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from k8s_otel.settings import resolve_settings

    try:
        settings = resolve_settings(endpoint=args.endpoint, config_file=args.config_file)
    except ValueError as error:
        raise UserError(str(error)) from None
    findings = _doctor_findings(settings, os.environ)
    reachable, detail = (True, "OTEL_SDK_DISABLED=true: nothing is exported")
    if not settings.sdk_disabled.value and settings.protocol.value in ("grpc", "http/protobuf"):
        reachable, detail = _reachable(settings, args.timeout)
    if not reachable:
        findings.append(("error", f"collector unreachable: {detail}"))
    broken = any(level == "error" for level, _ in findings)
    from k8s_otel.resource import KubernetesResourceDetector

    detected = dict(KubernetesResourceDetector().detect().attributes)
    if args.json:
        report = {
            "settings": settings.as_dict(),
            "kubernetes_resource": detected,
            "collector": {"reachable": reachable, "detail": detail},
            "findings": [{"level": level, "message": message} for level, message in findings],
            "ok": not broken,
        }
        out.write(_json(report) + "\n")
        return 1 if broken else 0
    out.write("effective settings (highest precedence: argument > file > env > default):\n")
    for name, entry in settings.as_dict().items():
        if name == "problems":
            continue
        value = entry["value"]
        shown = ", ".join(value) + " (values hidden)" if name == "headers" and value else value
        where = entry["source"] + (f" ({entry['origin']})" if entry["origin"] else "")
        out.write(f"  {name:<27} {shown!s:<40} {where}\n")
    shown = ", ".join(f"{k}={v}" for k, v in sorted(detected.items())) or "none (not in a pod)"
    out.write(f"\nkubernetes resource: {shown}\n")
    out.write(f"collector: {detail}\n")
    for level, message in findings:
        out.write(f"{level}: {message}\n")
    out.write("\n" + ("broken: see the errors above\n" if broken else "ok\n"))
    return 1 if broken else 0


# --- demo ------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from k8s_otel.cli._demo import run_demo

    if args.requests < 1:
        raise UserError("--requests must be at least 1")
    if args.sampling_rate_per_million is not None:
        try:
            validate_samples_per_million(args.sampling_rate_per_million)
        except ValueError as error:
            raise UserError(f"--sampling-rate-per-million: {error}") from None
    if args.config_file:
        try:
            load_tracing_configuration(args.config_file)
        except TracingConfigurationError as error:
            raise UserError(str(error)) from None
    return run_demo(
        requests=args.requests,
        sampling_rate_per_million=args.sampling_rate_per_million,
        config_file=args.config_file,
        endpoint=args.endpoint,
        out=out,
        progress=err if err.isatty() else None,
        as_json=args.json,
    )


# --- parser ----------------------------------------------------------------------------------

_EXAMPLES = {
    "demo": """examples:
  k8s-otel demo                                   # 20 requests, every one sampled, printed as trees
  k8s-otel demo --requests 500 --sampling-rate-per-million 100000
  k8s-otel demo --config-file tracing.yaml        # the rate from a TracingConfiguration file
  k8s-otel demo --endpoint otel-collector:4317    # export to a real collector instead
""",
    "doctor": """examples:
  k8s-otel doctor                                 # settings from the environment, and a connection check
  k8s-otel doctor --config-file /etc/kubernetes/tracing.yaml --json
exit status: 0 when everything works, 1 when something is broken.
""",
    "validate": """examples:
  k8s-otel validate tracing.yaml kubelet-config.yaml
  k8s-otel validate --json tracing.yaml
exit status: 0 when every file is valid, 1 when one is invalid, 2 when one cannot be read.
""",
    "receive": """examples:
  k8s-otel receive                                # listen on 127.0.0.1:4317, print traces as trees
  k8s-otel receive --port 0 --json                # any free port, one JSON object per span
This is a development tool, like the collector's debug exporter, not a collector: it keeps nothing.
""",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="k8s-otel", description="OpenTelemetry for Python Kubernetes controllers and admission webhooks."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, handler: Callable[..., int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=_EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    demo = command(
        "demo", "play kube-apiserver against a wrapped admission webhook and print the traces", _demo
    )
    demo.add_argument(
        "--requests", type=int, default=20, help="AdmissionReview requests to send (default 20)"
    )
    demo.add_argument(
        "--sampling-rate-per-million",
        type=int,
        default=None,
        help="the simulated apiserver's samplingRatePerMillion (default 1000000, or the file's)",
    )
    demo.add_argument("--config-file", help="a TracingConfiguration file to take the rate from")
    demo.add_argument("--endpoint", help="export to this collector instead of the built-in receiver")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")

    doctor = command(
        "doctor", "show the effective tracing settings, where each came from, and what is wrong", _doctor
    )
    doctor.add_argument("--endpoint", help="check this endpoint instead of the configured one")
    doctor.add_argument("--config-file", help="a TracingConfiguration file (as K8S_OTEL_TRACING_CONFIG)")
    doctor.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait for the collector (default 3)"
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")

    validate = command(
        "validate",
        "validate TracingConfiguration/KubeletConfiguration files as kube-apiserver does",
        _validate,
    )
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--json", action="store_true", help="print the results as JSON")

    receive = command(
        "receive", "a local OTLP/gRPC receiver that prints incoming spans (development only)", _receive
    )
    receive.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    receive.add_argument(
        "--port", type=int, default=4317, help="port to listen on; 0 picks one (default 4317)"
    )
    receive.add_argument("--json", action="store_true", help="print one JSON object per span")
    return parser


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.handler(args, out, err)
        return result
    except UserError as error:
        err.write(f"k8s-otel {args.command}: {error}\n")
        return 2
    except KeyboardInterrupt:
        return 130
