"""Command line: `jaxtune demo` (also `python -m jaxtune demo`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxtune",
        description="Hyperparameter sweeps for JAX: a whole population in one compiled program.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="sweep AdamW learning rate and weight decay for an MLP on the bundled digits data",
        description=(
            "Sweep AdamW learning rate and weight decay for an MLP (64-128-128-10) on "
            "scikit-learn's bundled digits data (nothing is downloaded); print the top "
            "configurations and write the plot to a PNG."
        ),
    )
    demo.add_argument("--trials", type=int, default=32, help="configurations (default: 32)")
    demo.add_argument("--seeds", type=int, default=2, help="seeds per configuration (default: 2)")
    demo.add_argument("--steps", type=int, default=500, help="steps per member (default: 500)")
    demo.add_argument("--batch-size", type=int, default=128, help="default: 128")
    demo.add_argument("--sampler", default="sobol", choices=["random", "sobol", "halton", "grid"],
                      help="how configurations are drawn (default: sobol)")
    demo.add_argument("--seed", type=int, default=0, help="root seed (default: 0)")
    demo.add_argument("--top", type=int, default=5, help="rows of the table (default: 5)")
    demo.add_argument("--output", default="jaxtune_demo.png",
                      help="where to write the plot (default: jaxtune_demo.png)")
    demo.add_argument("--save", default=None, metavar="PATH",
                      help="also save the full result (.npz) to PATH")
    demo.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                      help="CPU cores to shard the members over (default: all)")
    demo.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    demo.add_argument("--compilation-cache", default=None, metavar="DIR",
                      help="keep compiled programs here, so the next run skips compiling "
                           "(default: $JAXTUNE_CACHE_DIR, else $XDG_CACHE_HOME/jaxtune/xla, "
                           "else ~/.cache/jaxtune/xla)")
    demo.add_argument("--no-compilation-cache", action="store_true",
                      help="compile from scratch, keeping nothing on disk")
    demo.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                      help="join a multi-process run coordinated by process 0 at HOST:PORT "
                           "(with --num-processes and --process-id; on SLURM pass "
                           "--coordinator auto and nothing else)")
    demo.add_argument("--num-processes", type=int, default=None, metavar="N",
                      help="processes in the multi-process run")
    demo.add_argument("--process-id", type=int, default=None, metavar="I",
                      help="this process's rank, 0 ... N-1")
    demo.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                      help="checkpoint at record points; the same command again resumes")
    demo.add_argument("--optuna", action="store_true",
                      help="search with Optuna (TPE, constant liar, median pruning) instead of "
                           "--sampler; needs `pip install 'jaxtune[optuna]'`")
    demo.add_argument("--storage", default=None, metavar="URL",
                      help="with --optuna: the study's storage, e.g. sqlite:///study.db; the same "
                           "command again continues the study (default: in memory)")
    demo.add_argument("--study-name", default="jaxtune-demo", metavar="NAME",
                      help="with --optuna: the study's name (default: jaxtune-demo)")
    return parser


def _demo(args: argparse.Namespace) -> int:
    """`jaxtune demo`: the flags checked, JAX started, the sweep run and reported."""
    refused = _refused_flags(args)
    if refused:
        print(f"jaxtune demo: {refused}", file=sys.stderr)
        return 2

    import jaxtune as jt

    _start_jax(args)
    import jax

    devices = jax.devices()
    main = jt.distributed.is_main_process()
    if main:
        processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
        print(f"jaxtune demo: {args.trials} configurations x {args.seeds} seeds, "
              f"{args.steps} steps, on {len(devices)} {devices[0].platform} device(s){processes}")
    outcome = _run_sweep(args)
    if isinstance(outcome, int):
        return outcome
    if main:  # every process holds the same result; process 0 reports it
        _report(args, *outcome)
    return 0


def _refused_flags(args: argparse.Namespace) -> str | None:
    """Why the flags cannot run, checked before JAX starts; None when they can."""
    for name in ("trials", "seeds", "steps", "batch_size", "top", "cpu_devices"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"--{name.replace('_', '-')} must be positive"
    if args.storage is not None and not args.optuna:
        return "--storage needs --optuna"
    return None


def _start_jax(args: argparse.Namespace) -> None:
    """Devices, the multi-process run and the compilation cache, as the flags say."""
    import jaxtune as jt

    # Must precede any JAX computation: JAX fixes its device list when it starts.
    if args.coordinator is not None:
        # One device per process unless asked: the processes share this machine's cores.
        jt.use_cpu_devices(args.cpu_devices or 1)
        auto = args.coordinator == "auto"
        jt.distributed.initialize(None if auto else args.coordinator,
                                  args.num_processes, args.process_id)
    else:
        jt.use_cpu_devices(args.cpu_devices)
    if args.no_compilation_cache:
        os.environ["JAXTUNE_COMPILATION_CACHE"] = "0"  # `jt.sweep` would turn it on
    else:
        jt.enable_compilation_cache(args.compilation_cache)


def _run_sweep(args: argparse.Namespace) -> tuple[Any, Any, float] | int:
    """`(result, Optuna search or None, seconds taken)`, or the exit code of a sweep that
    did not finish."""
    import jaxtune as jt
    from jaxtune.demo import digits_sweep

    start = time.perf_counter()
    extra, search = {}, None
    if args.checkpoint_dir:
        extra["checkpoint_dir"] = args.checkpoint_dir
    if args.optuna:
        try:
            extra["strategy"] = search = jt.OptunaSearch(
                storage=args.storage, study_name=args.study_name, trials=args.trials,
                seed=args.seed)
        except ImportError as error:
            print(f"jaxtune demo: {error}", file=sys.stderr)
            return 2
    try:
        result = digits_sweep(
            trials=args.trials, seeds=args.seeds, steps=args.steps, batch_size=args.batch_size,
            sampler=args.sampler, seed=args.seed, progress=not args.no_progress, **extra,
        )
    except jt.SweepInterrupted as interrupted:
        partial = interrupted.result
        print(f"jaxtune demo: interrupted; {int((partial.status != 'running').sum())} of "
              f"{partial.n_members} members had finished"
              + ("; run the same command again to resume" if args.checkpoint_dir else ""),
              file=sys.stderr)
        return 130
    except ValueError as error:
        if not args.optuna:
            raise
        print(f"jaxtune demo: {error}", file=sys.stderr)  # the study: storage, direction...
        return 2
    return result, search, time.perf_counter() - start


def _report(args: argparse.Namespace, result: Any, search: Any, elapsed: float) -> None:
    """The top configurations, the timing, the study, the plot and the saved result."""
    import pandas as pd

    with pd.option_context("display.width", 120, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        print(result.top(args.top).to_string(index=False))
    print(f"\nbest: {result.best}")
    timing = result.timing
    print(f"total {elapsed:.1f} s (compile {timing['compile_s']:.1f} s, "
          f"{timing['member_steps_per_s']:,.0f} member-steps/s); "
          f"{int(result.diverged.sum())} of {result.n_members} members diverged")
    if search is not None:
        states = [t.state.name for t in search.study.trials]
        print(f"study {args.study_name!r}"
              + (f" in {args.storage}" if args.storage else "") + f": {len(states)} trials ("
              + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) + ")")
    result.plot(path=args.output)
    print(f"plot written to {args.output}")
    if args.save:
        result.save(args.save)
        print(f"result saved to {args.save}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jaxtune` console script."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    _parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
