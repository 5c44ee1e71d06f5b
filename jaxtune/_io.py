"""Files written atomically: a crash leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from typing import IO

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def write_atomically(path: str, write: Callable[[IO[bytes]], object]) -> None:
    """Calls `write(file)` on a temporary file beside `path`, then renames it onto `path`.

    `os.replace` is atomic on POSIX and Windows when both names are on one file system,
    hence the same directory. The temporary file is opened like `open(path, "wb")` would
    (mode 0o666 less the umask), not 0o600 as `tempfile` would make it.
    """
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f"{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Makes the rename itself durable where the platform allows (POSIX)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
