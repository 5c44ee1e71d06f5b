"""`jt.OptunaSearch` against a real Optuna study in a SQLite file.

Every sweep here trains the same tiny linear model with the same population shapes,
so the process compiles its programs once and the later tests reuse them.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import jax.numpy as jnp
import numpy as np
import optax
import optuna
import pytest

import jaxtune as jt
from jaxtune.integrations.optuna import library
from jaxtune.integrations.optuna.distributions import distributions, space_values, suggest

# `TPESampler(constant_liar=True)` is marked experimental in Optuna 4.x (not in 5.x).
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

optuna.logging.set_verbosity(optuna.logging.WARNING)

STEPS, EVAL_EVERY, SEEDS = 30, 10, 2
X = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
DATA = (X, 3 * X)


def loss_fn(w, batch):
    return jnp.mean((batch[0] @ w - batch[1]) ** 2)


def make_optimizer(learning_rate, momentum, nesterov_steps, width):
    del nesterov_steps, width  # in the space only to exercise every distribution
    return optax.sgd(learning_rate, momentum)


SPACE = jt.Space(
    learning_rate=jt.loguniform(1e-4, 1.0),
    momentum=jt.uniform(0.0, 0.5),
    nesterov_steps=jt.randint(1, 3),
    width=jt.fixed(8),
)


def run(strategy, trials, **kwargs):
    return jt.sweep(loss_fn, jnp.zeros((1, 1)), make_optimizer, SPACE, data=DATA,
                    eval_data=DATA, batch_size=16, steps=STEPS, eval_every=EVAL_EVERY,
                    trials=trials, seeds=SEEDS, progress=False, strategy=strategy, **kwargs)


def sqlite_study(tmp_path, pruner=None, name="s", direction="minimize"):
    return optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'study.db'}", study_name=name, direction=direction,
        sampler=optuna.samplers.TPESampler(constant_liar=True, seed=0), pruner=pruner,
        load_if_exists=True)


def reloaded(tmp_path, name="s"):
    """The study as the database holds it, read by a fresh storage connection."""
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'study.db'}")


def test_trials_params_values_and_intermediate_values_are_in_the_database(tmp_path):
    search = jt.OptunaSearch(sqlite_study(tmp_path, optuna.pruners.NopPruner()), trials=6,
                             concurrent=2)
    result = run(search, trials=6)
    study = reloaded(tmp_path)
    assert len(study.trials) == 6
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    numbers = search.trial_numbers
    assert sorted(numbers) == list(range(6)) and sorted(numbers.values()) == list(range(6))
    curve = result.mean_over_seeds("eval_loss")  # [trials, C], rows in trial order
    for trial, number in numbers.items():
        frozen = study.trials[number]
        assert frozen.user_attrs["jaxtune_trial"] == trial
        members = np.flatnonzero(result.trial == trial)
        for name in ("learning_rate", "momentum"):
            np.testing.assert_allclose(result.hparams[name][members], frozen.params[name],
                                       rtol=1e-6)
        assert np.all(result.hparams["nesterov_steps"][members] == frozen.params[
            "nesterov_steps"])
        assert "width" not in frozen.params  # fixed: not asked
        assert sorted(frozen.intermediate_values) == [10, 20, 30]
        np.testing.assert_allclose([frozen.intermediate_values[s] for s in (10, 20, 30)],
                                   curve[trial], rtol=1e-6)
        np.testing.assert_allclose(frozen.value, curve[trial, -1], rtol=1e-6)
    np.testing.assert_array_equal(search.member_numbers(result),
                                  [numbers[t] for t in result.trial])


def test_result_table_matches_trials_dataframe(tmp_path):
    search = jt.OptunaSearch(sqlite_study(tmp_path, optuna.pruners.ThresholdPruner(upper=1.0)),
                             trials=8, concurrent=2)
    result = run(search, trials=8)
    summary = result.summary("eval_loss").sort_values("trial").reset_index(drop=True)
    frame = reloaded(tmp_path).trials_dataframe().set_index("number")
    frame = frame.loc[[search.trial_numbers[t] for t in summary["trial"]]]
    np.testing.assert_allclose(summary["learning_rate"], frame["params_learning_rate"],
                               rtol=1e-6)
    states = {"completed": "COMPLETE", "stopped": "PRUNED", "diverged": "FAIL"}
    assert [states[s] for s in summary["status"]] == list(frame["state"])
    done = (frame["state"] == "COMPLETE").to_numpy()
    np.testing.assert_allclose(summary["eval_loss_mean"][done], frame["value"][done],
                               rtol=1e-6)


def test_pruned_trials_are_marked_and_their_slots_take_new_trials(tmp_path):
    # A loss above 1.0 after 10 steps is pruned: slow learning rates are (the loss starts
    # at 3, 1e-4 barely moves it), fast ones are not.
    search = jt.OptunaSearch(sqlite_study(tmp_path, optuna.pruners.ThresholdPruner(upper=1.0)),
                             trials=8, concurrent=2)
    result = run(search, trials=8)
    study = reloaded(tmp_path)
    states = {t.number: t.state for t in study.trials}
    pruned = [t for t, n in search.trial_numbers.items()
              if states[n] == optuna.trial.TrialState.PRUNED]
    assert pruned, "no trial was pruned; the test's threshold no longer separates trials"
    assert len(study.trials) == 8 and result.n_trials == 8
    for trial in pruned:
        members = np.flatnonzero(result.trial == trial)
        assert np.all(result.status[members] == "stopped")
        assert np.all(result.steps_trained[members] < STEPS)
        number = search.trial_numbers[trial]
        assert max(study.trials[number].intermediate_values) == result.steps_trained[
            members][0]
    # Two trials at a time: every trial after the first two entered a freed slot.
    assert len(states) == 8 > search.concurrent


def test_study_created_from_a_storage_url_uses_the_sweeps_mode(tmp_path):
    url = f"sqlite:///{tmp_path / 'made.db'}"
    search = jt.OptunaSearch(storage=url, study_name="made", trials=4, concurrent=2, seed=1)
    run(search, trials=4)
    study = optuna.load_study(study_name="made", storage=url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert len(study.trials) == 4
    assert isinstance(search.study.sampler, optuna.samplers.TPESampler)


CRASHING_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    import jaxtune as jt
    jt.enable_compilation_cache()
    import test_optuna as t

    class Crash(jt.OptunaSearch):
        def decide(self, search, report):
            decision = super().decide(search, report)
            finished = sum(f.state.is_finished() for f in self.study.get_trials())
            if finished >= 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return decision

    import pathlib
    t.run(Crash(t.sqlite_study(pathlib.Path({path!r})), trials=6, concurrent=2), trials=6)
""")


def test_kill_9_then_the_same_call_continues_the_study(tmp_path):
    script = CRASHING_RUN.format(tests=os.path.dirname(__file__), path=str(tmp_path))
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             check=False, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    before = {t.number: t for t in reloaded(tmp_path).trials}
    running = [n for n, t in before.items() if t.state == optuna.trial.TrialState.RUNNING]
    finished = {n: t.value for n, t in before.items() if t.state.is_finished()}
    assert running and len(finished) >= 3

    search = jt.OptunaSearch(sqlite_study(tmp_path), trials=6, concurrent=2)
    result = run(search, trials=6)
    after = {t.number: t for t in reloaded(tmp_path).trials}
    for number in running:  # interrupted: failed, flagged, not counted
        assert after[number].state == optuna.trial.TrialState.FAIL
        assert after[number].user_attrs["jaxtune_interrupted"] is True
    for number, value in finished.items():  # kept as they were
        assert after[number].value == value
    counted = [t for t in after.values() if t.state in (optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED)]
    assert len(counted) == 6  # nothing counted twice, nothing missing
    assert result.n_trials == 6 - len(finished)  # only the missing trials were trained
    assert set(search.trial_numbers.values()).isdisjoint(before)

    with pytest.raises(ValueError, match="already holds 6 finished trials"):
        run(jt.OptunaSearch(sqlite_study(tmp_path), trials=6, concurrent=2), trials=6)


# -- what the sampler learns from, and what it is told ----------------------------------


def test_by_default_later_trials_are_asked_knowing_earlier_results(tmp_path):
    search = jt.OptunaSearch(sqlite_study(tmp_path, optuna.pruners.NopPruner()), trials=16)
    run(search, trials=16)
    trials = reloaded(tmp_path).trials
    known = [sum(t.datetime_complete <= u.datetime_start for t in trials) for u in trials]
    # TPE draws from its model once 10 trials are told (`n_startup_trials`): asking all 16
    # before any is told would make it random search.
    assert sum(k >= 10 for k in known) >= 4, known
    assert max(known) < 16 and min(known) == 0


def eval_with_step(params, data, step):
    """The eval loss, plus 10 at the last record point (a curve whose best is not its last
    value), and the member's step as a metric."""
    loss = loss_fn(params, data)
    return {"eval_loss": loss + jnp.where(step == STEPS, 10.0, 0.0),
            "at": step.astype(jnp.float32)}


def test_eval_fn_receives_each_members_step():
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    result = run(jt.OptunaSearch(study, trials=4, concurrent=2), trials=4,
                 eval_fn=eval_with_step)
    np.testing.assert_array_equal(result.metrics["at"],
                                  np.broadcast_to([10.0, 20.0, 30.0], (8, 3)))


@pytest.mark.parametrize("value", ["last", "best"])
def test_the_value_told_is_the_last_or_the_best_record(value):
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    run(jt.OptunaSearch(study, trials=4, concurrent=2, value=value), trials=4,
        eval_fn=eval_with_step)
    for frozen in study.trials:
        curve = [frozen.intermediate_values[s] for s in (10, 20, 30)]
        assert min(curve) < 10 <= curve[-1]  # the last record is the worst
        assert frozen.value == (min(curve) if value == "best" else curve[-1])


def test_every_dimension_is_asked_from_optuna_and_read_back_as_the_space_gives_it():
    space = jt.Space(act=jt.choice(["relu", None, (1, 2)]), n=jt.randint(1, 3),
                     lr=jt.loguniform(1e-3, 1.0), width=jt.fixed(8))
    asked = distributions(space)
    assert asked["act"].choices == ("relu", None, "(1, 2)")  # a tuple goes in as its repr
    assert (asked["n"].low, asked["n"].high) == (1, 2)  # randint's `high` is excluded
    assert asked["lr"].log and "width" not in asked
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(40):
        trial = study.ask()
        for name, distribution in asked.items():
            suggest(trial, name, distribution)
        assert trial.distributions == asked
        drawn.append(space_values(space, trial.params))
    assert {d["act"] for d in drawn} == {"relu", None, (1, 2)}
    assert {d["n"] for d in drawn} == {1, 2}
    assert all(d["width"] == 8 and 1e-3 <= d["lr"] <= 1.0 for d in drawn)


def test_a_static_randint_is_asked_as_an_int_and_read_back_when_the_study_resumes(tmp_path):
    def init(key, width):
        return {"w": jnp.zeros((1, width)), "v": jnp.full((width, 1), 1.0 / width)}

    def loss(params, batch):
        x, y = batch
        return jnp.mean((x @ params["w"] @ params["v"] - y) ** 2)

    space = jt.Space(learning_rate=jt.loguniform(1e-2, 1.0),
                     width=jt.randint(2, 4, static=True))
    asked = optuna.distributions.IntDistribution(2, 3)  # ordered, not a categorical
    assert distributions(space)["width"] == asked

    def run_static(trials):
        search = jt.OptunaSearch(sqlite_study(tmp_path), trials=trials, concurrent=2)
        result = jt.sweep(loss, init, lambda learning_rate: optax.sgd(learning_rate), space,
                          data=DATA, batch_size=16, steps=10, eval_every=10, trials=trials,
                          seeds=1, progress=False, strategy=search)
        return search, result

    run_static(3)
    search, result = run_static(5)  # the study resumed: two more trials
    study = reloaded(tmp_path)
    assert len(study.trials) == 5
    assert all(frozen.distributions["width"] == asked for frozen in study.trials)
    for trial, number in search.trial_numbers.items():
        width = study.trials[number].params["width"]
        assert [type(w) for w in result.hparams["width"][result.trial == trial]] == [int]
        assert result.hparams["width"][result.trial == trial][0] == width
    read = [space_values(space, frozen.params)["width"] for frozen in study.trials]
    assert all(type(w) is int and 2 <= w <= 3 for w in read)
    # A float read back (a trials_dataframe column holding a NaN is float64) is an int again.
    assert type(space_values(space, {"learning_rate": 0.1, "width": 3.0})["width"]) is int


# -- bad input, each refused before anything compiles ------------------------------------


def test_study_direction_must_match_mode(tmp_path):
    study = sqlite_study(tmp_path, direction="maximize")
    with pytest.raises(ValueError, match=r"direction is 'maximize' but `mode`='min'.*"
                                         r"direction='minimize', or pass mode='max'"):
        run(jt.OptunaSearch(study, trials=4, concurrent=2), trials=4)


def test_study_with_other_distributions_is_refused(tmp_path):
    study = sqlite_study(tmp_path)
    study.add_trial(optuna.trial.create_trial(
        params={"learning_rate": 0.5},
        distributions={"learning_rate": optuna.distributions.FloatDistribution(0.1, 2.0)},
        value=1.0))
    with pytest.raises(ValueError, match=r"trial 0 drew `learning_rate` from "
                                         r"FloatDistribution\(.*new `study_name`"):
        run(jt.OptunaSearch(study, trials=4, concurrent=2), trials=4)


def test_storage_that_cannot_be_opened_is_named(tmp_path):
    url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'study.db'}"
    with pytest.raises(ValueError, match=r"could not open the study in `storage`="):
        run(jt.OptunaSearch(storage=url, trials=4, concurrent=2), trials=4)


def test_multi_objective_study_is_refused():
    study = optuna.create_study(directions=["minimize", "minimize"])
    with pytest.raises(ValueError, match="2 objectives"):
        run(jt.OptunaSearch(study, trials=4), trials=4)


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="`study` must be an optuna.Study"):
        jt.OptunaSearch("sqlite:///x.db")
    with pytest.raises(ValueError, match="`concurrent` must be a positive int"):
        jt.OptunaSearch(concurrent=0)
    with pytest.raises(ValueError, match="either `study` or the arguments"):
        jt.OptunaSearch(optuna.create_study(), storage="sqlite:///x.db")
    with pytest.raises(ValueError, match=r"`value` must be one of 'last', 'best', got "
                                         r"value='mean'"):
        jt.OptunaSearch(value="mean")


def test_without_optuna_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` sees uninstalled
    with pytest.raises(ImportError, match=r"pip install 'jaxtune\[optuna\]'"):
        jt.OptunaSearch()


def test_the_private_optuna_names_jaxtune_reads_are_there(tmp_path):
    # Optuna has no public way to a study's storage, nor to the URL behind the cache it
    # wraps an RDBStorage in; library.py reads both, checked against CHECKED_VERSIONS.
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url)
    checked = f"(jaxtune checked Optuna {', '.join(library.CHECKED_VERSIONS)})"
    assert hasattr(study, "_storage"), (
        f"Optuna {optuna.__version__} has no `Study._storage` {checked}: update "
        "study_storage() in jaxtune/integrations/optuna/library.py and the pin in "
        "pyproject.toml.")
    assert library.study_storage(study) is study._storage
    assert isinstance(library.study_storage(study), optuna.storages.BaseStorage)
    assert getattr(library.storage_backend(study._storage), "url", None) == url, (
        f"Optuna {optuna.__version__} no longer keeps an RDBStorage as "
        f"`_CachedStorage._backend` {checked}: update storage_backend() in "
        "jaxtune/integrations/optuna/library.py and the pin in pyproject.toml.")


def test_import_jaxtune_does_not_import_optuna():
    code = "import sys, jaxtune; sys.exit('optuna' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=120).returncode == 0


class _StopAfterTwoDecisions(jt.OptunaSearch):
    """Presses Ctrl-C at its second decision: the sweep checkpoints and stops there."""

    decisions = 0

    def decide(self, search, report):
        type(self).decisions += 1
        if type(self).decisions == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return super().decide(search, report)


def test_checkpointed_sweep_resumes_with_the_strategys_trials(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    with pytest.raises(jt.SweepInterrupted):
        run(_StopAfterTwoDecisions(sqlite_study(tmp_path), trials=6, concurrent=2), trials=6,
            checkpoint_dir=checkpoint)
    asked_before = {t.number for t in reloaded(tmp_path).trials}
    # The same class resumes (a checkpoint names its strategy's class); past its second
    # decision it presses Ctrl-C no more.
    search = _StopAfterTwoDecisions(sqlite_study(tmp_path), trials=6, concurrent=2)
    result = run(search, trials=6, checkpoint_dir=checkpoint)
    trials = reloaded(tmp_path).trials
    assert result.n_trials == 6
    assert asked_before <= set(search.trial_numbers.values())  # the restored trials continued
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 6


# -- the storage: locked by another writer, or driven by another process ------------------


def quick_lock_study(tmp_path):
    """The study in SQLite, each statement waiting at most 50 ms for a lock (not 5 s)."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}",
                                         engine_kwargs={"connect_args": {"timeout": 0.05}})
    return optuna.create_study(storage=storage, study_name="s",
                               sampler=optuna.samplers.TPESampler(constant_liar=True, seed=0),
                               pruner=optuna.pruners.NopPruner())


def locking_at_second_decision(path, hold):
    """An OptunaSearch that, at its second decision, has another connection take the SQLite
    file's write lock (as a second writer would) and hold it `hold` seconds (None: on)."""
    lock = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    release = threading.Timer(hold or 0, lambda: lock.execute("ROLLBACK"))

    class Locking(jt.OptunaSearch):
        decisions = 0

        def decide(self, search, report):
            type(self).decisions += 1
            if type(self).decisions == 2:
                lock.execute("BEGIN EXCLUSIVE")
                if hold is not None:
                    release.start()
            return super().decide(search, report)

    def close():
        release.cancel()
        if release.is_alive():
            release.join()
        lock.close()

    return Locking, close


def test_a_storage_locked_mid_search_is_named_after_retrying(tmp_path):
    Locking, close = locking_at_second_decision(tmp_path / "study.db", hold=None)
    try:
        start = time.monotonic()
        with pytest.raises(RuntimeError, match=r"storage 'sqlite:///.*study\.db' is locked "
                                               r"\(database is locked\).*`storage_timeout`"):
            run(Locking(quick_lock_study(tmp_path), trials=6, concurrent=2,
                        storage_timeout=0.5), trials=6)
        assert time.monotonic() - start < 60
    finally:
        close()


def test_a_storage_locked_for_a_moment_is_waited_for(tmp_path):
    Locking, close = locking_at_second_decision(tmp_path / "study.db", hold=0.5)
    try:
        result = run(Locking(quick_lock_study(tmp_path), trials=6, concurrent=2,
                             storage_timeout=30), trials=6)
    finally:
        close()
    assert result.n_trials == 6
    assert [t.state.name for t in reloaded(tmp_path).trials] == ["COMPLETE"] * 6


DRIVING_RUN = textwrap.dedent("""
    import pathlib, sys, time
    sys.path.insert(0, {tests!r})
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    import jaxtune as jt
    jt.enable_compilation_cache()
    import test_optuna as t

    class Slow(jt.OptunaSearch):
        def decide(self, search, report):
            decision = super().decide(search, report)
            pathlib.Path({ready!r}).touch()  # trials are running: the test may start
            time.sleep(600)
            return decision

    t.run(Slow(t.sqlite_study(pathlib.Path({path!r})), trials=6, concurrent=2), trials=6)
""")


@pytest.mark.slow
def test_a_second_process_on_a_study_being_driven_is_refused(tmp_path):
    ready = tmp_path / "ready"
    script = DRIVING_RUN.format(tests=os.path.dirname(__file__), path=str(tmp_path),
                                ready=str(ready))
    first = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the first process never started its trials"
            time.sleep(0.2)
        running = [t.number for t in reloaded(tmp_path).trials
                   if t.state == optuna.trial.TrialState.RUNNING]
        assert running
        with pytest.raises(ValueError, match=rf"study 's' is being driven by process "
                                             rf"{first.pid} on .*one process drives a study"):
            run(jt.OptunaSearch(sqlite_study(tmp_path), trials=6, concurrent=2), trials=6)
        after = {t.number: t.state for t in reloaded(tmp_path).trials}
        assert all(after[n] == optuna.trial.TrialState.RUNNING for n in running)
    finally:
        first.kill()
        first.communicate()
