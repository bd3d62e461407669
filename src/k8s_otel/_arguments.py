"""``configure()``'s arguments, checked before anything is built: a bad argument is a code error.

Kept apart from the wiring, as component-base keeps validation apart from ``NewProvider``. Each
check raises ``InvalidArgumentError`` naming the argument and what is wrong with it; a header value
or an endpoint's userinfo never appears in the message. Problems in the environment and in files
are not checked here: they are ``EffectiveSettings.problems`` (docs/configuration.md, "Errors").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource

from k8s_otel._exceptions import InvalidArgumentError, check_optional_bool
from k8s_otel._headers import normalise_headers
from k8s_otel._redact import excerpt
from k8s_otel._sampling import validate_sampling_rate_per_million

__all__ = ["check_configure_arguments"]

_SUPPORTED_PROTOCOLS = ("grpc", "http/protobuf")
_SKIPPED = re.compile(r";? (both )?skipped( \(the value is not shown\))?$")
_ATTRIBUTE_TYPES = (str, bool, int, float)


def _bad(argument: str, problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"k8s_otel.configure(): {argument}: {problem}", argument=argument)


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_endpoint(endpoint: object) -> None:
    if endpoint is None:
        return
    if not isinstance(endpoint, str):
        raise _bad("endpoint", f"must be a string such as 'collector:4317', not a {_type_name(endpoint)}")
    if not endpoint.strip():
        raise _bad(
            "endpoint", "must not be empty (None means: from the file, the environment or the default)"
        )
    # Whether it parses is decided by resolve_settings, which raises InvalidArgumentError for an argument.


def _check_protocol(protocol: object) -> None:
    if protocol is None:
        return
    if not isinstance(protocol, str):
        raise _bad("protocol", f"must be 'grpc' or 'http/protobuf', not a {_type_name(protocol)}")
    if protocol.strip().lower() not in _SUPPORTED_PROTOCOLS:
        raise _bad("protocol", f"{excerpt(protocol)!r} is not supported: use 'grpc' or 'http/protobuf'")


def _check_rate(rate: object) -> None:
    try:
        validate_sampling_rate_per_million(rate)
    except ValueError as error:
        raise _bad("sampling_rate_per_million", str(error)) from None


def _check_shutdown_timeout(seconds: object) -> None:
    if seconds is None:
        return
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise _bad("shutdown_timeout", f"must be a number of seconds, not a {_type_name(seconds)}")
    if not 0 < seconds < float("inf"):  # also refuses NaN
        raise _bad("shutdown_timeout", f"must be a positive, finite number of seconds, not {seconds!r}")


def _check_text(argument: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise _bad(argument, f"must be a string, not a {_type_name(value)}")
    if not value.strip():
        raise _bad(argument, "must not be empty (None means: from the environment)")


def _check_config_file(path: object) -> None:
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise _bad("config_file", f"must be a path (str or os.PathLike[str]), not a {_type_name(path)}")
    if not os.fspath(path).strip():
        raise _bad("config_file", "must not be empty")


def _attribute_value_ok(value: object) -> bool:
    if isinstance(value, _ATTRIBUTE_TYPES):
        return True
    if isinstance(value, (list, tuple)):
        kinds = {type(item) for item in value}
        return len(kinds) <= 1 and all(isinstance(item, _ATTRIBUTE_TYPES) for item in value)
    return False


def _check_resource(resource: object) -> None:
    """A Resource, or a mapping of attribute names to OTel attribute values; values are never shown."""
    if resource is None or isinstance(resource, Resource):
        return
    if not isinstance(resource, Mapping):
        raise _bad("resource", f"must be a Resource or a mapping of attributes, not a {_type_name(resource)}")
    for key, value in resource.items():
        if not isinstance(key, str) or not key:
            raise _bad("resource", f"attribute names must be non-empty strings, not a {_type_name(key)}")
        if not _attribute_value_ok(value):
            raise _bad(
                "resource",
                f"attribute {excerpt(key)!r}: a {_type_name(value)} is not an attribute value "
                "(str, bool, int, float, or a list of one of them)",
            )


def _check_headers(headers: object) -> None:
    """Every header must be sendable: a bad one raises, naming its position or name, never its value."""
    if headers is None:
        return
    if isinstance(headers, str):
        pairs: object = None
    elif isinstance(headers, Mapping):
        pairs = list(headers.items())
    elif isinstance(headers, (list, tuple)):
        pairs = list(headers)
    else:
        raise _bad(
            "headers",
            f"must be 'name=value,...', a mapping or a sequence of (name, value) pairs, not a {_type_name(headers)}",
        )
    if isinstance(pairs, list):
        for position, pair in enumerate(pairs, start=1):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise _bad("headers", f"header {position} is not a (name, value) pair")
            if not isinstance(pair[0], str) or not isinstance(pair[1], str):
                raise _bad(
                    "headers",
                    f"header {position}: names and values must be strings, not {_type_name(pair[0])} "
                    f"and {_type_name(pair[1])} (the value is not shown)",
                )
    problems: list[str] = []
    normalise_headers(headers, problems)
    if problems:
        # The parser's words are for the environment ("...; skipped"); an argument is refused instead.
        reasons = [_SKIPPED.sub("", problem.removeprefix("headers argument: ")) for problem in problems]
        raise _bad("headers", "; ".join(reasons) + " (header values are never shown)")


def check_configure_arguments(
    *,
    endpoint: object,
    sampling_rate_per_million: object,
    config_file: object,
    service_name: object,
    resource: object,
    headers: object,
    insecure: object,
    protocol: object,
    shutdown_timeout: object,
    install: object,
    log_correlation: object,
    sample_linked: object,
) -> None:
    """Raise ``InvalidArgumentError`` for the first bad argument: wrong arguments are code errors."""
    _check_endpoint(endpoint)
    _check_rate(sampling_rate_per_million)
    _check_config_file(config_file)
    _check_text("service_name", service_name)
    _check_resource(resource)
    _check_headers(headers)
    check_optional_bool(insecure, "k8s_otel.configure()", "insecure")
    _check_protocol(protocol)
    _check_shutdown_timeout(shutdown_timeout)
    if not isinstance(install, bool):
        raise _bad("install", f"must be True or False, not a {_type_name(install)}")
    check_optional_bool(log_correlation, "k8s_otel.configure()", "log_correlation")
    check_optional_bool(sample_linked, "k8s_otel.configure()", "sample_linked")
