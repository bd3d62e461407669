"""TracingConfiguration files, read and validated as kube-apiserver and the kubelet do.

The same file a cluster hands to ``--tracing-config-file`` (or the ``tracing`` stanza of a
KubeletConfiguration) configures a Python controller. Decoding is strict, and every error reads
like kube-apiserver's (kubernetes/apiserver ``pkg/server/options/tracing.go``,
``ReadTracingConfiguration``; kubernetes/component-base ``tracing/api/v1/config.go``,
``ValidateTracingConfiguration``), so one message means one thing on both sides.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import yaml

from k8s_otel import _gourl

__all__ = [
    "APISERVER_API_VERSIONS",
    "KUBELET_API_VERSION",
    "MAX_FILE_BYTES",
    "TracingConfiguration",
    "TracingConfigurationError",
    "load_tracing_configuration",
    "parse_tracing_configuration",
    "validate_tracing_configuration",
]

APISERVER_API_VERSIONS = (
    "apiserver.config.k8s.io/v1alpha1",
    "apiserver.config.k8s.io/v1beta1",
    "apiserver.config.k8s.io/v1",
)
KUBELET_API_VERSION = "kubelet.config.k8s.io/v1beta1"
MAX_FILE_BYTES = 1 << 20
_MAX_SAMPLING_RATE = 1_000_000
_INT32 = (-(1 << 31), (1 << 31) - 1)
_ENDPOINT_SCHEMES = ("dns", "unix", "unix-abstract")
_FIELDS = ("endpoint", "samplingRatePerMillion")


@dataclass(frozen=True)
class TracingConfiguration:
    """component-base ``TracingConfiguration``: both fields optional, no defaulting.

    ``field_path`` is where the fields sit in the file it came from: ``None`` for an apiserver
    TracingConfiguration (flat), ``"tracing"`` for a KubeletConfiguration.
    """

    endpoint: Optional[str] = None
    sampling_rate_per_million: Optional[int] = None
    field_path: Optional[str] = field(default=None, compare=False)


class TracingConfigurationError(ValueError):
    """A file that kube-apiserver or the kubelet would refuse; ``errors`` lists every field error.

    ``reason`` is ``"read"`` (the file cannot be read), ``"decode"`` or ``"validate"``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Optional[str] = None,
        errors: tuple[str, ...] = (),
        reason: str = "decode",
    ) -> None:
        super().__init__(message)
        self.path = path
        self.errors = errors
        self.reason = reason


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, as the apiserver's strict decoder does."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (list, dict)):
            continue
        if key in seen:
            raise _DecodeError(f'strict decoding error: duplicate field "{key}"')
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _DecodeError(ValueError):
    pass


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object"


def _type_error(value: object, go_field: str, go_type: str) -> _DecodeError:
    kind = _json_kind(value)
    shown = f"number {value}" if kind == "number" else kind
    return _DecodeError(f"json: cannot unmarshal {shown} into Go struct field {go_field} of type {go_type}")


def _decode_fields(data: Mapping[Any, Any], go_struct: str) -> TracingConfiguration:
    unknown = [str(key) for key in data if key not in _FIELDS and key not in ("apiVersion", "kind")]
    if unknown:
        raise _DecodeError("strict decoding error: " + ", ".join(f'unknown field "{k}"' for k in unknown))
    endpoint = data.get("endpoint")
    if endpoint is not None and not isinstance(endpoint, str):
        raise _type_error(endpoint, f"{go_struct}.endpoint", "string")
    rate = data.get("samplingRatePerMillion")
    if rate is not None:
        integral = isinstance(rate, int) or (isinstance(rate, float) and rate.is_integer())
        if isinstance(rate, bool) or not integral or not _INT32[0] <= rate <= _INT32[1]:
            raise _type_error(rate, f"{go_struct}.samplingRatePerMillion", "int32")
        rate = int(rate)
    return TracingConfiguration(endpoint=endpoint, sampling_rate_per_million=rate)


def _decode(data: object) -> TracingConfiguration:
    if data is None:
        return TracingConfiguration()
    if not isinstance(data, dict):
        raise _DecodeError(
            f"couldn't get version/kind; json parse error: json: cannot unmarshal {_json_kind(data)} "
            'into Go value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
            'Kind string "json:\\"kind,omitempty\\"" }'
        )
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api_version, (str, type(None))) or not isinstance(kind, (str, type(None))):
        raise _DecodeError("couldn't get version/kind; json parse error: apiVersion and kind must be strings")
    if not kind:
        raise _DecodeError("Object 'Kind' is missing in the tracing configuration")
    if api_version in APISERVER_API_VERSIONS and kind == "TracingConfiguration":
        return _decode_fields(data, "TracingConfiguration")
    if api_version == KUBELET_API_VERSION and kind == "KubeletConfiguration":
        tracing = data.get("tracing")
        if tracing is None:
            return TracingConfiguration(field_path="tracing")
        if not isinstance(tracing, dict):
            raise _type_error(tracing, "KubeletConfiguration.tracing", "v1.TracingConfiguration")
        decoded = _decode_fields(tracing, "KubeletConfiguration.tracing")
        return TracingConfiguration(decoded.endpoint, decoded.sampling_rate_per_million, field_path="tracing")
    raise _DecodeError(
        f'no kind "{kind}" is registered for version "{api_version or ""}" in scheme '
        '"k8s.io/apiserver/pkg/server/options/tracing.go"'
    )


def parse_tracing_configuration(
    text: Union[str, bytes], *, path: Optional[str] = None
) -> TracingConfiguration:
    """Decode YAML or JSON text strictly; raise TracingConfigurationError as kube-apiserver words it.

    Does not validate; ``load_tracing_configuration`` does both.
    """
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]
        if len(documents) > 1:
            raise _DecodeError("the file holds more than one YAML document")
        return _decode(documents[0] if documents else None)
    except (_DecodeError, yaml.YAMLError, RecursionError) as error:
        detail = " ".join(str(error).split())
        raise TracingConfigurationError(
            f"unable to decode tracing configuration data: {detail}", path=path
        ) from None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        raise TracingConfigurationError(
            f'unable to read tracing configuration from "{path}": read {path}: is a directory',
            path=path,
            reason="read",
        ) from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise TracingConfigurationError(
            f'unable to read tracing configuration from "{path}": open {path}: {reason}',
            path=path,
            reason="read",
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise TracingConfigurationError(
            f'unable to read tracing configuration from "{path}": file is larger than {MAX_FILE_BYTES} bytes',
            path=path,
            reason="read",
        )
    return data


def load_tracing_configuration(path: Union[str, os.PathLike[str]]) -> TracingConfiguration:
    """Read, decode strictly and validate a TracingConfiguration or KubeletConfiguration file.

    An empty file gives an empty configuration. Any problem raises TracingConfigurationError.
    """
    path = os.fspath(path)
    if path == "":
        raise TracingConfigurationError("tracing config file was empty", path=path, reason="read")
    config = parse_tracing_configuration(_read(path), path=path)
    errors = validate_tracing_configuration(config, field_path=config.field_path)
    if errors:
        raise TracingConfigurationError(
            f"failed to validate tracing configuration: {aggregate(errors)}",
            path=path,
            errors=tuple(errors),
            reason="validate",
        )
    return config


def _child(field_path: Optional[str], name: str) -> str:
    return f"{field_path}.{name}" if field_path else name


def _invalid(path: str, value: object, detail: str) -> str:
    shown = _gourl.go_quote(value) if isinstance(value, str) else str(value)
    return f"{path}: Invalid value: {shown}: {detail}"


def validate_tracing_configuration(
    config: Optional[TracingConfiguration], field_path: Optional[str] = None
) -> list[str]:
    """``ValidateTracingConfiguration``, rule for rule; every error, rendered as a Kubernetes field error.

    ``field_path`` is ``"tracing"`` for kubelet files and ``None`` (bare field names) for apiserver files.
    """
    if config is None:
        return []
    errors: list[str] = []
    rate = config.sampling_rate_per_million
    if rate is not None:
        path = _child(field_path, "samplingRatePerMillion")
        if rate < 0:
            errors.append(_invalid(path, rate, "sampling rate must be positive"))
        if rate > _MAX_SAMPLING_RATE:
            errors.append(
                _invalid(path, rate, "sampling rate per million must be less than or equal to one million")
            )
    if config.endpoint is not None:
        errors.extend(_validate_endpoint(config.endpoint, _child(field_path, "endpoint")))
    return errors


def _validate_endpoint(endpoint: str, path: str) -> list[str]:
    if "//" not in endpoint:
        endpoint = "dns://" + endpoint
    try:
        parsed = _gourl.parse(endpoint)
    except _gourl.GoURLError as error:
        return [_invalid(path, endpoint, str(error))]
    if parsed.scheme not in _ENDPOINT_SCHEMES:
        return [
            _invalid(
                path,
                endpoint,
                f"unsupported scheme: {parsed.scheme}.  Options are none, dns, unix, or unix-abstract.  "
                "See https://github.com/grpc/grpc/blob/master/doc/naming.md",
            )
        ]
    return []


def aggregate(errors: list[str]) -> str:
    """``utilerrors.NewAggregate(errs).Error()``: one error as is, several as ``[a, b]`` without repeats."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"
