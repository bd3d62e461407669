"""The ``k8s-otel`` command (also ``python -m k8s_otel``): demo, doctor, validate, receive.

Built on the package's public API only. A user error prints one line and exits 2; no command
prints a stack trace for one, and none prints OTLP header values.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Callable, Optional, TextIO

from k8s_otel._config import TracingConfigurationError, load_tracing_configuration
from k8s_otel._sampling import validate_sampling_rate_per_million
from k8s_otel.cli._common import UserError, as_json
from k8s_otel.cli._doctor import run_doctor
from k8s_otel.cli._receive import add_arguments as add_receive_arguments
from k8s_otel.cli._receive import run_receive

__all__ = ["main"]


# --- validate --------------------------------------------------------------------------------


def _is_otel_config_file(path: str) -> bool:
    """An SDK configuration file (``OTEL_CONFIG_FILE``) has ``file_format`` at the top level."""
    from k8s_otel._config import MAX_FILE_BYTES, load_yaml_documents
    from k8s_otel._files import read_regular_file

    try:
        documents = load_yaml_documents(read_regular_file(path, MAX_FILE_BYTES)[:MAX_FILE_BYTES])
    except Exception:  # not readable or not YAML: the TracingConfiguration path reports it
        return False
    return len(documents) == 1 and isinstance(documents[0], dict) and "file_format" in documents[0]


def _validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    results: list[dict[str, Any]] = []
    code = 0
    for path in args.files:
        if _is_otel_config_file(path):
            from k8s_otel._file_config import check_config_file

            report = check_config_file(path)
            results.append(
                {
                    "file": path,
                    "valid": report.ok,
                    "kind": "OTEL_CONFIG_FILE",
                    "errors": report.problems,
                    "notes": report.notes,
                }
            )
            code = max(code, 0 if report.ok else 1)
            continue
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
        out.write(as_json(results) + "\n")
        return code
    for result in results:
        if result.get("kind") == "OTEL_CONFIG_FILE":
            out.write(
                f"{result['file']}: {'valid' if result['valid'] else 'invalid'} SDK configuration file\n"
            )
            for line in [*result["errors"], *result["notes"]]:
                out.write(f"{result['file']}: {line}\n")
        elif result["valid"]:
            out.write(
                f"{result['file']}: valid (endpoint: {result['endpoint'] or 'unset, localhost:4317'}, "
                f"samplingRatePerMillion: {result['samplingRatePerMillion'] if result['samplingRatePerMillion'] is not None else 'unset'})\n"
            )
        else:
            for line in result["errors"]:
                out.write(f"{result['file']}: {line}\n")
    return code


# --- demo ------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from k8s_otel.cli._demo import run_demo

    if args.requests < 1:
        raise UserError("--requests must be at least 1")
    if args.sampling_rate_per_million is not None:
        try:
            validate_sampling_rate_per_million(args.sampling_rate_per_million)
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
        err=err,
        progress=err if err.isatty() else None,
        as_json=args.json,
        verbose=args.verbose,
        width=args.width,
    )


# --- parser ----------------------------------------------------------------------------------

_EXAMPLES = {
    "stamp": """examples:
  k8s-otel stamp --cert /tls/tls.crt --key /tls/tls.key            # as examples/manifests/stamp-webhook.yaml runs it
  k8s-otel stamp --host 127.0.0.1 --port 8443 --cert tls.crt --key tls.key
""",
    "demo": """examples:
  k8s-otel demo                                   # 20 requests, every one sampled; two drawn as waterfalls
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
  k8s-otel receive                                # OTLP/gRPC on 127.0.0.1:4317, OTLP/HTTP on :4318
  k8s-otel receive --uid 705ab4f5-6393-11e8-b7cc-42010a800002   # the trace of one admission request
  k8s-otel receive --service demo-webhook --filter operation=CREATE --verbose
  k8s-otel receive --port 0 --json                # any free ports, one JSON object per span
Spans are grouped by trace, across batches and processes; each trace is shown once, when no span
of it has arrived for --settle seconds, or at exit. This is a development tool, like the
collector's debug exporter, not a collector: it keeps nothing once a trace is shown. It has no TLS
and no authentication: keep it on a loopback address.
""",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="k8s-otel", description="OpenTelemetry for Python Kubernetes controllers and admission webhooks."
    )
    from k8s_otel import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    demo.add_argument("--json", action="store_true", help="print the summary, trees and spans as JSON")
    demo.add_argument("--verbose", action="store_true", help="show every attribute and the resources")
    demo.add_argument("--width", type=int, default=160, help="widest line to print (default 160)")

    doctor = command(
        "doctor", "show the effective tracing settings, where each came from, and what is wrong", run_doctor
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
        "receive",
        "a local OTLP/gRPC and OTLP/HTTP receiver that shows each trace as a waterfall (development only)",
        run_receive,
    )
    add_receive_arguments(receive)

    from k8s_otel.webhook import _stamp as stamp_webhook

    stamp = command(
        "stamp",
        "serve the KEP-5915 stamping mutating webhook over HTTPS (tracing.k8s.io/traceparent on admission)",
        _stamp,
    )
    stamp_webhook.add_arguments(stamp)
    return parser


def _stamp(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import ssl

    from k8s_otel.webhook import _stamp as stamp_webhook

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: not a TCP port (0 to 65535)")
    try:
        return stamp_webhook.run(args)
    except (OSError, ssl.SSLError) as error:  # a missing or bad certificate, a port in use
        raise UserError(
            f"cannot serve on {args.host}:{args.port}: {type(error).__name__}: {error.strerror or error}"
        ) from None


def main(
    argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None, err: Optional[TextIO] = None
) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout if out is None else out  # read at call time: a redirected stdout is honoured
    err = sys.stderr if err is None else err
    for stream in (out, err):
        # A character the terminal cannot show is written as an escape, never a UnicodeEncodeError.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        result: int = args.handler(args, out, err)
        return result
    except UserError as error:
        err.write(f"k8s-otel {args.command}: {error}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): say nothing more, and let nothing flush into the pipe.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
