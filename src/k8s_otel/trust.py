"""Whether incoming trace context becomes the parent, or only a link.

kube-apiserver (1.33+) continues a caller's trace only for ``system:masters`` and
``system:monitoring``; everyone else gets a new root with a link to what they sent, so an untrusted
caller can neither force sampling nor graft its spans into someone else's trace. The same choice
is offered here as a policy object that the webhook and controller adapters take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from opentelemetry import baggage as otel_baggage
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

__all__ = ["LINK", "PRIVILEGED_GROUPS", "TRUST", "Caller", "TrustPolicy", "kube_apiserver_rule"]

PRIVILEGED_GROUPS = frozenset({"system:masters", "system:monitoring"})
_NO_LINKS: tuple[Link, ...] = ()


@dataclass(frozen=True)
class Caller:
    """What a per-request rule may look at: the caller's groups when the adapter knows them, and
    the adapter's own request object (WSGI environ, ASGI scope, …)."""

    groups: Optional[Sequence[str]] = None
    request: Any = None


def kube_apiserver_rule(caller: Caller) -> bool:
    """kube-apiserver's rule (``notSystemPrivilegedGroup``): trust only system:masters and system:monitoring."""
    return bool(caller.groups) and not PRIVILEGED_GROUPS.isdisjoint(caller.groups or ())


@dataclass(frozen=True)
class TrustPolicy:
    """``trust`` (parent), ``link`` (new root + link), or ``rule`` deciding per request.

    Untrusted baggage is dropped unless ``keep_untrusted_baggage``.
    """

    mode: str = "trust"
    rule: Optional[Callable[[Caller], bool]] = None
    keep_untrusted_baggage: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("trust", "link", "rule"):
            raise ValueError(f"trust policy mode must be 'trust', 'link' or 'rule', not {self.mode!r}")
        if (self.mode == "rule") != (self.rule is not None):
            raise ValueError("a trust policy has a rule exactly when its mode is 'rule'")

    @classmethod
    def decide_with(
        cls, rule: Callable[[Caller], bool], *, keep_untrusted_baggage: bool = False
    ) -> TrustPolicy:
        """A policy that asks ``rule(caller)`` for every request: True trusts, False links."""
        return cls("rule", rule, keep_untrusted_baggage)

    @classmethod
    def parse(cls, value: Union[TrustPolicy, str, Callable[[Caller], bool]]) -> TrustPolicy:
        """Accept a policy, ``"trust"``, ``"link"``, ``"kube-apiserver"`` or a rule callable."""
        if isinstance(value, TrustPolicy):
            return value
        if isinstance(value, str):
            named = {"trust": TRUST, "link": LINK, "kube-apiserver": KUBE_APISERVER}.get(
                value.strip().lower()
            )
            if named is None:
                raise ValueError(f"unknown trust policy {value!r}: use 'trust', 'link' or 'kube-apiserver'")
            return named
        if callable(value):
            return cls.decide_with(value)
        raise ValueError(
            f"a trust policy must be a TrustPolicy, a string or a callable, not {type(value).__name__}"
        )

    def resolve(
        self, incoming: Context, *, groups: Optional[Sequence[str]] = None, request: Any = None
    ) -> tuple[Context, Sequence[Link]]:
        """The context to start the server span in, and the links to give it."""
        if self.mode == "trust":
            return incoming, _NO_LINKS
        if self.mode == "rule":
            try:
                trusted = bool(self.rule(Caller(groups, request)))  # type: ignore[misc]
            except Exception:  # a broken rule must not break the request: fall back to not trusting
                trusted = False
            if trusted:
                return incoming, _NO_LINKS
        span_context = trace.get_current_span(incoming).get_span_context()
        links = (Link(span_context),) if span_context.is_valid else _NO_LINKS
        parent = Context()
        if self.keep_untrusted_baggage:
            for key, value in otel_baggage.get_all(incoming).items():
                parent = otel_baggage.set_baggage(key, value, parent)
        return parent, links


TRUST = TrustPolicy("trust")
LINK = TrustPolicy("link")
KUBE_APISERVER = TrustPolicy.decide_with(kube_apiserver_rule)
