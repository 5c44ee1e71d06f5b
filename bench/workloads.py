"""The workload suite: the user's own loop, `jt.sweep` and a hand-written `jit(vmap(...))`.

The basis of the project's speed claims (issue 19): each workload written the way its
library's tutorial writes it, on data that ships with a package (definitions and
defaults in `bench/models.py`):

  W1  the digits MLP (`jaxtune.demo`), `optax.adam(lr)`;
  W2  Flax NNX's MNIST-tutorial CNN (Conv, BatchNorm, Dropout) on the 8x8 digits,
      `nnx.Optimizer(model, optax.adamw(lr, weight_decay=wd))`, lr x wd x dropout;
  W3  a 2-layer decoder-only character transformer (d_model 64, 4 heads, context 64)
      in Flax NNX on the text of `pydoc_data.topics`, adamw under warmup + cosine, lr x wd;
  W4  an architecture search, `bench/arch_search.py` (when that file exists).

Each of W1-W3 is trained three ways at N configurations, every way from the same
initial parameters on the same minibatches (jaxtune's own batch order,
`Trainer.minibatch_indices`):

  loop     the user's own loop run N times: a train step jitted once (`jax.jit`, or
           `nnx.jit` as the Flax tutorials write it) called from a Python loop, the
           optimizer built from Python floats, so every configuration traces and
           compiles its own step (and does so again when the loop is run again);
  jaxtune  `jt.sweep(..., configs=..., progress=False)`, the default chunk form (and,
           with `--forms`, each given `chunk_form=`, when `jt.sweep` takes one);
  vmap     a hand-written `jax.jit(jax.vmap(train))`, `train` a `lax.scan` over the
           steps with the hyperparameters traced: one compile per static group.

Each (workload, N) runs in fresh subprocesses with the persistent compilation caches
off (`JAXTUNE_COMPILATION_CACHE=0`, `JAX_ENABLE_COMPILATION_CACHE=false`): one runs
loop, jaxtune and vmap in turn, `jax.clear_caches()` before each (jaxtune's own program
cache holds only jaxtune's programs, so one jaxtune way per process), and each extra
chunk form gets a process of its own. *cold* is a way's first call (compiling included;
data loaded and the backend started before the clock), *warm* the same call again in
that process. Medians over `--repeats` processes. The final loss of a configuration is its mean training loss
over the last record interval (what `jt.sweep` records); configurations every way
computes identically (dropout-free) are compared member by member, the others (whose
dropout masks differ between ways) by their mean.

    python bench/workloads.py                       # W1-W3 (and W4), N = 1, 8, 32, 3 repeats
    python bench/workloads.py --quick               # N = 1, 8, few steps, one repeat
    python bench/workloads.py --workloads W2 --sizes 8 --forms scan+vmap,loop+unroll
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from typing import Any

from _cli import CompileLog, log, parse_ints, run_json_worker, table, write_json

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_SIZES = (1, 8, 32)
QUICK_SIZES = (1, 8)
WAYS = ("loop", "jaxtune", "vmap")
WORKER_MARK = "WORKLOADS_JSON "
# Every cold figure is a first compile: no compiled program may come from disk.
COLD_ENV = {"JAXTUNE_COMPILATION_CACHE": "0", "JAX_ENABLE_COMPILATION_CACHE": "false"}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The workload suite (see the module docstring).")
    parser.add_argument("--workloads", default="W1,W2,W3,W4",
                        help="comma-separated subset of W1,W2,W3,W4 (default all)")
    parser.add_argument("--sizes", type=parse_ints, default=None,
                        help="numbers of configurations N (default 1,8,32; --quick: 1,8)")
    parser.add_argument("--quick", action="store_true",
                        help="N = 1,8, each workload's quick steps, one repeat (about 2-3 min on 2 cores)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="fresh processes per measurement, median reported (default 3; --quick: 1)")
    parser.add_argument("--steps", type=int, default=None, help="steps per member for every workload "
                        "(default: each workload's own, see bench/models.py)")
    parser.add_argument("--forms", default="",
                        help="also time jt.sweep with each of these chunk_form= values, comma-separated "
                             "(e.g. measure,scan+vmap,loop+unroll), when jt.sweep takes chunk_form")
    parser.add_argument("--json", default=None, help="write every measurement and a summary to this file")
    parser.add_argument("--note", default=None,
                        help="a line kept in the JSON record, e.g. what else the machine was running")
    parser.add_argument("--worker", nargs=4, metavar=("WORKLOAD", "N", "STEPS", "WAYS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.repeats_given = args.repeats is not None  # W4 keeps its own default otherwise
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive int, got {args.repeats}")
    args.sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    args.workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - {"W1", "W2", "W3", "W4"}
    if unknown:
        parser.error(f"--workloads takes W1, W2, W3, W4; got {sorted(unknown)}")
    args.forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    return args


# ------------------------------------------------------------------------------ the worker


def _record_every(steps: int) -> int:
    from jaxtune.engine import default_eval_every

    return default_eval_every(steps)


def _batch_order(work) -> Any:
    """[steps, batch] example indices: the minibatches `jt.sweep` feeds seed 0."""
    import jaxtune as jt

    static = {} if work.static is None else {work.static: work.configs(1)[0][work.static]}
    init = work.params if work.model_state is None else (work.params, work.model_state)
    trainer = jt.Trainer(work.loss_fn, work.make_optimizer, init_params=init, data=work.data,
                         batch_size=work.batch_size, static_hparams=static, key=0)  # sweep's seed=0
    return trainer.minibatch_indices(0, 0, work.steps)


def way_loop(work, configs: list[dict], indices) -> tuple[Any, Any]:
    """The user's own loop run once per configuration.

    Each way returns `(call, final)`: `call()` does the whole work once and returns
    `(result, timing)`; `final(result)` is the final loss of each configuration."""
    record = _record_every(work.steps)

    def call():
        tails = [work.tutorial_loop(config, indices, record) for config in configs]
        return tails, {}

    def final(tails):
        import numpy as np

        return [float(np.mean([float(v) for v in tail])) for tail in tails]

    return call, final


def way_jaxtune(work, configs: list[dict], form: str | None) -> tuple[Any, Any]:
    """One `jt.sweep` call over `configs` (with `chunk_form=form` when given); its timing
    is `result.timing` (compile and run seconds, the chunk form chosen ...)."""
    import numpy as np

    import jaxtune as jt

    columns = {name: [c[name] for c in configs] for name in configs[0]}
    init = work.params if work.model_state is None else (work.params, work.model_state)
    extra = {} if form is None else {"chunk_form": form}

    def call():
        result = jt.sweep(work.loss_fn, init, work.make_optimizer, work.space, data=work.data,
                          batch_size=work.batch_size, steps=work.steps, configs=columns, seeds=1,
                          seed=0, progress=False, **extra)
        return result, {k: v for k, v in result.timing.items() if isinstance(v, (int, float, str))}

    def final(result):
        losses = np.asarray(result.train_loss)[:, -1]
        return [float(losses[_member_of(result, config)]) for config in configs]

    return call, final


def _member_of(result, config: dict) -> int:
    """The member of `result` trained with `config` (static groups may reorder them)."""
    import numpy as np

    match = np.ones(result.n_members, bool)
    for name, value in config.items():
        column = np.asarray(result.hparams[name])
        match &= (column == value) if column.dtype == object or isinstance(value, str) \
            else np.isclose(column.astype(float), value, rtol=1e-6)
    (members,) = np.nonzero(match)
    if len(members) != 1:
        raise RuntimeError(f"expected one member trained with {config}, found {len(members)}")
    return int(members[0])


def _call_loss(loss_fn, params, batch, key, model_state, static: dict):
    """`loss_fn` called the way `jt.sweep` calls it: `(loss, new_model_state)`."""
    names = inspect.signature(loss_fn).parameters
    kwargs = dict(static)
    if "key" in names:
        kwargs["key"] = key
    if "model_state" in names:
        loss, (new_state, _) = loss_fn(params, batch, model_state=model_state, **kwargs)
        return loss, new_state
    return loss_fn(params, batch, **kwargs), model_state


def _vmapped_train(work, static: dict, record: int):
    """`jit(vmap(train))`: `train` scans every step with traced hyperparameters."""
    import jax
    import optax

    def train(params, model_state, hparams, data, indices, key):
        optimizer = work.make_optimizer(**hparams)

        def step(carry, inputs):
            params, model_state, opt_state = carry
            rows, t = inputs
            batch = tuple(a[rows] for a in data)
            (loss, model_state), grads = jax.value_and_grad(
                lambda p: _call_loss(work.loss_fn, p, batch, jax.random.fold_in(key, t), model_state,
                                     static), has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), model_state, opt_state), loss

        carry = (params, model_state, optimizer.init(params))
        _, losses = jax.lax.scan(step, carry, (indices, jax.numpy.arange(indices.shape[0])))
        return losses[-record:].mean()

    return jax.jit(jax.vmap(train, in_axes=(None, None, 0, None, None, None)))


def way_vmap(work, configs: list[dict], indices) -> tuple[Any, Any]:
    """The hand-written `jit(vmap(...))`: one function per static group, called on its members."""
    import jax
    import jax.numpy as jnp

    record = _record_every(work.steps)
    groups: dict[Any, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(config.get(work.static) if work.static else None, []).append(i)
    trains = {value: _vmapped_train(work, {} if value is None else {work.static: value}, record)
              for value in groups}
    data, rows = jax.device_put(work.data), jax.device_put(indices)
    key = jax.random.key(0)

    def call():
        out = {}
        for value, members in groups.items():
            hparams = {name: jnp.asarray([configs[i][name] for i in members], jnp.float32)
                       for name in configs[0] if name != work.static}
            out[value] = trains[value](work.params, work.model_state, hparams, data, rows, key)
        return out, {}

    def final(out):
        losses = [0.0] * len(configs)
        for value, members in groups.items():
            for i, loss in zip(members, out[value].tolist()):
                losses[i] = float(loss)
        return losses

    return call, final


def _cached_batch_order(work) -> Any:
    """`_batch_order(work)`, computed once per run: the workers of one run share it
    through a file in the parent's temporary directory (`$WORKLOADS_TMP`)."""
    import numpy as np

    directory = os.environ.get("WORKLOADS_TMP")
    path = directory and pathlib.Path(directory) / f"order-{work.name}-{work.steps}.npy"
    if path and path.exists():
        return np.load(path)
    indices = _batch_order(work)
    if path:
        np.save(path, indices)
    return indices


def _measure_way(work, way: str, form: str | None, configs: list[dict], indices) -> dict:
    """One way's call twice, cold (the process's caches cleared) then warm."""
    import jax

    jax.clear_caches()
    if way == "loop":
        call, final = way_loop(work, configs, indices)
    elif way == "jaxtune":
        call, final = way_jaxtune(work, configs, form)
    else:
        call, final = way_vmap(work, configs, indices)
    out: dict[str, Any] = {}
    for label in ("cold", "warm"):
        with CompileLog() as compiled:
            start = time.perf_counter()
            result, timing = call()
            jax.block_until_ready(result if way != "jaxtune" else 0)
            out[f"{label}_s"] = time.perf_counter() - start
        out[f"{label}_compiles"] = len(compiled.names)
        out[f"{label}_timing"] = timing
    out["final_loss"] = final(result)
    return out


def worker(name: str, n: int, steps: int, labels: Sequence[str]) -> dict:
    """The ways `labels` ("loop", "jaxtune", "vmap", "jaxtune[FORM]") in this fresh process.

    jaxtune's process-wide program cache is never cleared, so a process measures at
    most one jaxtune way; the loop and vmap ways share nothing with it, and
    `jax.clear_caches()` before each way keeps JAX's own caches from carrying over.
    """
    import jax

    sys.path.insert(0, str(HERE))
    from models import WORKLOADS

    work = WORKLOADS[name](steps)
    configs = work.configs(n)
    indices = _cached_batch_order(work)
    jax.block_until_ready(jax.numpy.zeros(()))  # the backend started before the clock
    out: dict[str, Any] = {"configs": configs, "exact": [bool(work.exact(c)) for c in configs]}
    for label in labels:
        way, _, form = label.partition("[")
        try:
            out[label] = _measure_way(work, way, form.rstrip("]") or None, configs, indices)
        except Exception as err:  # the other ways are still measured; the parent reports it
            traceback.print_exc()
            out[label] = {"error": f"{type(err).__name__}: {err}"}
    return out


# ------------------------------------------------------------------------------ the parent


def _worker_runs(name: str, n: int, steps: int, labels: Sequence[str], repeats: int) -> list[dict]:
    """`repeats` fresh worker processes measuring `labels`; [] when one failed."""
    command = [sys.executable, str(HERE / "workloads.py"), "--worker", name, str(n), str(steps),
               ",".join(labels)]
    runs = []
    for _ in range(repeats):
        code, out = run_json_worker(command, WORKER_MARK)
        if code != 0 or out is None:
            log(f"  {name} N={n} {','.join(labels)}: worker failed (exit {code}); left out")
            return []
        runs.append(out)
    return runs


def _cell(runs: list[dict], label: str, n: int, steps: int) -> dict | None:
    """One way's medians over the runs, with its member-steps/s, compiles and final losses;
    None (said why) when it failed in a run."""
    mine = [r[label] for r in runs]
    errors = [m["error"] for m in mine if "error" in m]
    if errors:
        log(f"  {label:>22} N={n:<3} failed: {errors[0][:300]}")
        return None
    cell = {key: statistics.median(r[key] for r in mine) for key in ("cold_s", "warm_s")}
    cell.update({key: mine[-1][key] for key in ("cold_compiles", "warm_compiles", "final_loss",
                                                "cold_timing", "warm_timing")})
    cell.update(configs=runs[-1]["configs"], exact=runs[-1]["exact"], n=n, steps=steps,
                runs=[{k: r[k] for k in ("cold_s", "warm_s")} for r in mine],
                member_steps_per_s={c: n * steps / cell[f"{c}_s"] for c in ("cold", "warm")})
    form = cell["cold_timing"].get("chunk_form")
    log(f"  {label:>22} N={n:<3} cold {cell['cold_s']:7.2f} s  warm {cell['warm_s']:7.2f} s  "
        f"({cell['cold_compiles']}/{cell['warm_compiles']} XLA compiles)"
        + (f", chunk form {form}" if form else ""))
    return cell


def measure(name: str, n: int, steps: int, repeats: int, forms: Sequence[str]) -> dict:
    """Every way's cell for one workload and N (None for a way whose worker failed):
    the three ways in one process per repeat, each extra chunk form in its own."""
    groups = [list(WAYS), *([f"jaxtune[{form}]"] for form in forms)]
    cells: dict[str, dict | None] = {}
    for labels in groups:
        runs = _worker_runs(name, n, steps, labels, repeats)
        cells.update({label: _cell(runs, label, n, steps) if runs else None for label in labels})
    return cells


def same_work(reference: dict, other: dict) -> dict:
    """How far `other`'s final losses are from `reference`'s: the largest relative
    difference over the configurations computed identically, and the relative
    difference of the mean over the others (dropout drawn differently)."""
    exact = [i for i, e in enumerate(reference["exact"]) if e]
    rest = [i for i, e in enumerate(reference["exact"]) if not e]
    a, b = reference["final_loss"], other["final_loss"]
    out = {"exact_members": len(exact), "other_members": len(rest)}
    if exact:
        out["max_rel_diff"] = max(abs(a[i] - b[i]) / max(abs(a[i]), 1e-12) for i in exact)
    if rest:
        mean_a, mean_b = statistics.fmean(a[i] for i in rest), statistics.fmean(b[i] for i in rest)
        out["mean_rel_diff"] = abs(mean_a - mean_b) / max(abs(mean_a), 1e-12)
    return out


def _ratio(cells: dict, slower: str, faster: str, call: str) -> float | None:
    if cells.get(slower) and cells.get(faster):
        return cells[slower][f"{call}_s"] / cells[faster][f"{call}_s"]
    return None


def run_workload(name: str, args: argparse.Namespace, steps: int) -> dict:
    """Every way at every N for one workload: the cells, the ratios and the same-work check."""
    sizes = {}
    for n in args.sizes:
        cells = measure(name, n, steps, args.repeats, args.forms)
        summary = {}
        for label, cell in cells.items():
            if label.startswith("jaxtune") and cell:
                summary[label] = {
                    f"vs_{base}_{call}": _ratio(cells, base, label, call)
                    for base in ("loop", "vmap") for call in ("cold", "warm")}
                summary[label].update({f"same_work_vs_{base}": same_work(cell, cells[base])
                                       for base in ("loop", "vmap") if cells.get(base)})
        sizes[str(n)] = {"cells": cells, "summary": summary}
    return {"steps": steps, "sizes": sizes}


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def print_workload(name: str, record: dict) -> None:
    """The timing table and the ratio table of one workload."""
    rows, ratios = [], []
    for n, size in record["sizes"].items():
        for label, cell in size["cells"].items():
            if cell is None:
                rows.append([n, label, "failed", "", "", "", "", ""])
                continue
            rates = cell["member_steps_per_s"]
            rows.append([n, label, f"{cell['cold_s']:.2f}", f"{cell['warm_s']:.2f}",
                         f"{rates['cold']:,.0f}", f"{rates['warm']:,.0f}",
                         f"{cell['cold_compiles']}/{cell['warm_compiles']}",
                         f"{statistics.fmean(cell['final_loss']):.4f}"])
        for label, s in size["summary"].items():
            loop, vmap = s.get("same_work_vs_loop", {}), s.get("same_work_vs_vmap", {})
            ratios.append([n, label, _fmt(s["vs_loop_cold"], suffix="x"), _fmt(s["vs_loop_warm"], suffix="x"),
                           _fmt(s["vs_vmap_cold"], suffix="x"), _fmt(s["vs_vmap_warm"], suffix="x"),
                           _fmt(loop.get("max_rel_diff"), ".1e"), _fmt(vmap.get("max_rel_diff"), ".1e"),
                           _fmt(loop.get("mean_rel_diff"), ".1e")])
    print(table(f"{name}, {record['steps']} steps per member (seconds: medians; compiles: XLA programs "
                "compiled in the cold/warm call)",
                ["N", "way", "cold s", "warm s", "cold m-steps/s", "warm m-steps/s", "compiles",
                 "mean final loss"], rows))
    print(table(f"{name}: speed ratios (time of the baseline / time of jaxtune; >1: jaxtune faster) "
                "and the same-work check (relative differences of final losses)",
                ["N", "way", "vs loop cold", "vs loop warm", "vs vmap cold", "vs vmap warm",
                 "max d exact (loop)", "max d exact (vmap)", "d mean dropout (loop)"], ratios))


def summary(records: dict) -> dict:
    """Per workload and N: each way's cold and warm member-steps/s and jaxtune's ratios."""
    out = {}
    for name, record in records.items():
        if "sizes" not in record:
            out[name] = record
            continue
        out[name] = {n: {"member_steps_per_s": {label: cell["member_steps_per_s"]
                                                for label, cell in size["cells"].items() if cell},
                         "chunk_form": {label: cell["cold_timing"].get("chunk_form")
                                        for label, cell in size["cells"].items()
                                        if cell and label.startswith("jaxtune")},
                         "ratios": {label: {k: v for k, v in s.items() if k.startswith("vs_")}
                                    for label, s in size["summary"].items()}}
                     for n, size in record["sizes"].items()}
    return out


# Issue 19's targets: jaxtune's speed over the user's loop run N times (cold and warm).
TARGETS = {("W1", 8): 1.5, ("W3", 8): 1.5, ("W2", 8): 1.2, ("W1", 1): 0.9, ("W2", 1): 0.9, ("W3", 1): 0.9}


def targets(records: dict) -> list[dict]:
    """PASS/MISS (n/a where not measured) for each target of `TARGETS`, cold and warm."""
    rows = []
    for (name, n), goal in TARGETS.items():
        if name not in records:
            continue
        ratios = records.get(name, {}).get("sizes", {}).get(str(n), {}).get("summary", {}).get("jaxtune", {})
        for call in ("cold", "warm"):
            ratio = ratios.get(f"vs_loop_{call}")
            rows.append({"workload": name, "n": n, "call": call, "target": goal, "ratio": ratio,
                         "verdict": "n/a" if ratio is None else ("PASS" if ratio >= goal else "MISS")})
    return rows


def print_targets(rows: list[dict]) -> None:
    print(table("targets (issue 19): jaxtune's speed over the user's loop, measured side by side",
                ["workload", "N", "call", "target", "jaxtune / loop", "verdict"],
                [[r["workload"], r["n"], r["call"], f">= {r['target']}x", _fmt(r["ratio"], suffix="x"),
                  r["verdict"]] for r in rows]))


def run_w4(args: argparse.Namespace) -> dict | None:
    """W4 through `bench/arch_search.py`'s `run(argv)`, or None (said why) when it is absent."""
    if not (HERE / "arch_search.py").exists():
        log("W4 (architecture search) left out: bench/arch_search.py does not exist yet")
        return None
    sys.path.insert(0, str(HERE))
    import arch_search

    argv = (["--quick"] if args.quick else []) + (["--repeats", str(args.repeats)] if args.repeats_given else [])
    log(f"W4: bench/arch_search.py {' '.join(argv)}")
    return arch_search.run(argv)


def _chunk_form_supported() -> bool:
    import jaxtune as jt

    return "chunk_form" in inspect.signature(jt.sweep).parameters


def _checked_forms(forms: list[str]) -> list[str]:
    """`--forms`, if this `jt.sweep` takes `chunk_form=` (else none, said so); exits
    naming the valid forms when one is not among them."""
    if forms and not _chunk_form_supported():
        log(f"--forms {','.join(forms)} ignored: this jt.sweep takes no chunk_form= argument")
        return []
    if forms:
        from jaxtune.engine.forms import CHUNK_FORMS

        unknown = [form for form in forms if form not in CHUNK_FORMS]
        if unknown:
            sys.exit(f"--forms: {', '.join(unknown)} not among jt.sweep's chunk forms "
                     f"({', '.join(CHUNK_FORMS)})")
    return forms


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every workload of `--workloads`, tables printed as each finishes."""
    sys.path.insert(0, str(HERE))
    from models import DEFAULTS

    records: dict[str, Any] = {}
    for name in args.workloads:
        if name == "W4":
            w4 = run_w4(args)
            if w4 is not None:
                records[name] = w4
            continue
        steps = args.steps or DEFAULTS[name]["quick_steps" if args.quick else "steps"]
        log(f"{name}: N = {','.join(map(str, args.sizes))}, {steps} steps, {args.repeats} repeat(s)")
        records[name] = run_workload(name, args, steps)
        print_workload(name, records[name])
    return records


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.worker:
        name, n, steps, labels = args.worker
        out = worker(name, int(n), int(steps), labels.split(","))
        print(WORKER_MARK + json.dumps(out), flush=True)
        return
    args.forms = _checked_forms(args.forms)
    os.environ.update(COLD_ENV)  # inherited by every worker
    with tempfile.TemporaryDirectory(prefix="workloads-") as shared:
        os.environ["WORKLOADS_TMP"] = shared  # the batch order, computed by the first worker
        records = run_all(args)
    checked = targets(records)
    print_targets(checked)
    write_json(args.json, {"note": args.note, "sizes": list(args.sizes), "repeats": args.repeats,
                           "forms": args.forms, "workloads": records,
                           "summary": summary(records), "targets": checked})


if __name__ == "__main__":
    main()
