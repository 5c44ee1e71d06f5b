"""The runner: members at their own steps, strategies, compile once, checkpoints, Ctrl-C."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import interrupting, rounding

import jaxtune as jt

RNG = np.random.default_rng(3)
X = RNG.normal(size=(96, 4)).astype(np.float32)
Y = (X @ RNG.normal(size=(4, 1))).astype(np.float32)
DATA = (X, Y)
ONE_DEVICE = jax.devices()[:1]


def init_fn(key):
    return {"w": 0.3 * jax.random.normal(key, (4, 1)), "b": jnp.zeros(1)}


def aux_loss(params, batch):
    x, y = batch
    error = x @ params["w"] + params["b"] - y
    return jnp.mean(error**2), {"mae": jnp.mean(jnp.abs(error))}


def make_adam(learning_rate):
    return optax.adam(learning_rate)


def trainer():
    return jt.Trainer(aux_loss, make_adam, init_params=init_fn, data=DATA, batch_size=8,
                   num_seeds=2, key=5, devices=ONE_DEVICE)


def member(state, m):
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[m], state)


def test_member_resumed_inside_a_mixed_step_population_equals_uninterrupted():
    t = trainer()
    hp = {"learning_rate": np.array([0.05, 0.01], np.float32)}
    straight, _ = t.train(t.init(hp, np.array([0, 1])), 20)
    halfway, _ = t.train(t.init(hp, np.array([0, 1])), 10)
    # slot 0: member 0 at step 10; slot 1: a fresh member 1 at step 0
    mixed = t.select(t.init(hp, np.array([0, 1])), halfway, [0, 0], [True, False])
    np.testing.assert_array_equal(np.asarray(mixed.step), [10, 0])
    mixed, _ = t.train(mixed, 10)
    np.testing.assert_array_equal(np.asarray(mixed.step), [20, 10])
    chex.assert_trees_all_close(member(mixed.params, 0), member(straight.params, 0),
                                atol=1e-6, rtol=0)
    chex.assert_trees_all_close(member(mixed.params, 1), member(halfway.params, 1),
                                atol=1e-6, rtol=0)


def test_fresh_trainer_continues_a_restored_state_with_an_aux_loss():
    hp = {"learning_rate": np.array([0.05, 0.01], np.float32)}
    first = trainer()
    state, _ = first.train(first.init(hp, np.array([0, 1])), 5)
    restored = jax.device_get(state)  # as a checkpoint would hold it
    second = trainer()  # knows nothing but the functions
    resumed, _ = second.train(second.place(restored), 5)
    straight, _ = first.train(first.init(hp, np.array([0, 1])), 10)
    chex.assert_trees_all_equal(jax.device_get(resumed.params), jax.device_get(straight.params))


def run_sweep(**kwargs):
    options = dict(data=DATA, batch_size=8, steps=12, eval_every=4, seeds=2, trials=3,
                   progress=False, devices=ONE_DEVICE, eval_data=DATA, seed=1)
    options.update(kwargs)
    space = options.pop("space", jt.Space(learning_rate=jt.loguniform(1e-3, 1e-1)))
    make_optimizer = options.pop("make_optimizer", make_adam)
    return jt.sweep(aux_loss, init_fn, make_optimizer, space, **options)


def assert_results_identical(a, b):
    for field in ("trial", "seed", "steps", "train_loss", "diverged_step", "status",
                  "steps_trained"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    for name in a.metrics:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=name)
    for name in a.hparams:
        np.testing.assert_array_equal(a.hparams[name], b.hparams[name], err_msg=name)
    chex.assert_trees_all_equal(a.params, b.params)


def test_identical_second_sweep_compiles_nothing(xla_compiles):
    first = run_sweep(trials=4)
    with xla_compiles() as compiled:
        second = run_sweep(trials=4)
    assert compiled == [] and second.timing["compiles"] == 0
    assert_results_identical(first, second)


def test_slices_beyond_members_in_flight_wait_their_turn_with_equal_results():
    together = run_sweep(trials=6, members_per_slice=4, members_in_flight=12)
    in_turn = run_sweep(trials=6, members_per_slice=4, members_in_flight=4)
    assert_results_identical(together, in_turn)
    assert (in_turn.status == "completed").all()


def test_a_slice_that_cannot_fit_is_refused_with_the_estimate():
    def huge(key):
        return {"w": jnp.zeros((4, 2**28)), "b": jnp.zeros(1)}  # 4 GiB a member

    with pytest.raises(ValueError, match=r"one slice of \d+ members needs about .* GiB.*"
                                         r"members_per_slice="):
        jt.sweep(aux_loss, huge, make_adam, jt.Space(learning_rate=jt.loguniform(1e-3, 1e-1)),
                 data=DATA, batch_size=8, steps=4, trials=64, members_per_slice=64,
                 progress=False, devices=ONE_DEVICE, keep_params=False)  # the slice alone


class StopWorstHalf(jt.Strategy):
    """At the first record point, stop the trials whose train loss is above the median."""

    def decide(self, search, report):
        if search.step[report.reached].min(initial=search.steps) != search.eval_every:
            return jt.Decision()
        scores, trials = search.trial_scores(search.curve("train_loss")[:, 0])
        worst = trials[scores > np.median(scores)]
        return jt.Decision(stop=[int(m) for t in worst for m in search.trial_members(t)])


def test_stopped_members_free_their_slots_and_never_disturb_the_others():
    plain = run_sweep(trials=4, members_per_slice=8)
    pruned = run_sweep(trials=4, members_per_slice=8, strategy=StopWorstHalf())
    stopped = pruned.status == "stopped"
    assert stopped.sum() == 4 and set(pruned.steps_trained[stopped]) == {4}
    np.testing.assert_array_equal(pruned.trial[stopped] // 1, pruned.trial[stopped])
    assert len(set(pruned.trial[stopped])) == 2  # whole seed groups
    kept = ~stopped
    np.testing.assert_allclose(pruned.train_loss[kept], plain.train_loss[kept], rtol=1e-6)
    assert np.isnan(pruned.train_loss[stopped][:, 1:]).all()
    assert pruned.best.trial in set(pruned.trial[kept])


def test_median_stopping_stops_bad_configurations_and_keeps_good_ones():
    space = jt.Space(learning_rate=jt.choice([1e-5, 1e-5 * 1.1, 0.05, 0.06, 0.07]))
    result = run_sweep(space=space, trials=None, steps=16, eval_every=4,
                       strategy=jt.MedianStopping(min_steps=4, min_trials=2, metric="eval_loss"))
    rates = result.hparams["learning_rate"]
    assert (result.status[rates < 1e-4] == "stopped").all()
    assert (result.status == "completed").sum() >= 2 and result.best.hparams["learning_rate"] > 0.04
    with pytest.raises(ValueError, match="MedianStopping: `metric`='accuracy' is not recorded"):
        run_sweep(strategy=jt.MedianStopping(metric="accuracy"))


class CopyAtFirstRecord(jt.Strategy):
    """At the first record point, returns `Decision(**decision)` (e.g. a copy), once."""

    def __init__(self, **decision):
        self.decision, self.done = decision, False

    def decide(self, search, report):
        if self.done:
            return jt.Decision()
        self.done = True
        return jt.Decision(**self.decision)


def test_a_copied_member_keeps_its_own_seed_and_data_stream():
    # Member 1 (seed 1) takes member 0's (seed 0) state at step 4, then trains on with its
    # own minibatch order, as in PBT (Jaderberg et al. 2017): the copied state, seed 1.
    result = run_sweep(trials=1, strategy=CopyAtFirstRecord(copy={1: 0}), keep_params=True)
    np.testing.assert_array_equal(result.seed, [0, 1])
    np.testing.assert_array_equal(result.lineage, [[4, 1, 0]])
    t = jt.Trainer(aux_loss, make_adam, init_params=init_fn, data=DATA, batch_size=8,
                num_seeds=2, key=1, devices=ONE_DEVICE)
    hp = {"learning_rate": np.repeat(result.hparams["learning_rate"][:1], 2)}
    state, _ = t.train(t.init(hp, np.array([0, 1])), 4)
    copied = t.select(state, state, [0, 0], [False, True])._replace(seed=state.seed)
    reference, _ = t.train(copied, 8)
    np.testing.assert_array_equal(np.asarray(reference.step), [12, 12])
    chex.assert_trees_all_close(result.params, jax.device_get(reference.params), **rounding(12))
    # the two members left step 4 in one state but saw different minibatches since
    assert not np.allclose(result.train_loss[0, 1:], result.train_loss[1, 1:])


@pytest.mark.parametrize("decision, error, message", [
    (dict(stop=[0], copy={0: 1}), ValueError,
     r"Decision.copy 0 <- 1: member 0 is stopped by the same Decision \(stops apply first\); "
     r"drop it from `stop` or from `copy`"),
    (dict(stop=[1], copy={0: 1}), ValueError, r"Decision.copy 0 <- 1: member 1 is stopped by"),
    (dict(stop=[0], hparams={0: {"learning_rate": 0.01}}), ValueError,
     r"Decision.hparams names member 0, which is stopped by the same Decision"),
    (dict(copy={0: 1, 1: 0}), ValueError, r"Decision.copy: member 1 is both the target of a "
                                          r"copy \(copy 1 <- 0\) and the source of another "
                                          r"\(copy 0 <- 1\)"),
    (dict(copy={0: 4}), ValueError, r"Decision.copy 0 <- 4: member 4 is waiting; only running"),
    (dict(hparams={5: {"learning_rate": 0.01}}), ValueError,
     r"Decision.hparams names member 5, which is waiting"),
    (dict(copy=[(0, 1)]), TypeError, r"Decision.copy must be a mapping target -> source"),
    (dict(hparams={0: 0.01}), TypeError, r"Decision.hparams must map each member to a dict"),
    (dict(start={"learning_rate": [0.01]}), TypeError,
     r"Decision.start must be a jt.Table of the sweep's space \(from `search.ask\(n\)`\), "
     r"got dict"),
    (dict(start=jt.Space(learning_rate=jt.uniform(0.0, 1.0)).table({"learning_rate": [0.5]})),
     ValueError, r"a strategy started configurations of another space; build them with "
                 r"`search.ask\(n\)`"),
    (dict(stop=[99]), ValueError, r"Decision.stop names member 99; members are 0..5"),
    (dict(hparams={0: {"momentum": 0.9}}), ValueError,
     r"Decision.hparams sets 'momentum', which is not a dynamic dimension \(learning_rate\)"),
])
def test_a_decision_naming_a_member_it_stops_or_chaining_copies_is_refused(decision, error,
                                                                           message):
    # The order within a Decision: stop, copy, hparams, start; copy and hparams see only
    # the members still running after the stops. Members 2..5 wait for a free slot.
    with pytest.raises(error, match=message):
        run_sweep(strategy=CopyAtFirstRecord(**decision), members_per_slice=2,
                  members_in_flight=2)


class Returns(jt.Strategy):
    """`decide` returns `decision` (not a jt.Decision); `initial` returns `first` if given."""

    def __init__(self, decision=None, first=None):
        self.decision, self.first = decision, first

    def initial(self, search):
        return search.configurations if self.first is None else self.first

    def decide(self, search, report):
        return self.decision


@pytest.mark.parametrize("strategy, message", [
    (Returns(decision=None), r"Returns\(\).decide must return a jt.Decision, got NoneType"),
    (Returns(first=[{"learning_rate": 0.01}]),
     r"Returns\(\): `initial` must return a jt.Table of the sweep's space"),
])
def test_a_strategy_returning_the_wrong_kind_of_thing_is_told(strategy, message):
    with pytest.raises(TypeError, match=message):
        run_sweep(strategy=strategy)


def make_adam_scaled(learning_rate, halvings):
    return optax.adam(learning_rate / 2.0**halvings)


SCALED = jt.Space(learning_rate=jt.loguniform(1e-3, 1e-1), halvings=jt.randint(0, 4))


@pytest.mark.parametrize("values, error, message", [
    ({"learning_rate": -0.1}, ValueError,
     r"Decision.hparams\[0\]\['learning_rate'\] must be positive on the log scale of "
     r"loguniform\(0.001, 0.1\), got -0.1"),
    ({"halvings": 2.7}, ValueError,
     r"Decision.hparams\[0\]\['halvings'\] must be a whole number for randint\(0, 4\), got "
     r"2.7; round it"),
    ({"halvings": 2**40}, ValueError, r"\['halvings'\] must fit in int32"),
    ({"learning_rate": "fast"}, TypeError,
     r"Decision.hparams\[0\]\['learning_rate'\] must be a number, got str 'fast'"),
    ({"learning_rate": True}, TypeError, r"must be a number, got bool True"),
    ({"learning_rate": np.ones(2)}, TypeError, r"must be a number, got ndarray"),
    ({"learning_rate": float("nan")}, ValueError, r"\['learning_rate'\] must be finite, got nan"),
    ({"learning_rate": 1e39}, ValueError, r"\['learning_rate'\] must fit in float32"),
])
def test_decided_hyperparameters_are_checked_naming_member_and_name(values, error, message):
    with pytest.raises(error, match=message):
        run_sweep(strategy=CopyAtFirstRecord(hparams={0: values}), space=SCALED,
                  make_optimizer=make_adam_scaled)


def test_decided_hyperparameters_may_leave_the_space_but_keep_their_type():
    # Outside the bounds is allowed (a decay below the range); an integral float is an int.
    decided = {"learning_rate": 0.5, "halvings": np.float32(7.0)}
    result = run_sweep(strategy=CopyAtFirstRecord(hparams={0: decided}), space=SCALED,
                       make_optimizer=make_adam_scaled)
    assert result.hparam_history["learning_rate"][0, 1] == np.float32(0.5)
    assert result.hparam_history["halvings"][0, 1] == 7


class Watching(jt.Strategy):
    """Stops configuration 0 at its first decision; keeps what the view showed."""

    def __init__(self):
        self.statuses, self.scores = [], []

    def decide(self, search, report):
        self.statuses.append((search.status, search.status))
        self.scores.append((search.scores(), search.scores("eval_loss", "max"),
                            search.curve("eval_loss")))
        first = len(self.statuses) == 1
        return jt.Decision(stop=tuple(search.trial_members(0))) if first else jt.Decision()


def test_the_search_view_is_read_only_and_builds_the_status_once_per_change():
    watching = Watching()
    result = run_sweep(strategy=watching)
    (first, again), (second, _) = watching.statuses[:2]
    assert again is first  # read twice, built once
    assert second is not first and list(second[:2]) == ["stopped", "stopped"]
    assert list(first) == ["running"] * 6
    with pytest.raises(ValueError, match="read-only"):
        first[0] = "completed"
    lower_better, negated, curve = watching.scores[-1]
    np.testing.assert_array_equal(lower_better, curve)  # eval_loss: "min", the sweep's mode
    np.testing.assert_array_equal(negated, -curve)
    np.testing.assert_array_equal(curve, result.metrics["eval_loss"])
    curve[:] = 0.0  # a strategy's copy: the records stay as they were
    assert not (result.metrics["eval_loss"] == 0).any()


InterruptAt = interrupting(jt.Strategy)  # a plain sweep that the user stops at decision k


def test_ctrl_c_returns_the_partial_result_and_the_checkpoint_resumes(tmp_path):
    uninterrupted = run_sweep(strategy=InterruptAt(0))
    with pytest.raises(jt.SweepInterrupted) as caught:
        run_sweep(strategy=InterruptAt(2), checkpoint_dir=tmp_path)
    partial = caught.value.result
    assert isinstance(caught.value, KeyboardInterrupt)
    assert (partial.status == "running").all() and (partial.steps_trained == 8).all()
    np.testing.assert_array_equal(partial.train_loss[:, :2], uninterrupted.train_loss[:, :2])
    assert np.isnan(partial.train_loss[:, 2]).all()
    resumed = run_sweep(strategy=InterruptAt(0), checkpoint_dir=tmp_path)
    assert_results_identical(resumed, uninterrupted)


class FailsAt(jt.Strategy):
    """A plain sweep whose strategy raises a `LookupError` at its decision `at`."""

    def __init__(self, at):
        self.at, self.seen = at, 0

    def config(self):
        return {}  # `at` stands for a bug fixed between two runs: the same sweep either way

    def decide(self, search, report):
        self.seen += 1
        if self.seen == self.at:
            raise LookupError("the strategy's own bug")
        return jt.Decision()


def test_a_failing_strategy_raises_its_own_exception_with_the_partial_result():
    uninterrupted = run_sweep()
    with pytest.raises(LookupError, match="the strategy's own bug") as caught:
        run_sweep(strategy=FailsAt(2))  # no checkpoint_dir: the result is all there is
    partial = caught.value.result
    assert (partial.status == "running").all() and (partial.steps_trained == 8).all()
    np.testing.assert_array_equal(partial.train_loss[:, :2], uninterrupted.train_loss[:, :2])
    assert np.isnan(partial.train_loss[:, 2]).all()
    assert any("`.result` holds the records so far" in note for note in caught.value.__notes__)


def test_a_strategy_fixed_after_it_failed_resumes_from_the_checkpoint(tmp_path):
    with pytest.raises(LookupError) as caught:
        run_sweep(strategy=FailsAt(2), checkpoint_dir=tmp_path)
    assert any("resumes from the last checkpoint" in note for note in caught.value.__notes__)
    resumed = run_sweep(strategy=FailsAt(0), checkpoint_dir=tmp_path)
    assert_results_identical(resumed, run_sweep())


def test_a_refused_decision_changes_nothing_and_carries_the_partial_result():
    # Member 0 stopped and copied into by one Decision: refused whole, so member 0 keeps
    # its own 4 steps (not its source's) and no lineage row is written.
    with pytest.raises(ValueError, match="member 0 is stopped by the same Decision") as caught:
        run_sweep(strategy=CopyAtFirstRecord(stop=[0], copy={0: 1}))
    partial = caught.value.result
    np.testing.assert_array_equal(partial.steps_trained, [4] * 6)
    assert (partial.status == "running").all() and partial.lineage.shape == (0, 3)


def test_checkpoint_of_another_sweep_is_refused(tmp_path):
    run_sweep(checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="holds the checkpoint of a different sweep.*steps"):
        run_sweep(checkpoint_dir=tmp_path, steps=16)


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    import jaxtune as jt
    jt.enable_compilation_cache(sys.argv[3])
    rng = np.random.default_rng(3)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 1))).astype(np.float32)

    def init_fn(key):
        return {"w": 0.3 * jax.random.normal(key, (4, 1)), "b": jnp.zeros(1)}

    def loss(params, batch):
        return jnp.mean((batch[0] @ params["w"] + params["b"] - batch[1]) ** 2)

    class KillAt(jt.MedianStopping):
        def decide(self, search, report):
            if int(search.step.max()) == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no cleanup at all
            return super().decide(search, report)

    result = jt.sweep(loss, init_fn, lambda learning_rate: optax.adam(learning_rate),
                      jt.Space(learning_rate=jt.loguniform(1e-4, 1.0)), data=(x, y),
                      batch_size=8, steps=30, eval_every=5, trials=6, seeds=2,
                      members_per_slice=4, progress=False, checkpoint_dir=sys.argv[1],
                      strategy=KillAt(min_steps=5, min_trials=2), eval_data=(x, y))
    result.save(os.path.join(sys.argv[1], "result.npz"))
""")


@pytest.mark.slow
def test_kill_minus_9_at_several_points_then_resume_is_bit_identical(tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT)
    # One device; otherwise it compiles as this process does.
    flags = [flag for flag in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in flag]
    env = {**os.environ,
           "XLA_FLAGS": " ".join(["--xla_force_host_platform_device_count=1", *flags])}

    def run(directory, kill_at):
        return subprocess.run([sys.executable, str(script), str(directory), str(kill_at),
                               str(tmp_path / "xla")], env=env, capture_output=True, text=True,
                              timeout=600)

    reference = run(tmp_path / "reference", -1)
    assert reference.returncode == 0, reference.stderr
    directory = tmp_path / "killed"
    for kill_at in (10, 20):  # killed twice, each time after some record points
        killed = run(directory, kill_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert (directory / "sweep.npz").exists()
    finished = run(directory, -1)
    assert finished.returncode == 0, finished.stderr
    expected = jt.SweepResult.load(tmp_path / "reference" / "result.npz")
    resumed = jt.SweepResult.load(directory / "result.npz")
    assert (resumed.status == "stopped").any()
    assert_results_identical(resumed, expected)
    assert not list(pathlib.Path(directory).glob("*.tmp-*"))  # no temporary file left


class RecordingBar:
    """Stands in for tqdm: keeps every postfix the runner sets."""

    def __init__(self):
        self.total, self.postfixes = 0, []

    def set_postfix(self, postfix, refresh=True):
        self.postfixes.append(dict(postfix))

    def update(self, advanced):
        pass

    def close(self):
        pass


def test_timing_counts_record_points_and_the_bar_shows_compile_time_apart(monkeypatch):
    from jaxtune.runner import loop

    bar = RecordingBar()
    monkeypatch.setattr(loop, "_progress_bar", lambda enabled: bar if enabled else None)
    result = run_sweep(progress=True, trials=2, seed=11)  # 12 steps, a record every 4
    timing = result.timing
    assert timing["record_points"] == 3 == len(bar.postfixes)
    assert 0 <= timing["record_s"] < timing["total_s"]
    assert timing["compile_wait_s"] <= timing["total_s"]
    assert bar.postfixes[-1]["compile"] == f"{timing['compile_s']:.1f} s"
    assert "best member eval_loss" in bar.postfixes[-1]


def test_the_chunk_form_is_reported_and_survives_save_and_load(monkeypatch, tmp_path):
    monkeypatch.setattr(jt.Trainer, "chunk_form", "scan", raising=False)
    result = run_sweep(trials=2, seed=12)
    assert result.timing["chunk_form"] == "scan"
    result.save(tmp_path / "result.npz")
    assert jt.SweepResult.load(tmp_path / "result.npz").timing == result.timing


@pytest.mark.parametrize("timing, message", [
    ({"chunk_form": 3}, r"`timing\['chunk_form'\]` must be a string"),
    ({"run_s": "fast"}, r"`timing\['run_s'\]` must be a number"),
])
def test_timing_values_are_numbers_except_the_chunk_form(timing, message):
    from jaxtune.results.columns import _timing

    with pytest.raises(TypeError, match=message):
        _timing(timing)
    assert _timing({"chunk_form": "loop+unroll,scan", "run_s": 2}) == {
        "chunk_form": "loop+unroll,scan", "run_s": 2.0}
