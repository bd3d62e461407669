"""The package's exceptions: one base class, so a caller can catch everything k8s-otel raises.

The policy (docs/configuration.md, "Errors"): code errors raise, from ``K8sOtelError``; problems in
the environment and in files are collected in ``EffectiveSettings.problems`` and logged once;
adapters (webhook wrappers, instrumentors, propagators, samplers, detectors, processors) never
raise. Each exception keeps the stdlib base that callers caught before it had ours, so
``except ValueError`` around ``configure()`` still works.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "InvalidArgumentError",
    "K8sOtelError",
    "MissingExtraError",
    "check_optional_bool",
    "check_tracer_provider",
]


class K8sOtelError(Exception):
    """Base of every exception k8s-otel raises to its caller."""


class InvalidArgumentError(K8sOtelError, ValueError, TypeError):
    """A bad argument to ``configure()``, a public constructor or a wrapper: a code error.

    Both a ``ValueError`` and a ``TypeError`` (a wrong value and a wrong type are both bad
    arguments), so code written against either stdlib type keeps working. ``argument`` names the
    argument; the message says what is wrong with it and never quotes a credential.
    """

    def __init__(self, message: str, *, argument: Optional[str] = None) -> None:
        super().__init__(message)
        self.argument = argument


class MissingExtraError(K8sOtelError, ModuleNotFoundError):
    """An optional part of k8s-otel was imported without its extra (``pip install 'k8s-otel[flask]'``).

    A ``ModuleNotFoundError``, so ``except ImportError`` still catches it; ``name`` is the missing module.
    """


def check_tracer_provider(value: object, where: str, argument: str = "tracer_provider") -> None:
    """The one check of a ``tracer_provider`` argument: a TracerProvider (anything with ``get_tracer``) or None."""
    if value is not None and not callable(getattr(value, "get_tracer", None)):
        raise InvalidArgumentError(
            f"{where}: {argument} must be a TracerProvider or None, not a {type(value).__name__}",
            argument=argument,
        )


def check_optional_bool(value: object, where: str, argument: str) -> None:
    """The one check of a flag argument that may be left to its environment variable: True, False or None."""
    if value is not None and not isinstance(value, bool):
        raise InvalidArgumentError(
            f"{where}: {argument} must be True, False or None, not a {type(value).__name__}",
            argument=argument,
        )
