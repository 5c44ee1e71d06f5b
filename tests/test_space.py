"""Tests for jaxtune.space: dimensions, samplers, the stream and the hyperparameter table."""

import itertools
import math
import pickle
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.stats import qmc

import jaxtune as jt
import jaxtune.space.values as values_module
from jaxtune.engine.programs import clear_programs
from jaxtune.space import (
    SAMPLERS,
    Choice,
    ConfigStream,
    Fixed,
    LogUniform,
    RandInt,
    Uniform,
    samplers,
)

F32 = np.float32


def rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------ uniform / loguniform


def test_uniform_sample_in_bounds_dtype_and_matches_numpy_reference():
    values = jt.uniform(-2.0, 3.0).sample(rng(7), 1000)
    assert values.dtype == np.float32 and values.shape == (1000,)
    assert values.min() >= -2.0 and values.max() < 3.0
    reference = np.random.default_rng(7).uniform(-2.0, 3.0, 1000).astype(np.float32)
    np.testing.assert_array_equal(values, reference)


def test_uniform_draws_never_round_up_to_high():
    # Eight float32 steps wide: without clipping, ~1/16 of draws would round to `high`.
    low, high = 1.0, 1.0 + 2.0**-20
    values = jt.uniform(low, high).sample(rng(), 10_000)
    assert values.max() < F32(high)
    assert values.min() >= F32(low)
    assert len(np.unique(values)) == 8  # every float32 in [low, high) is reachable


def test_uniform_grid_is_linspace_with_both_ends():
    np.testing.assert_array_equal(
        jt.uniform(-1.0, 1.0).grid(5), np.array([-1.0, -0.5, 0.0, 0.5, 1.0], np.float32)
    )
    np.testing.assert_array_equal(jt.uniform(2.0, 4.0).grid(1), np.array([2.0], np.float32))


def test_loguniform_grid_is_geomspace():
    np.testing.assert_allclose(
        jt.loguniform(1e-4, 1e-1).grid(4), np.geomspace(1e-4, 1e-1, 4).astype(np.float32)
    )
    grid = jt.loguniform(1e-4, 1e-1).grid(4)
    assert grid[0] == F32(1e-4) and grid[-1] == F32(1e-1)


def test_loguniform_log_values_are_uniform_ks():
    low, high = 1e-4, 1e-1
    logs = np.log(jt.loguniform(low, high).sample(rng(0), 4000).astype(np.float64))
    p = stats.kstest(logs, "uniform", args=(math.log(low), math.log(high) - math.log(low))).pvalue
    assert p > 0.01
    # The same test rejects a plain uniform draw, so it can fail.
    logs_of_uniform = np.log(jt.uniform(low, high).sample(rng(0), 4000).astype(np.float64))
    p_uniform = stats.kstest(
        logs_of_uniform, "uniform", args=(math.log(low), math.log(high) - math.log(low))
    ).pvalue
    assert p_uniform < 1e-6


def test_continuous_from_unit_is_inverse_cdf():
    u = np.array([0.0, 0.25, 0.5, 0.75])
    np.testing.assert_array_equal(
        jt.uniform(0.0, 8.0).from_unit(u), np.array([0.0, 2.0, 4.0, 6.0], np.float32)
    )
    np.testing.assert_allclose(
        jt.loguniform(1e-4, 1.0).from_unit(u), np.array([1e-4, 1e-3, 1e-2, 1e-1], np.float32),
        rtol=1e-6,
    )
    # u = 1 maps to the top of the range, still below `high`.
    top = jt.uniform(0.0, 1.0).from_unit([1.0])
    assert top[0] < 1.0 and top[0] == np.nextafter(F32(1.0), F32(0.0))
    assert jt.uniform(0.0, 1.0).from_unit(np.zeros((2, 3))).shape == (2, 3)


def test_continuous_contains_closed_range_in_float32():
    dim = jt.uniform(0.5, 1.0)
    assert dim.contains(0.5) and dim.contains(1.0) and dim.contains(0.75)
    assert not dim.contains(0.49) and not dim.contains(1.01)
    assert not dim.contains("0.7") and not dim.contains(True) and not dim.contains(float("nan"))
    assert not dim.contains(1e300)
    assert jt.loguniform(1e-4, 1e-1).contains(np.float32(1e-4))


@settings(max_examples=40, deadline=None)
@given(
    low=st.floats(-1e6, 1e6),
    width=st.floats(1e-3, 1e6),
    log=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_continuous_draws_lie_in_range_property(low, width, log, seed):
    if log:
        low = abs(low) + 1e-3
    high = low + width * max(1.0, abs(low))  # wide enough for several float32 steps
    dim = jt.loguniform(low, high) if log else jt.uniform(low, high)
    for values in (dim.sample(rng(seed), 64), dim.from_unit(rng(seed).random(64))):
        assert values.dtype == np.float32
        assert np.all(values >= F32(low))
        assert np.all(values < F32(high))
        assert all(dim.contains(v) for v in values)


@pytest.mark.parametrize("make", [jt.uniform, jt.loguniform])
def test_continuous_constructor_errors(make):
    with pytest.raises(ValueError, match=r"`low` must be less than `high`, got low=2.0, high=1.0"):
        make(2.0, 1.0)
    with pytest.raises(ValueError, match=r"`low` must be less than `high`.*fixed\(1.0\)"):
        make(1.0, 1.0)
    with pytest.raises(ValueError, match=r"`high` must be finite, got high=inf"):
        make(1.0, float("inf"))
    with pytest.raises(ValueError, match=r"`low` must be finite, got low=nan"):
        make(float("nan"), 1.0)
    with pytest.raises(TypeError, match=r"`low` must be a real number, got str '0.1'"):
        make("0.1", 1.0)
    with pytest.raises(TypeError, match=r"`high` must be a real number, got bool True"):
        make(0.1, True)
    with pytest.raises(ValueError, match=r"`high` must fit in float32"):
        make(0.1, 1e39)
    with pytest.raises(ValueError, match=r"round to the same float32 value"):
        make(1.0, 1.0 + 1e-12)


def test_loguniform_needs_positive_low():
    with pytest.raises(ValueError, match=r"`low` must be positive for a log-uniform range, "
                                         r"got low=0.0; use uniform"):
        jt.loguniform(0.0, 1.0)
    with pytest.raises(ValueError, match=r"`low` must be positive.*low=-1.0"):
        jt.loguniform(-1.0, 1.0)
    with pytest.raises(ValueError, match=r"`low` must be positive"):
        jt.loguniform(1e-50, 1.0)  # underflows to zero in float32


# ------------------------------------------------------------------------------ randint


def test_randint_never_returns_high_and_hits_every_value():
    values = jt.randint(0, 3).sample(rng(1), 5000)
    assert values.dtype == np.int32
    assert set(values.tolist()) == {0, 1, 2}
    reference = np.random.default_rng(1).integers(0, 3, 5000)
    np.testing.assert_array_equal(values, reference)


def test_randint_from_unit_is_floor():
    dim = jt.randint(10, 13)
    u = [0.0, 1 / 3 - 1e-9, 1 / 3 + 1e-9, 0.999999, 1.0]
    np.testing.assert_array_equal(dim.from_unit(u), np.array([10, 10, 11, 12, 12], np.int32))


def test_randint_grid_evenly_spaced_unique():
    np.testing.assert_array_equal(jt.randint(0, 10).grid(4), np.array([0, 3, 6, 9], np.int32))
    np.testing.assert_array_equal(jt.randint(0, 3).grid(5), np.array([0, 1, 2], np.int32))
    np.testing.assert_array_equal(jt.randint(5, 6).grid(3), np.array([5], np.int32))


def test_randint_contains():
    dim = jt.randint(0, 500)
    assert dim.contains(0) and dim.contains(499) and dim.contains(np.int64(7))
    assert dim.contains(100.0)  # an integral float, e.g. from a pandas column
    assert not dim.contains(500) and not dim.contains(-1) and not dim.contains(2.5)
    assert not dim.contains(True) and not dim.contains("3") and not dim.contains(float("inf"))


def test_randint_constructor_errors():
    with pytest.raises(ValueError, match=r"`low` must be less than `high`, got low=5, high=5; "
                                         r"`high` is excluded"):
        jt.randint(5, 5)
    with pytest.raises(ValueError, match=r"`low` must be less than `high`, got low=5, high=1"):
        jt.randint(5, 1)
    with pytest.raises(TypeError, match=r"`high` must be an integer, got float 10.0"):
        jt.randint(0, 10.0)
    with pytest.raises(TypeError, match=r"`low` must be an integer, got bool False"):
        jt.randint(False, 10)
    with pytest.raises(ValueError, match=r"must fit in int32"):
        jt.randint(0, 2**31 + 1)
    assert jt.randint(0, 2**31).high == 2**31  # high - 1 is the int32 maximum
    with pytest.raises(TypeError, match=r"`static` must be True or False, got str 'yes'"):
        jt.randint(0, 10, static="yes")
    with pytest.raises(TypeError, match=r"`static` must be True or False, got NoneType"):
        jt.randint(0, 10, static=None)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_static_randint_draws_the_dynamic_randints_values_as_python_ints(sampler):
    def space(static):
        return jt.Space(lr=jt.uniform(0.0, 1.0), width=jt.randint(4, 129, static=static))

    dynamic = space(False).sample(None if sampler == "grid" else 40, sampler=sampler, seed=3)
    static = space(True).sample(None if sampler == "grid" else 40, sampler=sampler, seed=3)
    assert static.static_names == ("width",) and dynamic.static_names == ()
    widths = static.columns["width"]
    assert widths.dtype == object and all(type(w) is int for w in widths)
    assert widths.tolist() == dynamic.columns["width"].tolist()
    np.testing.assert_array_equal(static.columns["lr"], dynamic.columns["lr"])
    streamed = space(True).stream(sampler=sampler, seed=3, points=5).ask(7)
    assert streamed.to_dict() == space(False).stream(sampler=sampler, seed=3, points=5).ask(
        7).to_dict()


def test_static_randint_dimension_methods_match_the_dynamic_randint():
    static, dynamic = jt.randint(10, 13, static=True), jt.randint(10, 13)
    assert static.static and static.dtype == object
    assert static.sample(rng(1), 50).tolist() == dynamic.sample(rng(1), 50).tolist()
    u = [0.0, 1 / 3 + 1e-9, 1.0]
    assert static.from_unit(u).tolist() == [10, 11, 12] == dynamic.from_unit(u).tolist()
    assert jt.randint(0, 10, static=True).grid(4).tolist() == [0, 3, 6, 9]
    assert static.contains(12) and static.contains(11.0) and static.contains(np.int64(10))
    assert not static.contains(13) and not static.contains(True) and not static.contains(1.5)
    assert jt.randint(0, 2**31, static=True).high == 2**31  # a wide range is fine


def test_static_randint_table_groups_rows_by_value():
    space = jt.Space(lr=jt.uniform(0.0, 1.0), width=jt.randint(2, 6, static=True))
    table = space.table({"lr": [0.1, 0.2, 0.3, 0.4], "width": [3, 5.0, np.int64(3), 2]})
    groups = table.static_groups()
    assert [static for static, _ in groups] == [{"width": 3}, {"width": 5}, {"width": 2}]
    assert [rows.tolist() for _, rows in groups] == [[0, 2], [1], [3]]
    assert all(type(static["width"]) is int for static, _ in groups)
    assert table.to_dict()["width"] == [3, 5, 3, 2] and table.row(1)["width"] == 5
    assert table.take([3, 1]).static_groups()[0][0] == {"width": 2}
    assert pickle.loads(pickle.dumps(table)).to_dict() == table.to_dict()
    with pytest.raises(ValueError, match=r"`width`: row 0 has value 6, outside "
                                         r"randint\(2, 6, static=True\)"):
        space.table({"lr": [0.1], "width": [6]})


def test_static_randint_sets_each_groups_shapes_in_a_sweep():
    built = set()

    def init(key, width):
        built.add(width)
        return {"w1": jax.random.normal(key, (1, width)), "w2": jnp.zeros((width, 1))}

    def loss(params, batch):
        x, y = batch
        return jnp.mean((jnp.tanh(x @ params["w1"]) @ params["w2"] - y) ** 2)

    def space(static):
        return jt.Space(learning_rate=jt.fixed(0.1), width=jt.randint(2, 6, static=static))

    x = np.linspace(-1.0, 1.0, 32, dtype=np.float32)[:, None]

    def run(**options):
        return jt.sweep(loss, init, lambda learning_rate: optax.sgd(learning_rate), space(True),
                        data=(x, 2 * x), batch_size=8, steps=6, eval_every=3, seeds=1, seed=0,
                        progress=False, devices=jax.devices()[:1], **options)

    clear_programs()  # the data's minibatch-order program too: compiled once by each run
    result = run(trials=5)
    widths = result.hparams["width"]
    assert all(type(w) is int for w in widths)
    drawn = space(False).sample(5, seed=0).columns["width"].tolist()
    assert sorted(widths.tolist()) == sorted(drawn) and built == set(drawn) and len(built) > 1
    assert result.params is None  # the groups' parameters differ in shape
    clear_programs()
    alone = run(configs=[{"learning_rate": 0.1, "width": drawn[0]}])
    # One compiled group per drawn width, each compiling what a group alone compiles,
    # but one minibatch-order program for the data, shared by the groups.
    assert result.timing["compiles"] - 1 == len(built) * (alone.timing["compiles"] - 1)
    assert np.all(result.train_loss[:, -1] < result.train_loss[:, 0])  # each group trains


# ------------------------------------------------------------------------ choice / fixed


def test_choice_hits_every_value_uniformly():
    dim = jt.choice([0.0, 1e-4, 1e-2])
    values = dim.sample(rng(3), 3000)
    assert values.dtype == np.float32
    counts = [int(np.sum(values == F32(v))) for v in (0.0, 1e-4, 1e-2)]
    assert sum(counts) == 3000 and min(counts) > 900
    static = jt.choice(["relu", "tanh", "gelu"]).sample(rng(3), 300)
    assert static.dtype == object and set(static.tolist()) == {"relu", "tanh", "gelu"}


@pytest.mark.parametrize(
    "values, static, dtype",
    [
        ([0.0, 0.1], False, np.float32),
        ([1, 2, 3], False, np.int32),
        ([1, 2.5], False, np.float32),
        ([np.float64(0.1), np.int64(2)], False, np.float32),
        (np.array([1, 2, 3]), False, np.int32),
        (["relu", "tanh"], True, object),
        ([True, False], True, object),
        ([None, 0.1], True, object),
        ([(64, 64), (128,)], True, object),
        ([len, abs], True, object),
        ([1, "a"], True, object),
    ],
)
def test_choice_static_detection(values, static, dtype):
    dim = jt.choice(values)
    assert dim.static is static
    assert dim.dtype == dtype


def test_choice_static_override():
    dim = jt.choice([32, 64], static=True)
    assert dim.static and dim.dtype == object
    assert type(dim.sample(rng(), 4)[0]) is int
    assert not jt.choice([0.1, 0.2], static=False).static


def test_choice_of_tuples_keeps_tuples_whole():
    dim = jt.choice([(64, 64), (128,)])
    values = dim.sample(rng(), 5)
    assert values.shape == (5,)
    assert all(v in [(64, 64), (128,)] for v in values)
    assert dim.grid().shape == (2,) and dim.grid()[0] == (64, 64)


def test_choice_grid_all_values_in_order_and_from_unit():
    dim = jt.choice(["a", "b", "c"])
    assert dim.grid(1).tolist() == ["a", "b", "c"]
    assert dim.from_unit([0.0, 0.34, 0.67, 0.99, 1.0]).tolist() == ["a", "b", "c", "c", "c"]


def test_choice_contains():
    dim = jt.choice([0.0, 1e-4])
    assert dim.contains(1e-4) and dim.contains(np.float32(1e-4)) and dim.contains(0)
    assert not dim.contains(2e-4) and not dim.contains(False) and not dim.contains("0.0")
    ints = jt.choice([1, 2])
    assert ints.contains(2.0) and not ints.contains(1.5) and not ints.contains(2**40)
    static = jt.choice(["a", True, None])
    assert static.contains("a") and static.contains(True) and static.contains(None)
    assert not static.contains(1)  # True is a bool, not the number 1
    assert jt.choice([np.array([1, 2])]).contains(np.array([1, 2]))


def test_choice_errors():
    with pytest.raises(ValueError, match=r"`values` must not be empty"):
        jt.choice([])
    with pytest.raises(ValueError, match=r"`static=False` needs numbers, but `values\[1\]` is "
                                         r"str 'tanh'"):
        jt.choice([0.1, "tanh"], static=False)
    with pytest.raises(ValueError,
                       match=r"`values` lists 0.1 twice \(values\[0\] and values\[2\]\)"):
        jt.choice([0.1, 0.2, 0.1])
    with pytest.raises(ValueError, match=r"values\[1\].*equal in float32"):
        jt.choice([0.1, 0.1 + 1e-12])
    with pytest.raises(ValueError, match=r"`values` lists 'a' twice"):
        jt.choice(["a", "a"])
    with pytest.raises(TypeError, match=r"got the string 'abc'; write choice\(\['abc'\]\)"):
        jt.choice("abc")
    with pytest.raises(TypeError, match=r"must be an ordered sequence.*got set"):
        jt.choice({1, 2})
    with pytest.raises(TypeError, match=r"`values` must be a sequence.*got int"):
        jt.choice(3)
    with pytest.raises(ValueError, match=r"`values` must be one-dimensional"):
        jt.choice(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"`values\[1\]` must be finite, got inf"):
        jt.choice([1.0, float("inf")])
    with pytest.raises(ValueError, match=r"`values\[0\]` must fit in int32.*static=True"):
        jt.choice([2**40])
    with pytest.raises(TypeError, match=r"`static` must be True, False or None"):
        jt.choice([1, 2], static="yes")


def test_fixed():
    assert jt.fixed(0.9).dtype == np.float32 and not jt.fixed(0.9).static
    assert jt.fixed(3).dtype == np.int32 and not jt.fixed(3).static
    assert jt.fixed("adam").static and jt.fixed(None).static and jt.fixed(True).static
    assert jt.fixed(128, static=True).static
    assert jt.fixed(0.9).sample(rng(), 3).tolist() == [F32(0.9)] * 3
    assert jt.fixed("adam").grid(7).tolist() == ["adam"]
    assert jt.fixed(2).from_unit([0.0, 0.99]).tolist() == [2, 2]
    assert jt.fixed(0.9).contains(0.9) and not jt.fixed(0.9).contains(0.8)
    assert jt.fixed(0.9).value == 0.9 and jt.fixed(np.float64(0.5)).value == 0.5
    assert jt.fixed(2**40, static=True).value == 2**40


def test_fixed_errors():
    with pytest.raises(ValueError, match=r"`value` must be finite, got nan"):
        jt.fixed(float("nan"))
    with pytest.raises(ValueError, match=r"`value` must be finite, got -inf"):
        jt.fixed(float("-inf"))
    with pytest.raises(ValueError,
                       match=r"`static=False` needs numbers, but `value` is str 'adam'"):
        jt.fixed("adam", static=False)
    with pytest.raises(ValueError, match=r"`value` must fit in int32 to be dynamic.*static=True"):
        jt.fixed(2**40)
    with pytest.raises(ValueError, match=r"`value` must fit in float32 to be dynamic"):
        jt.fixed(1e300)


def test_fixed_draws_nothing_from_the_generator():
    generator = rng(4)
    assert jt.fixed(1.0).sample(generator, 16).tolist() == [1.0] * 16
    np.testing.assert_array_equal(jt.uniform(0.0, 1.0).sample(generator, 16),
                                  jt.uniform(0.0, 1.0).sample(rng(4), 16))


# -------------------------------------------------------------- shared dimension checks


@pytest.mark.parametrize(
    "dim, text",
    [
        (jt.uniform(0, 1), "uniform(0.0, 1.0)"),
        (jt.loguniform(1e-4, 0.1), "loguniform(0.0001, 0.1)"),
        (jt.randint(0, 500), "randint(0, 500)"),
        (jt.randint(4, 129, static=True), "randint(4, 129, static=True)"),
        (jt.choice([0.0, 1e-4]), "choice([0.0, 0.0001])"),
        (jt.choice(["relu", "tanh"]), "choice(['relu', 'tanh'])"),
        (jt.choice([32, 64], static=True), "choice([32, 64], static=True)"),
        (jt.fixed(0.9), "fixed(0.9)"),
        (jt.fixed("adam"), "fixed('adam')"),
        (jt.fixed(128, static=True), "fixed(128, static=True)"),
    ],
)
def test_dimension_repr_pickle_equality(dim, text):
    assert repr(dim) == text
    copy = pickle.loads(pickle.dumps(dim))
    assert copy == dim and repr(copy) == text and copy.static == dim.static
    assert hash(copy) == hash(dim)


def test_dimension_equality_distinguishes():
    assert jt.uniform(0, 1) == jt.uniform(0.0, 1.0)
    assert jt.uniform(0, 1) != jt.uniform(0, 2)
    assert jt.uniform(0, 1) != jt.loguniform(0.5, 1)
    assert jt.choice([32, 64]) != jt.choice([32, 64], static=True)
    assert jt.randint(0, 5) != jt.randint(0, 5, static=True)
    assert jt.randint(0, 5, static=True) == jt.randint(0, 5, static=True)


@pytest.mark.parametrize(
    "dim", [jt.uniform(0, 1), jt.randint(0, 3), jt.choice(["a"]), jt.fixed(1.0)]
)
def test_dimensions_are_immutable(dim):
    with pytest.raises(AttributeError, match="immutable"):
        dim.low = 5
    with pytest.raises(AttributeError, match="immutable"):
        dim.static = True


def test_dimension_method_argument_errors():
    dim = jt.uniform(0, 1)
    with pytest.raises(TypeError, match=r"`rng` must be a numpy.random.Generator.*default_rng"):
        dim.sample(0, 3)
    with pytest.raises(ValueError, match=r"`n` must be a positive integer, got n=0"):
        dim.sample(rng(), 0)
    with pytest.raises(TypeError, match=r"`n` must be a positive integer, got float 2.0"):
        dim.sample(rng(), 2.0)
    with pytest.raises(ValueError, match=r"`points` must be a positive integer, got points=0"):
        dim.grid(0)
    with pytest.raises(ValueError, match=r"`u` must lie in \[0.0, 1.0\]"):
        dim.from_unit([0.5, 1.5])
    with pytest.raises(ValueError, match=r"`u` must be finite"):
        dim.from_unit([float("nan")])
    with pytest.raises(TypeError, match=r"`u` must be an array of numbers"):
        dim.from_unit(["a"])


def test_classes_are_exposed():
    assert isinstance(jt.uniform(0, 1), Uniform) and isinstance(jt.uniform(0, 1), jt.Dimension)
    assert isinstance(jt.loguniform(1, 2), LogUniform)
    assert isinstance(jt.randint(0, 2), RandInt)
    assert isinstance(jt.choice([1]), Choice) and jt.choice([1, 2]).values == (1, 2)
    assert isinstance(jt.fixed(1), Fixed)
    assert SAMPLERS == ("random", "grid", "sobol", "halton")


# -------------------------------------------------------------------------------- space


def make_space():
    return jt.Space(
        learning_rate=jt.loguniform(1e-4, 1e-1),
        weight_decay=jt.choice([0.0, 1e-4, 1e-2]),
        warmup_steps=jt.randint(0, 500),
        activation=jt.choice(["relu", "tanh"]),
        width=jt.choice([32, 64], static=True),
    )


def test_space_names_and_container_protocol():
    space = make_space()
    assert space.names == ("learning_rate", "weight_decay", "warmup_steps", "activation", "width")
    assert space.static_names == ("activation", "width")
    assert space.dynamic_names == ("learning_rate", "weight_decay", "warmup_steps")
    assert len(space) == 5 and list(space) == list(space.names)
    assert space["warmup_steps"] == jt.randint(0, 500)
    assert "width" in space and "depth" not in space
    with pytest.raises(KeyError, match=r"'depth' is not in the space; it has: learning_rate"):
        space["depth"]
    assert repr(jt.Space(a=jt.fixed(1), b=jt.uniform(0, 1))) == (
        "Space(a=fixed(1), b=uniform(0.0, 1.0))"
    )


def test_space_mapping_and_keywords_merge_in_order():
    space = jt.Space({"b": jt.fixed(1)}, a=jt.fixed(2))
    assert space.names == ("b", "a")
    assert jt.Space(space) == space
    assert pickle.loads(pickle.dumps(space)) == space
    assert jt.Space({"lambda_": jt.fixed(1)}).names == ("lambda_",)


def test_space_errors():
    with pytest.raises(TypeError, match=r"`learning_rate` must be a dimension, got the number "
                                        r"0.1; write learning_rate=fixed\(0.1\)"):
        jt.Space(learning_rate=0.1)
    with pytest.raises(TypeError, match=r"`wd` must be a dimension, got the list \[0.0, 0.1\]; "
                                        r"write wd=choice\(\[0.0, 0.1\]\)"):
        jt.Space(wd=[0.0, 0.1])
    with pytest.raises(TypeError, match=r"`opt` must be a dimension.*got str 'adam'"):
        jt.Space(opt="adam")
    with pytest.raises(ValueError, match=r"dimension name 'learning-rate' is not a valid Python "
                                         r"identifier.*'learning_rate'"):
        jt.Space({"learning-rate": jt.fixed(1)})
    with pytest.raises(ValueError, match=r"dimension name 'lambda' is not a valid Python"):
        jt.Space({"lambda": jt.fixed(1)})
    with pytest.raises(ValueError, match=r"dimension name '1x' is not a valid.*'_1x'"):
        jt.Space({"1x": jt.fixed(1)})
    with pytest.raises(TypeError, match=r"dimension names must be strings, got int 3"):
        jt.Space({3: jt.fixed(1)})
    with pytest.raises(ValueError, match=r"`a` is given twice"):
        jt.Space({"a": jt.fixed(1)}, a=jt.fixed(2))
    with pytest.raises(TypeError, match=r"`dims` must be a mapping"):
        jt.Space([("a", jt.fixed(1))])
    with pytest.raises(AttributeError, match="immutable"):
        make_space().extra = 1


def test_empty_space_is_one_configuration():
    space = jt.Space()
    assert len(space) == 0 and space.names == ()
    assert len(space.sample(sampler="grid")) == 1
    for sampler in ("random", "sobol", "halton"):
        table = space.sample(3, sampler=sampler)
        assert len(table) == 3 and table.rows() == [{}, {}, {}]
    assert len(space.table({})) == 1
    assert len(space.table([{}, {}])) == 2
    assert space.table([{}]).static_groups()[0][0] == {}


# ----------------------------------------------------------------------------- sampling


def test_random_sampler_matches_reference_and_is_deterministic():
    # Configuration i maps words i*d ... i*d + d - 1 of Philox(seed), top 53 bits: the
    # stream's rule, so that Space.sample(n) is the stream's first n configurations.
    space = jt.Space(a=jt.uniform(0.0, 2.0), b=jt.randint(0, 10), c=jt.choice(["x", "y"]))
    table = space.sample(32, seed=5)
    words = np.random.Philox(5).random_raw(32 * 3).reshape(32, 3)
    u = (words >> np.uint64(11)).astype(np.float64) / 2.0**53
    np.testing.assert_array_equal(table.columns["a"], (2.0 * u[:, 0]).astype(np.float32))
    np.testing.assert_array_equal(table.columns["b"], np.floor(10 * u[:, 1]).astype(np.int32))
    assert table.columns["c"].tolist() == [["x", "y"][int(2 * x)] for x in u[:, 2]]
    again = space.sample(32, seed=5)
    assert again.to_dict() == table.to_dict()
    other = space.sample(32, seed=6)
    assert not np.array_equal(other.columns["a"], table.columns["a"])


def test_random_sampler_respects_bounds():
    table = make_space().sample(500, seed=1)
    lr = table.columns["learning_rate"]
    assert lr.min() >= F32(1e-4) and lr.max() < F32(1e-1)
    assert table.columns["warmup_steps"].max() <= 499
    assert set(table.columns["weight_decay"].tolist()) == {F32(0.0), F32(1e-4), F32(1e-2)}
    assert set(table.columns["width"].tolist()) == {32, 64}


@pytest.mark.parametrize("sampler, engine", [("sobol", qmc.Sobol), ("halton", qmc.Halton)])
def test_quasi_random_matches_scipy_reference(sampler, engine):
    space = jt.Space(a=jt.uniform(-1.0, 3.0), b=jt.randint(0, 4), c=jt.choice(["x", "y", "z"]))
    table = space.sample(16, sampler=sampler, seed=11)
    u = engine(d=3, scramble=True, rng=11).random(16)
    np.testing.assert_array_equal(table.columns["a"], (-1.0 + 4.0 * u[:, 0]).astype(np.float32))
    np.testing.assert_array_equal(table.columns["b"], np.floor(4 * u[:, 1]).astype(np.int32))
    assert table.columns["c"].tolist() == [["x", "y", "z"][int(3 * x)] for x in u[:, 2]]
    assert space.sample(16, sampler=sampler, seed=11).to_dict() == table.to_dict()
    assert space.sample(16, sampler=sampler, seed=12).to_dict() != table.to_dict()


def _unit_cube(table):
    a = (table.columns["a"].astype(np.float64) + 1.0) / 4.0
    b = (np.log(table.columns["b"].astype(np.float64)) - math.log(1e-3)) / math.log(1e4)
    c = table.columns["c"].astype(np.float64)
    return np.clip(np.stack([a, b, c], axis=1), 0.0, 1.0)


@pytest.mark.parametrize("sampler", ["sobol", "halton"])
def test_quasi_random_is_lower_discrepancy_than_random(sampler):
    space = jt.Space(a=jt.uniform(-1.0, 3.0), b=jt.loguniform(1e-3, 10.0), c=jt.uniform(0, 1))
    for seed in range(4):
        quasi = qmc.discrepancy(_unit_cube(space.sample(50, sampler=sampler, seed=seed)))
        random = qmc.discrepancy(_unit_cube(space.sample(50, sampler="random", seed=seed)))
        assert quasi < 0.5 * random


def test_sobol_any_n_without_warning():
    space = jt.Space(a=jt.uniform(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(space.sample(10, sampler="sobol")) == 10
        assert len(space.sample(1, sampler="sobol")) == 1


def test_grid_covers_exactly_the_product():
    space = jt.Space(a=jt.uniform(0.0, 1.0), b=jt.choice(["x", "y"]), c=jt.randint(0, 3))
    table = space.sample(sampler="grid", points=3)
    rows = [(r["a"], r["b"], r["c"]) for r in table.rows()]
    expected = list(itertools.product([0.0, 0.5, 1.0], ["x", "y"], [0, 1, 2]))
    assert rows == expected  # every combination once, first dimension slowest
    assert len(table) == 18 and len(set(rows)) == 18


def test_grid_points_per_dimension_and_n():
    space = jt.Space(a=jt.uniform(0.0, 1.0), b=jt.loguniform(1e-3, 1e-1), c=jt.fixed("k"))
    table = space.sample(sampler="grid", points={"a": 2})
    assert len(table) == 2 * 5 * 1
    assert sorted(set(table.columns["a"].tolist())) == [0.0, 1.0]
    assert len(space.sample(10, sampler="grid", points={"a": 2})) == 10
    with pytest.raises(ValueError, match=r"`n`=7 does not match the grid, which has 2 x 5 x 1 = "
                                         r"10 configurations; pass n=None \(or n=10\)"):
        space.sample(7, sampler="grid", points={"a": 2})


def test_sample_argument_errors():
    space = make_space()
    with pytest.raises(ValueError, match=r"`sampler` must be one of 'random', 'grid', 'sobol', "
                                         r"'halton', got sampler='latin'"):
        space.sample(4, sampler="latin")
    with pytest.raises(TypeError, match=r"`sampler` must be a string"):
        space.sample(4, sampler=None)
    with pytest.raises(ValueError, match=r"`n` must be a positive integer, got n=0"):
        space.sample(0)
    with pytest.raises(ValueError, match=r"`n` must be a positive integer, got n=-3"):
        space.sample(-3, sampler="sobol")
    with pytest.raises(TypeError, match=r"`n` must be a positive integer, got float 4.0"):
        space.sample(4.0)
    with pytest.raises(TypeError, match=r"`n` is required for sampler='random'"):
        space.sample()
    with pytest.raises(ValueError, match=r"`seed` must be a non-negative integer, got seed=-1"):
        space.sample(4, seed=-1)
    with pytest.raises(TypeError, match=r"`seed` must be a non-negative integer, got float"):
        space.sample(4, seed=1.5)
    with pytest.raises(ValueError, match=r"`points` must be a positive integer, got points=0"):
        space.sample(sampler="grid", points=0)
    with pytest.raises(TypeError, match=r"`points` must be a positive integer, got float 2.5"):
        space.sample(sampler="grid", points=2.5)
    with pytest.raises(TypeError, match=r"`points` must be a positive integer, got bool True"):
        space.sample(sampler="grid", points=True)
    with pytest.raises(ValueError, match=r"`points\['warmup_steps'\]` must be a positive integer"):
        space.sample(sampler="grid", points={"warmup_steps": -1})
    with pytest.raises(ValueError, match=r"`points` names `depth`, which is not in the space"):
        space.sample(sampler="grid", points={"depth": 3})


# -------------------------------------------------------------------------------- table


def test_table_columns_dtypes_and_read_only():
    table = make_space().sample(6, seed=0)
    columns = table.columns
    assert columns["learning_rate"].dtype == np.float32 and columns["learning_rate"].shape == (6,)
    assert columns["warmup_steps"].dtype == np.int32
    assert columns["weight_decay"].dtype == np.float32
    assert columns["activation"].dtype == object and columns["activation"].shape == (6,)
    with pytest.raises(ValueError, match="read-only"):
        columns["learning_rate"][0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        table.dynamic()["warmup_steps"][0] = 1
    columns["learning_rate"] = np.zeros(6)
    assert table.columns["learning_rate"].dtype == np.float32  # the table is unchanged
    assert list(table.dynamic()) == ["learning_rate", "weight_decay", "warmup_steps"]
    assert table.names == make_space().names and table.space == make_space()
    assert table.static_names == ("activation", "width")
    assert table.dynamic_names == ("learning_rate", "weight_decay", "warmup_steps")
    assert repr(table) == ("Table(N=6, names=['learning_rate', 'weight_decay', 'warmup_steps', "
                           "'activation', 'width'])")


def test_row_returns_plain_python_values():
    table = make_space().table(
        {"learning_rate": [np.float64(1e-3)], "weight_decay": [np.float32(1e-4)],
         "warmup_steps": [np.int64(7)], "activation": [np.str_("tanh")], "width": [64]}
    )
    row = table.row(0)
    assert type(row["learning_rate"]) is float and row["learning_rate"] == float(F32(1e-3))
    assert type(row["weight_decay"]) is float and row["weight_decay"] == 1e-4  # as declared
    assert type(row["warmup_steps"]) is int and row["warmup_steps"] == 7
    assert type(row["activation"]) is str and row["activation"] == "tanh"
    assert type(row["width"]) is int and row["width"] == 64
    assert table.row(-1) == row
    assert table.rows() == [row]
    assert table.to_dict() == {name: [value] for name, value in row.items()}
    with pytest.raises(IndexError, match=r"row 1 is out of range for a table of 1 rows"):
        table.row(1)
    with pytest.raises(TypeError, match=r"`i` must be an integer row index"):
        table.row(0.0)


def test_take_orders_repeats_and_slices():
    space = jt.Space(a=jt.randint(0, 100), s=jt.choice(["p", "q", "r"]))
    table = space.table({"a": [10, 20, 30], "s": ["p", "q", "r"]})
    taken = table.take([2, 0, 0, -1])
    assert taken.to_dict() == {"a": [30, 10, 10, 30], "s": ["r", "p", "p", "r"]}
    assert taken.columns["a"].dtype == np.int32 and not taken.columns["a"].flags.writeable
    repeated = table.take(np.repeat(np.arange(3), 2))
    assert repeated.to_dict()["a"] == [10, 10, 20, 20, 30, 30]
    assert len(table.take([])) == 0 and table.take([]).static_groups() == []
    with pytest.raises(IndexError, match=r"`indices`\[1\] = 3 is out of range for a table of 3"):
        table.take([0, 3])
    with pytest.raises(TypeError, match=r"got booleans; convert a mask with np.flatnonzero"):
        table.take(np.array([True, False, True]))
    with pytest.raises(TypeError, match=r"`indices` must be a 1-D sequence of integers"):
        table.take([0.5])


def test_static_groups_in_order_of_first_appearance():
    space = jt.Space(lr=jt.uniform(0, 1), act=jt.choice(["relu", "tanh", "gelu"]),
                     width=jt.choice([32, 64], static=True))
    table = space.table([
        {"lr": 0.1, "act": "tanh", "width": 64},
        {"lr": 0.2, "act": "relu", "width": 64},
        {"lr": 0.3, "act": "tanh", "width": 64},
        {"lr": 0.4, "act": "gelu", "width": 32},
        {"lr": 0.5, "act": "relu", "width": 64},
        {"lr": 0.6, "act": "tanh", "width": 32},
    ])
    groups = table.static_groups()
    assert [g for g, _ in groups] == [
        {"act": "tanh", "width": 64}, {"act": "relu", "width": 64},
        {"act": "gelu", "width": 32}, {"act": "tanh", "width": 32},
    ]
    assert [idx.tolist() for _, idx in groups] == [[0, 2], [1, 4], [3], [5]]
    assert all(type(g["width"]) is int for g, _ in groups)


def test_static_groups_without_static_dimensions():
    table = jt.Space(lr=jt.uniform(0, 1)).sample(5)
    [(values, indices)] = table.static_groups()
    assert values == {} and indices.tolist() == [0, 1, 2, 3, 4]


def test_static_groups_of_unhashable_values():
    space = jt.Space(layers=jt.choice([[64, 64], [128]]))
    table = space.table({"layers": [[128], [64, 64], [128]]})
    groups = table.static_groups()
    assert [(g["layers"], idx.tolist()) for g, idx in groups] == [([128], [0, 2]), ([64, 64], [1])]


def test_table_from_columns_rows_and_table_agree():
    space = make_space()
    sampled = space.sample(9, sampler="sobol", seed=2)
    from_rows = space.table(sampled.rows())
    from_columns = space.table(sampled.to_dict())
    from_table = jt.Table(space, sampled)
    for table in (from_rows, from_columns, from_table):
        assert table.to_dict() == sampled.to_dict()
        for name in space.names:
            np.testing.assert_array_equal(table.columns[name], sampled.columns[name])
    assert space.table({"learning_rate": np.array([1e-3, 1e-2]), "weight_decay": (0.0, 0.01),
                        "warmup_steps": [0, 499], "activation": ["relu", "relu"],
                        "width": [32, 32]}).columns["warmup_steps"].tolist() == [0, 499]


def test_table_validation_errors():
    space = jt.Space(learning_rate=jt.loguniform(1e-4, 1e-1), act=jt.choice(["relu", "tanh"]))
    good = {"learning_rate": [1e-3, 1e-3, 1e-2, 2.0], "act": ["relu"] * 4}
    with pytest.raises(ValueError, match=r"^`learning_rate`: row 3 has value 2.0, outside "
                                         r"loguniform\(0.0001, 0.1\).$"):
        space.table(good)
    with pytest.raises(ValueError, match=r"`act`: row 1 has value 'gelu', outside "
                                         r"choice\(\['relu', 'tanh'\]\)"):
        space.table([{"learning_rate": 1e-3, "act": "relu"},
                     {"learning_rate": 1e-3, "act": "gelu"}])
    with pytest.raises(ValueError, match=r"`data` has unknown names `lr`, `wd`; the space has: "
                                         r"learning_rate, act"):
        space.table({"lr": [1e-3], "wd": [0.0], "learning_rate": [1e-3], "act": ["relu"]})
    with pytest.raises(ValueError, match=r"`data` is missing `act`; every configuration needs"):
        space.table({"learning_rate": [1e-3]})
    with pytest.raises(ValueError, match=r"row 1 of `data` is missing `learning_rate`"):
        space.table([{"learning_rate": 1e-3, "act": "relu"}, {"act": "relu"}])
    with pytest.raises(ValueError, match=r"row 0 of `data` has unknown name `momentum`"):
        space.table([{"learning_rate": 1e-3, "act": "relu", "momentum": 0.9}])
    with pytest.raises(ValueError, match=r"columns of `data` must have equal lengths, got "
                                         r"learning_rate: 2, act: 1"):
        space.table({"learning_rate": [1e-3, 1e-2], "act": ["relu"]})
    with pytest.raises(ValueError, match=r"`data` has no configurations"):
        space.table([])
    with pytest.raises(ValueError, match=r"`data` has no configurations"):
        space.table({"learning_rate": [], "act": []})
    with pytest.raises(TypeError, match=r"column `learning_rate` must be a sequence of values, "
                                        r"got float 0.001; for one configuration write"):
        space.table({"learning_rate": 1e-3, "act": ["relu"]})
    with pytest.raises(ValueError, match=r"column `learning_rate` must be one-dimensional"):
        space.table({"learning_rate": np.zeros((1, 1)), "act": ["relu"]})
    with pytest.raises(TypeError, match=r"row 0 of `data` must be a mapping name -> value"):
        space.table([(1e-3, "relu")])
    with pytest.raises(TypeError, match=r"`data` must be a mapping name -> list of values"):
        space.table(5)
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"learning_rate": [1e-3], "act": ["relu"]})
    with pytest.raises(TypeError, match=r"got DataFrame. For a pandas DataFrame pass "
                                        r"df.to_dict\('list'\)"):
        space.table(frame)
    assert space.table(frame.to_dict("list")).row(0)["act"] == "relu"
    with pytest.raises(TypeError, match=r"`space` must be a Space"):
        jt.Table({"a": jt.fixed(1)}, {"a": [1]})


def test_table_rejects_wrong_kinds_of_values():
    space = jt.Space(steps=jt.randint(0, 10), flag=jt.choice([True, False]))
    with pytest.raises(ValueError,
                       match=r"`steps`: row 0 has value True, outside randint\(0, 10\)"):
        space.table({"steps": [True], "flag": [True]})
    with pytest.raises(ValueError, match=r"`flag`: row 0 has value 1, outside choice"):
        space.table({"steps": [1], "flag": [1]})
    with pytest.raises(ValueError, match=r"`steps`: row 1 has value 10, outside randint\(0, 10\)"):
        space.table({"steps": [9, 10], "flag": [True, False]})


def test_table_pickle_round_trip_stays_read_only():
    table = make_space().sample(5, seed=3)
    copy = pickle.loads(pickle.dumps(table))
    assert copy.to_dict() == table.to_dict() and copy.space == table.space
    assert not copy.columns["learning_rate"].flags.writeable
    assert [g for g, _ in copy.static_groups()] == [g for g, _ in table.static_groups()]


# ------------------------------------------------------------------- size limits


def test_huge_grid_is_refused_with_the_product_before_allocating():
    space = jt.Space(**{f"x{i}": jt.uniform(0.0, 1.0) for i in range(10)})
    product = " x ".join(["10"] * 10)
    with pytest.raises(ValueError, match=rf"sampler='grid' gives {product} = 10,000,000,000 "
                                         r"configurations, more than MAX_CONFIGURATIONS = "
                                         r"10,000,000 .*use fewer `points`.*sampler='random'"):
        space.sample(sampler="grid", points=10)
    with pytest.raises(ValueError, match=r"`points\['x0'\]` must be at most MAX_CONFIGURATIONS "
                                         r"= 10,000,000 .*got points\['x0'\]=10,000,000,000"):
        space.sample(sampler="grid", points={"x0": 10**10})
    with pytest.raises(ValueError, match=r"sampler='grid' gives 10 x 10"):
        space.stream(sampler="grid", points=10)


def test_huge_n_is_refused_before_drawing():
    space = make_space()
    for sampler in ("random", "sobol", "halton"):
        with pytest.raises(ValueError, match=r"`n` must be at most MAX_CONFIGURATIONS = "
                                             r"10,000,000 .*got n=10,000,000,000; draw fewer"):
            space.sample(10**10, sampler=sampler)
    with pytest.raises(ValueError, match=r"`n` must be at most MAX_CONFIGURATIONS.*draw fewer"):
        jt.uniform(0.0, 1.0).sample(rng(), 10**10)
    with pytest.raises(ValueError, match=r"`points` must be at most MAX_CONFIGURATIONS.*got "
                                         r"points=1,000,000,000; use fewer points"):
        jt.uniform(0.0, 1.0).grid(10**9)
    with pytest.raises(ValueError, match=r"`n` must be at most MAX_CONFIGURATIONS.*ask in smaller"):
        space.stream().ask(10**10)


def test_discrete_grids_ignore_huge_points():
    # An integer range or a choice has few values, whatever `points` asks for.
    np.testing.assert_array_equal(jt.randint(0, 3).grid(10**12), np.array([0, 1, 2], np.int32))
    assert jt.choice(["a", "b"]).grid(10**12).tolist() == ["a", "b"]
    space = jt.Space(a=jt.randint(0, 4), b=jt.choice([0.1, 0.2]))
    assert len(space.sample(sampler="grid", points=10**12)) == 8


def test_size_limit_is_exact_at_the_boundary(monkeypatch):
    monkeypatch.setattr(values_module, "MAX_CONFIGURATIONS", 12)
    space = jt.Space(a=jt.uniform(0.0, 1.0), b=jt.randint(0, 4))
    assert len(space.sample(sampler="grid", points={"a": 3, "b": 4})) == 12
    with pytest.raises(ValueError, match=r"gives 4 x 4 = 16 configurations, more than "
                                         r"MAX_CONFIGURATIONS = 12"):
        space.sample(sampler="grid", points=4)
    with pytest.raises(ValueError, match=r"`points\['a'\]` must be at most MAX_CONFIGURATIONS "
                                         r"= 12 .*got points\['a'\]=13"):
        space.sample(sampler="grid", points={"a": 13, "b": 1})
    assert len(space.sample(12)) == 12
    with pytest.raises(ValueError, match=r"got n=13"):
        space.sample(13)
    stream = space.stream()
    assert len(stream.ask(12)) == 12 and len(stream.ask(12)) == 12  # the limit is per batch
    with pytest.raises(ValueError, match=r"got n=13"):
        stream.ask(13)


# ----------------------------------------------------------------------- Space.size


def test_size_counts_discrete_configurations():
    space = jt.Space(a=jt.choice([0.1, 0.2, 0.3]), b=jt.randint(5, 9), c=jt.fixed("k"),
                     d=jt.choice(["x", "y"]))
    assert space.size == 3 * 4 * 1 * 2
    # The grid enumerates exactly that many when `points` covers the integer range.
    table = space.sample(sampler="grid", points={"b": 4})
    assert len(table) == space.size
    assert len({tuple(row.values()) for row in table.rows()}) == space.size
    assert jt.Space().size == 1
    assert jt.Space(a=jt.choice([1, 2]), b=jt.uniform(0.0, 1.0)).size is None
    assert jt.Space(b=jt.loguniform(1e-4, 1.0)).size is None
    big = jt.Space(**{f"x{i}": jt.randint(0, 1000) for i in range(20)})
    assert big.size == 1000**20 and type(big.size) is int  # exact, no overflow


# ----------------------------------------------------------------------- ConfigStream


def stream_space():
    return jt.Space(
        a=jt.uniform(-1.0, 3.0),
        b=jt.randint(0, 7),
        c=jt.choice(["x", "y", "z"]),
        d=jt.fixed(0.5),
        e=jt.loguniform(1e-4, 1e-1),
    )


def assert_tables_equal(left, right):
    assert len(left) == len(right)
    assert left.to_dict() == right.to_dict()
    for name in left.names:
        np.testing.assert_array_equal(left.columns[name], right.columns[name])
        assert left.columns[name].dtype == right.columns[name].dtype


def concat(space, tables):
    rows = [row for table in tables for row in table.rows()]
    return space.table(rows)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_stream_batches_do_not_change_the_sequence(sampler):
    space = stream_space()
    whole = space.stream(sampler=sampler, seed=4, points=2).ask(20)
    stream = space.stream(sampler=sampler, seed=4, points=2)
    parts = [stream.ask(k) for k in (3, 0, 1, 9, 7)]
    assert [len(p) for p in parts] == [3, 0, 1, 9, 7] and stream.position == 20
    assert_tables_equal(concat(space, parts), whole)
    skipped = ConfigStream(space, sampler=sampler, seed=4, points=2, position=13)
    assert_tables_equal(skipped.ask(7), whole.take(range(13, 20)))


GRID_POINTS = {"a": 2, "b": 5, "e": 2}  # 2 x 5 x 3 x 1 x 2 = 60 rows


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("chunks", [(20,), (3, 5, 12), (1,) * 20, (0, 7, 0, 13), (16, 4)])
def test_sample_is_the_stream_in_any_chunking(sampler, chunks):
    space = stream_space()
    n = 60 if sampler == "grid" else 20
    expected = space.sample(n, sampler=sampler, seed=9, points=GRID_POINTS)
    stream = space.stream(sampler=sampler, seed=9, points=GRID_POINTS)
    parts = [stream.ask(k) for k in chunks]
    assert [len(part) for part in parts] == list(chunks)
    assert_tables_equal(concat(space, parts), expected.take(range(20)))
    # The same configurations again from a stream resumed at any of the cut points.
    cut = sum(chunks[:-1])
    resumed = ConfigStream(space, sampler=sampler, seed=9, points=GRID_POINTS, position=cut)
    assert_tables_equal(resumed.ask(20 - cut), expected.take(range(cut, 20)))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sample_is_the_stream_for_every_seed_and_size(sampler):
    space = stream_space()
    for seed, n in [(0, 1), (1, 7), (123, 33)]:
        if sampler == "grid":
            expected = space.sample(sampler="grid", points=2)
            n = len(expected)
        else:
            expected = space.sample(n, sampler=sampler, seed=seed)
        assert_tables_equal(space.stream(sampler=sampler, seed=seed, points=2).ask(n), expected)
    if sampler != "grid":  # the seed matters
        assert space.sample(8, sampler=sampler, seed=1).to_dict() != \
            space.sample(8, sampler=sampler, seed=2).to_dict()


def test_sampler_names_are_aliases_of_the_classes():
    space = stream_space()
    classes = {"random": samplers.Random, "grid": samplers.Grid, "sobol": samplers.Sobol,
               "halton": samplers.Halton}
    assert tuple(classes) == SAMPLERS
    for name, cls in classes.items():
        chosen = samplers.resolve(space, name, seed=3, points=2)
        assert type(chosen) is cls and chosen.name == name and chosen.seed == 3
        assert isinstance(chosen, samplers.Sampler)
    assert samplers.resolve(space, "grid", seed=0, points=2).size(space) == 2 * 2 * 3 * 1 * 2
    assert samplers.resolve(space, "sobol", seed=0, points=2).size(space) is None
    with pytest.raises(TypeError, match="abstract"):
        samplers.Sampler()


@pytest.mark.parametrize("cls", [samplers.Random, samplers.Sobol, samplers.Halton])
def test_unit_points_depend_on_seed_and_position_only(cls):
    whole = cls(seed=5).unit(0, 40, 3)
    assert whole.shape == (40, 3) and whole.dtype == np.float64
    assert whole.min() >= 0.0 and whole.max() < 1.0
    for start, n in [(0, 1), (5, 10), (17, 23), (39, 1)]:
        np.testing.assert_array_equal(cls(seed=5).unit(start, n, 3), whole[start:start + n])
    assert not np.array_equal(cls(seed=6).unit(0, 40, 3), whole)


def test_a_new_sampler_is_one_unit_sampler_subclass():
    class Middle(samplers.UnitSampler):
        name = "middle"

        def unit(self, start, n, d):
            return np.full((n, d), 0.5)

    space = jt.Space(a=jt.uniform(0.0, 4.0), b=jt.choice(["x", "y", "z"]), c=jt.fixed(7))
    columns, codes = Middle(seed=0).columns(space, 10, 3)
    assert columns["a"].tolist() == [2.0] * 3 and columns["b"].tolist() == ["y"] * 3
    assert codes["b"].tolist() == [1] * 3 and codes["a"] is None
    assert columns["c"].tolist() == [7] * 3


def test_random_stream_matches_counter_based_reference():
    # Configuration i maps words i*d ... i*d + d - 1 of Philox(seed), top 53 bits.
    space = jt.Space(a=jt.uniform(2.0, 6.0), c=jt.choice(["p", "q", "r", "s"]), k=jt.randint(0, 10))
    seed, n, d = 21, 50, 3
    words = np.random.Philox(seed).random_raw(n * d).reshape(n, d)
    u = (words >> np.uint64(11)).astype(np.float64) / 2.0**53
    table = space.stream(seed=seed).ask(n)
    np.testing.assert_array_equal(table.columns["a"], (2.0 + 4.0 * u[:, 0]).astype(np.float32))
    assert table.columns["c"].tolist() == [["p", "q", "r", "s"][int(4 * x)] for x in u[:, 1]]
    np.testing.assert_array_equal(table.columns["k"], np.floor(10 * u[:, 2]).astype(np.int32))


def test_random_stream_is_seeded_in_range_and_uniform():
    space = jt.Space(lr=jt.loguniform(1e-4, 1e-1), w=jt.randint(0, 5))
    table = space.stream(seed=0).ask(4000)
    assert table.to_dict() == space.stream(seed=0).ask(4000).to_dict()
    assert table.to_dict() != space.stream(seed=1).ask(4000).to_dict()
    lr = table.columns["lr"]
    assert lr.dtype == np.float32 and lr.min() >= F32(1e-4) and lr.max() < F32(1e-1)
    logs = np.log(lr.astype(np.float64))
    p = stats.kstest(logs, "uniform", args=(math.log(1e-4), math.log(1e3))).pvalue
    assert p > 0.01
    assert sorted(set(table.columns["w"].tolist())) == [0, 1, 2, 3, 4]
    # Consecutive configurations are not correlated (each takes its own words).
    assert abs(np.corrcoef(logs[:-1], logs[1:])[0, 1]) < 0.1


def test_grid_stream_walks_the_grid_then_runs_dry():
    space = jt.Space(a=jt.uniform(0.0, 1.0), b=jt.choice(["x", "y"]))
    grid = space.sample(sampler="grid", points=3)
    stream = space.stream(sampler="grid", points=3)
    assert stream.remaining == 6 and stream.position == 0
    assert_tables_equal(stream.ask(4), grid.take(range(4)))
    assert stream.remaining == 2
    last = stream.ask(5)  # like read(n): what is left
    assert_tables_equal(last, grid.take([4, 5]))
    assert stream.remaining == 0 and stream.position == 6
    empty = stream.ask(3)
    assert len(empty) == 0 and empty.to_dict() == {"a": [], "b": []}
    assert stream.position == 6
    assert space.stream().remaining is None and space.stream(sampler="sobol").remaining is None


def test_stream_of_an_empty_space():
    for sampler in SAMPLERS:
        stream = jt.Space().stream(sampler=sampler)
        assert stream.ask(2).rows() == ([{}] if sampler == "grid" else [{}, {}])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_stream_resumes_from_json_state(sampler):
    import json

    space = stream_space()
    uninterrupted = space.stream(sampler=sampler, seed=3, points={"a": 3})
    expected = [uninterrupted.ask(k) for k in (5, 4, 6)]

    stream = space.stream(sampler=sampler, seed=3, points={"a": 3})
    first = stream.ask(5)
    state = json.loads(json.dumps(stream.state_dict()))
    assert state["position"] == 5 and state["sampler"] == sampler
    resumed = ConfigStream.from_state(space, state)
    assert resumed.position == 5 and resumed.remaining == stream.remaining
    assert_tables_equal(first, expected[0])
    assert_tables_equal(resumed.ask(4), expected[1])
    assert_tables_equal(resumed.ask(6), expected[2])
    assert stream.position == 5  # the saved stream is unaffected
    copy = pickle.loads(pickle.dumps(stream))
    assert_tables_equal(copy.ask(4), expected[1])


def test_stream_state_is_a_fresh_dict():
    stream = jt.Space(a=jt.uniform(0.0, 1.0)).stream(sampler="grid", points=4)
    state = stream.state_dict()
    assert state == {"names": ["a"], "sampler": "grid", "seed": 0, "points": {"a": 4},
                     "position": 0}
    state["position"] = 3
    assert stream.position == 0


def test_from_state_errors():
    space = stream_space()
    state = space.stream(sampler="grid", points=2).state_dict()
    with pytest.raises(ValueError, match=r"`state` was saved from a stream over \['a', 'b', "
                                         r"'c', 'd', 'e'\], but `space` has \['a'\]; resume"):
        ConfigStream.from_state(jt.Space(a=jt.uniform(0, 1)), state)
    with pytest.raises(ValueError, match=r"`state` missing 'position' and has unknown 'pos'; "
                                         r"pass the dict ConfigStream.state_dict\(\) returned"):
        ConfigStream.from_state(space, {**{k: v for k, v in state.items()
                                              if k != "position"}, "pos": 1})
    with pytest.raises(TypeError, match=r"`state` must be a mapping from "
                                        r"ConfigStream.state_dict\(\), got list"):
        ConfigStream.from_state(space, [1, 2])
    with pytest.raises(ValueError, match=r"`position` must be at most the grid size 24, got "
                                         r"position=25"):
        ConfigStream.from_state(space, {**state, "position": 25})
    with pytest.raises(ValueError, match=r"`sampler` must be one of"):
        ConfigStream.from_state(space, {**state, "sampler": "latin"})


def test_stream_argument_errors():
    space = stream_space()
    stream = space.stream()
    with pytest.raises(ValueError, match=r"`n` must be a non-negative integer, got n=-1"):
        stream.ask(-1)
    with pytest.raises(TypeError, match=r"`n` must be a non-negative integer, got float 2.0"):
        stream.ask(2.0)
    with pytest.raises(TypeError, match=r"`n` must be a non-negative integer, got bool True"):
        stream.ask(True)
    assert stream.position == 0
    with pytest.raises(ValueError, match=r"`sampler` must be one of 'random', 'grid', 'sobol', "
                                         r"'halton', got sampler='latin'"):
        space.stream(sampler="latin")
    with pytest.raises(ValueError, match=r"`seed` must be a non-negative integer, got seed=-2"):
        space.stream(seed=-2)
    with pytest.raises(TypeError, match=r"`seed` must be a non-negative integer, got bool"):
        space.stream(seed=True)
    with pytest.raises(ValueError, match=r"`points` must be a positive integer, got points=0"):
        space.stream(sampler="grid", points=0)
    with pytest.raises(TypeError, match=r"`space` must be a Space, got dict"):
        ConfigStream({"a": jt.fixed(1)})
    with pytest.raises(ValueError, match=r"`position` must be a non-negative integer, got "
                                         r"position=-1"):
        ConfigStream(space, position=-1)
    with pytest.raises(TypeError, match=r"`position` must be a non-negative integer, got str"):
        ConfigStream(space, position="3")
