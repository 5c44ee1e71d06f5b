"""Population-based training: exact exploit, explore inside the space, lineage, resume."""


import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import interrupting, rounding

import jaxtune as jt

X = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
DATA = (X, 2 * X)
SPACE = jt.Space(learning_rate=jt.loguniform(1e-4, 1.0), momentum=jt.choice([0.0, 0.5, 0.9]))
CONFIGS = {"learning_rate": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 2e-1], "momentum": [0.0] * 6}


def loss_fn(w, batch):
    return jnp.mean((batch[0] @ w - batch[1]) ** 2)


def make_optimizer(learning_rate, momentum):
    return optax.sgd(learning_rate, momentum=momentum)


def run(strategy, **kwargs):
    options = {"data": DATA, "batch_size": 16, "steps": 40, "eval_every": 10, "progress": False,
               "configs": CONFIGS, "strategy": strategy,
               # one compiled program for every test: slices of 2
               "members_per_slice": 2, "members_in_flight": 32}
    options.update(kwargs)
    if "trials" in options:
        del options["configs"]
    return jt.sweep(loss_fn, jnp.zeros((1, 1)), make_optimizer, SPACE, **options)


def _final_w(result):
    return np.asarray(result.params).reshape(result.n_members)


def test_exploit_copies_parameters_optimizer_state_and_step_exactly():
    # No explore, one seed: every member has seed 0, so a copied member then trains exactly
    # like its source (same minibatches, same momentum buffer): equal later curves and params.
    pbt = jt.PBT(ready=20, fraction=0.5, perturb=(1.0,), resample_probability=0.0)
    result = run(pbt)
    loss = result.curve("train_loss")
    order = np.argsort(loss[:, 1])  # ranked at step 20
    bottom, top = order[3:], order[:3]
    final = _final_w(result)
    for target in bottom:
        matches = [s for s in top if final[s] == final[target]
                   and np.array_equal(loss[s, 2:], loss[target, 2:])]
        assert matches, f"member {target} equals none of the top members"
    assert (result.steps_trained == 40).all()
    # the top half never changed: identical to a plain sweep of the same configurations
    plain = run(None)
    np.testing.assert_allclose(loss[top], plain.curve("train_loss")[top], **rounding(40))
    assert not np.allclose(loss[bottom][:, 2:], plain.curve("train_loss")[bottom][:, 2:])


def test_explore_perturbs_in_each_dimensions_scale_and_stays_in_the_space():
    space = jt.Space(lr=jt.loguniform(1e-3, 1e-1), drop=jt.uniform(0.0, 0.5),
                     width=jt.randint(1, 4), decay=jt.choice([0.1, 0.0, 0.01]),
                     fixed=jt.fixed(2.0))
    pbt = jt.PBT(ready=10, perturb=(0.8, 1.2), resample_probability=0.0)
    rng = np.random.default_rng(0)
    start = {"lr": 0.01, "drop": 0.25, "width": 2, "decay": 0.01, "fixed": 2.0}
    seen = {name: set() for name in start}
    for _ in range(200):
        new = pbt.explore(space, start, rng)
        for name, value in new.items():
            assert space[name].contains(value), (name, value)
            seen[name].add(round(float(value), 6))
    assert seen["lr"] == {round(0.01 * 0.8, 6), round(0.01 * 1.2, 6)}
    assert seen["drop"] == {0.2, 0.3}
    assert seen["width"] == {1, 3}
    assert seen["decay"] == {0.0, 0.1}  # neighbours of 0.01 among the sorted options
    assert seen["fixed"] == {2.0}
    # at the edges: clipped into the space, never out of it
    edge = {"lr": 0.1, "drop": 0.5, "width": 3, "decay": 0.1, "fixed": 2.0}
    for _ in range(50):
        new = pbt.explore(space, edge, rng)
        assert all(space[name].contains(value) for name, value in new.items())
    resampling = jt.PBT(ready=10, resample_probability=1.0)
    draws = {resampling.explore(space, start, rng)["lr"] for _ in range(20)}
    assert len(draws) == 20 and all(1e-3 <= v <= 1e-1 for v in draws)


def test_lineage_and_hyperparameter_history_are_consistent(tmp_path):
    result = run(jt.PBT(ready=10, fraction=0.5, seed=3))
    lineage = result.lineage
    assert lineage.shape == (3 * 3, 3)  # 3 copies at each of the exploits at 10, 20, 30
    history = result.hparam_history["learning_rate"]
    assert history.shape == (6, 4)
    for step, target, source in lineage:
        assert step in (10, 20, 30) and target != source
        column = int(np.searchsorted(result.steps, step))
        # the target's values from the next record point on are explored from the source's
        ratio = history[target, column + 1] / history[source, column]
        assert ratio == pytest.approx(0.8, rel=1e-5) or ratio == pytest.approx(1.2, rel=1e-5) \
            or SPACE["learning_rate"].contains(history[target, column + 1])
    copied_at = {(int(s), int(t)) for s, t, _ in lineage}
    for member in range(6):  # members never copied keep their hyperparameters
        changes = np.flatnonzero(np.diff(history[member]) != 0)
        for column in changes:
            assert (int(result.steps[column]), member) in copied_at
    assert all(SPACE["learning_rate"].contains(v) for v in history.ravel())
    schedule = result.hparam_schedule(0)
    assert list(schedule) == ["step", "learning_rate", "momentum"]
    np.testing.assert_array_equal(schedule["learning_rate"], history[0])
    result.save(tmp_path / "pbt.npz")
    loaded = jt.SweepResult.load(tmp_path / "pbt.npz")
    np.testing.assert_array_equal(loaded.lineage, lineage)
    np.testing.assert_array_equal(loaded.hparam_history["momentum"], result.hparam_history["momentum"])


def test_resume_is_bit_identical(tmp_path):
    with pytest.raises(jt.SweepInterrupted):
        run(interrupting(jt.PBT)(2, ready=10, fraction=0.5), checkpoint_dir=tmp_path)
    resumed = run(interrupting(jt.PBT)(0, ready=10, fraction=0.5), checkpoint_dir=tmp_path)
    whole = run(interrupting(jt.PBT)(0, ready=10, fraction=0.5))
    np.testing.assert_array_equal(resumed.curve("train_loss"), whole.curve("train_loss"))
    np.testing.assert_array_equal(_final_w(resumed), _final_w(whole))


@pytest.mark.parametrize("make, kwargs, error, message", [
    (lambda: jt.PBT(ready=10, fraction=0.6), {}, ValueError, r"`fraction` must lie in \(0, 0.5\]"),
    (lambda: jt.PBT(ready=10, fraction=0.0), {}, ValueError, r"`fraction` must lie in \(0, 0.5\]"),
    (lambda: jt.PBT(ready=10, resample_probability=1.5), {}, ValueError,
     r"`resample_probability` must lie in \[0, 1\]"),
    (lambda: jt.PBT(ready=10, perturb=(0.8, -1.0)), {}, ValueError, r"`perturb\[1\]` must be"),
    (lambda: jt.PBT(ready=15), {}, ValueError, "`ready` must be a multiple of the sweep's eval_every=10"),
    (lambda: jt.PBT(ready=40), {}, ValueError, "less than steps=40"),
    (lambda: jt.PBT(ready=10, metric="accuracy"), {}, ValueError, "'accuracy' is not recorded"),
    (lambda: jt.PBT(ready=10), {"configs": {"learning_rate": [0.1], "momentum": [0.0]}},
     ValueError, "at least 2 members"),
])
def test_bad_input_is_rejected_before_compiling(make, kwargs, error, message, no_training):
    with pytest.raises(error, match=message):
        run(make(), **kwargs)
