"""What every benchmark script shares: progress lines, integer flags, tables, workers, JSON.

`--json PATH` (`add_json_option`, `write_json`) writes a script's measurements with
the machine and the date they were taken on; `bench/tables.py` turns the files kept
in `bench/results/` into the tables of README.md and docs/comparison.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any


def log(message: str) -> None:
    """A time-stamped progress line on stderr (the tables go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_ints(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive integers, e.g. "8,32,128"."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def positive(text: str) -> int:
    """An argparse type: one positive integer."""
    values = parse_ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one positive integer, got {text!r}")
    return values[0]


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: the title, a rule, left-aligned first column, right-aligned others."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "-" * len(line(headers))
    return "\n".join([title, rule, line(headers), rule, *map(line, cells), rule, ""])


def run_json_worker(command: Sequence[str], mark: str) -> tuple[int, dict | None]:
    """Runs a worker subprocess; returns its exit code and the JSON it printed after `mark`.

    The worker chooses its own device count, so a forced host device count in
    XLA_FLAGS is removed from its environment.
    """
    env = dict(os.environ)
    env["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    process = subprocess.run(list(command), stdout=subprocess.PIPE, text=True, env=env, check=False)
    lines = [line for line in process.stdout.splitlines() if line.startswith(mark)]
    return process.returncode, json.loads(lines[-1][len(mark):]) if lines else None


class CompileLog(logging.Handler):
    """Collects the names of the programs XLA compiles while it is active."""

    PATTERN = re.compile(r"Finished XLA compilation of (?:jit\()?([^\s)]+)\)? in")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PATTERN.search(record.getMessage())
        if match:
            self.names.append(match.group(1))

    def __enter__(self):
        import jax

        self._logger = logging.getLogger("jax")
        self._propagate = self._logger.propagate
        self._logger.addHandler(self)
        self._logger.propagate = False  # keep the compile log off stderr
        self._context = jax.log_compiles(True)
        self._context.__enter__()
        return self

    def __exit__(self, *exc):
        self._context.__exit__(*exc)
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate
        return False


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """`--json PATH`: write the measurements, with the machine and date, to PATH."""
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="write the measurements, with the machine and date, to PATH "
                             "(bench/tables.py reads the files kept in bench/results/)")


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores this process may use, accelerators."""
    import jax

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": platform.processor() or platform.machine(), "cores_used": cores,
            "cores": os.cpu_count(), "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "backend": jax.default_backend(), "devices": sorted({d.device_kind for d in jax.devices()}),
            "jax": jax.__version__, "python": platform.python_version()}


def write_json(path: str | None, results: Any) -> None:
    """Writes `results` to `path` (nothing when None) as `{"script", "command", "date",
    "machine", "results"}`, the record `bench/tables.py` reads."""
    if path is None:
        return
    record = {"script": os.path.basename(sys.argv[0]),
              "command": " ".join(["python", "bench/" + os.path.basename(sys.argv[0]), *sys.argv[1:]]),
              "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
              "machine": machine(), "results": results}
    with open(path, "w") as f:
        json.dump(record, f, indent=1, default=str)
