"""The verified client certificate's subject, as servers expose it, for trust rules.

Only a subject the TLS layer verified is returned: with ``ssl.CERT_NONE`` no certificate is
requested, and with ``CERT_OPTIONAL``/``CERT_REQUIRED`` a certificate that does not verify fails
the handshake, so ``getpeercert()`` returns a subject only for a verified certificate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

__all__ = ["asgi_client_subject", "rfc4514", "wsgi_client_subject"]

_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def _escape(value: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def rfc4514(subject: Any) -> Optional[str]:
    """``getpeercert()["subject"]`` as an RFC 4514 string (most specific first: ``CN=a,O=b``)."""
    try:
        parts = []
        for rdn in reversed(tuple(subject)):
            parts.append("+".join(f"{_SHORT_NAMES.get(k, k)}={_escape(str(v))}" for k, v in rdn))
        return ",".join(parts) or None
    except (TypeError, ValueError):
        return None


def _socket_subject(sock: Any) -> Optional[str]:
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        cert = getpeercert()
    except (ValueError, OSError):  # handshake not done, or the socket is gone
        return None
    if not isinstance(cert, Mapping) or not cert.get("subject"):
        return None  # no certificate, or CERT_NONE (an unverified certificate gives {})
    return rfc4514(cert["subject"])


def wsgi_client_subject(environ: Mapping[str, Any]) -> Optional[str]:
    """Apache/nginx/mod_wsgi ``SSL_CLIENT_S_DN`` (only with ``SSL_CLIENT_VERIFY=SUCCESS``), else the
    TLS socket werkzeug (``werkzeug.socket``) or gunicorn (``gunicorn.socket``) puts in the environ."""
    if environ.get("SSL_CLIENT_VERIFY") == "SUCCESS":
        subject = environ.get("SSL_CLIENT_S_DN")
        if isinstance(subject, str) and subject:
            return subject
    for key in ("werkzeug.socket", "gunicorn.socket"):
        sock = environ.get(key)
        if sock is not None:
            return _socket_subject(sock)
    return None


def asgi_client_subject(scope: Mapping[str, Any]) -> Optional[str]:
    """The ASGI TLS extension's ``client_cert_name``, when the server verified the chain
    (``client_cert_error`` is None). uvicorn does not implement the extension: None there."""
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if isinstance(extensions, Mapping) else None
    if not isinstance(tls, Mapping) or tls.get("client_cert_error") is not None:
        return None
    name = tls.get("client_cert_name")
    return name if isinstance(name, str) and name else None
