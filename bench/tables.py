"""Writes the benchmark tables of README.md and docs/comparison.md from bench/results/*.json.

One source of numbers: every figure the README or the docs quote comes from a record
in `bench/results/`, which a bench script writes with `--json PATH` (see
`_cli.write_json`: the script, the command, the date, the machine, its results). This
script turns those records into Markdown tables and puts each between its markers in
the pages that show it:

    <!-- bench-table: NAME -->
    ...generated; edit bench/results/ and run this script, not the table...
    <!-- /bench-table -->

Usage, from the repository root:

    python bench/tables.py            # rewrite the tables
    python bench/tables.py --check    # exit 1 if a page is out of date (the test suite runs this)

To take new figures: run the bench script with `--json bench/results/<script>.json`
(the file names below), then this script. Records whose figures were copied from
`bench/README.md` before the scripts wrote JSON carry a `summary` (the figures as
published) and a `transcribed` note instead of the raw `results`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import sys
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PAGES = [ROOT / "README.md", ROOT / "docs" / "comparison.md"]
STEPS = 500  # sweep_speed.py's workload: optimizer steps per member

MARKER = re.compile(r"(<!-- bench-table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench-table -->)", re.S)


# ------------------------------------------------------------------------------ summaries

def _median(values) -> float:
    return float(statistics.median(values))


def _hyperoptax(results: dict) -> dict:
    cells = []
    for key, cell in results["summary"].items():
        n, call = key.split("/")
        cells.append({"n": int(n), "call": call, "hyperoptax_s": cell["hyperoptax_s"],
                      "jaxtune_s": cell["jaxtune_s"], "ratio": cell["ratio"]})
    return {"cells": cells}


def _memory(results: dict) -> dict:
    sizes = sorted((k for k in results["cells"] if k.isdigit()), key=int)
    rss = {n: _median(r["peak_rss_mib"] for r in results["cells"][n]) for n in sizes}
    return {"peak_rss_mib": rss, "ratio": rss[sizes[-1]] / rss[sizes[0]]}


def _sweep_speed(results: dict) -> dict:
    return {"member_steps_per_s": {
        str(n): {m: int(n) * STEPS / row[m]["run_s"] for m in ("jaxtune", "B", "C") if row.get(m)}
        for n, row in results["methods"].items()}}


def _strategies(results: dict) -> dict:
    plain = results["methods"]["plain"]
    methods = {}
    for name, row in results["methods"].items():
        methods[name] = {"accuracy_mean": statistics.fmean(row["accuracy"]),
                         "accuracy_std": statistics.pstdev(row["accuracy"]),
                         "member_steps_ratio": statistics.fmean(row["member_steps"])
                         / statistics.fmean(plain["member_steps"])}
    return {"trials": results["trials"], "steps": results["steps"], "repeats": results["repeats"],
            "methods": methods}


def _vs_optuna(results: dict) -> dict:
    rates = results["throughput"]
    return {"trials_per_s": rates, "ratio_vs_optuna": rates["jaxtune"] / rates["optuna"],
            "ratio_vs_traced": rates["jaxtune"] / rates["optuna+traced"]}


def _rates(results: dict) -> dict:
    return {"member_steps_per_s": results["member_steps_per_s"]}


def _workloads(results: dict) -> dict:
    return results["summary"]  # workloads.py writes its own


SUMMARIES: dict[str, Callable[[dict], dict]] = {
    "vs_hyperoptax.py": _hyperoptax, "memory.py": _memory, "sweep_speed.py": _sweep_speed,
    "strategies.py": _strategies, "vs_optuna.py": _vs_optuna, "multihost.py": _rates,
    "data_sources.py": _rates, "workloads.py": _workloads,
}


def load(name: str) -> dict:
    """The record `bench/results/<name>.json`, with its `summary` (computed from the
    script's raw `results` unless the record carries it)."""
    record = json.loads((RESULTS / f"{name}.json").read_text())
    if "summary" not in record:
        record["summary"] = SUMMARIES[record["script"]](record["results"])
    return record


def measured_on(record: dict) -> str:
    """'2026-11-29, 2 pinned cores of an idle 16-core machine (jax 0.11.2)'."""
    machine = record["machine"]
    where = machine.get("description") or (
        f"{machine.get('cores_used')} of {machine.get('cores')} cores of {machine.get('cpu') or 'a CPU'}"
        if machine.get("backend") == "cpu" else ", ".join(machine.get("devices", [])))
    return f"{record['date']}, {where}" + (f" (jax {machine['jax']})" if machine.get("jax") else "")


# ------------------------------------------------------------------------------ tables

def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _source(*records: dict) -> str:
    return "".join(f"`{r['command']}`: {measured_on(r)}.\n" for r in records)


def table_vs_hyperoptax() -> str:
    record = load("vs_hyperoptax")
    rows = [[c["n"], c["call"], f"{c['hyperoptax_s']:.2f} s", f"{c['jaxtune_s']:.2f} s",
             f"{c['ratio']:.2f}×"]
            for c in sorted(record["summary"]["cells"], key=lambda c: (c["n"], c["call"]))]
    return (_table(["N", "call", "hyperoptax", "jaxtune", "hyperoptax / jaxtune"], rows)
            + "\n" + _source(record))


def table_sweep_speed() -> str:
    record = load("sweep_speed")
    rates = record["summary"]["member_steps_per_s"]
    rows = [[n, f"{r['jaxtune']:,.0f}", f"{r['B']:,.0f}", f"{r['C']:,.0f}", f"{r['jaxtune'] / r['C']:.2f}×"]
            for n, r in sorted(rates.items(), key=lambda item: int(item[0]))]
    sharded = record["summary"].get("sharded_128")
    return (_table(["N", "`jt.sweep`", "B: scan per rate", "C: `jit(vmap(scan))`", "jaxtune / C"], rows)
            + "\n" + (f"`jt.sweep` sharded over 2 devices, N = 128: {sharded:,.0f} member-steps/s.\n"
                       if sharded else "") + _source(record))


def table_workloads() -> str:
    """`workloads.py`: per workload and N, member-steps/s of each way, cold and warm, and
    jaxtune's speed against the user's loop and the hand-written `jit(vmap(...))`."""
    record = load("workloads")
    rows = []
    for name, sizes in record["summary"].items():
        per_n = {n: cell for n, cell in sizes.items() if isinstance(cell, dict) and "ratios" in cell}
        for n, cell in sorted(per_n.items(), key=lambda item: int(item[0])):  # W4 has its own record
            rates, ratios = cell["member_steps_per_s"], cell["ratios"].get("jaxtune", {})
            rate = {way: f"{rates[way]['cold']:,.0f} / {rates[way]['warm']:,.0f}" if way in rates else "n/a"
                    for way in ("loop", "jaxtune", "vmap")}
            rows.append([name, n, rate["loop"], rate["jaxtune"], rate["vmap"],
                         *(f"{ratios[k]:.2f}×" if ratios.get(k) else "n/a"
                           for k in ("vs_loop_cold", "vs_loop_warm", "vs_vmap_cold", "vs_vmap_warm"))])
    return (_table(["workload", "N", "loop (cold / warm)", "`jt.sweep`", "`jit(vmap)`",
                    "vs loop, cold", "vs loop, warm", "vs vmap, cold", "vs vmap, warm"], rows)
            + "\nMember-steps/s; ratios are the baseline's time / jaxtune's (above 1: jaxtune faster).\n"
            + _source(record))


def table_summary() -> str:
    """One line per benchmark: what it compares, the figure, where and when."""
    hyper, memory, strategies, optuna, multihost, cpu, gpu = (
        load(n) for n in ["vs_hyperoptax", "memory", "strategies", "vs_optuna", "multihost",
                          "data_sources_cpu", "data_sources_h200"])
    cells = sorted(hyper["summary"]["cells"], key=lambda c: (c["n"], c["call"]))
    ratios = [c["ratio"] for c in cells]
    rss = memory["summary"]["peak_rss_mib"]
    low, high = min(rss, key=int), max(rss, key=int)
    methods = strategies["summary"]["methods"]
    hb, plain = methods["hyperband"], methods["plain"]
    hosts = multihost["summary"]["member_steps_per_s"]

    def stream(record: dict, name: str) -> str:
        r = record["summary"]["member_steps_per_s"]
        return f"{r[name] / r['in-memory arrays']:.2f}×"

    rows = [
        ["`vs_hyperoptax.py`: `jt.sweep` / hyperoptax `RandomSearch` wall-clock",
         f"hyperoptax takes {min(ratios):.2f}× to {max(ratios):.2f}× jaxtune's time in all {len(cells)} cells "
         f"(N = {', '.join(sorted({str(c['n']) for c in cells}, key=int))}; cold and warm)",
         measured_on(hyper)],
        ["`memory.py`: peak RSS against population size",
         f"{memory['summary']['ratio']:.2f}× at {int(high):,} members that at {int(low):,} "
         f"({rss[low]:,.0f} → {rss[high]:,.0f} MiB)", measured_on(memory)],
        ["`strategies.py`: Hyperband vs plain random search, same budget",
         f"accuracy {hb['accuracy_mean']:.4f} ± {hb['accuracy_std']:.4f} vs "
         f"{plain['accuracy_mean']:.4f} ± {plain['accuracy_std']:.4f} with "
         f"{hb['member_steps_ratio']:.2f}× the member-steps", measured_on(strategies)],
        ["`vs_optuna.py`: `jt.OptunaSearch` trials/s",
         f"{optuna['summary']['ratio_vs_optuna']:.0f}× Optuna's per-trial `jit` loop, "
         f"{optuna['summary']['ratio_vs_traced']:.1f}× a loop compiled once", measured_on(optuna)],
        ["`multihost.py`: 2 processes × 1 device / 1 process × 2 devices",
         f"{hosts['processes'] / hosts['devices']:.2f}× the member-steps/s", measured_on(multihost)],
        ["`data_sources.py`: a host iterator (generator) / arrays in memory",
         f"{stream(cpu, 'host iterator')} on CPU; {stream(gpu, 'host iterator')} on the GPU "
         f"({stream(gpu, 'host iterator, no prefetch')} without the background reader)",
         f"{measured_on(cpu)}; {measured_on(gpu)}"],
    ]
    return _table(["benchmark", "figure", "measured on"], rows)


TABLES: dict[str, Callable[[], str]] = {
    "summary": table_summary, "workloads": table_workloads, "vs-hyperoptax": table_vs_hyperoptax, "sweep-speed": table_sweep_speed,
}


def render(text: str) -> str:
    """`text` with every marked table regenerated."""
    def one(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise KeyError(f"unknown bench table {name!r}; known: {', '.join(TABLES)}")
        return match.group(1) + TABLES[name]() + match.group(4)

    return MARKER.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is out of date")
    args = parser.parse_args(argv)
    stale = []
    for page in PAGES:
        text = page.read_text()
        new = render(text)
        if new != text:
            stale.append(page.relative_to(ROOT).as_posix())
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run `python bench/tables.py`", file=sys.stderr)
        return 1
    print(("out of date: " if args.check else "rewrote: ") + (", ".join(stale) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
