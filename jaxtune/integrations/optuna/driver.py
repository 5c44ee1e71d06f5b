"""The study's record of the one process driving it.

The study's user attribute `jaxtune_driver` names the process driving it: host, pid, a
token of the `OptunaSearch` and the time of its last record point. A second process on a
study that another live process drives is refused before it touches the other's trials;
a process that died (its pid gone on this host, or silent for `timeout` seconds) is taken
over.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jaxtune.integrations.optuna.storage import StudyStorage

#: The study's user attribute naming the process driving it: host, pid, last heartbeat.
DRIVER_ATTR = "jaxtune_driver"

_MSG_DRIVEN = (
    "OptunaSearch: the study {study!r} is being driven by process {pid} on {host} (its last "
    "record point {age:.0f} s ago): one process drives a study at a time, and this one would "
    "fail that process's running trials. Wait for it to finish or stop it, or use another "
    "`study_name`; a process silent for `driver_timeout`={timeout:g} s is taken for dead "
    "(driver_timeout=0 takes the study over now)."
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class Driver:
    """This process as the driver of a study: claimed, renewed at record points, released.

    Args:
      timeout: seconds after its last record point that a driving process is taken for
        dead (0: any is).
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.record = {"host": socket.gethostname(), "pid": os.getpid(),
                       "token": uuid.uuid4().hex}
        self._last_beat = -float("inf")

    def claim(self, storage: StudyStorage) -> None:
        """Makes this process the study's driver, unless another live process is."""
        study = storage.study
        driver = storage.call("reading the study", lambda: study.user_attrs).get(DRIVER_ATTR)
        if driver and driver.get("token") != self.record["token"] and self._alive(driver):
            raise ValueError(_MSG_DRIVEN.format(
                study=study.study_name, pid=driver["pid"], host=driver["host"],
                age=time.time() - driver["time"], timeout=self.timeout))
        storage.call("recording the process driving the study", study.set_user_attr,
                     DRIVER_ATTR, {**self.record, "time": time.time()})
        self._last_beat = time.monotonic()

    def heartbeat(self, storage: StudyStorage) -> None:
        """At a record point: still the driver? Then say so, at most every few seconds."""
        if time.monotonic() - self._last_beat >= min(10.0, self.timeout / 4):
            self.claim(storage)

    def release(self, storage: StudyStorage) -> None:
        """Leaves the study to any process."""
        storage.call("releasing the study", storage.study.set_user_attr, DRIVER_ATTR, None)

    def _alive(self, driver: Mapping[str, Any]) -> bool:
        """Whether the process that `driver` names may still be driving the study."""
        if time.time() - driver["time"] >= self.timeout:
            return False
        if driver["host"] != self.record["host"]:
            return True  # its pid cannot be looked up from here
        return driver["pid"] != os.getpid() and _pid_alive(driver["pid"])
