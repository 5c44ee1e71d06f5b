"""What every benchmark script shares: progress lines on stderr and integer flags."""

from __future__ import annotations

import argparse
import sys
import time


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
