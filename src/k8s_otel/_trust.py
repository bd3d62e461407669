"""Whether incoming trace context becomes the parent, or only a link, and how much of it to honour.

kube-apiserver (1.33+) continues a caller's trace only for ``system:masters`` and
``system:monitoring``; everyone else gets a new root with a link to what they sent, so an untrusted
caller can neither force sampling nor graft its spans into someone else's trace. The same choice
is offered here as a policy object that the webhook and controller adapters take.

Even a trusted parent is bounded: at most ``SampledParentBudget.rate`` sampled incoming parents
per second per process are honoured (a token bucket). Past the budget the span is a new root,
sampled by the process's own sampler, with a link to what was sent, and the refusal is counted.
Anyone who can reach the port could otherwise force every request to be sampled.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from opentelemetry import baggage as otel_baggage
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from k8s_otel._exceptions import InvalidArgumentError

__all__ = [
    "DEFAULT_SAMPLED_PARENTS_PER_SECOND",
    "LINK",
    "PRIVILEGED_GROUPS",
    "SAMPLED_PARENTS_ENV",
    "TRUST",
    "Caller",
    "TrustArgument",
    "SampledParentBudget",
    "TrustPolicy",
    "kube_apiserver_rule",
    "process_budget",
    "reset_process_budget",
]

_logger = logging.getLogger("k8s_otel.trust")

PRIVILEGED_GROUPS = frozenset({"system:masters", "system:monitoring"})
_NO_LINKS: tuple[Link, ...] = ()

SAMPLED_PARENTS_ENV = "K8S_OTEL_TRUSTED_SAMPLED_PARENTS_PER_SECOND"
#: Sampled incoming parents honoured per second per process, by default. kube-apiserver samples 100
#: requests per million by default; 100 sampled webhook calls a second is far above any real trace
#: rate and far below what a flood of forced ``-01`` headers would cost.
DEFAULT_SAMPLED_PARENTS_PER_SECOND = 100.0


class SampledParentBudget:
    """A token bucket: ``rate`` sampled parents a second, bursts of up to ``burst`` (default: ``rate``).

    ``take()`` is thread-safe and costs one lock; ``refused`` counts the parents it refused.
    ``rate=math.inf`` honours every parent, ``rate=0`` none. Reusable by any adapter that continues incoming traces
    (webhooks, kopf handlers, linked sampling).
    """

    def __init__(self, rate: float, burst: Optional[float] = None) -> None:
        for argument, value in (("rate", rate), ("burst", burst)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise InvalidArgumentError(
                    f"a sampled-parent budget's {argument} must be a number, not a {type(value).__name__}",
                    argument=argument,
                )
        if not rate >= 0:  # also refuses NaN
            raise InvalidArgumentError(
                f"a sampled-parent budget must be a rate >= 0 per second, not {rate!r}"
            )
        self.rate = float(rate)
        # A rate of 0 honours nothing; any other rate allows a burst of at least one.
        self.burst = float(burst) if burst is not None else (max(self.rate, 1.0) if self.rate > 0 else 0.0)
        if not self.burst >= 0:
            raise InvalidArgumentError(f"a sampled-parent budget's burst must be >= 0, not {burst!r}")
        self._tokens = self.burst
        self._updated = time.monotonic()
        self._lock = threading.Lock()
        self._refused = 0
        self._honoured = 0

    @property
    def refused(self) -> int:
        """How many sampled parents this budget has refused (since it was made)."""
        return self._refused

    @property
    def honoured(self) -> int:
        """How many sampled parents this budget has honoured."""
        return self._honoured

    def take(self) -> bool:
        """Spend one token: True when the sampled parent may be honoured, False (counted) when not."""
        if self.rate == math.inf:
            self._honoured += 1
            return True
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self._honoured += 1
                return True
            self._refused += 1
            return False

    def __repr__(self) -> str:
        return f"SampledParentBudget(rate={self.rate!r}, burst={self.burst!r}, refused={self._refused})"


def _budget_from_env() -> SampledParentBudget:
    text = os.environ.get(SAMPLED_PARENTS_ENV, "").strip()
    if not text:
        return SampledParentBudget(DEFAULT_SAMPLED_PARENTS_PER_SECOND)
    try:
        return SampledParentBudget(float(text))
    except ValueError:
        _logger.warning(
            "k8s_otel: %s must be a number of sampled parents per second (>= 0, or inf); "
            "using the default %g",
            SAMPLED_PARENTS_ENV,
            DEFAULT_SAMPLED_PARENTS_PER_SECOND,
        )
        return SampledParentBudget(DEFAULT_SAMPLED_PARENTS_PER_SECOND)


_process_budget: Optional[SampledParentBudget] = None
_process_budget_lock = threading.Lock()


def process_budget() -> SampledParentBudget:
    """The process-wide budget every policy without one of its own shares (read from the env once)."""
    global _process_budget
    if _process_budget is None:
        with _process_budget_lock:
            if _process_budget is None:
                _process_budget = _budget_from_env()
    return _process_budget


def reset_process_budget() -> None:
    """Forget the process budget, so that the next use reads the env var again (tests, after fork)."""
    global _process_budget
    with _process_budget_lock:
        _process_budget = None


@dataclass(frozen=True)
class Caller:
    """What a per-request rule may look at.

    - ``groups``: the caller's groups, when the adapter knows them (kopf, API clients);
    - ``request``: the adapter's own request object (WSGI environ, ASGI scope, kopf cause, …);
    - ``peer_address``: the TCP peer's address, as the server reports it;
    - ``client_subject``: the subject of the client certificate the TLS layer **verified**
      (RFC 4514, ``CN=kube-apiserver,O=…``), None when there was none or the server does not say.
    """

    groups: Optional[Sequence[str]] = None
    request: Any = None
    peer_address: Optional[str] = None
    client_subject: Optional[str] = None


def kube_apiserver_rule(caller: Caller) -> bool:
    """kube-apiserver's rule (``notSystemPrivilegedGroup``): trust only system:masters and system:monitoring."""
    return bool(caller.groups) and not PRIVILEGED_GROUPS.isdisjoint(caller.groups or ())


@dataclass(frozen=True)
class TrustPolicy:
    """``trust`` (parent), ``link`` (new root + link), or ``rule`` deciding per request.

    Untrusted baggage is dropped unless ``keep_untrusted_baggage``. ``budget`` bounds the sampled
    parents honoured (None: the shared ``process_budget()``).
    """

    mode: str = "trust"
    rule: Optional[Callable[[Caller], bool]] = None
    keep_untrusted_baggage: bool = False
    budget: Optional[SampledParentBudget] = None

    def __post_init__(self) -> None:
        if self.mode not in ("trust", "link", "rule"):
            raise InvalidArgumentError(
                f"trust policy mode must be 'trust', 'link' or 'rule', not {self.mode!r}"
            )
        if (self.mode == "rule") != (self.rule is not None):
            raise InvalidArgumentError("a trust policy has a rule exactly when its mode is 'rule'")

    @classmethod
    def decide_with(
        cls,
        rule: Callable[[Caller], bool],
        *,
        keep_untrusted_baggage: bool = False,
        budget: Optional[SampledParentBudget] = None,
    ) -> TrustPolicy:
        """A policy that asks ``rule(caller)`` for every request: True trusts, False links."""
        return cls("rule", rule, keep_untrusted_baggage, budget)

    @classmethod
    def parse(cls, value: TrustArgument) -> TrustPolicy:
        """Accept a policy, ``"trust"``, ``"link"``, ``"kube-apiserver"`` or a rule callable."""
        if isinstance(value, TrustPolicy):
            return value
        if isinstance(value, str):
            named = {"trust": TRUST, "link": LINK, "kube-apiserver": KUBE_APISERVER}.get(
                value.strip().lower()
            )
            if named is None:
                raise InvalidArgumentError(
                    f"unknown trust policy {value!r}: use 'trust', 'link' or 'kube-apiserver'"
                )
            return named
        if callable(value):
            return cls.decide_with(value)
        raise InvalidArgumentError(
            f"a trust policy must be a TrustPolicy, a string or a callable, not {type(value).__name__}"
        )

    def resolve(
        self,
        incoming: Context,
        *,
        groups: Optional[Sequence[str]] = None,
        request: Any = None,
        caller: Union[Caller, Callable[[], Caller], None] = None,
    ) -> tuple[Context, Sequence[Link]]:
        """The context to start the server span in, and the links to give it.

        ``caller`` (a Caller, or a function making one, called only when a rule needs it) wins
        over ``groups``/``request``.
        """
        if self.mode == "link":
            return self._untrusted(incoming)
        if self.mode == "rule":
            try:
                if caller is None:
                    who = Caller(groups, request)
                else:
                    who = caller if isinstance(caller, Caller) else caller()
                trusted = bool(self.rule(who))  # type: ignore[misc]
            except Exception:  # a broken rule must not break the request: fall back to not trusting
                trusted = False
            if not trusted:
                return self._untrusted(incoming)
        span_context = trace.get_current_span(incoming).get_span_context()
        if span_context.is_valid and span_context.trace_flags.sampled:
            budget = self.budget if self.budget is not None else process_budget()
            if not budget.take():
                return self._untrusted(incoming)
        return incoming, _NO_LINKS

    def _untrusted(self, incoming: Context) -> tuple[Context, Sequence[Link]]:
        span_context = trace.get_current_span(incoming).get_span_context()
        links = (Link(span_context),) if span_context.is_valid else _NO_LINKS
        parent = Context()
        if self.keep_untrusted_baggage:
            for key, value in otel_baggage.get_all(incoming).items():
                parent = otel_baggage.set_baggage(key, value, parent)
        return parent, links


TrustArgument = Union[TrustPolicy, str, Callable[[Caller], bool]]
"""What every ``trust=`` argument accepts: a TrustPolicy, ``"trust"``, ``"link"`` or ``"kube-apiserver"``
(any case), or a rule ``(Caller) -> bool`` (True: trust the incoming parent; False: link to it)."""

TRUST = TrustPolicy("trust")
LINK = TrustPolicy("link")
KUBE_APISERVER = TrustPolicy.decide_with(kube_apiserver_rule)
