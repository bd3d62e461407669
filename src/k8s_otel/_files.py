"""Reading files named by configuration without ever blocking: FIFOs and devices are refused.

A path in an env var or a mounted volume can name a FIFO or a device (``/dev/zero``,
``/dev/stdin``); a plain ``open()`` blocks on a FIFO with no writer, and reading a device never ends.
Start-up must not hang on either, so files are opened with ``O_NONBLOCK`` and checked with
``fstat`` before the first read.
"""

from __future__ import annotations

import os
import stat

from k8s_otel._exceptions import K8sOtelError

__all__ = ["NotRegularFileError", "read_regular_file"]


class NotRegularFileError(K8sOtelError, OSError):
    """A FIFO, socket or device where a file was expected."""


def read_regular_file(path: str, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of a regular file; a FIFO or a device never blocks the caller.

    Opened with ``O_NONBLOCK`` and checked with ``fstat`` before any read. Raises OSError, and
    ``IsADirectoryError`` or ``NotRegularFileError`` for what is not a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags)
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path)
        chunks: list[bytes] = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(descriptor, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)
