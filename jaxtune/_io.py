"""Files written atomically: a crash leaves the old file or the new one, never a torn one.

`write_atomically` writes a temporary file beside the target and renames it over the
target. The temporary file is named `<target>.tmp-<pid>-<8 hex digits>`; one left
behind by a writer killed outright (kill -9, power loss) is removed at the next write of
the same target, once no live process on this host has that pid. An error names the
target, never the temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
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
    _remove_stale_temporaries(directory, name)
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


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Removes `name`'s temporary files whose writer (a pid on this host) no longer runs."""
    pattern = re.compile(re.escape(name) + r"\.tmp-(\d+)-[0-9a-f]{8}")
    try:
        entries = os.listdir(directory)
    except OSError:
        return  # the write itself says what is wrong with the directory
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match and not pid_alive(int(match.group(1))):
            with contextlib.suppress(OSError):  # another writer removed it first
                os.unlink(os.path.join(directory, entry))


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs; True when that cannot be told."""
    if pid <= 0:
        return False  # no writer has such a pid (and os.kill(0, ...) means the group)
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # Windows' os.kill(pid, 0) would terminate the process, not probe it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


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
