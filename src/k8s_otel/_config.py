"""TracingConfiguration files, read and validated as kube-apiserver and the kubelet do.

The same file a cluster hands to ``--tracing-config-file`` (or the ``tracing`` stanza of a
KubeletConfiguration) configures a Python controller. Decoding is strict, and every error reads
like kube-apiserver's (kubernetes/apiserver ``pkg/server/options/tracing.go``,
``ReadTracingConfiguration``; kubernetes/component-base ``tracing/api/v1/config.go``,
``ValidateTracingConfiguration``), so one message means one thing on both sides.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional, Union

from k8s_otel import _gourl
from k8s_otel._exceptions import InvalidArgumentError, K8sOtelError
from k8s_otel._files import NotRegularFileError, read_regular_file
from k8s_otel._redact import MAX_EXCERPT, REDACTED, excerpt, looks_like_credential, split_userinfo
from k8s_otel._sampling import sampling_rate_errors

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
# Limits checked on the event stream before anything is built: a TracingConfiguration is a
# handful of fields and a KubeletConfiguration a few hundred, so these leave room and still
# decide any file under MAX_FILE_BYTES in milliseconds (docs/configuration.md).
MAX_DOCUMENTS = 16
MAX_DEPTH = 32
MAX_ALIASES = 64
MAX_EVENTS = 20_000
MAX_SCALAR_CHARS = 16 << 10
_MAX_UNKNOWN_FIELDS_SHOWN = 5
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
    userinfo_dropped: bool = field(default=False, compare=False)
    """``load_tracing_configuration`` dropped a ``user:password@`` from the endpoint (never shown)."""


class TracingConfigurationError(K8sOtelError, ValueError):
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


class _DecodeError(ValueError):
    pass


class _ConstructError(_DecodeError):
    """A value PyYAML's constructors cannot build; says where, never what."""


def _position(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "an unknown position"


@lru_cache(maxsize=1)
def _strict_loader() -> type[Any]:
    """SafeLoader (libyaml's parser when PyYAML has it) refusing duplicate keys, as the apiserver's strict decoder does.

    Built on first use so that ``import k8s_otel`` never imports PyYAML.
    """
    import yaml

    base: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[misc]
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except (_DecodeError, yaml.YAMLError, RecursionError):
                raise
            except Exception as error:  # PyYAML's constructors raise plain TypeError, ValueError...
                raise _ConstructError(
                    f"the value at {_position(node.start_mark)} cannot be decoded "
                    f"(PyYAML raised {type(error).__name__})"
                ) from None

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict, set)):
                continue
            if key in seen:
                raise _DecodeError(f'strict decoding error: duplicate field "{_shown_key(key)}"')
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def _shown_key(key: object) -> str:
    shown = excerpt(key)
    return shown if shown != REDACTED else "<a key that looks like a credential>"


def _check_limits(text: Union[str, bytes], loader: type[Any]) -> None:
    """Walk the event stream once, stopping at the first limit passed, before anything is built."""
    import yaml

    documents = depth = aliases = 0
    events: Iterator[Any] = yaml.parse(text, Loader=loader)
    for count, event in enumerate(events, start=1):
        if count > MAX_EVENTS:
            raise _DecodeError(f"the file holds more than {MAX_EVENTS} YAML nodes")
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > MAX_DOCUMENTS:
                raise _DecodeError(f"the file holds more than {MAX_DOCUMENTS} YAML documents")
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _DecodeError(f"nesting deeper than {MAX_DEPTH} levels at {_position(event.start_mark)}")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _DecodeError(f"more than {MAX_ALIASES} YAML aliases")
        elif isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR_CHARS:
            raise _DecodeError(
                f"a value longer than {MAX_SCALAR_CHARS} characters at {_position(event.start_mark)}"
            )


def _yaml_error_text(error: Any, text: Union[str, bytes]) -> str:
    """A PyYAML error as position and PyYAML's own phrase, quoting at most 40 escaped characters."""
    parts = [_excerpt_quotes(str(part)) for part in (error.context, error.problem) if part]
    mark = error.problem_mark or error.context_mark
    message = ", ".join(parts) if parts else type(error).__name__
    if mark is None:
        return message
    message += f" at {_position(mark)}"
    line = _line(text, mark.line)
    if line is not None and line.strip():
        shown = excerpt(line.strip())
        if shown != REDACTED:
            message += f" (near '{shown}')"
    return message


def _line(text: Union[str, bytes], number: int) -> Optional[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = text.splitlines()
    return lines[number] if 0 <= number < len(lines) else None


def _excerpt_quotes(phrase: str) -> str:
    """PyYAML's phrase, word by word: each quoted part (a tag, a character) bounded and escaped,
    and any word that looks like a credential replaced, however PyYAML quoted it."""
    words = []
    for word in phrase.split():
        if looks_like_credential(word):
            words.append(REDACTED)
        elif len(word) > MAX_EXCERPT or not word.isprintable():
            words.append(excerpt(word))
        else:
            words.append(word)
    return " ".join(words)


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
    shown = f"number {_number_text(value)}" if kind == "number" else kind
    return _DecodeError(f"json: cannot unmarshal {shown} into Go struct field {go_field} of type {go_type}")


def _number_text(value: object) -> str:
    try:
        text = str(value)
    except ValueError:  # an integer past Python's digit limit for str()
        return "<a number too long to show>"
    return text if len(text) <= 40 else text[:20] + "..." + f" ({len(text)} digits)"


def _decode_fields(data: Mapping[Any, Any], go_struct: str) -> TracingConfiguration:
    unknown = [key for key in data if key not in _FIELDS and key not in ("apiVersion", "kind")]
    if unknown:
        shown = [f'unknown field "{_shown_key(key)}"' for key in unknown[:_MAX_UNKNOWN_FIELDS_SHOWN]]
        if len(unknown) > _MAX_UNKNOWN_FIELDS_SHOWN:
            shown.append(f"and {len(unknown) - _MAX_UNKNOWN_FIELDS_SHOWN} more unknown fields")
        raise _DecodeError("strict decoding error: " + ", ".join(shown))
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
        f'no kind "{excerpt(kind)}" is registered for version "{excerpt(api_version or "")}" in scheme '
        '"k8s.io/apiserver/pkg/server/options/tracing.go"'
    )


def load_yaml_documents(text: Union[str, bytes], *, path: Optional[str] = None) -> list[Any]:
    """The non-empty YAML (or JSON) documents of ``text``, decoded within this module's limits.

    Strict as the apiserver's decoder (duplicate keys refused). Any failure, whatever PyYAML
    raises, is a TracingConfigurationError that gives the position and never quotes more than 40
    characters of the text, nor anything from a line that looks like a credential.
    """
    import yaml

    loader = _strict_loader()
    try:
        _check_limits(text, loader)
        return [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]
    except _DecodeError as error:
        detail = str(error)
    except yaml.MarkedYAMLError as error:
        detail = _yaml_error_text(error, text)
    except yaml.YAMLError as error:  # a reader error (bad encoding, a control character)
        detail = _excerpt_quotes(str(error).split("\n", 1)[0])
    except RecursionError:
        detail = "the document is nested too deeply"
    except Exception as error:  # telemetry never breaks start-up: PyYAML raises plain exceptions
        detail = f"the file cannot be read as YAML ({type(error).__name__})"
    raise TracingConfigurationError(f"unable to decode tracing configuration data: {detail}", path=path)


def parse_tracing_configuration(
    text: Union[str, bytes], *, path: Optional[str] = None
) -> TracingConfiguration:
    """Decode YAML or JSON text strictly; raise TracingConfigurationError as kube-apiserver words it.

    Does not validate; ``load_tracing_configuration`` does both. Decoding is bounded as
    ``load_yaml_documents`` says.
    """
    documents = load_yaml_documents(text, path=path)
    try:
        if len(documents) > 1:
            raise _DecodeError("the file holds more than one YAML document")
        return _decode(documents[0] if documents else None)
    except _DecodeError as error:
        detail = str(error)
    except RecursionError:
        detail = "the document is nested too deeply"
    raise TracingConfigurationError(f"unable to decode tracing configuration data: {detail}", path=path)


def _read_error(path: str, detail: str) -> TracingConfigurationError:
    return TracingConfigurationError(
        f'unable to read tracing configuration from "{path}": {detail}', path=path, reason="read"
    )


def _read(path: str) -> bytes:
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
    except IsADirectoryError:
        raise _read_error(path, f"read {path}: is a directory") from None
    except NotRegularFileError:
        raise _read_error(path, f"read {path}: not a regular file (a FIFO, socket or device)") from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise _read_error(path, f"open {path}: {reason}") from None
    except ValueError as error:  # a NUL byte in the path
        raise _read_error(path, f"open {path}: {error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise _read_error(path, f"file is larger than {MAX_FILE_BYTES} bytes")
    return data


def load_tracing_configuration(path: Union[str, os.PathLike[str]]) -> TracingConfiguration:
    """Read, decode strictly and validate a TracingConfiguration or KubeletConfiguration file.

    An empty file gives an empty configuration. Any problem raises TracingConfigurationError.
    Userinfo in a valid endpoint is dropped (``userinfo_dropped``), so nothing that prints the
    result can show it.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise InvalidArgumentError(
            f"load_tracing_configuration(): path must be a str or os.PathLike, not a {type(path).__name__}",
            argument="path",
        ) from None
    if isinstance(path, bytes):
        raise InvalidArgumentError(
            "load_tracing_configuration(): path must be a str, not bytes", argument="path"
        )
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
    if config.endpoint is not None:
        endpoint, had_userinfo = split_userinfo(config.endpoint)
        if had_userinfo:  # credentials go in headers; the endpoint is printed in many places
            config = dataclasses.replace(config, endpoint=endpoint, userinfo_dropped=True)
    return config


def _child(field_path: Optional[str], name: str) -> str:
    return f"{field_path}.{name}" if field_path else name


def _shown_value(value: object) -> str:
    """kube-apiserver's ``%q`` of the value, cut at 40 characters; userinfo and credentials hidden."""
    if not isinstance(value, str):
        return str(value)
    without_userinfo, had_userinfo = split_userinfo(value)
    if had_userinfo:
        scheme, sep, rest = without_userinfo.rpartition("://")
        value = f"{scheme}{sep}{REDACTED}@{rest}"
    if looks_like_credential(without_userinfo):
        return '"' + REDACTED + '"'
    if len(value) > 40:
        return _gourl.go_quote(value[:37])[:-1] + '..."'
    return _gourl.go_quote(value)


def _invalid(path: str, value: object, detail: str) -> str:
    return f"{path}: Invalid value: {_shown_value(value)}: {detail}"


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
        errors.extend(sampling_rate_errors(rate, _child(field_path, "samplingRatePerMillion")))
    if config.endpoint is not None:
        errors.extend(_validate_endpoint(config.endpoint, _child(field_path, "endpoint")))
    return errors


def _validate_endpoint(endpoint: str, path: str) -> list[str]:
    if "//" not in endpoint:
        endpoint = "dns://" + endpoint
    try:
        parsed = _gourl.parse(endpoint)
    except _gourl.GoURLError as error:
        return [
            _invalid(path, endpoint, f"parse {_shown_value(error.url)}: {_excerpt_quotes_go(error.detail)}")
        ]
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


def _excerpt_quotes_go(detail: str) -> str:
    """Go's error detail with its ``%q`` parts (a port, an escape) bounded to 40 characters."""

    def bound(match: re.Match[str]) -> str:
        quoted = match.group(0)
        return quoted if len(quoted) <= 42 else quoted[:38] + '..."'

    return re.sub(r'"(?:[^"\\]|\\.)*"', bound, detail)


def aggregate(errors: list[str]) -> str:
    """``utilerrors.NewAggregate(errs).Error()``: one error as is, several as ``[a, b]`` without repeats."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"
