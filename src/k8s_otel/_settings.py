"""Effective tracing settings, and where each one came from.

Precedence, highest first: keyword arguments, a TracingConfiguration file (argument or
``K8S_OTEL_TRACING_CONFIG``), the standard ``OTEL_*`` variables, then the Kubernetes defaults.
Every value is resolved here once, so that the stock exporter never reads the environment itself:
that is how its quirks stay hidden (timeout in seconds, TLS on a bare ``host:port``, a raise on
``compression=none``). Bad values in the environment and in files never raise: they are recorded
in ``problems`` (each once) and replaced by the default; ``log_problems`` is the one place that
logs them. Bad keyword arguments are code errors and raise ``InvalidArgumentError``.
Credentials are made safe here too, once: header values are checked and wrapped in
``HeaderValue`` (never shown by str, repr or ``dataclasses.asdict``), and userinfo in an endpoint
is dropped, so nothing downstream (``doctor``, ``repr(handle)``, the exporters' logs, the gRPC
target) can show them. ``resolve_settings`` reads like the README's precedence
table: one small resolver per setting, each returning its ``Setting`` and origin.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Optional, TypeVar, Union

from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.sdk.environment_variables import (
    OTEL_ATTRIBUTE_COUNT_LIMIT,
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_BSP_EXPORT_TIMEOUT,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
    OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT,
    OTEL_EXPORTER_OTLP_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_INSECURE,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_INSECURE,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_LINK_ATTRIBUTE_COUNT_LIMIT,
    OTEL_SDK_DISABLED,
    OTEL_SERVICE_NAME,
    OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT,
    OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_SPAN_EVENT_COUNT_LIMIT,
    OTEL_SPAN_LINK_COUNT_LIMIT,
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
)

from k8s_otel import _endpoint
from k8s_otel._config import TracingConfiguration, TracingConfigurationError, load_tracing_configuration
from k8s_otel._endpoint import GRPC, HTTP_PROTOBUF, grpc_target
from k8s_otel._env import parse_flag
from k8s_otel._exceptions import InvalidArgumentError
from k8s_otel._headers import (
    HeaderPairs,
    HeadersInput,
    HeaderValue,
    RedactedHeaders,
    normalise_headers,
    parse_headers,
)
from k8s_otel._redact import excerpt, split_userinfo
from k8s_otel._sampling import (
    SAMPLE_LINKED_ENV,
    SAMPLER_NAME,
    parse_sampling_rate_per_million,
    sampler_advice,
    validate_sampling_rate_per_million,
)
from k8s_otel._sdk_import import is_bad_limit

__all__ = [
    "CONFIG_FILE_ENV",
    "EffectiveSettings",
    "HeaderValue",
    "HeadersInput",
    "SHUTDOWN_TIMEOUT_ENV",
    "SPAN_LIMIT_ENVS",
    "Setting",
    "log_problems",
    "parse_headers",
    "protocol_problem",
    "resolve_settings",
]

_logger = logging.getLogger("k8s_otel.settings")

T = TypeVar("T")

CONFIG_FILE_ENV = "K8S_OTEL_TRACING_CONFIG"
SHUTDOWN_TIMEOUT_ENV = "K8S_OTEL_SHUTDOWN_TIMEOUT"
DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 5000.0
SPAN_LIMIT_ENVS = (
    OTEL_ATTRIBUTE_COUNT_LIMIT,
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT,
    OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_SPAN_EVENT_COUNT_LIMIT,
    OTEL_SPAN_LINK_COUNT_LIMIT,
    OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT,
    OTEL_LINK_ATTRIBUTE_COUNT_LIMIT,
)
"""The SDK's span limit variables: ``SpanLimits()`` raises for a value that is not a non-negative integer."""


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One effective value; ``source`` is argument, file, env or default; ``origin`` says which one."""

    value: T
    source: str
    origin: str = ""

    def describe(self) -> str:
        return f"{self.source} ({self.origin})" if self.origin else self.source


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
    headers: Setting[HeaderPairs]
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
    sample_linked: Setting[bool] = field(default=Setting(False, "default"))
    """Also sample a root whose link is sampled (``sample_linked``, ``K8S_OTEL_SAMPLE_LINKED``)."""

    @property
    def grpc_target(self) -> str:
        """The endpoint as a gRPC target: scheme and path removed for http(s), dns authority fixed."""
        return grpc_target(self.endpoint.value)

    def header_pairs(self) -> tuple[tuple[str, str], ...]:
        """The headers with their values, for the exporter: the one place values are revealed."""
        return tuple((name, value.reveal()) for name, value in self.headers.value)

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


def _quoted(value: object) -> str:
    """A value as problems show it: quoted, escaped, at most 40 characters, never a credential."""
    return "'" + excerpt(value) + "'"


class _Resolver:
    """The inputs of one resolution (arguments, environment, file) and the problems met on the way."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.config: Optional[TracingConfiguration] = None
        self.file_origin = ""

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
        flag = parse_flag(value)
        if flag is not None:
            return Setting(flag, "env", name)
        self.problem(f"{name}: Invalid value: {_quoted(value)}: must be true or false; ignored")
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
                f"{name}: Invalid value: {_quoted(value)}: must be a positive number; using {default:g}"
            )
            return Setting(int(default) if integer else default, "default")
        return Setting(number, "env", name)

    def file_value(self, name: str) -> Any:
        """A field of the TracingConfiguration file, or None when there is no file or no such field."""
        return getattr(self.config, name) if self.config is not None else None


# --- one resolver per setting, in the order of the README's table ---------------------------------


def _resolve_config_file(
    r: _Resolver, argument: Optional[Union[str, os.PathLike[str]]]
) -> Setting[Optional[str]]:
    """The TracingConfiguration file: argument, then ``K8S_OTEL_TRACING_CONFIG``. Loads it into ``r``."""
    setting: Setting[Optional[str]] = Setting(None, "default")
    if argument is not None:
        setting = Setting(os.fspath(argument), "argument")
    else:
        path, name = r.env(CONFIG_FILE_ENV)
        if path is not None:
            setting = Setting(path, "env", name)
    if setting.value is not None:
        r.config = _load_file(setting.value, setting.source, setting.origin, r)
        r.file_origin = setting.value
    return setting


def _load_file(path: str, source: str, origin: str, r: _Resolver) -> Optional[TracingConfiguration]:
    where = f" ({origin})" if source == "env" else ""
    try:
        return load_tracing_configuration(path)
    except TracingConfigurationError as error:
        r.problem(f"{error}{where}; the file is ignored")
    except Exception as error:  # telemetry never breaks start-up, whatever the file holds
        r.problem(
            f"tracing configuration {path!r}{where} cannot be read ({type(error).__name__}); the file is ignored"
        )
    return None


def _resolve_protocol(
    r: _Resolver, argument: Optional[str], endpoint_argument: Optional[str]
) -> Setting[str]:
    """Argument, then gRPC when the file gives the endpoint (a TracingConfiguration is OTLP/gRPC), then env."""
    env_protocol, env_name = r.env(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL)
    if argument is not None:
        return Setting(argument.strip().lower(), "argument")
    if endpoint_argument is None and r.file_value("endpoint") is not None:
        if env_protocol is not None and env_protocol.lower() != GRPC:
            r.problem(
                f"{env_name}={excerpt(env_protocol)} is ignored: the endpoint comes from the "
                f"TracingConfiguration file {r.file_origin}, which is always OTLP/gRPC"
            )
        return Setting(GRPC, "file", r.file_origin)
    if env_protocol is not None:
        return Setting(env_protocol.lower(), "env", env_name)
    return Setting(GRPC, "default")


def _resolve_endpoint(r: _Resolver, argument: Optional[str], protocol: Setting[str]) -> Setting[str]:
    """Argument, file, ``..._TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` (+ ``/v1/traces`` for HTTP), default.

    Userinfo is dropped and reported; an unparseable endpoint raises as an argument (a code
    error) and is reported and replaced by the default otherwise.
    """
    setting = _chosen_endpoint(r, argument, protocol)
    stripped, had_userinfo = split_userinfo(setting.value)
    if setting.source == "file" and r.config is not None and r.config.userinfo_dropped:
        had_userinfo = True  # the loader already dropped it
    if had_userinfo:
        setting = Setting(stripped, setting.source, setting.origin)
        r.problem(
            f"endpoint {_quoted(stripped)} ({setting.describe()}): the user information before '@' is ignored "
            "and never sent; put credentials in OTEL_EXPORTER_OTLP_HEADERS"
        )
    try:
        grpc_target(setting.value)
    except ValueError as error:
        message = f"endpoint {_quoted(setting.value)} ({setting.describe()}) cannot be parsed: {error}"
        if setting.source == "argument":
            raise InvalidArgumentError(message, argument="endpoint") from None
        default = _endpoint.default_endpoint(protocol.value)
        r.problem(f"{message}; using {default}")
        return Setting(default, "default")
    return setting


def _chosen_endpoint(r: _Resolver, argument: Optional[str], protocol: Setting[str]) -> Setting[str]:
    if argument is not None:
        return Setting(argument.strip(), "argument")
    file_endpoint = r.file_value("endpoint")
    if file_endpoint is not None:
        return Setting(file_endpoint, "file", r.file_origin)
    traces, traces_name = r.env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    if traces is not None:
        return Setting(traces, "env", traces_name)
    base, base_name = r.env(OTEL_EXPORTER_OTLP_ENDPOINT)
    if base is not None:
        if protocol.value == HTTP_PROTOBUF:
            base = _endpoint.traces_url(base)
        return Setting(base, "env", base_name)
    return Setting(_endpoint.default_endpoint(protocol.value), "default")


def _resolve_tls_file(r: _Resolver, *names: str) -> Setting[Optional[str]]:
    value, name = r.env(*names)
    if value is None:
        return Setting(None, "default")
    if not os.path.isfile(value):
        r.problem(f"{name}: file {value[:200]!r} does not exist or is not a file")  # a path, not a secret
    elif not os.access(value, os.R_OK):  # e.g. a Secret mounted 0600 for another user
        r.problem(f"{name}: file {value[:200]!r} cannot be read by this process (permissions)")
    return Setting(value, "env", name)


def _resolve_insecure(
    r: _Resolver,
    argument: Optional[bool],
    endpoint: Setting[str],
    certificate: Setting[Optional[str]],
    client_certificate: Setting[Optional[str]],
) -> Setting[bool]:
    """Argument, the endpoint's scheme, ``..._INSECURE``, TLS when a certificate is given, else plaintext."""
    scheme = _endpoint.scheme(endpoint.value)
    if argument is not None:
        return Setting(bool(argument), "argument")
    if scheme in ("http", "https"):
        return Setting(scheme == "http", endpoint.source, f"{scheme}:// endpoint")
    from_env = r.env_bool(OTEL_EXPORTER_OTLP_TRACES_INSECURE, OTEL_EXPORTER_OTLP_INSECURE)
    if from_env is not None:
        return from_env
    if certificate.value or client_certificate.value:
        return Setting(False, certificate.source, "certificate given")
    return Setting(True, "default", "plaintext, as the Kubernetes components")


def _http_endpoint(r: _Resolver, endpoint: Setting[str], protocol: Setting[str]) -> Setting[str]:
    """OTLP/HTTP needs a URL: a bare ``host:port`` gets ``http://``, and says so."""
    url = _endpoint.http_url(endpoint.value)
    if protocol.value != HTTP_PROTOBUF or url == endpoint.value:
        return endpoint
    r.problem(
        f"endpoint {_quoted(endpoint.value)} has no http:// or https:// scheme, which OTLP/HTTP needs; "
        f"using http://{excerpt(endpoint.value)}"
    )
    return Setting(url, endpoint.source, endpoint.origin)


def _resolve_headers(r: _Resolver, argument: Optional[HeadersInput]) -> Setting[HeaderPairs]:
    """Argument, then ``..._TRACES_HEADERS``, then ``OTEL_EXPORTER_OTLP_HEADERS``; values checked and hidden."""
    if argument is not None:
        return Setting(RedactedHeaders(normalise_headers(argument, r.problems)), "argument")
    text, name = r.env(OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_HEADERS)
    if text is None:
        return Setting(RedactedHeaders(()), "default")
    return Setting(RedactedHeaders(parse_headers(text, r.problems, origin=name)), "env", name)


def _resolve_timeout(r: _Resolver) -> Setting[float]:
    """Milliseconds, as the OTel spec and the Go components read it."""
    text, name = r.env(OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT)
    if text is None:
        return Setting(10_000.0, "default")
    return r.env_number(name, 10_000.0, integer=False)


def _resolve_compression(r: _Resolver) -> Setting[str]:
    text, name = r.env(OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, OTEL_EXPORTER_OTLP_COMPRESSION)
    if text is None:
        return Setting("none", "default")
    if text.lower() in ("gzip", "none"):
        return Setting(text.lower(), "env", name)
    r.problem(f"{name}: Invalid value: {_quoted(text)}: must be gzip or none; using none")
    return Setting("none", "default")


def _resolve_sampling_rate(r: _Resolver, argument: Optional[int]) -> Setting[Optional[int]]:
    """Argument, file, ``OTEL_TRACES_SAMPLER=k8s_per_million`` + its argument, else unset."""
    if argument is not None:
        return Setting(argument, "argument")
    file_rate = r.file_value("sampling_rate_per_million")
    if file_rate is not None:
        return Setting(file_rate, "file", r.file_origin)
    unset: Setting[Optional[int]] = Setting(None, "default", "unset: parent-based, roots never sampled")
    sampler_name, _ = r.env(OTEL_TRACES_SAMPLER)
    if sampler_name is None:
        return unset
    arg, arg_name = r.env(OTEL_TRACES_SAMPLER_ARG)
    if sampler_name != SAMPLER_NAME:
        r.problem(
            f"OTEL_TRACES_SAMPLER={excerpt(sampler_name)} is ignored: k8s_otel.configure() always uses the "
            f"Kubernetes per-million sampler; {sampler_advice(sampler_name, arg)}"
        )
        return unset
    try:
        rate = parse_sampling_rate_per_million(arg)
    except ValueError as error:
        r.problem(f"OTEL_TRACES_SAMPLER_ARG: {error}; roots will not be sampled")
        return unset
    return unset if rate is None else Setting(rate, "env", arg_name)


def _resolve_service_name(r: _Resolver, argument: Optional[str]) -> Setting[Optional[str]]:
    if argument is not None:
        return Setting(argument, "argument")
    value, name = r.env(OTEL_SERVICE_NAME)
    return Setting(value, "env", name) if value else Setting(None, "default")


def _resolve_batch_sizes(r: _Resolver) -> tuple[Setting[int], Setting[int]]:
    """``OTEL_BSP_MAX_QUEUE_SIZE`` and ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``; a batch larger than the queue is clamped."""
    batch = r.env_number(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512, integer=True)
    queue = r.env_number(OTEL_BSP_MAX_QUEUE_SIZE, 2048, integer=True)
    if batch.value > queue.value:
        r.problem(
            f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE ({batch.value}) is larger than OTEL_BSP_MAX_QUEUE_SIZE "
            f"({queue.value}); using {queue.value}"
        )
        batch = Setting(queue.value, batch.source, batch.origin)
    return queue, batch


def protocol_problem(protocol: Setting[str]) -> Optional[str]:
    """Why no exporter can be built for ``protocol``, or None: one wording, for settings and the exporter."""
    if protocol.value not in (GRPC, HTTP_PROTOBUF):
        return (
            f"OTLP protocol {_quoted(protocol.value)} ({protocol.describe()}) is not supported: "
            "use grpc or http/protobuf; no spans will be exported"
        )
    if protocol.value == HTTP_PROTOBUF:
        try:
            import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        except ImportError:
            return (
                f"OTLP protocol http/protobuf ({protocol.describe()}) needs the OTLP/HTTP exporter: "
                "pip install 'k8s-otel[http]'. No spans will be exported; gRPC is never sent to an HTTP port"
            )
    return None


def _check_protocol(r: _Resolver, protocol: Setting[str], endpoint: Setting[str]) -> None:
    """Report a protocol we cannot honour, and gRPC aimed at the OTLP/HTTP port."""
    problem = protocol_problem(protocol)
    if problem is not None:
        r.problem(problem)
    elif protocol.value == GRPC and _endpoint.port(endpoint.value) == "4318":
        r.problem(
            f"endpoint {endpoint.value} uses port 4318, the OTLP/HTTP port, but the protocol is gRPC; "
            "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf or use port 4317"
        )


def _check_span_limits(r: _Resolver) -> None:
    """The SDK raises for a bad span limit variable; here it is a problem like any other."""
    for name in SPAN_LIMIT_ENVS:
        value = r.environ.get(name)
        if value is None or not is_bad_limit(value):
            continue
        r.problem(
            f"{name}: Invalid value: {_quoted(value)}: must be a non-negative integer; "
            "the SDK's default span limits are used instead of every OTEL_*_LIMIT variable"
        )


def _check_traces_exporter(r: _Resolver) -> None:
    """``configure()`` always exports over OTLP: another ``OTEL_TRACES_EXPORTER`` is reported, not obeyed."""
    value, name = r.env(OTEL_TRACES_EXPORTER)
    if value is not None and value.lower() != "otlp":
        r.problem(
            f"{name}={excerpt(value)} is not used: k8s_otel.configure() always exports traces over OTLP "
            "(OTEL_SDK_DISABLED=true turns tracing off)"
        )


def _resolve_sample_linked(r: _Resolver, argument: Optional[bool]) -> Setting[bool]:
    if argument is not None:
        return Setting(bool(argument), "argument")
    return r.env_bool(SAMPLE_LINKED_ENV) or Setting(False, "default")


def log_problems(problems: Sequence[str], logger: Optional[logging.Logger] = None) -> None:
    """The one place a settings problem is logged: one ERROR line per problem, each problem once."""
    for problem in dict.fromkeys(problems):
        (logger or _logger).error("k8s_otel: %s", problem)


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
    sample_linked: Optional[bool] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> EffectiveSettings:
    """Resolve every setting ``configure`` uses. Raises ``InvalidArgumentError`` only, for bad keyword
    arguments (code errors); every problem in the environment or a file is in ``problems``, once."""
    r = _Resolver(os.environ if environ is None else environ)
    rate_argument = validate_sampling_rate_per_million(sampling_rate_per_million)
    sdk_disabled = r.env_bool(OTEL_SDK_DISABLED) or Setting(False, "default")
    config_file_setting = _resolve_config_file(r, config_file)
    protocol_setting = _resolve_protocol(r, protocol, endpoint)
    endpoint_setting = _resolve_endpoint(r, endpoint, protocol_setting)
    certificate = _resolve_tls_file(r, OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, OTEL_EXPORTER_OTLP_CERTIFICATE)
    client_key = _resolve_tls_file(r, OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY, OTEL_EXPORTER_OTLP_CLIENT_KEY)
    client_certificate = _resolve_tls_file(
        r, OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE
    )
    insecure_setting = _resolve_insecure(r, insecure, endpoint_setting, certificate, client_certificate)
    endpoint_setting = _http_endpoint(r, endpoint_setting, protocol_setting)
    headers_setting = _resolve_headers(r, headers)
    timeout = _resolve_timeout(r)
    compression = _resolve_compression(r)
    rate = _resolve_sampling_rate(r, rate_argument)
    service = _resolve_service_name(r, service_name)
    queue, batch = _resolve_batch_sizes(r)
    _check_protocol(r, protocol_setting, endpoint_setting)
    schedule_delay = r.env_number(OTEL_BSP_SCHEDULE_DELAY, 5000.0, integer=False)
    export_timeout = r.env_number(OTEL_BSP_EXPORT_TIMEOUT, 30000.0, integer=False)
    linked = _resolve_sample_linked(r, sample_linked)
    shutdown = _resolve_shutdown_timeout(r, shutdown_timeout)
    _check_span_limits(r)
    _check_traces_exporter(r)
    return EffectiveSettings(
        sdk_disabled=sdk_disabled,
        protocol=protocol_setting,
        endpoint=endpoint_setting,
        insecure=insecure_setting,
        certificate=certificate,
        client_key=client_key,
        client_certificate=client_certificate,
        headers=headers_setting,
        timeout_millis=timeout,
        compression=compression,
        sampling_rate_per_million=rate,
        service_name=service,
        config_file=config_file_setting,
        schedule_delay_millis=schedule_delay,
        max_queue_size=queue,
        max_export_batch_size=batch,
        export_timeout_millis=export_timeout,
        shutdown_timeout_millis=shutdown,
        sample_linked=linked,
        problems=tuple(dict.fromkeys(r.problems)),  # one entry per problem, however it was reached
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
            raise InvalidArgumentError(
                f"shutdown_timeout must be a positive number of seconds, not {seconds!r}",
                argument="shutdown_timeout",
            )
        return Setting(float(seconds) * 1000.0, "argument")
    return resolver.env_number(SHUTDOWN_TIMEOUT_ENV, DEFAULT_SHUTDOWN_TIMEOUT_MILLIS, integer=False)
