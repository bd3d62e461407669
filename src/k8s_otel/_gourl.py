"""The part of Go's ``net/url.Parse`` that ``ValidateTracingConfiguration`` depends on.

The endpoint check in component-base parses the endpoint with Go's ``url.Parse`` and puts the
error text into the field error, so matching kube-apiserver's messages means reproducing which
inputs Go rejects and how it words the rejection. Only parsing and its errors are ported; nothing
here builds URLs. The rules and messages are those of Go 1.26's ``net/url`` (kube-apiserver is
built with it): ``parseHost`` accepts brackets only around a whole IPv6 literal, checked with
``net/netip.ParseAddr`` (whose messages are ported too), and takes the first colon as the port
for http(s) URLs (go.dev/issue/75223, 78077). See docs/conventions.md.
"""

from __future__ import annotations

from typing import NamedTuple

from k8s_otel._exceptions import K8sOtelError

__all__ = ["GoURL", "GoURLError", "go_quote", "parse"]


class GoURLError(K8sOtelError, ValueError):
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
    """Go's ``unescape`` validity checks for a path or fragment (``host=False``) or a host."""
    _unescape(text, "host" if host else "path")


def _unescape(text: str, mode: str) -> str:
    """Go's ``unescape`` for the ``encodeHost``, ``encodeZone`` and path modes: decoded, or ValueError."""
    index = 0
    out = bytearray()
    host_like = mode in ("host", "zone")
    while index < len(text):
        char = text[index]
        if char == "%":
            escape = text[index : index + 3]
            if index + 2 >= len(text) or text[index + 1] not in _HEX or text[index + 2] not in _HEX:
                raise ValueError(f"invalid URL escape {go_quote(escape)}")
            byte = int(text[index + 1 : index + 3], 16)
            if mode == "host" and int(text[index + 1], 16) < 8 and escape != "%25":
                raise ValueError(f"invalid URL escape {go_quote(escape)}")
            if (
                mode == "zone"
                and escape != "%25"
                and byte != 0x20
                and not (byte < 0x80 and chr(byte) in _HOST_ALLOWED)
            ):
                raise ValueError(f"invalid URL escape {go_quote(escape)}")
            out.append(byte)
            index += 3
            continue
        if host_like and ord(char) < 0x80 and char not in _HOST_ALLOWED:
            raise ValueError(f"invalid character {go_quote(char)} in host name")
        out.extend(char.encode("utf-8", "surrogatepass"))
        index += 1
    return out.decode("utf-8", "replace")


def _valid_optional_port(port: str) -> bool:
    if not port:
        return True
    return port[0] == ":" and all("0" <= c <= "9" for c in port[1:])


def _parse_host(host: str, scheme: str) -> str:
    """Go 1.26 ``parseHost``: brackets only at the start and only around an IPv6 literal."""
    open_bracket = host.rfind("[")
    if open_bracket > 0:
        raise ValueError("invalid IP-literal")
    if open_bracket == 0:
        close = host.rfind("]")
        if close < 0:
            raise ValueError("missing ']' in host")
        colon_port = host[close + 1 :]
        if not _valid_optional_port(colon_port):
            raise ValueError(f"invalid port {go_quote(colon_port)} after host")
        hostname = host[1:close]
        zone = hostname.find("%25")
        if zone >= 0:
            literal = _unescape(hostname[:zone], "host") + _unescape(hostname[zone:], "zone")
        else:
            literal = _unescape(hostname, "host")
        # RFC 3986: only an IPv6 address may be bracketed (IPv4-mapped IPv6 addresses are).
        if parse_addr(literal) == 4:
            raise ValueError("invalid IP-literal")
        return host
    colon = host.find(":")
    if colon != -1:
        last = host.rfind(":")
        if last != colon and scheme not in ("http", "https"):
            colon = last  # strict colons only for http(s): other schemes may list hosts
        if not _valid_optional_port(host[colon:]):
            raise ValueError(f"invalid port {go_quote(host[colon:])} after host")
    _unescape(host, "host")
    return host


class _AddrError(ValueError):
    """``netip.parseAddrError``; ``str()`` is its ``Error()`` text."""

    def __init__(self, text: str, message: str, at: str = "") -> None:
        shown = f"ParseAddr({go_quote(text)}): {message}"
        super().__init__(shown + (f" (at {go_quote(at)})" if at else ""))


def parse_addr(text: str) -> int:
    """``netip.ParseAddr``: 4 or 6 for a valid address; ValueError ``invalid host: ...`` otherwise."""
    try:
        for char in text:
            if char == ".":
                _parse_ipv4_fields(text, text)
                return 4
            if char == ":":
                _parse_ipv6(text)
                return 6
            if char == "%":
                raise _AddrError(text, "missing IPv6 address")
        raise _AddrError(text, "unable to parse IP")
    except _AddrError as error:
        raise ValueError(f"invalid host: {error}") from None


def _parse_ipv4_fields(whole: str, part: str) -> int:
    """netip ``parseIPv4Fields`` over ``part``, errors naming ``whole``; the number of bytes (4)."""
    value = position = digits = 0
    for index, char in enumerate(part):
        if "0" <= char <= "9":
            if digits == 1 and value == 0:
                raise _AddrError(whole, "IPv4 field has octet with leading zero")
            value = value * 10 + int(char)
            digits += 1
            if value > 255:
                raise _AddrError(whole, "IPv4 field has value >255")
        elif char == ".":
            if index == 0 or index == len(part) - 1 or part[index - 1] == ".":
                raise _AddrError(whole, "IPv4 field must have at least one digit", part[index:])
            if position == 3:
                raise _AddrError(whole, "IPv4 address too long")
            position += 1
            value = digits = 0
        else:
            raise _AddrError(whole, "unexpected character", part[index:])
    if position < 3:
        raise _AddrError(whole, "IPv4 address too short")
    return 4


def _parse_ipv6(whole: str) -> None:
    """netip ``parseIPv6``: only its verdict and messages."""
    rest, percent, zone = whole.partition("%")
    if percent and not zone:
        raise _AddrError(whole, "zone must be a non-empty string")
    ellipsis = -1
    if rest.startswith("::"):
        ellipsis = 0
        rest = rest[2:]
        if not rest:
            return
    filled = 0
    while filled < 16:
        offset = 0
        accumulator = 0
        while offset < len(rest) and rest[offset] in _HEX:
            accumulator = (accumulator << 4) + int(rest[offset], 16)
            if offset > 3:
                raise _AddrError(whole, "each group must have 4 or less digits", rest)
            if accumulator > 0xFFFF:
                raise _AddrError(whole, "IPv6 field has value >=2^16", rest)
            offset += 1
        if offset == 0:
            raise _AddrError(whole, "each colon-separated field must have at least one digit", rest)
        if offset < len(rest) and rest[offset] == ".":
            if ellipsis < 0 and filled != 12:
                raise _AddrError(
                    whole, "embedded IPv4 address must replace the final 2 fields of the address", rest
                )
            if filled + 4 > 16:
                raise _AddrError(
                    whole, "too many hex fields to fit an embedded IPv4 at the end of the address", rest
                )
            _parse_ipv4_fields(whole, rest)
            rest = ""
            filled += 4
            break
        filled += 2
        rest = rest[offset:]
        if not rest:
            break
        if rest[0] != ":":
            raise _AddrError(whole, "unexpected character, want colon", rest)
        if len(rest) == 1:
            raise _AddrError(whole, "colon must be followed by more characters", rest)
        rest = rest[1:]
        if rest[0] == ":":
            if ellipsis >= 0:
                raise _AddrError(whole, "multiple :: in address", rest)
            ellipsis = filled
            rest = rest[1:]
            if not rest:
                break
    if rest:
        raise _AddrError(whole, "trailing garbage after address", rest)
    if filled < 16:
        if ellipsis < 0:
            raise _AddrError(whole, "address string too short")
    elif ellipsis >= 0:
        raise _AddrError(whole, "the :: must expand to at least one field of zeros")


_USERINFO_ALLOWED = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@"
)


def _parse_authority(authority: str, scheme: str) -> str:
    at = authority.rfind("@")
    host = _parse_host(authority[at + 1 :] if at >= 0 else authority, scheme)
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
        host = _parse_authority(authority, scheme)
    _check_escapes(rest, host=False)
    return GoURL(scheme, "", host, rest)
