"""Files written atomically, and a directory owned by one writer at a time.

`write_atomically` writes a temporary file beside the target and renames it over the
target. The temporary file is named `<target>.tmp-<pid>-<8 hex digits>`; one left
behind by a writer killed outright (kill -9, power loss) is removed at the next write of
the same target, once no live process on this host has that pid. An error names the
target, never the temporary file.

`exclusive(path, ...)` holds a lock file at `path` (JSON: the owner's `pid` and `host`)
for the life of a `with` block; a lock left by a dead process of this host is taken
over with a warning, one held by a live process (or from another host, where liveness
cannot be told) is refused.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from typing import IO, Any

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


@contextlib.contextmanager
def exclusive(path: str, what: str, instead: str) -> Iterator[None]:
    """Holds the lock file `path` for the `with` block.

    Released when the block ends, whether normally, by an exception or by Ctrl-C.
    Raises ValueError naming `what` is locked, by whom, and what to do (`instead`)
    when another live process holds it.
    """
    mine = {"pid": os.getpid(), "host": socket.gethostname()}
    _acquire(path, what, instead, mine)
    try:
        yield
    finally:
        if _read_lock(path) == mine:  # never remove a lock that is not ours
            with contextlib.suppress(OSError):
                os.unlink(path)


def _acquire(path: str, what: str, instead: str, mine: dict) -> None:
    for _ in range(50):  # each turn either takes the lock or sees it change hands
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as file:
                json.dump(mine, file)
            return
        owner = _read_lock(path, patience=0.5)
        if owner is _ABSENT:
            continue  # released meanwhile
        if owner is None:
            raise ValueError(
                f"{what} is locked by {path}, which does not say which process holds it; "
                f"{instead}. If nothing is using {what}, delete {path}.")
        if owner["host"] != mine["host"] or pid_alive(owner["pid"]):
            raise ValueError(
                f"{what} is in use by process {owner['pid']} on host {owner['host']!r} (lock "
                f"file {path}); wait for it to end, or {instead}. If that process is not "
                f"running, delete {path}.")
        if _take_over(path, owner, mine):
            warnings.warn(
                f"took over the lock {path} of process {owner['pid']} on this host, which no "
                "longer runs (it ended without releasing it, e.g. killed).",
                RuntimeWarning, stacklevel=2)
            return
    raise ValueError(f"could not lock {what}: {path} keeps changing hands; {instead}.")


def _take_over(path: str, stale: dict, mine: dict) -> bool:
    """Replaces the stale lock `stale` at `path` with `mine`; False if it changed meanwhile.

    A guard file makes the check-and-replace one step, so that of two processes that
    both saw the stale lock, only one replaces it (the other then sees a live owner).
    """
    guard = f"{path}.takeover"
    try:
        descriptor = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    except FileExistsError:
        holder = _read_lock(guard)
        if isinstance(holder, dict) and holder["host"] == mine["host"] \
                and not pid_alive(holder["pid"]):
            with contextlib.suppress(OSError):
                os.unlink(guard)
        else:
            time.sleep(0.01)
        return False
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(mine, file)
        if _read_lock(path) != stale:
            return False
        write_atomically(path, lambda file: file.write(json.dumps(mine).encode()))
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(guard)


_ABSENT = object()  # what `_read_lock` returns when there is no lock file


def _read_lock(path: str, patience: float = 0.0) -> Any:
    """The owner {pid, host} in lock file `path`; `_ABSENT` if there is none; None if it
    stays unreadable for `patience` seconds (a writer between creating and filling it)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            with open(path, encoding="utf-8") as file:
                owner = json.load(file)
            if isinstance(owner, dict) and isinstance(owner.get("pid"), int) \
                    and isinstance(owner.get("host"), str):
                return {"pid": owner["pid"], "host": owner["host"]}
        except FileNotFoundError:
            return _ABSENT
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


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
