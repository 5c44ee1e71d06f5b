"""Successive halving and Hyperband: rung arithmetic, seed groups, divergence, resume."""

import contextlib
import signal

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import interrupting, rounding

import jaxtune as jt

X = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
DATA = (X, 2 * X)
SPACE = jt.Space(learning_rate=jt.loguniform(1e-4, 1e4))
# Ascending learning rates on a quadratic: larger (stable) rates learn faster.
RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 2e-1, 4e-1]


def loss_fn(w, batch):
    return jnp.mean((batch[0] @ w - batch[1]) ** 2)


def make_optimizer(learning_rate):
    return optax.sgd(learning_rate)


def run(strategy, rates=RATES, seeds=1, **kwargs):
    options = {"data": DATA, "batch_size": 16, "steps": 90, "eval_every": 10, "seeds": seeds,
                   "progress": False, "configs": {"learning_rate": rates}, "strategy": strategy,
                   # one compiled program for every test: slices of 2, all in flight
                   "members_per_slice": 2, "members_in_flight": 32}
    options.update(kwargs)
    if "trials" in options:
        del options["configs"]
    return jt.sweep(loss_fn, jnp.zeros((1, 1)), make_optimizer, SPACE, **options)


def test_rungs_match_hand_computed_schedules():
    assert jt.SuccessiveHalving(eta=3, min_steps=10).rungs(90) == [[10, 30]]
    assert jt.SuccessiveHalving(eta=2, min_steps=5).rungs(40) == [[5, 10, 20]]
    assert jt.SuccessiveHalving(eta=3, min_steps=10).rungs(91) == [[10, 30, 90]]
    # s_max = 2: weights ceil(3/3*9) = 9, ceil(3/2*3) = 5, ceil(3/1*1) = 3 (sum 17);
    # 27 trials shared 9:5:3 = 14.3, 7.9, 4.8 -> largest remainders 14, 8, 5.
    assert jt.Hyperband(eta=3, min_steps=10).brackets(27, 90) == [
        ([10, 30], 14), ([30], 8), ([], 5)]
    # 5 trials over weights 27:12:6:4 -> 3, 1, 1, 0 by largest remainders; every bracket
    # gets one while there are enough, taken from the largest.
    assert jt.Hyperband(eta=3, min_steps=10).brackets(5, 270) == [
        ([10, 30, 90], 2), ([30, 90], 1), ([90], 1), ([], 1)]
    assert jt.Hyperband(eta=3, min_steps=10).brackets(2, 90) == [([10, 30], 1), ([30], 1), ([], 0)]


def test_synchronous_halving_keeps_the_best_third_at_each_rung():
    result = run(jt.SuccessiveHalving(eta=3, min_steps=10))
    # 9 configurations: 9 train to 10, the best 3 to 30, the best 1 to 90.
    assert sorted(result.steps_trained.tolist()) == [10] * 6 + [30] * 2 + [90]
    assert int(result.steps_trained.sum()) == 9 * 10 + 3 * 20 + 1 * 60
    loss = result.curve("train_loss")
    best_at_10 = np.argsort(loss[:, 0])[:3]
    np.testing.assert_array_equal(np.sort(np.flatnonzero(result.steps_trained >= 30)),
                                  np.sort(best_at_10))
    best_at_30 = best_at_10[np.argmin(loss[best_at_10, 2])]
    assert result.status[best_at_30] == "completed"
    assert set(result.status[result.steps_trained < 90]) == {"stopped"}
    # stopped curves end where they stopped
    assert np.isnan(loss[result.steps_trained == 10][:, 1:]).all()
    assert not np.isnan(loss[result.steps_trained == 10][:, 0]).any()


def test_seed_groups_are_stopped_together_and_survivors_equal_a_plain_run():
    result = run(jt.SuccessiveHalving(eta=3, min_steps=10), seeds=2)
    for trial in range(len(RATES)):
        members = np.flatnonzero(result.trial == trial)
        assert members.size == 2
        assert len(set(result.steps_trained[members].tolist())) == 1
        assert len(set(result.status[members].tolist())) == 1
    # Stopping others never disturbs a survivor: it equals its plain full-budget run.
    winner = int(np.flatnonzero(result.status == "completed")[0])
    plain = run(None, rates=[RATES[result.trial[winner]]], seeds=2)
    seed = result.seed[winner]
    np.testing.assert_allclose(result.curve("train_loss")[winner],
                               plain.curve("train_loss")[plain.seed == seed][0], **rounding(90))


def test_a_diverged_configuration_is_the_worst_and_counts_in_its_rung():
    # 4 configurations, eta=2: the best 2 of 4 continue, the diverged one among the 4.
    result = run(jt.SuccessiveHalving(eta=2, min_steps=10), rates=[1e-3, 1e4, 1e-1, 1e-4],
                 steps=40, eval_every=10)
    assert result.status[1] == "diverged"
    assert 0 <= result.diverged_step[1] < 10
    assert result.steps_trained.tolist()[2] == 40
    assert sorted(result.steps_trained[[0, 2, 3]].tolist()) == [10, 20, 40]


def test_hyperband_brackets_run_concurrently_with_their_own_rungs():
    result = run(jt.Hyperband(eta=3, min_steps=10), rates=RATES * 2)
    (_ladder2, n2), (_ladder1, n1), (_ladder0, n0) = jt.Hyperband(eta=3, min_steps=10).brackets(18, 90)
    steps = result.steps_trained
    aggressive, middle, full = steps[:n2], steps[n2:n2 + n1], steps[n2 + n1:]
    assert sorted(aggressive.tolist()) == [10] * (n2 - n2 // 3) + [30] * (n2 // 3 - n2 // 9) \
        + [90] * (n2 // 9)
    assert sorted(middle.tolist()) == [30] * (n1 - max(1, n1 // 3)) + [90] * max(1, n1 // 3)
    assert full.tolist() == [90] * n0


# Li et al., "Hyperband" (JMLR 2018), Table 1: R = 81, eta = 3; per bracket s the
# rounds (n_i configurations, r_i resource each).
HYPERBAND_TABLE_1 = {
    4: [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
    3: [(34, 3), (11, 9), (3, 27), (1, 81)],
    2: [(15, 9), (5, 27), (1, 81)],
    1: [(8, 27), (2, 81)],
    0: [(5, 81)],
}


def test_hyperband_brackets_follow_the_papers_table_1():
    hyperband = jt.Hyperband(eta=3, min_steps=1)
    assert [n for _, n in hyperband.brackets(143, 81)] == [81, 34, 15, 8, 5]
    # One step is one unit of resource; every configuration in flight, so each bracket
    # halves synchronously, as in the paper.
    rates = np.geomspace(1e-4, 0.4, 143).tolist()
    result = run(hyperband, rates=rates, steps=81, eval_every=1, members_in_flight=144,
                 members_per_slice=144)
    start = 0
    for s, rounds in HYPERBAND_TABLE_1.items():
        n = rounds[0][0]
        # n_i - n_(i+1) configurations stop after r_i steps; the last round's finish.
        expected = [r for (n_i, r), (n_next, _) in zip(rounds, [*rounds[1:], (0, 0)])
                    for _ in range(n_i - n_next)]
        assert sorted(result.steps_trained[start:start + n].tolist()) == expected, f"s={s}"
        start += n


@contextlib.contextmanager
def within(seconds):
    """Fails the test with TimeoutError instead of hanging past `seconds`."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_an_eta_next_to_1_is_refused_with_its_rung_count(no_training):
    # min_steps * eta**k reaches 90 only after ~2.2e12 rungs: refused, not enumerated.
    message = r"`eta`=1.000000000001 with min_steps=10 puts 2.2e\+12 rungs.*at most 100.*eta >= 1.02"
    with within(5):
        with pytest.raises(ValueError, match=message):
            jt.SuccessiveHalving(eta=1 + 1e-12, min_steps=10).rungs(90)
        with pytest.raises(ValueError, match=message):
            jt.Hyperband(eta=1 + 1e-12, min_steps=10).brackets(9, 90)
        with pytest.raises(ValueError, match=message):
            run(jt.SuccessiveHalving(eta=1 + 1e-12, min_steps=10))


def test_a_huge_eta_has_one_rung_that_keeps_the_best_configuration():
    # eta**k past the float range is never computed: the first rung ends the ladder.
    assert jt.SuccessiveHalving(eta=1e308, min_steps=10).rungs(90) == [[10]]
    assert jt.Hyperband(eta=1e308, min_steps=10).brackets(9, 90) == [([10], 8), ([], 1)]
    result = run(jt.SuccessiveHalving(eta=1e308, min_steps=10))
    assert sorted(result.steps_trained.tolist()) == [10] * 8 + [90]
    assert result.steps_trained[np.argmin(result.curve("train_loss")[:, 0])] == 90


def test_freed_slots_train_new_configurations_up_to_max_trials():
    result = run(jt.SuccessiveHalving(eta=3, min_steps=10, max_trials=12), trials=9,
                 sampler="random")
    assert result.n_trials == 12
    assert (result.steps_trained[9:] >= 10).all()


def test_resume_is_bit_identical(tmp_path):
    options = {"trials": 9, "sampler": "random", "checkpoint_dir": tmp_path}
    with pytest.raises(jt.SweepInterrupted):
        run(interrupting(jt.SuccessiveHalving)(2, eta=3, min_steps=10, max_trials=11), **options)
    resumed = run(interrupting(jt.SuccessiveHalving)(0, eta=3, min_steps=10, max_trials=11), **options)
    options.pop("checkpoint_dir")
    whole = run(interrupting(jt.SuccessiveHalving)(0, eta=3, min_steps=10, max_trials=11), **options)
    np.testing.assert_array_equal(resumed.curve("train_loss"), whole.curve("train_loss"))
    np.testing.assert_array_equal(resumed.steps_trained, whole.steps_trained)
    np.testing.assert_array_equal(resumed.hparams["learning_rate"], whole.hparams["learning_rate"])


@pytest.mark.parametrize("make, kwargs, error, message", [
    (lambda: jt.SuccessiveHalving(eta=1, min_steps=10), {}, ValueError, "`eta` must be greater"),
    (lambda: jt.Hyperband(eta=0.5, min_steps=10), {}, ValueError, "`eta` must be greater"),
    (lambda: jt.SuccessiveHalving(eta="3", min_steps=10), {}, TypeError, "`eta` must be a"),
    (lambda: jt.SuccessiveHalving(min_steps=0), {}, ValueError, "`min_steps` must be"),
    (lambda: jt.SuccessiveHalving(min_steps=15), {}, ValueError,
     r"rungs at steps \[15, 45\] are not record points.*eval_every=15"),
    (lambda: jt.SuccessiveHalving(min_steps=90), {}, ValueError, "`min_steps` must be less"),
    (lambda: jt.SuccessiveHalving(min_steps=10, metric="accuracy"), {}, ValueError,
     "'accuracy' is not recorded"),
])
def test_bad_input_is_rejected_before_compiling(make, kwargs, error, message, no_training):
    with pytest.raises(error, match=message):
        run(make(), **kwargs)
