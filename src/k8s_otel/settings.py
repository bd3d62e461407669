"""Effective tracing settings, and where each one came from.

Precedence, highest first: keyword arguments, a TracingConfiguration file (argument or
``K8S_OTEL_TRACING_CONFIG``), the standard ``OTEL_*`` variables, then the Kubernetes defaults.
Every value is resolved here once, so that the stock exporter never reads the environment itself:
that is how its quirks stay hidden (timeout in seconds, TLS on a bare ``host:port``, a raise on
``compression=none``). Bad values never raise: they are recorded in ``problems``, logged once,
and replaced by the default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Optional, TypeVar, Union
from urllib.parse import unquote, urlsplit

from k8s_otel.config import TracingConfiguration, TracingConfigurationError, load_tracing_configuration
from k8s_otel.sampling import parse_samples_per_million, validate_samples_per_million

__all__ = [
    "CONFIG_FILE_ENV",
    "EffectiveSettings",
    "HeadersInput",
    "SHUTDOWN_TIMEOUT_ENV",
    "Setting",
    "parse_headers",
    "resolve_settings",
]

_logger = logging.getLogger(__name__)

T = TypeVar("T")
HeadersInput = Union[str, Mapping[str, str], Sequence[tuple[str, str]]]

CONFIG_FILE_ENV = "K8S_OTEL_TRACING_CONFIG"
SHUTDOWN_TIMEOUT_ENV = "K8S_OTEL_SHUTDOWN_TIMEOUT"
DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 5000.0
SAMPLER_NAME = "k8s_per_million"
GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
DEFAULT_GRPC_ENDPOINT = "localhost:4317"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318/v1/traces"
_TRUE, _FALSE = "true", "false"


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One effective value; ``source`` is argument, file, env or default; ``origin`` says which one."""

    value: T
    source: str
    origin: str = ""

    def describe(self) -> str:
        return f"{self.source} ({self.origin})" if self.origin else self.source


class _RedactedHeaders(tuple):  # type: ignore[type-arg]
    """Header pairs whose repr shows the names only: values are credentials."""

    def __repr__(self) -> str:
        return "(" + ", ".join(f"({name!r}, '***')" for name, _ in self) + ")"


@dataclass(frozen=True)
class EffectiveSettings:
    """Everything ``configure`` builds from, with provenance. ``problems`` lists ignored bad input."""

    sdk_disabled: Setting[bool]
    protocol: Setting[str]
    endpoint: Setting[str]
    insecure: Setting[bool]
    certificate: Setting[Optional[str]]
    client_key: Setting[Optional[str]]
    client_certificate: Setting[Optional[str]]
    headers: Setting[tuple[tuple[str, str], ...]]
    timeout_millis: Setting[float]
    compression: Setting[str]
    sampling_rate_per_million: Setting[Optional[int]]
    service_name: Setting[Optional[str]]
    config_file: Setting[Optional[str]]
    schedule_delay_millis: Setting[float]
    max_queue_size: Setting[int]
    max_export_batch_size: Setting[int]
    export_timeout_millis: Setting[float]
    problems: tuple[str, ...] = field(default=())
    shutdown_timeout_millis: Setting[float] = field(
        default=Setting(DEFAULT_SHUTDOWN_TIMEOUT_MILLIS, "default")
    )
    """What exit and SIGTERM give the exporter, at most (``K8S_OTEL_SHUTDOWN_TIMEOUT``, milliseconds)."""

    @property
    def grpc_target(self) -> str:
        """The endpoint as a gRPC target: scheme and path removed for http(s), dns authority fixed."""
        return grpc_target(self.endpoint.value)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``k8s-otel doctor --json``; header values are never included."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "problems":
                continue
            setting = getattr(self, name)
            value = setting.value
            if name == "headers":
                value = [header_name for header_name, _ in value]
            out[name] = {"value": value, "source": setting.source, "origin": setting.origin}
        out["problems"] = list(self.problems)
        return out


def grpc_target(endpoint: str) -> str:
    """Turn any accepted endpoint form into what ``grpc.insecure_channel``/``secure_channel`` take.

    ``http(s)://host:port[/path]`` becomes ``host:port``. ``dns://host:port`` (a TracingConfiguration
    form that kube-apiserver validation accepts) means the host, not a DNS server authority, so it
    becomes ``dns:///host:port``. ``dns:///…``, ``unix:…`` and ``unix-abstract:…`` pass through.
    """
    lowered = endpoint.lower()
    if lowered.startswith(("http://", "https://")):
        return urlsplit(endpoint).netloc
    if lowered.startswith("dns://") and not lowered.startswith("dns:///"):
        authority, slash, _ = endpoint[len("dns://") :].partition("/")
        if not slash:
            return "dns:///" + authority
        return endpoint
    return endpoint


class _Resolver:
    """Collects values with provenance and the problems met on the way."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def env(self, *names: str) -> tuple[Optional[str], str]:
        """The first of ``names`` that is set to a non-blank value."""
        for name in names:
            value = self.environ.get(name)
            if value is not None and value.strip():
                return value.strip(), name
        return None, ""

    def env_bool(self, *names: str) -> Optional[Setting[bool]]:
        value, name = self.env(*names)
        if value is None:
            return None
        if value.lower() in (_TRUE, _FALSE):
            return Setting(value.lower() == _TRUE, "env", name)
        self.problem(f"{name}: Invalid value: {value[:40]!r}: must be true or false; ignored")
        return None

    def env_number(self, name: str, default: float, *, integer: bool) -> Setting[Any]:
        value, _ = self.env(name)
        if value is None:
            return Setting(int(default) if integer else default, "default")
        try:
            number: float = int(value) if integer else float(value)
        except ValueError:
            number = -1
        if not 0 < number < float("inf"):  # also refuses NaN
            self.problem(
                f"{name}: Invalid value: {value[:40]!r}: must be a positive number; using {default:g}"
            )
            return Setting(int(default) if integer else default, "default")
        return Setting(number, "env", name)


def parse_headers(text: str, problems: Optional[list[str]] = None) -> tuple[tuple[str, str], ...]:
    """Parse ``OTEL_EXPORTER_OTLP_HEADERS``: ``k=v`` pairs, comma separated, percent-decoded.

    A malformed pair is skipped and reported by its position and key only, never its value.
    """
    pairs: list[tuple[str, str]] = []
    for position, item in enumerate(text.split(","), start=1):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = unquote(name.strip()).lower()
        if not sep or not name or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
            # Without "=" the entry may be a pasted token: show nothing of it.
            shown = name if sep and name and len(name) <= 64 and name.isprintable() else "<redacted>"
            message = (
                f"OTEL_EXPORTER_OTLP_HEADERS: entry {position} ({shown!r}) is not a valid name=value pair"
            )
            if problems is not None:
                problems.append(message + "; skipped")
            continue
        pairs.append((name, unquote(value.strip())))
    return tuple(pairs)


def _normalise_headers(headers: HeadersInput, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if isinstance(headers, str):
        return parse_headers(headers, problems)
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name).lower(), str(value)) for name, value in items)


def _load_file(path: str, source: str, origin: str, resolver: _Resolver) -> Optional[TracingConfiguration]:
    try:
        return load_tracing_configuration(path)
    except TracingConfigurationError as error:
        where = f" ({origin})" if source == "env" else ""
        resolver.problem(f"{error}{where}; the file is ignored")
        return None


def resolve_settings(
    *,
    endpoint: Optional[str] = None,
    sampling_rate_per_million: Optional[int] = None,
    config_file: Optional[Union[str, os.PathLike[str]]] = None,
    service_name: Optional[str] = None,
    headers: Optional[HeadersInput] = None,
    insecure: Optional[bool] = None,
    protocol: Optional[str] = None,
    shutdown_timeout: Optional[float] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> EffectiveSettings:
    """Resolve every setting ``configure`` uses. Raises only for bad keyword arguments (code errors)."""
    resolver = _Resolver(os.environ if environ is None else environ)
    env = resolver.env
    rate_argument = validate_samples_per_million(sampling_rate_per_million)

    disabled = resolver.env_bool("OTEL_SDK_DISABLED") or Setting(False, "default")

    # The TracingConfiguration file.
    file_setting: Setting[Optional[str]] = Setting(None, "default")
    config: Optional[TracingConfiguration] = None
    if config_file is not None:
        file_setting = Setting(os.fspath(config_file), "argument")
    else:
        path, name = env(CONFIG_FILE_ENV)
        if path is not None:
            file_setting = Setting(path, "env", name)
    if file_setting.value is not None:
        config = _load_file(file_setting.value, file_setting.source, file_setting.origin, resolver)
    file_origin = file_setting.value or ""

    # Protocol: a TracingConfiguration endpoint is OTLP/gRPC by definition.
    protocol_setting: Setting[str]
    env_protocol, env_protocol_name = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol is not None:
        protocol_setting = Setting(protocol.strip().lower(), "argument")
    elif endpoint is None and config is not None and config.endpoint is not None:
        protocol_setting = Setting(GRPC, "file", file_origin)
        if env_protocol is not None and env_protocol.lower() != GRPC:
            resolver.problem(
                f"{env_protocol_name}={env_protocol} is ignored: the endpoint comes from the "
                f"TracingConfiguration file {file_origin}, which is always OTLP/gRPC"
            )
    elif env_protocol is not None:
        protocol_setting = Setting(env_protocol.lower(), "env", env_protocol_name)
    else:
        protocol_setting = Setting(GRPC, "default")

    # Endpoint.
    endpoint_setting: Setting[str]
    if endpoint is not None:
        endpoint_setting = Setting(endpoint.strip(), "argument")
    elif config is not None and config.endpoint is not None:
        endpoint_setting = Setting(config.endpoint, "file", file_origin)
    else:
        traces_endpoint, traces_name = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        base_endpoint, base_name = env("OTEL_EXPORTER_OTLP_ENDPOINT")
        if traces_endpoint is not None:
            endpoint_setting = Setting(traces_endpoint, "env", traces_name)
        elif base_endpoint is not None:
            if protocol_setting.value == HTTP_PROTOBUF:
                base_endpoint = base_endpoint.rstrip("/") + "/v1/traces"
            endpoint_setting = Setting(base_endpoint, "env", base_name)
        elif protocol_setting.value == HTTP_PROTOBUF:
            endpoint_setting = Setting(DEFAULT_HTTP_ENDPOINT, "default")
        else:
            endpoint_setting = Setting(DEFAULT_GRPC_ENDPOINT, "default")

    # An endpoint that cannot be parsed: a code error as an argument, a reported problem otherwise.
    try:
        grpc_target(endpoint_setting.value)
    except ValueError as error:
        message = f"endpoint {endpoint_setting.value[:80]!r} ({endpoint_setting.describe()}) cannot be parsed: {error}"
        if endpoint_setting.source == "argument":
            raise ValueError(message) from None
        default = DEFAULT_HTTP_ENDPOINT if protocol_setting.value == HTTP_PROTOBUF else DEFAULT_GRPC_ENDPOINT
        resolver.problem(f"{message}; using {default}")
        endpoint_setting = Setting(default, "default")

    # TLS material and the insecure flag.
    def path_setting(*names: str) -> Setting[Optional[str]]:
        value, name = env(*names)
        if value is None:
            return Setting(None, "default")
        if not os.path.isfile(value):
            resolver.problem(f"{name}: file {value!r} does not exist or is not a file")
        return Setting(value, "env", name)

    certificate = path_setting("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
    client_key = path_setting("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
    client_certificate = path_setting(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
    )
    scheme = endpoint_setting.value.partition("://")[0].lower() if "://" in endpoint_setting.value else ""
    insecure_setting: Setting[bool]
    if insecure is not None:
        insecure_setting = Setting(bool(insecure), "argument")
    elif scheme in ("http", "https"):
        insecure_setting = Setting(scheme == "http", endpoint_setting.source, f"{scheme}:// endpoint")
    else:
        insecure_setting = resolver.env_bool(
            "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"
        ) or (
            Setting(False, certificate.source, "certificate given")
            if certificate.value or client_certificate.value
            else Setting(True, "default", "plaintext, as the Kubernetes components")
        )
    if protocol_setting.value == HTTP_PROTOBUF and scheme not in ("http", "https"):
        resolver.problem(
            f"endpoint {endpoint_setting.value!r} has no http:// or https:// scheme, which OTLP/HTTP needs; "
            f"using http://{endpoint_setting.value}"
        )
        endpoint_setting = Setting(
            f"http://{endpoint_setting.value}", endpoint_setting.source, endpoint_setting.origin
        )

    # Headers (credentials: never logged).
    headers_setting: Setting[tuple[tuple[str, str], ...]]
    if headers is not None:
        headers_setting = Setting(
            _RedactedHeaders(_normalise_headers(headers, resolver.problems)), "argument"
        )
    else:
        text, name = env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
        if text is None:
            headers_setting = Setting(_RedactedHeaders(()), "default")
        else:
            parsed = parse_headers(text, resolver.problems)
            headers_setting = Setting(_RedactedHeaders(parsed), "env", name)

    # Timeout: milliseconds, as the OTel spec and the Go components read it.
    timeout_text, timeout_name = env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
    timeout_setting: Setting[float] = Setting(10_000.0, "default")
    if timeout_text is not None:
        timeout_setting = resolver.env_number(timeout_name, 10_000.0, integer=False)

    compression_text, compression_name = env(
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"
    )
    compression_setting: Setting[str] = Setting("none", "default")
    if compression_text is not None:
        if compression_text.lower() in ("gzip", "none"):
            compression_setting = Setting(compression_text.lower(), "env", compression_name)
        else:
            resolver.problem(
                f"{compression_name}: Invalid value: {compression_text[:40]!r}: must be gzip or none; using none"
            )

    # Sampling rate.
    rate_setting: Setting[Optional[int]]
    if sampling_rate_per_million is not None:
        rate_setting = Setting(rate_argument, "argument")
    elif config is not None and config.sampling_rate_per_million is not None:
        rate_setting = Setting(config.sampling_rate_per_million, "file", file_origin)
    else:
        rate_setting = Setting(None, "default", "unset: parent-based, roots never sampled")
        sampler_name, _ = env("OTEL_TRACES_SAMPLER")
        if sampler_name == SAMPLER_NAME:
            arg, arg_name = env("OTEL_TRACES_SAMPLER_ARG")
            try:
                parsed_rate = parse_samples_per_million(arg)
            except ValueError as error:
                resolver.problem(f"OTEL_TRACES_SAMPLER_ARG: {error}; roots will not be sampled")
            else:
                if parsed_rate is not None:
                    rate_setting = Setting(parsed_rate, "env", arg_name)
        elif sampler_name is not None:
            resolver.problem(
                f"OTEL_TRACES_SAMPLER={sampler_name[:40]} is ignored: k8s_otel.configure() always uses the "
                f"Kubernetes per-million sampler; set OTEL_TRACES_SAMPLER={SAMPLER_NAME} and "
                "OTEL_TRACES_SAMPLER_ARG=<samples per million>"
            )

    if service_name is not None:
        service_setting: Setting[Optional[str]] = Setting(service_name, "argument")
    else:
        value, name = env("OTEL_SERVICE_NAME")
        service_setting = Setting(value, "env", name) if value else Setting(None, "default")

    batch = resolver.env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, integer=True)
    queue = resolver.env_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048, integer=True)
    if batch.value > queue.value:
        resolver.problem(
            f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE ({batch.value}) is larger than OTEL_BSP_MAX_QUEUE_SIZE "
            f"({queue.value}); using {queue.value}"
        )
        batch = Setting(queue.value, batch.source, batch.origin)

    if protocol_setting.value not in (GRPC, HTTP_PROTOBUF):
        resolver.problem(
            f"OTLP protocol {protocol_setting.value!r} ({protocol_setting.describe()}) is not supported: "
            "use grpc or http/protobuf; no spans will be exported"
        )
    elif protocol_setting.value == GRPC and _port(endpoint_setting.value) == "4318":
        resolver.problem(
            f"endpoint {endpoint_setting.value} uses port 4318, the OTLP/HTTP port, but the protocol is gRPC; "
            "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf or use port 4317"
        )

    return EffectiveSettings(
        sdk_disabled=disabled,
        protocol=protocol_setting,
        endpoint=endpoint_setting,
        insecure=insecure_setting,
        certificate=certificate,
        client_key=client_key,
        client_certificate=client_certificate,
        headers=headers_setting,
        timeout_millis=timeout_setting,
        compression=compression_setting,
        sampling_rate_per_million=rate_setting,
        service_name=service_setting,
        config_file=file_setting,
        schedule_delay_millis=resolver.env_number("OTEL_BSP_SCHEDULE_DELAY", 5000.0, integer=False),
        max_queue_size=queue,
        max_export_batch_size=batch,
        export_timeout_millis=resolver.env_number("OTEL_BSP_EXPORT_TIMEOUT", 30000.0, integer=False),
        shutdown_timeout_millis=_resolve_shutdown_timeout(resolver, shutdown_timeout),
        problems=tuple(resolver.problems),
    )


def _resolve_shutdown_timeout(resolver: _Resolver, seconds: Optional[float]) -> Setting[float]:
    """The shutdown budget: the ``shutdown_timeout`` argument (seconds), else the env var (milliseconds,
    as every OTEL_*_TIMEOUT), else 5 s, well inside a pod's default 30 s grace period."""
    if seconds is not None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 < seconds < float("inf")
        ):
            raise ValueError(f"shutdown_timeout must be a positive number of seconds, not {seconds!r}")
        return Setting(float(seconds) * 1000.0, "argument")
    return resolver.env_number(SHUTDOWN_TIMEOUT_ENV, DEFAULT_SHUTDOWN_TIMEOUT_MILLIS, integer=False)


def _port(endpoint: str) -> str:
    host_port = grpc_target(endpoint).rpartition("/")[2]
    return host_port.rpartition(":")[2] if ":" in host_port else ""
