"""Read the few fields tracing needs from an AdmissionReview without decoding ``object``/``oldObject``.

kube-apiserver writes an AdmissionReview with Go's encoder, in struct order: ``kind``,
``apiVersion``, ``request`` and, inside it, ``uid``, ``kind``, ``resource``, ``subResource``,
``requestKind``, ``requestResource``, ``requestSubResource``, ``name``, ``namespace``,
``operation``, ``userInfo``, ``object``, ``oldObject``, ``dryRun``, ``options``. Everything tracing
reads but ``dryRun`` comes before the first large value, so the reader decodes the prefix up to
``"object":`` and the tail from ``"dryRun"`` to the end, with the json module's own C scanner (the
same functions ``json.loads`` uses, so each value is exactly what ``json.loads`` gives), and skips
the bytes in between. Whenever the body is not in that shape (another order, an unknown or
repeated key before ``object``, anything after ``options``, a prefix longer than 64 KiB, bytes
that are not UTF-8) it returns None and the caller parses the whole body.

What it does not do is look at the bytes between ``"object":`` and ``,"dryRun"``: it takes them to
be the values of ``object`` and ``oldObject``, as kube-apiserver writes them. A body that puts
another request field there (or closes ``request`` inside ``object``) is read as if that field
were absent; ``fast_reader=False`` on the webhook wrappers parses every body in full.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any, Callable, Optional

__all__ = ["read_review_fields"]

# The C scanner json.loads uses: (text, index) -> (value, end).
scanstring: Callable[[str, int], tuple[str, int]] = getattr(json.decoder, "scanstring")  # noqa: B009
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_WHITESPACE_CHARS = " \t\n\r"  # note: "" is in it too, so the end of the text goes to the regex
_WHITESPACE_BYTES = b" \t\n\r"
_COMMA = ord(",")
_HEAD_BYTES = 64 << 10

# kube-apiserver's order of the request fields before "object" (admission/v1 AdmissionRequest).
_ORDER = {
    name: index
    for index, name in enumerate(
        (
            "uid",
            "kind",
            "resource",
            "subResource",
            "requestKind",
            "requestResource",
            "requestSubResource",
            "name",
            "namespace",
            "operation",
            "userInfo",
        )
    )
}
_ALWAYS_WRITTEN = frozenset({"uid", "kind", "resource", "operation", "userInfo"})  # no omitempty


class _NotTheShape(Exception):
    """The body is not laid out as kube-apiserver writes it: parse it in full."""


def _skip(text: str, index: int) -> int:
    if text[index : index + 1] not in _WHITESPACE_CHARS:  # compact JSON, as Go writes it: no regex
        return index
    return _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]


def _expect(text: str, index: int, char: str) -> int:
    if text[index : index + 1] != char:
        index = _skip(text, index)
        if text[index : index + 1] != char:
            raise _NotTheShape
    return index + 1


def _key(text: str, index: int) -> tuple[str, int]:
    index = _expect(text, index, '"')
    key, index = scanstring(text, index)
    return key, _skip(text, _expect(text, index, ":"))


def _value(text: str, index: int) -> tuple[Any, int]:
    try:
        return _SCAN_ONCE(text, index)
    except StopIteration:
        raise _NotTheShape from None


def _read_prefix(head: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The root members before ``request``, the request members before ``object``, and where the
    value of ``object`` starts in ``head``."""
    root: dict[str, Any] = {}
    index = _expect(head, 0, "{")
    while True:
        key, index = _key(head, index)
        if key == "request":
            break
        root[key], index = _value(head, index)
        index = _expect(head, index, ",")
    index = _expect(head, index, "{")
    request: dict[str, Any] = {}
    last = -1
    while True:
        key, index = _key(head, index)
        if key == "object":
            break
        position = _ORDER.get(key)
        if position is None or position <= last:
            raise _NotTheShape  # an unknown, repeated or reordered field before "object"
        last = position
        request[key], index = _value(head, index)
        index = _expect(head, index, ",")
    if not _ALWAYS_WRITTEN.issubset(request):
        raise _NotTheShape
    return root, request, index


def _read_tail(tail: str) -> Any:
    """``"dryRun": <value>, "options": <value> } }`` to the end: the dryRun value."""
    key, index = _key(tail, 0)
    if key != "dryRun":
        raise _NotTheShape
    dry_run, index = _value(tail, index)
    index = _skip(tail, index)
    if tail[index : index + 1] == ",":
        key, index = _key(tail, index + 1)
        if key != "options":
            raise _NotTheShape
        _, index = _value(tail, index)
    index = _expect(tail, _expect(tail, index, "}"), "}")
    if _skip(tail, index) != len(tail):
        raise _NotTheShape
    return dry_run


def read_review_fields(body: bytes) -> Optional[dict[str, Any]]:
    """``{"apiVersion", "kind", "request": {the fields tracing reads}}`` as ``json.loads`` would give
    them, read from the prefix and the tail only; None when the body is not in kube-apiserver's
    shape (the caller then parses it in full). Never raises."""
    try:
        head, _ = codecs.utf_8_decode(body[:_HEAD_BYTES], "strict", False)
        root, request, object_at = _read_prefix(head)
        start = body.rfind(b'"dryRun"')
        if start <= len(head[:object_at].encode("utf-8")):
            raise _NotTheShape
        comma = start - 1
        while body[comma] in _WHITESPACE_BYTES:
            comma -= 1
        if body[comma] != _COMMA:  # "dryRun" is a member after another one, not the start of a value
            raise _NotTheShape
        request["dryRun"] = _read_tail(codecs.utf_8_decode(body[start:], "strict", True)[0])
    except (_NotTheShape, ValueError, RecursionError, IndexError):
        return None
    root["request"] = request
    return root
