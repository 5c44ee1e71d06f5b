"""Tests for `jaxtune.results`: SweepResult built by hand from arrays with known answers."""

import errno
import io
import json
import os
import subprocess
import sys
import zipfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.colors
import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

from jaxtune.results import BestConfig, SweepResult

nan = np.nan

# 3 trials x 2 seeds. Member 4 (trial 2, seed 0) diverges at step 15; member 5 (its
# other seed) has by far the best loss and accuracy, so any rule that ignores the
# diverged seed would wrongly pick trial 2.
TRAIN_LOSS = np.array(
    [
        [2.0, 1.0, 0.50],
        [2.1, 1.1, 0.70],  # trial 0: final 0.5, 0.7 -> mean 0.60, std 0.10
        [2.2, 1.5, 0.90],
        [2.3, 1.4, 0.80],  # trial 1: final 0.9, 0.8 -> mean 0.85, std 0.05
        [1.0, nan, nan],
        [0.1, 0.05, 0.01],  # trial 2: seed 0 diverged
    ],
    np.float32,
)
ACCURACY = np.array(
    [
        [0.90, 0.92, 0.94],
        [0.90, 0.91, 0.96],  # trial 0: mean 0.95, std 0.01
        [0.95, 0.97, 0.98],
        [0.90, 0.95, 0.99],  # trial 1: mean 0.985, std 0.005
        [0.50, 0.999, 0.999],  # diverged, yet finite eval values: must still never win
        [0.99, 0.995, 0.999],
    ],
    np.float32,
)


def make(**overrides):
    fields = {
        "hparams": {
            "learning_rate": np.array([0.1, 0.1, 0.01, 0.01, 1.0, 1.0], np.float32),
            "weight_decay": np.array([0.0, 0.0, 1e-4, 1e-4, 1e-2, 1e-2], np.float32),
            "optimizer": np.array(["adam", "adam", "sgd", "sgd", "adam", "adam"], object),
        },
        "trial": np.array([0, 0, 1, 1, 2, 2], np.int32),
        "seed": np.array([0, 1, 0, 1, 0, 1], np.int32),
        "steps": np.array([10, 20, 30], np.int32),
        "train_loss": TRAIN_LOSS,
        "metrics": {"accuracy": ACCURACY},
        "diverged": np.array([False, False, False, False, True, False]),
        "diverged_step": np.array([-1, -1, -1, -1, 15, -1], np.int32),
    }
    fields.update(overrides)
    return SweepResult(**fields)


# ---------------------------------------------------------------------- sizes and finals


def test_sizes():
    result = make()
    assert (result.n_members, result.n_trials, result.n_seeds) == (6, 3, 2)


def test_final_is_last_point_and_nan_for_diverged():
    result = make()
    final = result.final()
    assert final.dtype == np.float32
    np.testing.assert_array_equal(final, np.float32([0.5, 0.7, 0.9, 0.8, nan, 0.01]))
    accuracy = result.final("accuracy")
    assert np.isnan(accuracy[4])  # the curve ends at 0.999, but the member diverged
    np.testing.assert_allclose(accuracy[[0, 1, 2, 3, 5]], [0.94, 0.96, 0.98, 0.99, 0.999])
    accuracy[0] = -1.0  # a copy: the stored curve is untouched
    assert result.metrics["accuracy"][0, -1] == np.float32(0.94)


def test_mean_over_seeds():
    curves = make().mean_over_seeds("train_loss")
    expected = np.array(
        [[2.05, 1.05, 0.60], [2.25, 1.45, 0.85], [0.55, nan, nan]]
    )
    np.testing.assert_allclose(curves, expected, rtol=1e-6)
    assert curves.shape == (3, 3)


# ---------------------------------------------------------------------- best


def test_best_min_train_loss():
    best = make().best
    assert isinstance(best, BestConfig)
    assert best.trial == 0
    assert (best.metric, best.mode) == ("train_loss", "min")
    assert best.hparams == {"learning_rate": 0.1, "weight_decay": 0.0, "optimizer": "adam"}
    assert all(type(v) in (float, str) for v in best.hparams.values())
    np.testing.assert_allclose(best.mean, 0.6, rtol=1e-6)
    np.testing.assert_allclose(best.std, np.std([0.5, 0.7]), rtol=1e-6)
    np.testing.assert_allclose(best.values, [0.5, 0.7])
    assert best.n_seeds == 2


def test_best_values_follow_seed_order():
    # Members listed with seeds reversed: values still come back by seed index.
    result = make(seed=np.array([1, 0, 1, 0, 1, 0], np.int32),
                  diverged=np.array([False, False, False, False, False, True]),
                  diverged_step=np.array([-1, -1, -1, -1, -1, 25], np.int32),
                  train_loss=np.where(np.isnan(TRAIN_LOSS), 3.0, TRAIN_LOSS))
    np.testing.assert_allclose(result.best.values, [0.7, 0.5])


def test_best_max_accuracy_and_min_accuracy():
    result = make()
    assert result.best_config("accuracy", "max").trial == 1
    assert result.best_config("accuracy", "min").trial == 0
    # Without a mode, "accuracy" is inferred to be maximised.
    inferred = result.best_config("accuracy")
    assert (inferred.trial, inferred.mode) == (1, "max")
    np.testing.assert_allclose(inferred.mean, 0.985, rtol=1e-6)
    np.testing.assert_allclose(inferred.std, 0.005, rtol=1e-4)


def test_default_metric_and_mode_drive_best():
    result = make(metric="accuracy", mode="max")
    assert result.best.trial == 1
    # The result's own mode wins for its own metric, even against the name heuristic.
    assert make(metric="accuracy", mode="min").best.trial == 0
    # Asking for train_loss on an accuracy-ranked result minimises it.
    assert result.best_config("train_loss").trial == 0


def test_diverged_never_wins():
    result = make()
    # Maximising loss: trial 2 holds no finite mean, so trial 1 (0.85) wins.
    assert result.best_config("train_loss", "max").trial == 1
    assert result.best_config("accuracy", "max").trial != 2


def test_every_trial_diverged():
    result = make(
        diverged=np.ones(6, bool), diverged_step=np.full(6, 5, np.int32),
    )
    with pytest.raises(ValueError, match="every trial diverged.*6 of 6 members diverged"):
        _ = result.best
    assert "none, every trial diverged" in repr(result)


def test_one_seed_per_trial_in_every_trial_is_not_enough():
    # Each trial has one diverged seed: no trial is finite on all seeds.
    result = make(
        diverged=np.array([True, False, False, True, True, False]),
        diverged_step=np.array([3, -1, -1, 3, 15, -1], np.int32),
    )
    with pytest.raises(ValueError, match="every trial diverged"):
        result.best_config()


def test_unknown_mode_and_metric():
    result = make(metrics={"accuracy": ACCURACY, "kappa": ACCURACY})
    with pytest.raises(ValueError, match=r"lower or higher `kappa`.*mode='min' or mode='max'"):
        result.best_config("kappa")
    assert result.best_config("kappa", "max").trial == 1
    with pytest.raises(ValueError, match=r"`mode` must be 'min' or 'max', got mode='best'"):
        result.best_config("accuracy", "best")
    with pytest.raises(ValueError, match=r"`metric` must be 'train_loss' or an eval metric.*'acc'"):
        result.final("acc")


def test_best_config_repr():
    best = BestConfig(
        hparams={"learning_rate": 0.0031, "weight_decay": 0.0001, "optimizer": "adam",
                 "batch_size": 128},
        trial=4, metric="accuracy", mode="max", mean=0.96213, std=0.0041,
        values=np.array([0.96, 0.958, 0.968]),
    )
    assert repr(best) == (
        "learning_rate=0.0031, weight_decay=0.0001, optimizer='adam', batch_size=128 "
        "-> accuracy 0.962 ± 0.0041 (3 seeds)"
    )
    lone = BestConfig({}, 0, "train_loss", "min", 0.5, 0.0, np.array([0.5]))
    assert repr(lone) == "trial 0 -> train_loss 0.5 ± 0 (1 seed)"


def test_float32_hparams_come_back_short():
    result = make(hparams={"learning_rate": np.full(6, 0.0031, np.float32)})
    assert result.best.hparams["learning_rate"] == 0.0031


# ---------------------------------------------------------------------- summary / top


def test_summary_columns_order_and_stats():
    frame = make().summary()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [
        "trial", "learning_rate", "weight_decay", "optimizer",
        "train_loss_mean", "train_loss_std", "n_seeds", "n_diverged", "status", "steps_trained",
    ]
    assert frame["status"].tolist() == ["completed", "completed", "diverged"]
    assert frame["steps_trained"].tolist() == [30.0, 30.0, 30.0]
    assert frame.index.name == "rank"
    assert frame["trial"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(frame["train_loss_mean"][:2], [0.6, 0.85], rtol=1e-6)
    np.testing.assert_allclose(
        frame["train_loss_std"][:2], [np.std([0.5, 0.7]), np.std([0.9, 0.8])], rtol=1e-5
    )
    assert np.isnan(frame["train_loss_mean"][2]) and np.isnan(frame["train_loss_std"][2])
    assert frame["n_seeds"].tolist() == [2, 2, 2]
    assert frame["n_diverged"].tolist() == [0, 0, 1]
    assert frame["optimizer"].tolist() == ["adam", "sgd", "adam"]
    np.testing.assert_allclose(frame["learning_rate"], [0.1, 0.01, 1.0], rtol=1e-6)


def test_summary_max_accuracy():
    frame = make().summary("accuracy", "max")
    assert frame["trial"].tolist() == [1, 0, 2]
    assert {"accuracy_mean", "accuracy_std"} <= set(frame.columns)


def test_summary_one_seed_std_is_zero():
    result = make(
        seed=np.zeros(6, np.int32), trial=np.arange(6, dtype=np.int32),
    )
    frame = result.summary()
    assert (frame["train_loss_std"].dropna() == 0).all()
    assert frame["n_seeds"].tolist() == [1] * 6
    # finite trials by loss ascending, then the diverged one
    assert frame["trial"].tolist() == [5, 0, 1, 3, 2, 4]


def test_summary_ranks_non_finite_by_diverged_count_then_trial():
    loss = np.array([[1.0], [1.0], [2.0], [2.0], [3.0], [3.0], [0.5], [0.5]], np.float32)
    result = SweepResult(
        hparams={},
        trial=np.array([0, 0, 1, 1, 2, 2, 3, 3]),
        seed=np.array([0, 1, 0, 1, 0, 1, 0, 1]),
        steps=np.array([100]),
        train_loss=loss,
        metrics={},
        diverged=np.array([True, True, False, False, True, False, False, False]),
        diverged_step=np.array([7, 9, -1, -1, 8, -1, -1, -1]),
    )
    frame = result.summary()
    assert frame["trial"].tolist() == [3, 1, 2, 0]
    assert frame["n_diverged"].tolist() == [0, 0, 1, 2]


def test_summary_ties_keep_trial_order():
    loss = np.ones((4, 1), np.float32)
    result = SweepResult(
        hparams={}, trial=np.array([3, 1, 2, 0]), seed=np.zeros(4, np.int64),
        steps=np.array([1]), train_loss=loss, metrics={},
        diverged=np.zeros(4, bool), diverged_step=np.full(4, -1),
    )
    assert result.summary()["trial"].tolist() == [0, 1, 2, 3]


def test_top():
    result = make()
    top = result.top(2)
    assert top["trial"].tolist() == [0, 1]
    assert len(result.top()) == 3  # fewer trials than the default k=5
    assert result.top(1, "accuracy", "max")["trial"].tolist() == [1]
    with pytest.raises(ValueError, match="`k` must be a positive integer, got k=0"):
        result.top(0)
    with pytest.raises(TypeError, match="`k` must be a positive integer, got float 2.5"):
        result.top(2.5)


# ---------------------------------------------------------------------- to_pandas


def test_to_pandas_members():
    frame = make().to_pandas()
    assert list(frame.columns) == [
        "member", "trial", "seed", "learning_rate", "weight_decay", "optimizer",
        "final_train_loss", "final_accuracy", "diverged", "diverged_step", "status",
        "steps_trained",
    ]
    assert frame.shape == (6, 12)
    assert frame["status"].tolist() == ["completed"] * 4 + ["diverged", "completed"]
    assert frame["steps_trained"].tolist() == [30] * 6
    assert frame["member"].tolist() == list(range(6))
    assert frame["diverged_step"].tolist() == [-1, -1, -1, -1, 15, -1]
    assert np.isnan(frame["final_accuracy"][4])
    np.testing.assert_allclose(frame["final_train_loss"][:4], [0.5, 0.7, 0.9, 0.8])


def test_to_pandas_curves():
    frame = make().to_pandas(curves=True)
    assert list(frame.columns) == [
        "member", "trial", "seed", "learning_rate", "weight_decay", "optimizer",
        "step", "train_loss", "accuracy",
    ]
    assert frame.shape == (18, 9)
    row = frame[(frame.member == 3) & (frame.step == 20)]
    assert len(row) == 1
    np.testing.assert_allclose(row["train_loss"], [1.4])
    np.testing.assert_allclose(row["accuracy"], [0.95])
    assert row["optimizer"].item() == "sgd"
    assert frame["step"].tolist()[:6] == [10, 20, 30, 10, 20, 30]
    assert frame["train_loss"].isna().sum() == 2


@pytest.mark.parametrize(
    "call", [
        lambda r: r.summary(), lambda r: r.to_pandas(), lambda r: r.top(),
    ],
)
def test_pandas_missing(monkeypatch, call):
    result = make()
    monkeypatch.setitem(sys.modules, "pandas", None)
    message = r"needs pandas: install it with `pip install 'jaxtune\[demo\]'`"
    with pytest.raises(ImportError, match=message):
        call(result)
    assert result.best.trial == 0  # best works without pandas


def test_matplotlib_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"`SweepResult.plot` needs matplotlib.*jaxtune\[demo\]"):
        make().plot()


# ---------------------------------------------------------------------- plot


def test_plot_axes_and_png(tmp_path):
    path = tmp_path / "sweep.png"
    figure = make().plot("accuracy", path=path)
    assert isinstance(figure, matplotlib.figure.Figure)
    # loss curves + colorbar + one panel per varying hyperparameter (2 numeric, 1 not)
    assert len(figure.axes) == 5
    curves = figure.axes[0]
    assert curves.get_yscale() == "log"
    assert curves.get_ylabel() == "training loss"
    assert [ax.get_xlabel() for ax in figure.axes[1:3]] == ["learning_rate", "weight_decay"]
    assert figure.axes[1].get_xscale() == "log"  # 0.01..1 spans two decades
    # weight_decay is 0, 1e-4, 1e-2: symmetric log, linear up to the smallest nonzero value
    assert figure.axes[2].get_xscale() == "symlog"
    np.testing.assert_allclose(figure.axes[2].xaxis.get_transform().linthresh, 1e-4, rtol=1e-6)
    # three distinct values: a tick at each, labelled as the value
    np.testing.assert_allclose(figure.axes[2].get_xticks(), [0.0, 1e-4, 1e-2], rtol=1e-6)
    labels = [label.get_text() for label in figure.axes[2].get_xticklabels()]
    assert labels == ["0", "0.0001", "0.01"]
    # the optimizer, not numeric: a tick per value, in order of first appearance
    optimizer = figure.axes[3]
    assert optimizer.get_xlabel() == "optimizer" and optimizer.get_xscale() == "linear"
    np.testing.assert_array_equal(optimizer.get_xticks(), [0, 1])
    assert [label.get_text() for label in optimizer.get_xticklabels()] == ["adam", "sgd"]
    points = [line for line in optimizer.lines if line.get_marker() == "o"]
    np.testing.assert_array_equal(points[0].get_xdata(), [0, 1])  # trials 0 (adam), 1 (sgd)
    assert figure.axes[4].get_ylabel() == "learning_rate"  # the colorbar
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the diverged trial is left out of the metric panels: two finite trials + the star
    panel = figure.axes[1]
    assert panel.get_title() == "1 trial not shown (diverged or NaN)"
    points = [line for line in panel.lines if line.get_marker() == "o"]
    assert len(points) == 1 and len(points[0].get_xdata()) == 2
    stars = [line for line in panel.lines if line.get_marker() == "*"]
    assert len(stars) == 1
    np.testing.assert_allclose(stars[0].get_xdata(), [0.01], rtol=1e-6)
    np.testing.assert_allclose(stars[0].get_ydata(), [0.985], rtol=1e-6)


def test_plot_without_numeric_hparams():
    result = make(hparams={"optimizer": np.array(["adam"] * 6, object)})
    figure = result.plot()
    assert len(figure.axes) == 1  # no colorbar, no metric panels


def test_plot_hparam_choice():
    result = make()
    figure = result.plot(hparam="weight_decay")
    assert figure.axes[4].get_ylabel() == "weight_decay"
    message = r"`hparam` must name a numeric hyperparameter.*'optimizer'"
    with pytest.raises(ValueError, match=message):
        result.plot(hparam="optimizer")


def test_plot_metric_without_known_direction_has_no_star():
    result = make(metrics={"kappa": ACCURACY})
    figure = result.plot("kappa")
    assert not [line for line in figure.axes[1].lines if line.get_marker() == "*"]


# ---------------------------------------------------------------------- save / load


def assert_same(a: SweepResult, b: SweepResult) -> None:
    for name in ("trial", "seed", "steps", "train_loss", "diverged", "diverged_step", "status",
                 "steps_trained"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, strict=True)
    assert list(a.hparams) == list(b.hparams)
    for name in a.hparams:
        x, y = a.hparams[name], b.hparams[name]
        assert x.dtype == y.dtype, name
        assert [type(v) for v in x] == [type(v) for v in y], name
        np.testing.assert_array_equal(x, y, strict=True)
    assert list(a.metrics) == list(b.metrics)
    for name in a.metrics:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name], strict=True)
    assert (a.metric, a.mode, a.timing) == (b.metric, b.mode, b.timing)
    if a.step_loss is None:
        assert b.step_loss is None
    else:
        np.testing.assert_array_equal(a.step_loss, b.step_loss, strict=True)


def test_round_trip_without_params(tmp_path):
    result = make(
        metric="accuracy", mode="max",
        timing={"compile_s": 1.25, "run_s": 3.5, "member_steps_per_s": 1e6},
        step_loss=np.arange(180, dtype=np.float32).reshape(6, 30),
    )
    path = tmp_path / "sweep.npz"
    result.save(path)
    loaded = SweepResult.load(path)
    assert_same(result, loaded)
    assert loaded.params is None
    assert loaded.hparams["optimizer"].tolist() == ["adam", "adam", "sgd", "sgd", "adam", "adam"]
    assert np.isnan(loaded.train_loss[4, 1:]).all()
    assert loaded.best.trial == 1


def test_round_trip_static_values_and_params(tmp_path):
    params = {
        "dense": {"w": jnp.arange(12.0).reshape(6, 2), "b": jnp.zeros((6,), jnp.bfloat16)},
        "layers": [np.arange(6, dtype=np.int32)],
    }
    hparams = {
        "learning_rate": np.array([0.1, 0.1, 0.01, 0.01, 1.0, 1.0], np.float32),
        "batch_size": np.array([128, 128, 256, 256, 128, 128], np.int32),
        "schedule": np.array(["cosine", "cosine", "linear", "linear", None, None], object),
        "nesterov": np.array([True, True, False, False, True, True], object),
    }
    # an object column of lists, built cell by cell so NumPy keeps it 1-D
    widths = np.empty(6, object)
    for i, value in enumerate([[64, 64], [64, 64], [32], [32], [16, 8], [16, 8]]):
        widths[i] = value
    hparams["widths"] = widths
    result = make(hparams=hparams, params=params, metrics={})
    path = tmp_path / "with_params.npz"
    result.save(path)
    loaded = SweepResult.load(path)
    assert_same(result, loaded)
    assert loaded.hparams["widths"][4] == [16, 8]
    assert set(loaded.params) == {"dense", "layers"}
    np.testing.assert_array_equal(loaded.params["dense"]["w"], np.arange(12.0).reshape(6, 2))
    assert loaded.params["dense"]["b"].dtype == jnp.bfloat16
    assert isinstance(loaded.params["layers"], list)
    assert loaded.params["layers"][0].dtype == np.int32


def test_save_writes_exactly_the_path(tmp_path):
    path = tmp_path / "no_suffix"
    make().save(str(path))
    assert path.exists() and not (tmp_path / "no_suffix.npz").exists()
    assert_same(make(), SweepResult.load(str(path)))


def test_save_rejects_values_json_cannot_keep(tmp_path):
    tuples = np.empty(6, object)
    for i in range(6):
        tuples[i] = (1, 2)
    with pytest.raises(TypeError, match=r"static hyperparameter `shape`.*tuples become lists"):
        make(hparams={"shape": tuples}).save(tmp_path / "x.npz")
    functions = np.array([abs] * 6, object)
    message = r"static hyperparameter `activation`.*not JSON serializable"
    with pytest.raises(TypeError, match=message):
        make(hparams={"activation": functions}).save(tmp_path / "x.npz")
    nans = np.array([float("nan")] * 6, object)
    with pytest.raises(TypeError, match=r"static hyperparameter `gamma`.*float \(finite\)"):
        make(hparams={"gamma": nans}).save(tmp_path / "x.npz")
    leaves = {"w": np.array([object()] * 6, object)}
    with pytest.raises(TypeError, match=r"`params` leaf \['w'\]: it is an object array"):
        make(params=leaves).save(tmp_path / "x.npz")
    with pytest.raises(TypeError, match=r"`model_state` leaf \['w'\]: it is an object array"):
        make(model_state=leaves).save(tmp_path / "x.npz")


def write_npz(path, **arrays):
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def saved_arrays(tmp_path):
    path = tmp_path / "good.npz"
    make().save(path)
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def test_load_garbage(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(ValueError, match="is not a readable SweepResult file written by "
                       r"`SweepResult.save`: it is not an .npz \(zip\) archive"):
        SweepResult.load(path)


def test_load_truncated(tmp_path):
    path = tmp_path / "cut.npz"
    make().save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="is not a readable SweepResult file"):
        SweepResult.load(path)


def test_load_corrupted_member(tmp_path):
    path = tmp_path / "flipped.npz"
    make().save(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        offset = archive.getinfo("train_loss.npy").header_offset
    name_length, extra_length = np.frombuffer(data[offset + 26:offset + 30], "<u2")
    start = offset + 30 + int(name_length) + int(extra_length) + 5  # inside the deflate data
    data[start:start + 8] = bytes(b ^ 0xFF for b in data[start:start + 8])
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is not a readable SweepResult file"):
        SweepResult.load(path)


def test_load_single_array_file(tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="holds a single array, not an .npz archive"):
        SweepResult.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        SweepResult.load(tmp_path / "absent.npz")


def test_load_without_metadata(tmp_path):
    path = tmp_path / "foreign.npz"
    write_npz(path, x=np.zeros(3))
    with pytest.raises(ValueError, match="it has no `__meta__` entry"):
        SweepResult.load(path)


def test_load_bad_metadata(tmp_path):
    arrays = saved_arrays(tmp_path)
    path = tmp_path / "bad.npz"
    write_npz(path, **{**arrays, "__meta__": np.array("{not json")})
    with pytest.raises(ValueError, match="its metadata is not valid JSON"):
        SweepResult.load(path)
    write_npz(path, **{**arrays, "__meta__": np.array(json.dumps({"format": "other"}))})
    with pytest.raises(ValueError, match="does not name the format 'jaxtune.SweepResult'"):
        SweepResult.load(path)
    meta = json.loads(str(arrays["__meta__"]))
    write_npz(path, **{**arrays, "__meta__": np.array(json.dumps({**meta, "version": 99}))})
    message = "holds SweepResult format version 99, this jaxtune reads versions 1, 2, 3, 4"
    with pytest.raises(ValueError, match=message):
        SweepResult.load(path)
    del meta["hparams"]
    write_npz(path, **{**arrays, "__meta__": np.array(json.dumps(meta))})
    with pytest.raises(ValueError, match="its metadata lacks or mangles 'hparams'"):
        SweepResult.load(path)


def test_load_missing_array(tmp_path):
    arrays = saved_arrays(tmp_path)
    del arrays["diverged_step"]
    path = tmp_path / "missing.npz"
    write_npz(path, **arrays)
    with pytest.raises(ValueError, match="it is missing the array 'diverged_step'"):
        SweepResult.load(path)


def test_load_mismatched_arrays(tmp_path):
    arrays = saved_arrays(tmp_path)
    arrays["train_loss"] = arrays["train_loss"][:, :2]
    path = tmp_path / "mismatch.npz"
    write_npz(path, **arrays)
    with pytest.raises(
        ValueError, match=r"holds an inconsistent SweepResult: `train_loss` must have shape"
    ):
        SweepResult.load(path)


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"trial": np.array([], np.int32)}, ValueError, "`trial` is empty"),
        ({"trial": np.zeros((6, 1), np.int32)}, ValueError, r"`trial` must be a 1-D array"),
        ({"trial": np.zeros(6)}, TypeError, "`trial` must hold integers, got dtype float64"),
        ({"trial": np.array([0, 0, 1, 1, -2, -2])}, ValueError, "`trial` must be non-negative"),
        ({"seed": np.array([0, 1, 0, 1, 0])}, ValueError,
         "`seed` has 5 entries but `trial` has 6"),
        ({"seed": np.array([0, 1, 0, 1, 0, -1])}, ValueError, "`seed` must be non-negative"),
        ({"seed": np.array([0, 0, 0, 1, 0, 1])}, ValueError,
         r"members 0 and 1 are both trial=0, seed=0"),
        ({"steps": np.array([], np.int32)}, ValueError, "`steps` is empty"),
        ({"steps": np.array([10, 10, 30])}, ValueError, "`steps` must be strictly increasing"),
        ({"train_loss": TRAIN_LOSS[:, :2]}, ValueError,
         r"`train_loss` must have shape \[N, C\] = \(6, 3\).*got shape \(6, 2\)"),
        ({"train_loss": TRAIN_LOSS.astype(str)}, TypeError, "`train_loss` must hold numbers"),
        ({"metrics": [ACCURACY]}, TypeError, "`metrics` must be a dict"),
        ({"metrics": {"accuracy": ACCURACY[:5]}}, ValueError,
         r"`metrics\['accuracy'\]` must have shape"),
        ({"metrics": {"train_loss": ACCURACY}}, ValueError,
         "`metrics` must not have a 'train_loss' entry"),
        ({"metrics": {3: ACCURACY}}, TypeError, "`metrics` keys must be non-empty strings"),
        ({"diverged": np.zeros(6, int)}, TypeError, "`diverged` must be a 1-D bool array"),
        ({"diverged": np.zeros(5, bool)}, ValueError, "`diverged` has 5 entries"),
        ({"diverged_step": np.full(6, -1)}, ValueError,
         "member 4 is marked diverged but has diverged_step=-1"),
        ({"diverged_step": np.array([-1, 3, -1, -1, 15, -1])}, ValueError,
         "member 1 is not marked diverged but has diverged_step=3"),
        ({"hparams": [1, 2]}, TypeError, "`hparams` must be a dict"),
        ({"hparams": {"": np.zeros(6)}}, TypeError, "`hparams` keys must be non-empty strings"),
        ({"hparams": {"lr": np.zeros(5)}}, ValueError,
         "hyperparameter `lr` has 5 entries but `trial` has 6"),
        ({"hparams": {"lr": np.zeros((6, 2))}}, ValueError,
         r"hyperparameter `lr` must be a 1-D column \[N\]"),
        ({"hparams": {"lr": np.zeros(6, complex)}}, TypeError,
         "hyperparameter `lr` must be a numeric array or an object array"),
        ({"hparams": {"lr": np.array([0.1, 0.2, 0.3, 0.3, 0.5, 0.5])}}, ValueError,
         r"members 0 and 1 share trial=0 but differ in hyperparameter `lr` \(0.1 vs 0.2\)"),
        ({"hparams": {"opt": np.array(["a", "a", "b", "c", "d", "d"], object)}}, ValueError,
         r"members 2 and 3 share trial=1 but differ in hyperparameter `opt` \('b' vs 'c'\)"),
        ({"hparams": {"seed": np.zeros(6)}}, ValueError,
         "hyperparameter name `seed` collides with a column"),
        ({"hparams": {"accuracy_mean": np.zeros(6)}}, ValueError,
         "hyperparameter name `accuracy_mean` collides"),
        ({"hparams": {"accuracy_low": np.zeros(6)}}, ValueError,
         "hyperparameter name `accuracy_low` collides"),  # summary(interval=...)'s columns
        ({"hparams": {"train_loss_high": np.zeros(6)}}, ValueError,
         "hyperparameter name `train_loss_high` collides"),
        ({"metric": "loss"}, ValueError,
         r"`metric` must be 'train_loss' or a key of `metrics` \['accuracy'\], got metric='loss'"),
        ({"mode": "maximize"}, ValueError, "`mode` must be 'min' or 'max', got mode='maximize'"),
        ({"step_loss": np.zeros((5, 30))}, ValueError, r"`step_loss` must have shape \[N, steps\]"),
        ({"step_loss": np.zeros((6, 30), bool)}, TypeError, "`step_loss` must hold numbers"),
        ({"params": {"w": np.zeros((5, 2))}}, ValueError,
         r"`params` leaf \['w'\] has shape \(5, 2\); every leaf needs the leading member axis N=6"),
        ({"model_state": [np.zeros(6), np.zeros(())]}, ValueError,
         r"`model_state` leaf \[1\] has shape \(\); every leaf needs the leading member axis N=6"),
        ({"timing": [1.0]}, TypeError, "`timing` must be a dict"),
        ({"timing": {"run_s": "fast"}}, TypeError, r"`timing\['run_s'\]` must be a number"),
    ],
)
def test_validation_errors(overrides, error, message):
    with pytest.raises(error, match=message):
        make(**overrides)


def test_coercions():
    result = make(
        hparams={
            "optimizer": np.array(["adam", "adam", "sgd", "sgd", "adam", "adam"]),  # <U4
            "batch_size": np.array([np.int64(128)] * 6, object),
            "lr": jnp.full((6,), 0.1),
        },
        trial=jnp.array([0, 0, 1, 1, 2, 2]),
        timing={"run_s": np.float32(2.5), "steps": 7},
    )
    assert result.hparams["optimizer"].dtype == object
    assert type(result.hparams["optimizer"][0]) is str
    assert type(result.hparams["batch_size"][0]) is int
    assert isinstance(result.hparams["lr"], np.ndarray)
    assert isinstance(result.trial, np.ndarray)
    assert result.timing == {"run_s": 2.5, "steps": 7.0}
    assert result.best.hparams == {"optimizer": "adam", "batch_size": 128, "lr": 0.1}


def test_repr():
    text = repr(make(metric="accuracy", mode="max"))
    assert text.startswith(
        "SweepResult(6 members (3 trials × 2 seeds), 3 record points to step 30"
    )
    assert "metric='accuracy' (max), 1 diverged" in text
    best = "best: learning_rate=0.01, weight_decay=0.0001, optimizer='sgd' -> accuracy 0.985"
    assert best in text


# ---------------------------------------------------------------------- member status

# 4 trials x 2 seeds of an adaptive sweep, recorded at steps 10, 20, 30.
# trial 0: both seeds completed (0.6, 0.8 -> 0.7).
# trial 1: both seeds stopped at step 10 with the best scores of all (0.3, 0.5 -> 0.4):
#          a rule that ignored the status would make it the best.
# trial 2: seed 0 completed (0.65), seed 1 stopped at step 20 (0.9) -> 0.775, stopped.
# trial 3: seed 0 diverged, seed 1 completed.
ADAPTIVE_LOSS = np.array(
    [
        [2.0, 1.0, 0.6],
        [2.0, 1.2, 0.8],
        [0.3, nan, nan],
        [0.5, nan, nan],
        [1.0, 0.8, 0.65],
        [1.5, 0.9, nan],
        [1.0, nan, nan],
        [0.2, 0.1, 0.05],
    ],
    np.float32,
)


def make_adaptive(**overrides):
    fields = {
        "hparams": {
            "learning_rate": np.repeat(np.float32([0.1, 1.0, 0.01, 3.0]), 2),
            "weight_decay": np.repeat(np.float32([0.0, 1e-4, 1e-3, 1e-2]), 2),
        },
        "trial": np.repeat(np.arange(4), 2),
        "seed": np.tile(np.arange(2), 4),
        "steps": np.array([10, 20, 30]),
        "train_loss": ADAPTIVE_LOSS,
        "metrics": {},
        "diverged": np.array([False] * 6 + [True, False]),
        "diverged_step": np.array([-1] * 6 + [12, -1]),
        "status": np.array(["completed", "completed", "stopped", "stopped", "completed",
                            "stopped", "diverged", "completed"]),
        "steps_trained": np.array([30, 30, 10, 10, 30, 20, 20, 30]),
    }
    fields.update(overrides)
    return SweepResult(**fields)


def test_status_and_steps_trained_default_from_diverged_and_steps():
    result = make()
    assert result.status.tolist() == ["completed"] * 4 + ["diverged", "completed"]
    assert result.steps_trained.tolist() == [30] * 6
    assert result.steps_trained.dtype == result.steps.dtype


def test_final_reads_the_last_record_point_reached():
    result = make_adaptive()
    np.testing.assert_array_equal(
        result.final(), np.float32([0.6, 0.8, 0.3, 0.5, 0.65, 0.9, nan, 0.05])
    )
    # Between record points: the last one at or before steps_trained; before the first: NaN.
    partial = make_adaptive(steps_trained=np.array([30, 29, 10, 9, 30, 25, 20, 30]))
    final = partial.final()
    np.testing.assert_array_equal(final[[0, 1, 2, 4, 5, 7]], np.float32([0.6, 1.2, 0.3, 0.65,
                                                                          0.9, 0.05]))
    assert np.isnan(final[3]) and np.isnan(final[6])


def test_completed_trials_rank_first_then_stopped_then_diverged():
    result = make_adaptive()
    frame = result.summary()
    assert frame["trial"].tolist() == [0, 1, 2, 3]
    assert frame["status"].tolist() == ["completed", "stopped", "stopped", "diverged"]
    assert frame["steps_trained"].tolist() == [30.0, 10.0, 25.0, 25.0]
    np.testing.assert_allclose(frame["train_loss_mean"][:3], [0.7, 0.4, 0.775], rtol=1e-6)
    best = result.best
    assert best.trial == 0  # not trial 1, whose seeds were stopped at better scores
    np.testing.assert_allclose(best.values, [0.6, 0.8], rtol=1e-6)
    assert result.top(2)["trial"].tolist() == [0, 1]
    # Maximising: stopped trials still rank after every completed one.
    assert result.summary(mode="max")["trial"].tolist() == [0, 2, 1, 3]


def test_running_trials_rank_between_completed_and_stopped():
    status = np.array(["completed", "completed", "running", "running", "completed",
                       "stopped", "diverged", "completed"])
    frame = make_adaptive(status=status).summary()
    assert frame["status"].tolist() == ["completed", "running", "stopped", "diverged"]


def test_no_trial_completed():
    status = np.array(["stopped"] * 6 + ["diverged", "stopped"])
    result = make_adaptive(status=status)
    message = (r"no trial reached the full budget on every seed \(7 stopped, 1 diverged, of 8 "
               r"members\)")
    with pytest.raises(ValueError, match=message):
        result.best_config()
    text = repr(result)
    assert "1 diverged, 7 stopped; best: none, no trial reached the full budget" in text
    # summary and top still rank them, by their score when they stopped
    assert result.top(2)["trial"].tolist() == [1, 0]
    running = make_adaptive(status=np.array(["running"] * 6 + ["diverged", "running"]))
    with pytest.raises(ValueError, match=r"\(1 diverged, 7 running, of 8 members\)"):
        _ = running.best
    assert "1 diverged, 7 running; best: none" in repr(running)


def test_repr_counts_stopped_members():
    text = repr(make_adaptive())
    assert "1 diverged, 3 stopped; best: learning_rate=0.1, weight_decay=0 -> train_loss 0.7" \
        in text
    assert "stopped" not in repr(make())


def test_to_pandas_status_columns():
    frame = make_adaptive().to_pandas()
    assert frame["status"].tolist() == make_adaptive().status.tolist()
    assert frame["steps_trained"].tolist() == [30, 30, 10, 10, 30, 20, 20, 30]
    np.testing.assert_array_equal(frame["final_train_loss"], make_adaptive().final())


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"status": np.array(["completed"] * 7)}, ValueError,
         "`status` has 7 entries but `trial` has 8"),
        ({"status": np.zeros(8)}, TypeError, "`status` must hold strings, one of 'completed'"),
        ({"status": np.array([["completed"] * 8])}, ValueError,
         r"`status` must be a 1-D array \[N\]"),
        ({"status": np.array(["completed"] * 6 + ["diverged", "done"])}, ValueError,
         (r"member 7 has status='done'; `status` must be one of 'completed', 'running', "
          r"'stopped', 'diverged'")),
        ({"status": np.array(["completed"] * 8)}, ValueError,
         r"member 6 has status='completed' but diverged=True; `status` is 'diverged' exactly"),
        ({"status": np.array(["diverged"] * 7 + ["completed"])}, ValueError,
         r"member 0 has status='diverged' but diverged=False"),
        ({"steps_trained": np.arange(7)}, ValueError,
         "`steps_trained` has 7 entries but `trial` has 8"),
        ({"steps_trained": np.full(8, 30.0)}, TypeError,
         "`steps_trained` must hold integers, got dtype float64"),
        ({"steps_trained": np.array([30] * 7 + [-1])}, ValueError,
         "`steps_trained` must be non-negative"),
        ({"hparams": {"status": np.zeros(8)}}, ValueError,
         "hyperparameter name `status` collides"),
    ],
)
def test_status_validation(overrides, error, message):
    with pytest.raises(error, match=message):
        make_adaptive(**overrides)


def test_status_accepts_lists_and_object_arrays():
    listed = make_adaptive(status=list(make_adaptive().status))
    assert listed.status.tolist() == make_adaptive().status.tolist()
    objects = make_adaptive(status=make_adaptive().status.astype(object))
    assert objects.status.dtype.kind == "U"


def test_plot_with_stopped_members(tmp_path):
    result = make_adaptive()
    figure = result.plot(path=tmp_path / "adaptive.png")
    curves, lr_panel, wd_panel = figure.axes[0], figure.axes[1], figure.axes[2]
    # the stopped members' curves end in a bar at their last recorded point
    bars = [line for line in curves.lines if line.get_marker() == "|"]
    assert len(bars) == 1
    np.testing.assert_array_equal(bars[0].get_xdata(), [10, 10, 20])
    np.testing.assert_allclose(bars[0].get_ydata(), [0.3, 0.5, 0.9], rtol=1e-6)
    legend = [text.get_text() for text in curves.get_legend().get_texts()]
    assert legend == ["diverged: 1 of 8", "stopped early: 3 of 8"]
    # metric panels: the completed trial filled, the two stopped ones hollow; no NaN point
    filled = [line for line in lr_panel.lines
              if line.get_marker() == "o" and line.get_markerfacecolor() != "none"]
    hollow = [line for line in lr_panel.lines
              if line.get_marker() == "o" and line.get_markerfacecolor() == "none"]
    np.testing.assert_allclose(filled[0].get_xdata(), [0.1], rtol=1e-6)
    np.testing.assert_allclose(hollow[0].get_xdata(), [1.0, 0.01], rtol=1e-6)
    stars = [line for line in lr_panel.lines if line.get_marker() == "*"]
    np.testing.assert_allclose(stars[0].get_xdata(), [0.1], rtol=1e-6)
    # weight decay 0, 1e-4, 1e-3, 1e-2: symlog from 1e-4, a tick at each of the 4 values
    assert wd_panel.get_xscale() == "symlog"
    np.testing.assert_allclose(wd_panel.xaxis.get_transform().linthresh, 1e-4, rtol=1e-6)
    assert len(wd_panel.get_xticks()) == 4


def test_plot_colours_span_zero_and_decades():
    """Colouring by a hyperparameter with 0 and values over decades tells them apart."""
    result = make_adaptive(status=None, steps_trained=None,
                           train_loss=np.where(np.isnan(ADAPTIVE_LOSS), 1.0, ADAPTIVE_LOSS))
    figure = result.plot(hparam="weight_decay")
    curves = figure.axes[0]
    alive = [line for line in curves.lines if line.get_linestyle() == "-"]
    assert len(alive) == 7  # the diverged member is drawn dashed
    colours = np.array([matplotlib.colors.to_rgb(line.get_color()) for line in alive])
    # members 0, 2, 4, 7: weight decay 0, 1e-4, 1e-3, 1e-2, evenly apart on symlog
    steps = np.linalg.norm(np.diff(colours[[0, 2, 4, 6]], axis=0), axis=1)
    assert np.all(steps > 0.1), steps


@pytest.mark.parametrize(
    "values, scale",
    [
        ([1e-4, 1e-3, 1e-2, 1e-2], "log"),
        ([0.0, 1e-4, 1e-3, 1e-2], "symlog"),
        ([-1e-2, 0.0, 1e-4, 1e-4], "symlog"),
        ([0.0, 0.5, 1.0, 2.0], "linear"),  # 0 and less than two decades
        ([1.0, 2.0, 4.0, 8.0], "linear"),  # positive, less than a decade
    ],
)
def test_plot_hparam_axis_scale(values, scale):
    column = np.repeat(np.float32(values), 2)
    result = make_adaptive(hparams={"weight_decay": column})
    figure = result.plot()
    assert figure.axes[1].get_xscale() == scale


def test_plot_many_distinct_values_keeps_automatic_ticks():
    column = np.repeat(np.float32([0.0, 1e-4, 1e-3, 1e-2]), 2)
    result = make_adaptive(
        hparams={"weight_decay": column}, trial=np.arange(8), seed=np.zeros(8, int),
    )
    few = result.plot().axes[1]
    assert len(few.get_xticks()) == 4
    values = np.float32([0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10])
    many = SweepResult(
        hparams={"weight_decay": values}, trial=np.arange(9), seed=np.zeros(9, int),
        steps=np.array([1]), train_loss=np.arange(1.0, 10.0)[:, None], metrics={},
        diverged=np.zeros(9, bool), diverged_step=np.full(9, -1),
    ).plot().axes[1]
    assert many.get_xscale() == "symlog"
    labels = [label.get_text() for label in many.get_xticklabels()]
    assert "1e-05" not in labels  # matplotlib's own symlog ticks, not one per value


# ---------------------------------------------------------------------- save / load (v2)


class AdamLike(NamedTuple):
    count: np.ndarray
    mu: dict
    nu: dict


def nested_params(n):
    return {
        "dense": {"w": np.arange(2.0 * n).reshape(n, 2), "b": np.zeros((n,), jnp.bfloat16)},
        "layers": [np.arange(n, dtype=np.int32), {"scale": np.ones((n, 3), np.float32)}],
        "pair": (np.full((n,), 7, np.int64), np.zeros((n, 1), np.float16)),
        "opt_state": (
            AdamLike(count=np.arange(n), mu={"w": np.ones((n, 2))}, nu={"w": np.ones((n, 2))}),
            (),  # optax's EmptyState-like: no leaves
        ),
        "bytes": np.arange(n, dtype=np.uint8),
    }


def test_round_trip_with_status(tmp_path):
    result = make_adaptive()
    result.save(tmp_path / "adaptive.npz")
    loaded = SweepResult.load(tmp_path / "adaptive.npz")
    assert_same(result, loaded)
    assert loaded.best.trial == 0


@pytest.mark.parametrize("field", ["params", "model_state"])
def test_load_save_load_is_the_identity_on_params_and_model_state(tmp_path, field):
    params = nested_params(6)
    once_path, twice_path = tmp_path / "once.npz", tmp_path / "twice.npz"
    make(**{field: params}).save(once_path)
    once = SweepResult.load(once_path)
    once.save(twice_path)
    twice = SweepResult.load(twice_path)
    assert_same(once, twice)
    assert getattr(once, "model_state" if field == "params" else "params") is None
    p, p_twice = getattr(once, field), getattr(twice, field)
    assert jax.tree_util.tree_structure(p) == jax.tree_util.tree_structure(p_twice)
    for (path, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(p),
                                 jax.tree_util.tree_leaves_with_path(p_twice), strict=True):
        assert a.dtype == b.dtype, jax.tree_util.keystr(path)
        np.testing.assert_array_equal(a, b, strict=True)
    # the tree that comes back: dicts, lists for sequences, dicts for named fields
    assert p["layers"][1]["scale"].shape == (6, 3)
    assert isinstance(p["pair"], list) and p["pair"][1].dtype == np.float16
    assert set(p["opt_state"][0]) == {"count", "mu", "nu"}
    np.testing.assert_array_equal(p["opt_state"][0]["count"], np.arange(6))
    assert p["dense"]["b"].dtype == jnp.bfloat16
    assert p["bytes"].dtype == np.uint8
    # and the original tree's leaves, path for path
    original = jax.tree_util.tree_leaves(params)
    assert len(jax.tree_util.tree_leaves(p)) == len(original)


def test_params_int_dict_keys_and_a_leading_empty_node(tmp_path):
    params = {0: np.ones(6), 1: [(), np.zeros((6, 2))]}
    make(params=params).save(tmp_path / "a.npz")
    once = SweepResult.load(tmp_path / "a.npz")
    assert set(once.params) == {0, 1}
    assert once.params[1][0] is None  # the empty tuple had no leaves: an empty slot
    once.save(tmp_path / "b.npz")
    twice = SweepResult.load(tmp_path / "b.npz")
    assert jax.tree_util.tree_structure(once.params) == jax.tree_util.tree_structure(twice.params)


def test_params_that_are_one_array(tmp_path):
    make(params=np.arange(6.0)).save(tmp_path / "leaf.npz")
    np.testing.assert_array_equal(SweepResult.load(tmp_path / "leaf.npz").params, np.arange(6.0))


def test_params_and_model_state_with_the_same_paths_stay_apart(tmp_path):
    params, model_state = {"w": np.arange(6.0)}, {"w": -np.arange(6.0)}
    make(params=params, model_state=model_state).save(tmp_path / "both.npz")
    loaded = SweepResult.load(tmp_path / "both.npz")
    np.testing.assert_array_equal(loaded.params["w"], params["w"], strict=True)
    np.testing.assert_array_equal(loaded.model_state["w"], model_state["w"], strict=True)


def test_load_version_2(tmp_path):
    """A file as jaxtune wrote it before format version 3: no model state."""
    path = tmp_path / "v2.npz"
    params = {"dense": {"w": np.arange(12.0).reshape(6, 2)}}
    make(params=params).save(path)
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    del meta["model_state"]
    write_npz(path, __meta__=np.array(json.dumps({**meta, "version": 2})), **arrays)
    loaded = SweepResult.load(path)
    assert_same(make(), loaded)
    assert loaded.model_state is None
    np.testing.assert_array_equal(loaded.params["dense"]["w"], params["dense"]["w"], strict=True)


def write_version_1(path, result):
    """A file as jaxtune wrote it before format version 2."""
    result.save(path)
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    del arrays["status"], arrays["steps_trained"]
    meta["version"] = 1
    if meta["params"] is not None:
        leaves = jax.tree_util.tree_leaves_with_path(result.params)
        for entry, (key_path, _) in zip(meta["params"], leaves):
            entry["path"] = jax.tree_util.keystr(key_path)
    write_npz(path, __meta__=np.array(json.dumps(meta)), **arrays)


def test_load_version_1(tmp_path):
    path = tmp_path / "v1.npz"
    params = {"dense": {"w": np.arange(12.0).reshape(6, 2)}, "layers": [np.zeros(6)]}
    write_version_1(path, make(params=params))
    loaded = SweepResult.load(path)
    assert_same(make(), loaded)  # status and steps_trained derived as for a new result
    assert set(loaded.params) == {"['dense']['w']", "['layers'][0]"}
    np.testing.assert_array_equal(loaded.params["['dense']['w']"], params["dense"]["w"])
    # and saving it again keeps those keys
    loaded.save(tmp_path / "v2.npz")
    assert set(SweepResult.load(tmp_path / "v2.npz").params) == set(loaded.params)


@pytest.mark.parametrize("field", ["params", "model_state"])
def test_load_mangled_params_paths(tmp_path, field):
    arrays = saved_arrays_with_params(tmp_path, field)
    meta = json.loads(str(arrays["__meta__"]))
    path = tmp_path / "mangled.npz"
    for mangled in ([{"index": -1}], [{"colour": "red"}], "['w']"):
        broken = json.loads(json.dumps(meta))
        broken[field][0]["path"] = mangled
        write_npz(path, **{**arrays, "__meta__": np.array(json.dumps(broken))})
        with pytest.raises(ValueError, match=f"a `{field}` key path is mangled"):
            SweepResult.load(path)
    broken = json.loads(json.dumps(meta))
    broken[field][0]["path"] = [{"index": 0}]  # a list entry beside dict entries
    write_npz(path, **{**arrays, "__meta__": np.array(json.dumps(broken))})
    with pytest.raises(ValueError, match=f"its `{field}` key paths do not form a tree"):
        SweepResult.load(path)


@pytest.mark.parametrize("paths, bad", [
    ([[{"index": 0}], [{"index": 10**5}]], r"\[\{'index': 100000\}\]"),
    ([[{"index": 0}], [{"index": 10**9}]], r"\[\{'index': 1000000000\}\]"),  # 8 GB of list
    ([[{"index": 0}], [{"index": 2**62}]], rf"\[\{{'index': {2**62}\}}\]"),  # MemoryError
    # two lists, each within the bound (2**16 positions and one per byte), over it together
    ([[{"index": 0}, {"index": 40000}], [{"index": 1}, {"index": 40000}]],
     r"\[\{'index': [01]\}, \{'index': 40000\}\]"),
])
def test_load_refuses_list_positions_beyond_what_the_file_holds(tmp_path, paths, bad):
    arrays = saved_arrays_with_params(tmp_path)
    meta = json.loads(str(arrays["__meta__"]))
    for entry, crafted in zip(meta["params"], paths, strict=True):
        entry["path"] = crafted
    path = tmp_path / "crafted.npz"
    write_npz(path, **{**arrays, "__meta__": np.array(json.dumps(meta))})
    with pytest.raises(ValueError, match=r"`path` '.*crafted.npz' is not a readable SweepResult "
                                         rf"file.*its `params` key path {bad} puts a leaf at "
                                         r"list position \d+, more than the file's arrays fill"):
        SweepResult.load(path)


def saved_arrays_with_params(tmp_path, field="params"):
    path = tmp_path / "params.npz"
    make(**{field: {"a": np.zeros(6), "b": np.ones(6)}}).save(path)
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


# ---------------------------------------------------------------------- atomic save


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "sweep.npz"
    make().save(path)
    before = path.read_bytes()

    def fail_midway(file, **arrays):
        file.write(b"PK\x03\x04 half of an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", fail_midway)
    with pytest.raises(OSError, match="No space left on device"):
        make_adaptive().save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.npz"]  # no temporary file
    assert_same(make(), SweepResult.load(path))


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def fail(file, **arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", fail)
    with pytest.raises(KeyboardInterrupt):
        make().save(tmp_path / "new.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_and_respects_umask(tmp_path):
    path = tmp_path / "sweep.npz"
    make().save(path)
    make_adaptive().save(path)
    assert_same(make_adaptive(), SweepResult.load(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.npz"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


FILE_SIZE_LIMIT_SCRIPT = """
import resource, signal, sys
import numpy as np
from jaxtune.results import SweepResult

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # exceeding the limit: EFBIG, not a kill
rng = np.random.default_rng(0)
result = SweepResult(
    hparams={}, trial=np.arange(4), seed=np.zeros(4, int), steps=np.array([1]),
    train_loss=np.ones((4, 1)), metrics={}, diverged=np.zeros(4, bool),
    diverged_step=np.full(4, -1), step_loss=rng.standard_normal((4, 100_000)),
)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    result.save(sys.argv[1])
except OSError as error:
    print("failed:", error.errno)
"""


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                    reason="RLIMIT_FSIZE as on Linux")
def test_save_past_the_file_size_limit_keeps_the_previous_file(tmp_path):
    path = tmp_path / "sweep.npz"
    make().save(path)
    before = path.read_bytes()
    done = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT_SCRIPT, str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert done.stdout.strip() == f"failed: {errno.EFBIG}", done.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.npz"]


# ---------------------------------------------------------------------- one member's params


def test_params_of_and_best_params_read_one_member_of_the_stacked_params():
    params = {"w": np.arange(12.0).reshape(6, 2)}
    result = make(params=params, model_state={"mean": -np.arange(6.0)})
    np.testing.assert_array_equal(result.params_of(3)["w"], [6.0, 7.0])
    assert result.model_state_of(3)["mean"] == -3.0
    # trial 0 is the best; its seed 0 (final loss 0.5) beats seed 1 (0.7)
    assert result.best_member == 0
    np.testing.assert_array_equal(result.best_params["w"], [0.0, 1.0])
    accuracy = make(metric="accuracy", mode="max", params=params)
    assert accuracy.best_member == 3  # trial 1 (mean 0.985), its seed 1 (0.99)
    assert make(params=params).model_state_of(3) is None  # a model without state


def per_member_trees():
    """Members 0, 2 and 5 kept, of two shapes (a swept width), with model state."""
    params = {0: {"w": np.ones((1, 2), np.float32)}, 2: {"w": np.zeros((1, 3), np.float32)},
              5: {"w": np.full((1, 3), 5.0, np.float32)}}
    model_state = {m: {"count": np.int32(m)} for m in params}
    return params, model_state


def test_member_params_save_and_load(tmp_path):
    params, model_state = per_member_trees()
    result = make(member_params=params, member_model_state=model_state)
    assert result.params is None
    assert result.params_of(2)["w"].shape == (1, 3)
    result.save(tmp_path / "once.npz")
    once = SweepResult.load(tmp_path / "once.npz")
    once.save(tmp_path / "twice.npz")
    twice = SweepResult.load(tmp_path / "twice.npz")
    for loaded in (once, twice):
        assert sorted(loaded.member_params) == [0, 2, 5]
        for member in (0, 2, 5):
            np.testing.assert_array_equal(loaded.params_of(member)["w"], params[member]["w"],
                                          strict=True)
            assert loaded.model_state_of(member)["count"] == member
    np.testing.assert_array_equal(once.best_params["w"], params[0]["w"])


def test_params_of_a_member_not_kept_says_which_were():
    params, _ = per_member_trees()
    result = make(member_params=params)
    with pytest.raises(ValueError, match=r"member 1's final `params` were not kept; this "
                                         r"result keeps those of members 0, 2, 5"):
        result.params_of(1)
    with pytest.raises(ValueError, match="holds no parameters.*keep_params=True"):
        _ = make().best_params
    with pytest.raises(ValueError, match=r"`member` must be one of the 6 members \(0..5\), "
                                         "got member=6"):
        result.params_of(6)
    with pytest.raises(TypeError, match="`member` must be an int"):
        result.params_of("2")


@pytest.mark.parametrize("overrides, message", [
    (dict(member_params={6: {"w": np.ones(2)}}), r"`member_params` has key 6; keys are members "
                                                  r"0..5"),
    (dict(member_params=[np.ones(2)]), "`member_params` must be a dict member -> tree"),
    (dict(member_params={0: {"w": np.ones(2)}}, params={"w": np.ones((6, 2))}),
     r"pass `params` \(every member, stacked\) or `member_params` \(one tree per kept "
     r"member\), not both"),
    (dict(member_model_state={3: {"n": np.ones(2)}}, member_params={0: {"w": np.ones(2)}}),
     r"`member_model_state` has member 3, whose `params` are not kept"),
])
def test_member_params_validation(overrides, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make(**overrides)


def test_load_version_3_has_no_member_params(tmp_path):
    """A file as jaxtune wrote it before format version 4: no per-member params."""
    path = tmp_path / "v3.npz"
    params = {"w": np.arange(12.0).reshape(6, 2)}
    make(params=params).save(path)
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    for key in ("member_params", "member_model_state"):
        del meta[key]
    write_npz(path, __meta__=np.array(json.dumps({**meta, "version": 3})), **arrays)
    loaded = SweepResult.load(path)
    assert loaded.member_params is None
    np.testing.assert_array_equal(loaded.params_of(4)["w"], [8.0, 9.0])


def test_a_swept_width_keeps_every_members_params(tmp_path):
    import optax

    import jaxtune as jt

    x = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]
    data = (x, np.sin(3 * x))

    def init(key, width):
        return {"w1": 0.5 * jax.random.normal(key, (1, width)), "w2": jnp.zeros((width, 1))}

    def loss(params, batch):
        return jnp.mean((jnp.tanh(batch[0] @ params["w1"]) @ params["w2"] - batch[1]) ** 2)

    space = jt.Space(learning_rate=jt.choice([0.03, 0.1]), width=jt.choice([2, 3], static=True))

    def run(**kwargs):
        return jt.sweep(loss, init, lambda learning_rate: optax.adam(learning_rate), space,
                        data=data, batch_size=8, steps=10, progress=False,
                        devices=jax.devices()[:1], **kwargs)

    result = run()
    assert result.params is None and sorted(result.member_params) == [0, 1, 2, 3]
    for member in range(4):
        assert result.params_of(member)["w2"].shape == (result.hparams["width"][member], 1)
    best = result.best_member
    alone = run(configs=[{name: result.hparams[name][best] for name in space.names}])
    for name in ("w1", "w2"):
        np.testing.assert_allclose(result.best_params[name], alone.params[name][0],
                                   rtol=1e-5, atol=1e-6)
    result.save(tmp_path / "widths.npz")
    loaded = SweepResult.load(tmp_path / "widths.npz")
    np.testing.assert_array_equal(loaded.best_params["w1"], result.best_params["w1"])


# ---------------------------------------------------------------------- keep_params of a sweep

KEEP_X = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]


def kept_sweep(keep_params, strategy=None, **kwargs):
    """Six configurations x two seeds, two members at a time: trials finish one by one, the
    better ones neither first nor last."""
    import optax

    import jaxtune as jt

    def loss(w, batch):
        return jnp.mean((batch[0] @ w - batch[1]) ** 2)

    space = jt.Space(learning_rate=jt.choice([0.01, 0.001, 0.3, 0.003, 0.1, 0.03]))
    return jt.sweep(loss, jnp.zeros((1, 1)), lambda learning_rate: optax.sgd(learning_rate),
                    space, data=(KEEP_X, 2 * KEEP_X), batch_size=8, steps=8, eval_every=2,
                    seeds=2, members_per_slice=2, members_in_flight=2, strategy=strategy,
                    keep_params=keep_params, progress=False, devices=jax.devices()[:1],
                    **kwargs)


@pytest.mark.parametrize("stopping", [False, True])
def test_keep_params_best_and_k_keep_the_best_configurations_members(stopping):
    import jaxtune as jt

    strategy = (lambda: jt.MedianStopping(min_trials=2)) if stopping else (lambda: None)
    everyone = kept_sweep(True, strategy())
    assert np.any(everyone.status == "stopped") == stopping
    for keep, trials in (("best", [everyone.best.trial]), (2, everyone.top(2)["trial"])):
        result = kept_sweep(keep, strategy())
        np.testing.assert_array_equal(result.train_loss, everyone.train_loss)
        assert result.params is None
        members = np.flatnonzero(np.isin(everyone.trial, trials))
        assert sorted(result.member_params) == members.tolist(), keep
        for member in members:
            np.testing.assert_array_equal(result.params_of(member), everyone.params_of(member),
                                          strict=True)
        np.testing.assert_array_equal(result.best_params, everyone.best_params, strict=True)
    assert kept_sweep(6, strategy()).params.shape == (12, 1, 1)  # k = every trial: all kept


@pytest.mark.parametrize("keep_params, error, message", [
    ("yes", ValueError, "`keep_params` must be True, False, 'best' or a positive int"),
    (0, ValueError, "got keep_params=0"),
    (1.5, TypeError, "`keep_params` must be True, False, 'best' or a positive int"),
])
def test_keep_params_values_are_checked(keep_params, error, message):
    with pytest.raises(error, match=message):
        kept_sweep(keep_params)


def test_kept_parameters_larger_than_the_host_memory_are_refused_before_training():
    """256 MiB of parameters a member, 32,768 members: 8 TiB to keep, never allocated."""
    import optax

    import jaxtune as jt

    def init(key):
        return {"w": jnp.zeros((2**26,))}

    def loss(params, batch):
        return jnp.mean(params["w"][:1] * batch[0][:, 0])

    def sweep(keep_params):
        return jt.sweep(loss, init, lambda learning_rate: optax.sgd(learning_rate),
                        jt.Space(learning_rate=jt.loguniform(1e-3, 1e-1)),
                        data=(KEEP_X, KEEP_X), batch_size=8, steps=4, trials=2**14, seeds=2,
                        keep_params=keep_params, progress=False, devices=jax.devices()[:1])

    with pytest.raises(ValueError, match=r"keep_params=True keeps every member's final "
                                         r"parameters on the host: 32768 members x 0.25 GiB = "
                                         r"8192.00 GiB, more than 50% of the .* GiB of host "
                                         r"memory available; keep fewer: keep_params='best' "
                                         r"\(the best configuration's 2 member\(s\)\), "
                                         r"keep_params=k for k <= \d+, or keep_params=False"):
        sweep(True)
    with pytest.raises(ValueError, match=r"keep_params=8192 keeps the members of the best "
                                         r"8192 configurations: 16384 members x 0.25 GiB"):
        sweep(8192)


def test_keep_params_k_holds_only_the_best_ended_trials_while_the_sweep_runs(tmp_path):
    from conftest import interrupting

    import jaxtune as jt

    with pytest.raises(jt.SweepInterrupted) as caught:  # Ctrl-C after 4 of 6 trials ended
        kept_sweep(2, interrupting(jt.Strategy)(17), checkpoint_dir=tmp_path)
    partial = caught.value.result
    assert np.sum(partial.status == "completed") == 8
    best_two = partial.top(2)
    assert list(best_two["status"]) == ["completed", "completed"]
    assert sorted(partial.member_params) == np.flatnonzero(
        np.isin(partial.trial, best_two["trial"])).tolist()
    # resumed from the checkpoint (which holds only those), it keeps what a whole run keeps
    resumed = kept_sweep(2, interrupting(jt.Strategy)(0), checkpoint_dir=tmp_path)
    whole = kept_sweep(2, interrupting(jt.Strategy)(0))
    assert sorted(resumed.member_params) == sorted(whole.member_params)
    for member in whole.member_params:
        np.testing.assert_array_equal(resumed.params_of(member), whole.params_of(member))
