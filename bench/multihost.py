"""The network path's overhead: 1 process x 2 devices against 2 processes x 1 device.

Workload: the demo MLP (64-128-128-10) on the digits training split, batch 128,
Adam, N learning rates (default 128), one seed, `--steps` steps (default 200),
evaluated every 50 steps. Both layouts shard the same members over 2 CPU devices;
the 2-process run goes through `jax.distributed` on localhost (gloo collectives),
so it pays for gathering losses and metrics across processes at every record
point. Each run is a fresh process (or pair); the figure is the median over
`--repeats` runs of `timing["member_steps_per_s"]` (compile time excluded).

    python bench/multihost.py                 # N = 128
    python bench/multihost.py --quick         # N = 32, fewer steps
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from _cli import add_json_option, write_json

WORKER = r"""
import json, sys
import jax
layout, n, steps, port, rank = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
import jaxtune as jt
if layout == "processes":
    jt.use_cpu_devices(1)
    jt.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=rank)
else:
    jt.use_cpu_devices(2)
import numpy as np, optax
from jaxtune.demo import cross_entropy, mlp_init
data = jt.load_digits()
lrs = np.geomspace(1e-4, 1e-1, n).astype(np.float32)
result = jt.sweep(cross_entropy, mlp_init, lambda learning_rate: optax.adam(learning_rate),
                  jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1)),
                  configs={"learning_rate": lrs}, data=(data.x_train, data.y_train),
                  batch_size=128, steps=steps, eval_every=50, progress=False, keep_params=False)
if rank == 0:
    print(json.dumps(result.timing))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run(layout: str, n: int, steps: int) -> dict:
    env = {**os.environ, "XLA_FLAGS": ""}
    port = str(free_port())
    ranks = range(2) if layout == "processes" else range(1)
    processes = [subprocess.Popen([sys.executable, "-c", WORKER, layout, str(n), str(steps), port,
                                   str(rank)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for rank in ranks]
    outputs = [p.communicate(timeout=1200) for p in processes]
    for p, (_, err) in zip(processes, outputs):
        if p.returncode:
            raise RuntimeError(f"{layout} worker failed:\n{err[-2000:]}")
    return json.loads(outputs[0][0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    add_json_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.members, args.steps, args.repeats = 32, 100, 1
    start = time.perf_counter()
    rows = {}
    for layout in ("devices", "processes"):
        timings = [run(layout, args.members, args.steps) for _ in range(args.repeats)]
        rows[layout] = (statistics.median(t["member_steps_per_s"] for t in timings),
                        statistics.median(t["compile_s"] for t in timings),
                        statistics.median(t["run_s"] for t in timings))
        print(f"[{time.strftime('%H:%M:%S')}] {layout}: {rows[layout][0]:,.0f} member-steps/s",
              file=sys.stderr)
    print(f"N={args.members} members x {args.steps} steps, digits MLP, Adam, 2 CPU devices; "
          f"medians over {args.repeats} run(s); load average {os.getloadavg()[0]:.2f}")
    print(f"{'layout':<28}{'member-steps/s':>16}{'run_s':>8}{'compile_s':>11}")
    names = {"devices": "1 process x 2 devices", "processes": "2 processes x 1 device"}
    for layout, (rate, compile_s, run_s) in rows.items():
        print(f"{names[layout]:<28}{rate:>16,.0f}{run_s:>8.2f}{compile_s:>11.2f}")
    ratio = rows["processes"][0] / rows["devices"][0]
    print(f"2 processes / 1 process throughput: {ratio:.2f}x "
          f"(wall time {time.perf_counter() - start:.0f} s)")
    write_json(args.json, {"members": args.members, "steps": args.steps, "repeats": args.repeats,
                           "member_steps_per_s": {k: v[0] for k, v in rows.items()}, "ratio": ratio})


if __name__ == "__main__":
    main()
