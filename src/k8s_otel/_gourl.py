"""The part of Go's ``net/url.Parse`` that ``ValidateTracingConfiguration`` depends on.

The endpoint check in component-base parses the endpoint with Go's ``url.Parse`` and puts the
error text into the field error, so matching kube-apiserver's messages means reproducing which
inputs Go rejects and how it words the rejection. Only parsing and its errors are ported; nothing
here builds URLs.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["GoURL", "GoURLError", "go_quote", "parse"]


class GoURLError(ValueError):
    """``*url.Error`` from ``url.Parse``; ``str()`` is Go's ``Error()`` text."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"parse {go_quote(url)}: {detail}")
        self.url = url
        self.detail = detail


class GoURL(NamedTuple):
    scheme: str
    opaque: str
    host: str
    path: str


def go_quote(text: str) -> str:
    """Go's ``%q`` for a string (``strconv.Quote``), for the characters an endpoint can hold."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0x80 <= code < 0xA0 or char in ("\u2028", "\u2029") or not char.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


_HEX = frozenset("0123456789abcdefABCDEF")
_HOST_ALLOWED = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\""
)


def _get_scheme(raw: str) -> tuple[str, str]:
    for index, char in enumerate(raw):
        if char.isascii() and char.isalpha():
            continue
        if char.isascii() and (char.isdigit() or char in "+-."):
            if index == 0:
                return "", raw
            continue
        if char == ":":
            if index == 0:
                raise ValueError("missing protocol scheme")
            return raw[:index], raw[index + 1 :]
        return "", raw
    return "", raw


def _check_escapes(text: str, host: bool) -> None:
    """Go's ``unescape`` validity checks (the decoded value itself is not needed)."""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "%":
            if index + 2 >= len(text) or text[index + 1] not in _HEX or text[index + 2] not in _HEX:
                raise ValueError(f"invalid URL escape {go_quote(text[index : index + 3])}")
            if host and int(text[index + 1], 16) < 8 and text[index : index + 3] != "%25":
                raise ValueError(f"invalid URL escape {go_quote(text[index : index + 3])}")
            index += 3
            continue
        if host and ord(char) < 0x80 and char not in _HOST_ALLOWED:
            raise ValueError(f"invalid character {go_quote(char)} in host name")
        index += 1


def _valid_optional_port(port: str) -> bool:
    if not port:
        return True
    return port[0] == ":" and all("0" <= c <= "9" for c in port[1:])


def _parse_host(host: str) -> str:
    if host.startswith("["):
        close = host.rfind("]")
        if close < 0:
            raise ValueError("missing ']' in host")
        colon_port = host[close + 1 :]
        if not _valid_optional_port(colon_port):
            raise ValueError(f"invalid port {go_quote(colon_port)} after host")
    else:
        colon = host.rfind(":")
        if colon != -1 and not _valid_optional_port(host[colon:]):
            raise ValueError(f"invalid port {go_quote(host[colon:])} after host")
    _check_escapes(host, host=True)
    return host


_USERINFO_ALLOWED = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@"
)


def _parse_authority(authority: str) -> str:
    at = authority.rfind("@")
    host = _parse_host(authority[at + 1 :] if at >= 0 else authority)
    if at >= 0 and any(c.isascii() and c not in _USERINFO_ALLOWED for c in authority[:at]):
        raise ValueError("net/url: invalid userinfo")
    return host


def parse(raw_url: str) -> GoURL:
    """``url.Parse(raw_url)``: the parts the endpoint validation reads, or GoURLError."""
    without_fragment, _, fragment = raw_url.partition("#")
    try:
        parsed = _parse(without_fragment)
    except ValueError as error:
        raise GoURLError(without_fragment, str(error)) from None
    if fragment:
        try:
            _check_escapes(fragment, host=False)
        except ValueError as error:
            raise GoURLError(raw_url, str(error)) from None
    return parsed


def _parse(raw: str) -> GoURL:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise ValueError("net/url: invalid control character in URL")
    if raw == "*":
        return GoURL("", "", "", "*")
    scheme, rest = _get_scheme(raw)
    scheme = scheme.lower()
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]
    else:
        rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return GoURL(scheme, rest, "", "")
        if ":" in rest.partition("/")[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    host = ""
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        host = _parse_authority(authority)
    _check_escapes(rest, host=False)
    return GoURL(scheme, "", host, rest)
