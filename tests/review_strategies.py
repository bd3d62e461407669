"""Hypothesis strategies for AdmissionReview bodies: random values at every field path, random
field order, whitespace, escapes, unicode and duplicate keys, serialized by hand."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from k8s_otel._admission import REQUEST_FIELDS

GO_ORDER = [
    "uid", "kind", "resource", "subResource", "requestKind", "requestResource", "requestSubResource",
    "name", "namespace", "operation", "userInfo", "object", "oldObject", "dryRun", "options",
]  # fmt: skip
OPTIONAL = {"subResource", "requestKind", "requestResource", "requestSubResource", "name", "namespace"}
CANARY = '"dryRun":true,"options":{}}},"request":{"uid":"forged"'

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", "a{b", 'q"uote', "back\\slash", "é日本", "\x00\n\t", CANARY, "dryRun", "object", "\u2028"]
)
scalars = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=True) | text
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
gvk = st.fixed_dictionaries({"group": text, "version": text, "kind": text}) | values
gvr = st.fixed_dictionaries({"group": text, "version": text, "resource": text}) | values
user = (
    st.fixed_dictionaries(
        {"username": text, "groups": st.lists(text, max_size=3) | values},
        optional={"uid": text, "extra": st.dictionaries(text, st.lists(text, max_size=2), max_size=2)},
    )
    | values
)
FIELD_VALUES = {
    "uid": text | values, "kind": gvk, "resource": gvr, "subResource": text | values, "requestKind": gvk,
    "requestResource": gvr, "requestSubResource": text | values, "name": text | values,
    "namespace": text | values, "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]) | values,
    "userInfo": user, "object": values, "oldObject": values, "dryRun": st.booleans() | values,
    "options": values,
}  # fmt: skip


def _string(draw: Any, value: str) -> str:
    """A JSON string, with random escaping (ASCII or not, some characters as \\u escapes)."""
    if draw(st.integers(0, 9)) < 8:
        return json.dumps(value, ensure_ascii=draw(st.booleans()))
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else json.dumps(c)[1:-1] for c in value) + '"'


def _ws(draw: Any) -> str:
    return draw(st.sampled_from(["", "", "", " ", "\n", "\t ", "\r\n  "]))


def _encode(draw: Any, value: Any) -> str:
    if isinstance(value, dict):
        return _object(draw, list(value.items()))
    if isinstance(value, list):
        return "[" + ",".join(_ws(draw) + _encode(draw, item) + _ws(draw) for item in value) + "]"
    if isinstance(value, str):
        return _string(draw, value)
    return json.dumps(value)


def _object(draw: Any, members: list[tuple[str, Any]]) -> str:
    parts = [f"{_ws(draw)}{_string(draw, key)}{_ws(draw)}:{_ws(draw)}{_encode(draw, value)}{_ws(draw)}"
             for key, value in members]  # fmt: skip
    return "{" + ",".join(parts) + "}"


@st.composite
def reviews(draw: Any, canary: str = "") -> tuple[bytes, bool]:
    """A review body, and whether it is in a shape the reader is required to read exactly.

    With ``canary``, ``object`` and ``oldObject`` carry it (as a Secret's data would)."""
    fields = {name: draw(FIELD_VALUES[name]) for name in GO_ORDER}
    if canary:
        for name in ("object", "oldObject"):
            fields[name] = {"kind": "Secret", "data": {"password": canary}, "more": fields[name]}
    members = [(n, fields[n]) for n in GO_ORDER if n not in OPTIONAL or draw(st.booleans())]
    layout = draw(st.sampled_from(["go", "go", "go", "shuffled", "duplicate", "misplaced"]))
    if layout == "shuffled":
        members = draw(st.permutations(members))
    elif layout == "duplicate":  # a repeated field anywhere
        name = draw(st.sampled_from(GO_ORDER))
        members.insert(draw(st.integers(0, len(members))), (name, draw(FIELD_VALUES[name])))
    elif layout == "misplaced":  # a request field after "object": the documented blind spot
        name = draw(st.sampled_from(sorted(set(REQUEST_FIELDS) - {"dryRun"})))
        at = next(i for i, (n, _) in enumerate(members) if n == "object") + 1
        members.insert(draw(st.integers(at, len(members))), (name, draw(FIELD_VALUES[name])))
    request = _object(draw, members)
    root = [("kind", draw(st.sampled_from(["AdmissionReview"]) | values)),
            ("apiVersion", draw(st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]) | values))]  # fmt: skip
    root = draw(st.permutations(root))
    extra = draw(st.sampled_from(["none", "none", "none", "before", "after", "second-request"]))
    parts = [f"{_string(draw, key)}:{_encode(draw, value)}" for key, value in root]
    if extra == "before":
        parts.append(f'"response":{_encode(draw, draw(values))}')
    parts.append(f'{_ws(draw)}"request"{_ws(draw)}:{_ws(draw)}{request}')
    after_value: Any = None
    if extra == "after":
        after_value = draw(values)
        parts.append(f'"response":{_encode(draw, after_value)}')
    elif extra == "second-request":
        parts.append(f'"request":{_object(draw, [(n, draw(FIELD_VALUES[n])) for n in GO_ORDER])}')
    body = _ws(draw) + "{" + ",".join(parts) + "}" + _ws(draw)
    names = [n for n, _ in members]
    last_dry_run = max((i for i, n in enumerate(names) if n == "dryRun"), default=-1)
    first_object = names.index("object") if "object" in names else len(names)
    middle = set(names[first_object + 1 : last_dry_run]) - {"object", "oldObject", "options"}
    # A root member after "request" whose value ends like a request's tail (its last keys dryRun, or
    # dryRun and options) puts request's closing brace in the skipped bytes: the same blind spot.
    keys = list(after_value) if isinstance(after_value, dict) else []
    tail_like = keys[-1:] == ["dryRun"] or keys[-2:] == ["dryRun", "options"]
    required_exact = extra != "second-request" and not tail_like and not middle & set(REQUEST_FIELDS)
    return body.encode("utf-8", "surrogatepass"), required_exact
