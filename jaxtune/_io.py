"""Files written atomically: a crash leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import errno
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

    Raises:
      OSError: naming `path` (the directory is missing, the disk is full ...); `path`
        then holds what it held before and no temporary file is left.
    """
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f"{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    except OSError as error:
        raise _naming(error, path) from error
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise _naming(error, path) from error
        raise
    _fsync_directory(directory)


def _naming(error: OSError, path: str) -> OSError:
    """`error` restated about `path` (not the temporary file), with what to do."""
    directory = os.path.dirname(os.path.abspath(path))
    hint = {
        errno.ENOENT: f"the directory {directory} does not exist: create it first, or write "
                      "to another path",
        errno.ENOSPC: "the disk is full: free some space, or write to another disk",
        errno.EDQUOT: "the disk quota is used up: free some space, or write elsewhere",
        errno.EACCES: f"no permission to write in {directory}: write to another path",
        errno.EROFS: "the file system is read-only: write to another path",
    }.get(error.errno)
    message = f"cannot write {path}: {error.strerror or error}" + (f"; {hint}" if hint else "")
    return OSError(message) if error.errno is None else OSError(error.errno, message)


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
