"""The two examples of docs/design.md run: a strategy in one file, a form of data in one
function plus its line in `FORMS`."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from conftest import rounding

import jaxtune as jt
from jaxtune.devices import MEMBER_AXIS
from jaxtune.engine import sources

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "design.md"
STRATEGY, DATA_SOURCE = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)

RNG = np.random.default_rng(0)
TABLE = RNG.normal(size=(480, 6)).astype(np.float32)  # five features, then the target
TABLE[:, 5] = TABLE[:, :5] @ np.arange(1.0, 6.0, dtype=np.float32)
HP = {"learning_rate": np.array([0.01, 0.03, 0.1, 0.02], np.float32)}


def loss_fn(w, batch):
    return jnp.mean((batch[:, :5] @ w - batch[:, 5:]) ** 2)


def sgd(learning_rate):
    return optax.sgd(learning_rate)


def test_the_strategy_example_stops_the_worst_configuration_at_each_record_point():
    namespace = {}
    exec(compile(STRATEGY, str(PAGE), "exec"), namespace)
    result = jt.sweep(loss_fn, jnp.zeros((5, 1)), sgd,
                      jt.Space(learning_rate=jt.loguniform(1e-3, 0.1)), data=TABLE,
                      batch_size=16, steps=40, eval_every=10, trials=6, progress=False,
                      strategy=namespace["StopTheWorst"](min_steps=10))
    # record points 10, 20, 30 stop one configuration each; at 40 every survivor completes
    assert sorted(result.steps_trained[result.status == "stopped"].tolist()) == [10, 20, 30]
    assert (result.status == "completed").sum() == 3
    final = result.curve("train_loss")
    for column, step in enumerate((10, 20, 30)):
        stopped = int(np.flatnonzero((result.status == "stopped")
                                     & (result.steps_trained == step))[0])
        alive = result.steps_trained >= step
        assert final[stopped, column] == np.nanmax(final[alive, column])


def test_the_data_source_example_equals_a_batch_fn_reading_the_same_rows(tmp_path, monkeypatch):
    namespace = dict(vars(sources))
    exec(compile(DATA_SOURCE, str(PAGE), "exec"), namespace)
    monkeypatch.setattr(sources, "FORMS", namespace["FORMS"])
    memmap = np.memmap(tmp_path / "table.f32", np.float32, "w+", shape=TABLE.shape)
    memmap[:] = TABLE
    on_device = jnp.asarray(TABLE)

    def batch_fn(key, step):  # the same rows, cut inside the compiled step
        return jax.lax.dynamic_slice_in_dim(on_device, step * 16, 16)

    def mixed_run(data, **kwargs):
        trainer = jt.Trainer(loss_fn, sgd, init_params=jnp.zeros((5, 1)), data=data,
                             devices=jax.devices()[:1], **kwargs)
        ahead, _ = trainer.train(trainer.init(HP), 6)
        state = trainer.concatenate([ahead, trainer.init(HP)])  # steps 6 x4, then 0 x4
        return trainer.train(state, 10)

    (state, losses), (expected_state, expected) = mixed_run(memmap, batch_size=16), mixed_run(
        batch_fn)
    assert form_of(memmap) == "memmap"
    np.testing.assert_allclose(losses, expected, **rounding(16))
    np.testing.assert_allclose(state.params, expected_state.params, **rounding(16))
    assert not np.allclose(losses[:4], losses[4:])  # members at steps 6 and 0 read other rows


def test_without_its_line_in_forms_a_memmap_is_plain_arrays(tmp_path):
    memmap = np.memmap(tmp_path / "table.f32", np.float32, "w+", shape=TABLE.shape)
    assert form_of(memmap) == "arrays"


def form_of(data):
    mesh = jax.sharding.Mesh(jax.devices()[:1], (MEMBER_AXIS,))
    return sources.source_of(data, 16, mesh, 1).key[0]
