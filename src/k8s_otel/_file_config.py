"""The SDK's file configuration (``OTEL_CONFIG_FILE``, SDK >= 1.43 with ``opentelemetry-configuration``).

With a configuration file the SDK ignores every ``OTEL_*`` variable, so an app would silently lose
the per-million sampler. k8s-otel takes part through the file's own plugin points:

- ``tracer_provider.sampler: {k8s_per_million: }`` loads the ``opentelemetry_sampler`` entry point
  ``k8s_per_million`` (this module's ``per_million_sampler``). The SDK builds plugin samplers with
  no arguments and drops their YAML properties (detectors and propagators get theirs), so the rate
  comes from ``K8S_OTEL_TRACING_CONFIG`` (its ``samplingRatePerMillion``), else
  ``K8S_OTEL_SAMPLING_RATE_PER_MILLION``, until upstream passes properties; when it does, a
  ``sampling_rate_per_million`` property wins.
- ``resource.detection/development.detectors: [{k8s: {...}}]`` is ``KubernetesResourceDetector``
  with its keyword settings (``root``, ``downward_api_dir``, ``env_names``).
- ``propagator.composite: [{k8s: }]`` (or ``composite_list: k8s``) is ``KubernetesPropagator``,
  which takes no settings.

``check_config_file(path)`` is what ``k8s-otel doctor``/``validate`` report for such a file.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Optional, Union

from opentelemetry.sdk.trace.sampling import Sampler

from k8s_otel._sampling import (
    SAMPLER_NAME,
    PerMillionSampler,
    parse_sampling_rate_per_million,
    validate_sampling_rate_per_million,
)
from k8s_otel._settings import CONFIG_FILE_ENV as TRACING_CONFIG_FILE_ENV

__all__ = [
    "CONFIG_FILE_ENV",
    "RATE_ENV",
    "SAMPLER_NAME",
    "FileConfigReport",
    "check_config_file",
    "per_million_sampler",
]

_logger = logging.getLogger("k8s_otel.file_config")

RATE_ENV = "K8S_OTEL_SAMPLING_RATE_PER_MILLION"
TRACING_CONFIG_ENV = TRACING_CONFIG_FILE_ENV  # configure()'s own variable, read here as it reads it
CONFIG_FILE_ENV = (
    "OTEL_CONFIG_FILE"  # the SDK names it only from 1.43 (opentelemetry.sdk.environment_variables)
)
DETECTOR_SETTINGS = frozenset({"root", "downward_api_dir", "env_names", "raise_on_error"})
_FLUSH_TIMEOUT_MILLIS = 5000


@dataclass(frozen=True)
class RateSource:
    """The rate the file's ``k8s_per_million`` sampler uses, and where it came from."""

    rate: Optional[int]
    origin: str
    problems: tuple[str, ...] = ()


def sampler_rate(
    properties: Optional[dict[str, Any]] = None, environ: Optional[dict[str, str]] = None
) -> RateSource:
    """Properties (once upstream passes them), then ``K8S_OTEL_TRACING_CONFIG``, then ``K8S_OTEL_SAMPLING_RATE_PER_MILLION``."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    if properties and "sampling_rate_per_million" in properties:
        try:
            return RateSource(
                validate_sampling_rate_per_million(properties["sampling_rate_per_million"]), "file property"
            )
        except (TypeError, ValueError) as error:
            problems.append(f"sampler property sampling_rate_per_million: {error}")
    config_path = env.get(TRACING_CONFIG_ENV, "").strip()
    if config_path:
        from k8s_otel._config import (
            TracingConfigurationError,
            load_tracing_configuration,
            validate_tracing_configuration,
        )

        try:
            config = load_tracing_configuration(config_path)
            errors = validate_tracing_configuration(config)
            if errors:
                problems.extend(f"{TRACING_CONFIG_ENV}={config_path}: {error}" for error in errors)
            elif config.sampling_rate_per_million is not None:
                return RateSource(
                    config.sampling_rate_per_million, f"{TRACING_CONFIG_ENV} ({config_path})", tuple(problems)
                )
        except (TracingConfigurationError, OSError) as error:
            problems.append(f"{TRACING_CONFIG_ENV}={config_path}: {error}")
    text = env.get(RATE_ENV)
    if text is not None and text.strip():
        try:
            return RateSource(parse_sampling_rate_per_million(text), RATE_ENV, tuple(problems))
        except ValueError as error:
            problems.append(f"{RATE_ENV}={text.strip()[:40]!r}: {error}")
    return RateSource(None, "unset", tuple(problems))


def per_million_sampler(**properties: Any) -> Sampler:
    """The ``opentelemetry_sampler`` entry point ``k8s_per_million``. Never raises.

    A raise here fails the whole file configuration; a bad or missing rate is logged instead and
    gives the Kubernetes "rate unset" behaviour: parent-based, roots never sampled.
    """
    source = sampler_rate(properties)
    from k8s_otel._settings import log_problems

    log_problems(source.problems, _logger)  # the one wording and rule: one line per problem, once
    if source.rate is None and not source.problems:  # a bad rate was logged just above
        _logger.warning(
            "k8s_otel: %s in %s has no rate (set %s or %s): root spans will not be sampled, as Kubernetes "
            "does when samplingRatePerMillion is unset",
            SAMPLER_NAME,
            CONFIG_FILE_ENV,
            TRACING_CONFIG_ENV,
            RATE_ENV,
        )
    _install_sigterm_flush()
    return PerMillionSampler(source.rate)


def _install_sigterm_flush() -> None:
    """The file configuration installs no SIGTERM handler: flush the global provider on SIGTERM.

    Installed once, when the file builds our sampler (the provider becomes global just after), on
    the main thread only. A handler of the application's is called after the flush; without one,
    the process then dies of SIGTERM as it would have.
    """
    if (
        getattr(_install_sigterm_flush, "done", False)
        or threading.current_thread() is not threading.main_thread()
    ):
        return
    _install_sigterm_flush.done = True  # type: ignore[attr-defined]
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return

    def on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
        from opentelemetry import trace

        flush = getattr(trace.get_tracer_provider(), "force_flush", None)
        if flush is not None:
            try:
                flush(_FLUSH_TIMEOUT_MILLIS)  # the SDK bounds it
            except Exception:
                _logger.debug("k8s_otel: flush on SIGTERM failed", exc_info=True)
        if callable(previous):
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):
        _logger.debug("k8s_otel: cannot install a SIGTERM handler here", exc_info=True)


# --- checking a configuration file (k8s-otel doctor / validate) ------------------------------------


@dataclass
class FileConfigReport:
    """What ``check_config_file`` found: ``problems`` (errors) and ``notes`` (what k8s-otel will do)."""

    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def check_config_file(
    path: Union[str, os.PathLike[str]], environ: Optional[dict[str, str]] = None
) -> FileConfigReport:
    """Check an ``OTEL_CONFIG_FILE`` for what k8s-otel needs. Never raises; every problem is named.

    The schema is checked by ``opentelemetry-configuration`` when it is installed (it needs Python
    >= 3.10); the k8s-otel parts (sampler rate, detector and propagator settings) always are.
    """
    shown = os.fspath(path)
    report = FileConfigReport(shown)
    from k8s_otel._config import MAX_FILE_BYTES, TracingConfigurationError, load_yaml_documents
    from k8s_otel._files import read_regular_file

    try:
        data = read_regular_file(shown, MAX_FILE_BYTES)  # a FIFO or a device never blocks
    except (OSError, ValueError) as error:
        report.problems.append(f"{shown}: cannot be read ({type(error).__name__})")
        return report
    if len(data) > MAX_FILE_BYTES:
        report.problems.append(f"{shown}: larger than {MAX_FILE_BYTES} bytes")
        return report
    try:
        documents = load_yaml_documents(data, path=shown)
    except TracingConfigurationError as error:  # bounded: position and a short escaped excerpt
        detail = str(error).split(": ", 1)[-1]
        report.problems.append(f"{shown}: not YAML or JSON: {detail}")
        return report
    if len(documents) != 1:
        report.problems.append(f"{shown}: must hold one YAML document, not {len(documents)}")
        return report
    document = documents[0]
    if not isinstance(document, dict):
        report.problems.append(f"{shown}: the top level must be a mapping, not {type(document).__name__}")
        return report
    _check_schema(path, report)
    _check_sampler(document, report, environ)
    _check_detectors(document, report)
    _check_propagators(document, report)
    return report


def _check_schema(path: Union[str, os.PathLike[str]], report: FileConfigReport) -> None:
    try:
        from opentelemetry.configuration import ConfigurationError, load_config_file
    except ImportError:
        report.notes.append(
            "schema not checked: opentelemetry-configuration is not installed "
            "(pip install 'k8s-otel[file-config]', Python >= 3.10)"
        )
        return
    try:
        load_config_file(path)
        report.schema_checked = True
    except ConfigurationError as error:
        report.problems.append(_schema_problem(report.path, error))
    except Exception as error:
        report.problems.append(f"{report.path}: the SDK could not load it ({type(error).__name__})")


def _schema_problem(path: str, error: Exception) -> str:
    """Where the file breaks the schema, never the offending value: it may be an OTLP header."""
    cause = error.__cause__
    validator = getattr(cause, "validator", None)
    if validator is not None:
        where = " -> ".join(str(part) for part in getattr(cause, "absolute_path", ())) or "the top level"
        return f"{path}: does not match the configuration schema at {where} (rule {validator!s}; the value is not shown)"
    if cause is not None:
        return f"{path}: opentelemetry-configuration rejected it ({type(cause).__name__})"
    return f"{path}: {str(error)[:300]}"  # the package's own messages (file_format, empty file)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _check_sampler(
    document: dict[str, Any], report: FileConfigReport, environ: Optional[dict[str, str]]
) -> None:
    provider = _mapping(document.get("tracer_provider"))
    if not provider:
        report.notes.append("no tracer_provider: the file configures no tracing")
        return
    found = _find_sampler(provider.get("sampler"))
    if found is None:
        report.notes.append(
            f"the sampler is not {SAMPLER_NAME}: decisions will differ from kube-apiserver's "
            f"(set tracer_provider.sampler to {{{SAMPLER_NAME}: }})"
        )
        return
    properties = found
    if properties:
        report.notes.append(
            f"{SAMPLER_NAME} properties {sorted(properties)} are dropped by the SDK, which builds plugin "
            f"samplers with no arguments: the rate comes from {TRACING_CONFIG_ENV} or {RATE_ENV}"
        )
    source = sampler_rate(None, dict(os.environ if environ is None else environ))
    report.problems.extend(source.problems)
    if source.rate is None:
        report.problems.append(
            f"{SAMPLER_NAME} has no rate: set {TRACING_CONFIG_ENV} (samplingRatePerMillion) or {RATE_ENV}; "
            "without one, root spans are never sampled"
        )
    else:
        report.notes.append(f"{SAMPLER_NAME}: {source.rate} per million, from {source.origin}")


def _find_sampler(sampler: Any) -> Optional[dict[str, Any]]:
    """The ``k8s_per_million`` entry's properties ({} when empty), top level or in parent_based; else None."""
    sampler = _mapping(sampler)
    if SAMPLER_NAME in sampler:
        return _mapping(sampler[SAMPLER_NAME])
    for key, value in _mapping(sampler.get("parent_based")).items():
        if key in (
            "root",
            "remote_parent_sampled",
            "remote_parent_not_sampled",
            "local_parent_sampled",
            "local_parent_not_sampled",
        ):
            found = _find_sampler(value)
            if found is not None:
                return found
    return None


def _check_detectors(document: dict[str, Any], report: FileConfigReport) -> None:
    detection = _mapping(_mapping(document.get("resource")).get("detection/development"))
    detectors = detection.get("detectors") or []
    named = (
        [entry for entry in detectors if isinstance(entry, dict) and "k8s" in entry]
        if isinstance(detectors, list)
        else []
    )
    if not named:
        report.notes.append("no k8s resource detector: spans will not carry the pod's k8s.* attributes")
        return
    for entry in named:
        settings = entry["k8s"]
        if settings is None:
            continue
        if not isinstance(settings, dict):
            report.problems.append(
                f"resource detector k8s: settings must be a mapping, not {type(settings).__name__}"
            )
            continue
        unknown = sorted(set(settings) - DETECTOR_SETTINGS)
        if unknown:
            report.problems.append(
                f"resource detector k8s: unknown settings {unknown} (known: {sorted(DETECTOR_SETTINGS)})"
            )
        env_names = settings.get("env_names")
        if env_names is not None and not (
            isinstance(env_names, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env_names.items())
        ):
            report.problems.append(
                "resource detector k8s: env_names must map variable names to attribute keys"
            )


def _check_propagators(document: dict[str, Any], report: FileConfigReport) -> None:
    propagator = _mapping(document.get("propagator"))
    composite = propagator.get("composite") or []
    names = [name.strip() for name in str(propagator.get("composite_list") or "").split(",") if name.strip()]
    for entry in composite if isinstance(composite, list) else []:
        if isinstance(entry, dict) and "k8s" in entry:
            names.append("k8s")
            if entry["k8s"]:
                report.problems.append("propagator k8s takes no settings: write {k8s: } (null) or {k8s: {}}")
    if "k8s" not in names:
        report.notes.append(
            "no k8s propagator: incoming traceparent handling is the SDK's (list {k8s: } under propagator.composite)"
        )
