"""What may be shown of input in a message: bounded, escaped, and never a credential.

Configuration errors, settings problems and ``doctor`` output quote input so that a user can find
what is wrong. Input can hold credentials (a token pasted into the wrong file, userinfo in an
endpoint), so every quote goes through ``excerpt``: at most ``MAX_EXCERPT`` characters, control
characters escaped, and nothing at all from text that looks like a credential.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_EXCERPT",
    "REDACTED",
    "excerpt",
    "looks_like_credential",
    "looks_like_token",
    "split_userinfo",
]

MAX_EXCERPT = 40
REDACTED = "<redacted>"

# Words that mark a line as carrying a credential, and runs of token-like characters long enough
# to be a key (base64, hex, JWT segments) that mix letters and digits, as keys do and names rarely do.
_CREDENTIAL_WORD = re.compile(
    r"bearer|basic\s|token|passw|secret|api[-_]?key|authoriz|credential|private|-----begin|\beyJ",
    re.IGNORECASE,
)
_TOKEN_RUN = re.compile(
    r"[A-Za-z0-9+=_-]{20,}"
)  # not "/": paths are not keys, and long keys have long runs between


def looks_like_credential(text: str) -> bool:
    """Whether ``text`` may hold a credential: a credential word, or a long token-like run."""
    if _CREDENTIAL_WORD.search(text):
        return True
    for run in _TOKEN_RUN.findall(text):
        if any(c.isdigit() for c in run) and any(c.isalpha() for c in run):
            return True
    # Shorter keys (16 characters of base64, as ``c2VjcmV0LXZhbHVl``) mix digits and both cases,
    # which host names and field names do not.
    for run in _NAME_TOKEN_RUN.findall(text):
        if any(c.isdigit() for c in run) and any(c.islower() for c in run) and any(c.isupper() for c in run):
            return True
    return False


_NAME_TOKEN_RUN = re.compile(r"[A-Za-z0-9+=_]{16,}")


def looks_like_token(name: str) -> bool:
    """Whether a would-be header name is more likely pasted key material than a name.

    Names such as ``x-api-key`` are words joined by dashes; base64 and hex keys are long runs
    that mix letters and digits.
    """
    return any(
        any(c.isdigit() for c in run) and any(c.isalpha() for c in run)
        for run in _NAME_TOKEN_RUN.findall(name)
    )


def _escape(text: str) -> str:
    out = []
    for char in text:
        if char.isprintable() and char not in "\\\"'":
            out.append(char)
        elif char in "\\\"'":
            out.append("\\" + char)
        else:
            out.append(repr(char)[1:-1] if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "".join(out)


def excerpt(text: object, limit: int = MAX_EXCERPT) -> str:
    """``text`` as it may appear in a message: escaped, at most ``limit`` characters, or ``REDACTED``.

    The credential check looks at the whole text, so a cut never shows part of a token.
    """
    text = str(text) if not isinstance(text, str) else text
    if looks_like_credential(text):
        return REDACTED
    escaped = _escape(text[: limit + 1])
    if len(escaped) > limit or len(text) > limit:
        return escaped[: limit - 3] + "..."
    return escaped


# What comes before an endpoint's authority: a scheme followed by slashes (``http://``, ``dns:///``,
# ``http:/``), or bare slashes (``//host``). ``user:password@host`` has no scheme: its ``:`` is not
# followed by ``/``.
_BEFORE_AUTHORITY = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:(?=/))?/*")


def split_userinfo(endpoint: str) -> tuple[str, bool]:
    """``endpoint`` without the ``user:password@`` of its authority, and whether there was one.

    OTLP credentials travel in headers; userinfo in an endpoint would be printed wherever the
    endpoint is, and passed on as part of the gRPC target. A password may hold ``/``, ``?`` or
    ``#`` unencoded, and ``dns:///`` puts the authority after three slashes, so everything up to
    the last ``@`` counts as userinfo: an OTLP endpoint has no other use for ``@``. Unix socket
    paths may hold ``@``; there only an authority (``unix://user@/path``) is userinfo.
    """
    prefix = _BEFORE_AUTHORITY.match(endpoint)
    head = prefix.group(0) if prefix else ""
    rest = endpoint[len(head) :]
    if endpoint.lower().startswith("unix"):
        authority, slash, path = rest.partition("/")
        if head.lower() != "unix://" or "@" not in authority:
            return endpoint, False
        return f"{head}{slash}{path}", True
    at = rest.rfind("@")
    if at == -1:
        return endpoint, False
    return head + rest[at + 1 :], True
