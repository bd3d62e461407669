"""Optional dependencies: an import that fails names the extra to install, not only the module."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(extra: str, error: ImportError) -> ModuleNotFoundError:
    """The error to raise when ``error`` means the ``k8s-otel[extra]`` extra is not installed.

    A ``MissingExtraError``: a ``K8sOtelError`` and a ``ModuleNotFoundError`` (so ``except
    ImportError`` still catches it) that keeps the missing module's ``name``.
    """
    from k8s_otel._exceptions import MissingExtraError

    missing = error.name or "a required module"
    return MissingExtraError(
        f"{missing} is not installed: this part of k8s-otel needs the {extra!r} extra, "
        f"pip install 'k8s-otel[{extra}]'",
        name=error.name,
    )
