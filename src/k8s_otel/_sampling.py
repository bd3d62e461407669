"""The sampler kube-apiserver and the kubelet build from ``samplingRatePerMillion``.

component-base ``NewProvider`` builds ``ParentBased(TraceIDRatioBased(rate / 1e6))``, or
``ParentBased(NeverSample())`` when the rate is unset or 0. The root decision here is the Go
SDK's, bit for bit: ``(low 64 bits of the trace id) >> 1 < int(fraction * 2**63)``. The stock Python
``TraceIdRatioBased`` rounds ``fraction * 2**64`` instead and so decides differently for one or two
trace ids at rates below 489 per million; a Python webhook must agree with the apiserver.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Callable, Optional

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from k8s_otel._env import env_flag
from k8s_otel._exceptions import InvalidArgumentError

__all__ = [
    "MAX_SAMPLING_RATE_PER_MILLION",
    "SAMPLE_LINKED_ENV",
    "PerMillionSampler",
    "TraceIDRatioBased",
    "go_trace_id_upper_bound",
    "parse_sampling_rate_per_million",
    "per_million_sampler_from_env",
    "sample_linked_from_env",
    "sampler_advice",
    "sampling_rate_errors",
    "validate_sampling_rate_per_million",
]

_logger = logging.getLogger("k8s_otel.sampling")

MAX_SAMPLING_RATE_PER_MILLION = 1_000_000
"""component-base ``maxSamplingRatePerMillion``."""
SAMPLE_LINKED_ENV = "K8S_OTEL_SAMPLE_LINKED"
RATE_FIELD = "samplingRatePerMillion"
SAMPLER_NAME = "k8s_per_million"
"""The ``opentelemetry_traces_sampler`` entry point (``OTEL_TRACES_SAMPLER=k8s_per_million``)."""
_LOW_64_BITS = (1 << 64) - 1
_STOCK_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


def go_trace_id_upper_bound(fraction: float) -> int:
    """``uint64(fraction * (1 << 63))`` as the Go SDK computes it: a float64 multiply, then truncation."""
    return int(fraction * (1 << 63))


def sampling_rate_errors(rate: int, field_path: str = RATE_FIELD) -> list[str]:
    """component-base ``validateSamplingRate``, rule for rule, as Kubernetes field errors.

    The one place the range is decided: TracingConfiguration files, arguments, the sampler and the
    environment all come here, so every path refuses the same rates with kube-apiserver's words.
    """
    if isinstance(rate, bool) or not isinstance(rate, int):  # a hand-built TracingConfiguration
        return [f"{field_path}: Invalid value: {rate!r}: sampling rate per million must be an integer"]
    errors = []
    if rate < 0:
        errors.append(f"{field_path}: Invalid value: {rate}: sampling rate must be positive")
    if rate > MAX_SAMPLING_RATE_PER_MILLION:
        errors.append(
            f"{field_path}: Invalid value: {rate}: "
            "sampling rate per million must be less than or equal to one million"
        )
    return errors


def _not_an_integer(shown: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{RATE_FIELD}: Invalid value: {shown}: sampling rate per million must be an integer "
        f"from 0 to {MAX_SAMPLING_RATE_PER_MILLION}"
    )


def validate_sampling_rate_per_million(value: object) -> Optional[int]:
    """Return ``value`` as an int rate, or raise InvalidArgumentError (a ValueError) worded as Kubernetes validation words it.

    ``None`` means unset. Accepted: ints, and floats with no fraction, that ``sampling_rate_errors``
    accepts (0 to 1_000_000).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _not_an_integer(repr(value))
    if isinstance(value, float):
        if not value.is_integer():
            raise _not_an_integer(repr(value))
        value = int(value)
    errors = sampling_rate_errors(value)
    if errors:
        raise InvalidArgumentError(errors[0])
    return value


def parse_sampling_rate_per_million(text: Optional[str]) -> Optional[int]:
    """Parse ``OTEL_TRACES_SAMPLER_ARG``-style text: a decimal integer, surrounding blanks allowed.

    ``None`` or blank text means unset. Anything else that is not a valid rate raises ValueError.
    """
    if text is None or not text.strip():
        return None
    stripped = text.strip()
    if len(stripped) > 16 or not stripped.lstrip("+-").isdigit() or not stripped.isascii():
        raise _not_an_integer(repr(stripped[:40]))
    return validate_sampling_rate_per_million(int(stripped))


def sampler_advice(sampler: str, arg: Optional[str]) -> str:
    """The one fix for an ``OTEL_TRACES_SAMPLER`` that is not ours: the variables that give
    kube-apiserver's decisions, with the stock ratio converted to a per-million rate when it can be."""
    rate = "<samples per million>"
    if sampler in _STOCK_RATIO_SAMPLERS and arg is not None:
        try:
            ratio = float(arg.strip())
        except ValueError:
            ratio = float("nan")
        if 0.0 <= ratio <= 1.0:
            rate = str(round(ratio * MAX_SAMPLING_RATE_PER_MILLION))
    return f"set OTEL_TRACES_SAMPLER={SAMPLER_NAME} and OTEL_TRACES_SAMPLER_ARG={rate}"


class TraceIDRatioBased(Sampler):
    """Go's ``TraceIDRatioBased``: samples iff ``(trace_id & 2**64-1) >> 1 < int(fraction * 2**63)``.

    Like Go it ignores the parent; use it as the root of a ParentBased sampler.
    """

    __slots__ = ("_bound", "_description")

    def __init__(self, fraction: float) -> None:
        if fraction >= 1:
            self._bound = 1 << 63  # every 63-bit value is below it: always sample
            self._description = "TraceIDRatioBased{1}"
        elif fraction <= 0:
            self._bound = 0
            self._description = "TraceIDRatioBased{0}"
        else:
            self._bound = go_trace_id_upper_bound(fraction)
            # Go's %g and Python's repr agree for floats in (0, 1).
            self._description = f"TraceIDRatioBased{{{fraction!r}}}"

    @property
    def bound(self) -> int:
        return self._bound

    def should_sample(
        self,
        parent_context: Optional[Context],
        trace_id: int,
        name: str,
        kind: Optional[SpanKind] = None,
        attributes: Attributes = None,
        links: Optional[Sequence[Link]] = None,
        trace_state: Optional[TraceState] = None,
    ) -> SamplingResult:
        if (trace_id & _LOW_64_BITS) >> 1 < self._bound:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, _parent_trace_state(parent_context))
        return SamplingResult(Decision.DROP, None, _parent_trace_state(parent_context))

    def get_description(self) -> str:
        return self._description


def _parent_trace_state(parent_context: Optional[Context]) -> Optional[TraceState]:
    """The parent's tracestate, passed through unchanged as every Go sampler does."""
    if parent_context is None:
        return None
    return get_current_span(parent_context).get_span_context().trace_state


_PARENT_DELEGATES = (
    "remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,"
    "localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler"
)
"""component-base calls ``ParentBased(root)`` with no options: the four default delegates."""


class PerMillionSampler(Sampler):
    """component-base's ``ParentBased(TraceIDRatioBased(rate / 1e6))``, decided in one step.

    A valid parent (remote or local) decides by its sampled flag, as ParentBased's default
    delegates do; a root is decided by Go's ``TraceIDRatioBased(rate / 1_000_000)``. ``None`` or 0:
    roots are never sampled (``ParentBased(NeverSample())``); 1_000_000: every root is sampled.
    ``get_description()`` is Go's text, spelled out here so that no SDK change can make it differ
    from the apiserver's.

    ``sample_linked=True`` (off by default: Go's ParentBased ignores links) also samples a root
    with no valid parent when one of its links is sampled, so that a reconcile linked to a recorded
    request (KEP-5915) is recorded too. Whoever can write an object's annotation can then force its
    reconcile to be sampled; ``link_budget``, a callable returning whether one more forced decision
    is allowed (a token bucket's ``take``), bounds that. Past the budget the root sampler decides.

    ``samples_per_million=`` is the old name of ``sampling_rate_per_million``: it still works, with a
    DeprecationWarning.
    """

    __slots__ = ("_description", "_link_budget", "_root_bound", "sample_linked", "sampling_rate_per_million")

    def __init__(
        self,
        sampling_rate_per_million: Optional[int] = None,
        *,
        sample_linked: bool = False,
        link_budget: Optional[Callable[[], bool]] = None,
        **deprecated: Optional[int],
    ) -> None:
        if deprecated:
            sampling_rate_per_million = _deprecated_rate(sampling_rate_per_million, deprecated)
        rate = validate_sampling_rate_per_million(sampling_rate_per_million)
        self.sampling_rate_per_million = rate
        self.sample_linked = bool(sample_linked)
        self._link_budget = link_budget
        if not rate:
            self._root_bound = 0
            root = "AlwaysOffSampler"
        else:
            ratio = TraceIDRatioBased(rate / MAX_SAMPLING_RATE_PER_MILLION)
            self._root_bound = ratio.bound
            root = ratio.get_description()
        if self.sample_linked:
            root = f"SampledLinkOr{{{root}}}"
        self._description = f"ParentBased{{root:{root},{_PARENT_DELEGATES}}}"

    @property
    def samples_per_million(self) -> Optional[int]:
        """Deprecated: ``sampling_rate_per_million``."""
        warnings.warn(
            "PerMillionSampler.samples_per_million is deprecated: use sampling_rate_per_million",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.sampling_rate_per_million

    def should_sample(
        self,
        parent_context: Optional[Context],
        trace_id: int,
        name: str,
        kind: Optional[SpanKind] = None,
        attributes: Attributes = None,
        links: Optional[Sequence[Link]] = None,
        trace_state: Optional[TraceState] = None,
    ) -> SamplingResult:
        # With a valid parent (remote or local) follow its sampled flag, else ask the root.
        parent = get_current_span(parent_context).get_span_context()
        if parent.is_valid:
            if parent.trace_flags.sampled:
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)
            return SamplingResult(Decision.DROP, None, parent.trace_state)
        if (trace_id & _LOW_64_BITS) >> 1 < self._root_bound or (
            self.sample_linked and links and self._linked_sampled(links)
        ):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, None)
        return SamplingResult(Decision.DROP, None, None)

    def _linked_sampled(self, links: Sequence[Link]) -> bool:
        """Whether a link is to a sampled context (and the budget, if any, allows one more)."""
        for link in links:
            context = link.context
            if context.is_valid and context.trace_flags.sampled:
                if self._link_budget is None:
                    return True
                try:
                    return bool(self._link_budget())
                except Exception:  # a broken budget must not break span creation: refuse
                    _logger.debug("k8s_otel: the sampled-link budget failed", exc_info=True)
                    return False
        return False

    def get_description(self) -> str:
        return self._description

    def __repr__(self) -> str:
        if self.sample_linked:
            return f"PerMillionSampler({self.sampling_rate_per_million!r}, sample_linked=True)"
        return f"PerMillionSampler({self.sampling_rate_per_million!r})"


def _deprecated_rate(rate: Optional[int], deprecated: dict[str, Optional[int]]) -> Optional[int]:
    """``samples_per_million=``, the old keyword: accepted with a DeprecationWarning, alone."""
    unknown = sorted(set(deprecated) - {"samples_per_million"})
    if unknown:
        raise InvalidArgumentError(f"PerMillionSampler() got an unexpected keyword argument {unknown[0]!r}")
    if rate is not None:
        raise InvalidArgumentError(
            "PerMillionSampler() got both sampling_rate_per_million and samples_per_million"
        )
    warnings.warn(
        "PerMillionSampler(samples_per_million=...) is deprecated: use sampling_rate_per_million=...",
        DeprecationWarning,
        stacklevel=3,
    )
    return deprecated["samples_per_million"]


def sample_linked_from_env() -> bool:
    """``K8S_OTEL_SAMPLE_LINKED``: ``true`` turns ``sample_linked`` on; unset or ``false`` leaves it off.

    Any other value is logged once and means off (the OTel rule for boolean variables, ``_env``).
    """
    return env_flag(SAMPLE_LINKED_ENV, "sampling by links stays off")


def per_million_sampler_from_env(arg: object = None) -> Sampler:
    """Factory for the ``opentelemetry_traces_sampler`` entry point ``k8s_per_million``.

    The SDK passes ``OTEL_TRACES_SAMPLER_ARG`` verbatim: a string, or None when unset. When a factory
    raises, the SDK falls back to always-on sampling, so this never raises: a bad value is logged
    once and gives the Kubernetes "rate unset" behaviour (parent-based, never sample roots).
    """
    try:
        if isinstance(arg, str) or arg is None:
            rate = parse_sampling_rate_per_million(arg)
        else:
            rate = validate_sampling_rate_per_million(arg)
    except ValueError as error:
        shown = arg.strip()[:40] if isinstance(arg, str) else arg
        _logger.error(
            "OTEL_TRACES_SAMPLER=%s: ignoring OTEL_TRACES_SAMPLER_ARG=%r (%s); root spans "
            "will not be sampled, as Kubernetes does when samplingRatePerMillion is unset",
            SAMPLER_NAME,
            shown,
            error,
        )
        rate = None
    return PerMillionSampler(rate, sample_linked=sample_linked_from_env())
