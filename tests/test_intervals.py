"""Tests for `jaxtune.results.intervals` and the intervals of `SweepResult`'s ranking:
against scipy's t-interval and bootstrap, on results built by hand with known answers."""

import matplotlib.figure
import numpy as np
import pytest
from scipy import stats

from jaxtune.results import SweepResult
from jaxtune.results.intervals import (
    bootstrap_interval,
    rank_trials,
    t_interval,
    trial_intervals,
)


def result_of(finals, mode="min", diverged=None):
    """A one-record-point result whose trial t has the final values `finals[t]` (one per seed)."""
    trial = np.concatenate([np.full(len(v), t) for t, v in enumerate(finals)])
    seed = np.concatenate([np.arange(len(v)) for v in finals])
    loss = np.concatenate([np.asarray(v, np.float64) for v in finals])[:, None]
    n = trial.size
    diverged = np.zeros(n, bool) if diverged is None else np.asarray(diverged)
    return SweepResult(
        hparams={"learning_rate": (10.0 ** -(1 + trial)).astype(np.float32)},
        trial=trial, seed=seed, steps=np.array([100]), train_loss=loss,
        metrics={"accuracy": loss.copy()}, diverged=diverged,
        diverged_step=np.where(diverged, 50, -1), metric="accuracy" if mode == "max" else
        "train_loss", mode=mode)


def scipy_t(values, confidence=0.95):
    values = np.asarray(values, np.float64)
    return stats.t.interval(confidence, values.size - 1, loc=values.mean(),
                            scale=stats.sem(values))


# ---------------------------------------------------------------------- the statistics


@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
@pytest.mark.parametrize("values", [[0.5, 0.7], [0.91, 0.93, 0.96], [1.0, 2.0, 4.0, 8.0, 16.0],
                                    [-3.0, -2.5, -2.9, -3.3, -2.0, -2.2]])
def test_t_interval_is_scipys(values, confidence):
    np.testing.assert_allclose(t_interval(values, confidence), scipy_t(values, confidence),
                               rtol=1e-12)


def test_trial_intervals_group_members_of_different_seed_counts():
    rng = np.random.default_rng(0)
    groups = [rng.normal(size=n) for n in (2, 5, 3, 4)]
    final = np.concatenate(groups)
    inverse = np.concatenate([np.full(g.size, i) for i, g in enumerate(groups)])
    shuffle = rng.permutation(final.size)  # members need not be grouped by trial
    found = trial_intervals(final[shuffle], inverse[shuffle], 4)
    expected = np.array([scipy_t(g) for g in groups])
    np.testing.assert_allclose(found.low, expected[:, 0], rtol=1e-12)
    np.testing.assert_allclose(found.high, expected[:, 1], rtol=1e-12)
    assert found.label == "95% t-interval"


def test_no_interval_for_one_seed_or_a_non_finite_value():
    assert np.isnan(t_interval([0.3])).all()
    assert np.isnan(t_interval([0.3, np.nan, 0.4])).all()
    assert np.isnan(bootstrap_interval([0.3])).all()
    assert np.isnan(bootstrap_interval([0.3, np.inf])).all()
    found = trial_intervals(np.array([1.0, 2.0, 3.0, np.nan, 5.0]), np.array([0, 0, 1, 1, 2]),
                            3, "bootstrap")
    assert np.isfinite(found.low[0]) and np.isnan(found.low[1:]).all()
    assert found.defined.tolist() == [True, False, False]


def test_equal_seeds_give_a_point_interval():
    assert t_interval([0.25, 0.25, 0.25]) == (0.25, 0.25)
    assert bootstrap_interval([0.25, 0.25]) == (0.25, 0.25)


def test_bootstrap_is_scipys_percentile_bootstrap():
    values = np.array([0.81, 0.84, 0.9, 0.86, 0.79])
    expected = stats.bootstrap((values,), np.mean, confidence_level=0.9, method="percentile",
                               n_resamples=2000, random_state=np.random.default_rng(3))
    found = bootstrap_interval(values, 0.9, resamples=2000, seed=3)
    np.testing.assert_allclose(found, tuple(expected.confidence_interval), rtol=1e-12)
    assert values.min() < found[0] < values.mean() < found[1] < values.max()
    assert bootstrap_interval(values, 0.9, 2000, 3) == found  # reproducible


def test_bad_arguments_are_named():
    result = result_of([[0.1, 0.2], [0.3, 0.4]])
    with pytest.raises(ValueError, match=r"`confidence` must be in \(0, 1\).*confidence=95"):
        result.summary(interval="t", confidence=95)
    with pytest.raises(ValueError, match=r"`interval` must be one of 't', 'bootstrap'.*'z'"):
        result.best_config(interval="z")
    with pytest.raises(ValueError, match=r"`rank` must be one of 'mean', 'lower'.*'upper'"):
        result.top(rank="upper")
    with pytest.raises(TypeError, match=r"`resamples` must be a positive integer"):
        bootstrap_interval([1.0, 2.0], resamples=0.5)


# ---------------------------------------------------------------------- the result


def test_summary_and_top_carry_the_interval_columns():
    finals = [[0.5, 0.7, 0.6], [0.2, 0.3], [0.9, 0.95, 0.97, 0.93]]
    result = result_of(finals)
    assert "train_loss_low" not in result.summary().columns  # as before, unless asked
    frame = result.summary(interval="t")
    assert list(frame.columns[:6]) == ["trial", "learning_rate", "train_loss_mean",
                                       "train_loss_std", "train_loss_low", "train_loss_high"]
    assert frame["trial"].tolist() == [1, 0, 2]
    for _, row in frame.iterrows():
        np.testing.assert_allclose((row["train_loss_low"], row["train_loss_high"]),
                                   scipy_t(finals[row["trial"]]), rtol=1e-6)
    top = result.top(2, interval="bootstrap", confidence=0.9)
    assert top["trial"].tolist() == [1, 0]
    assert (top["train_loss_low"] <= top["train_loss_mean"]).all()


def test_best_reports_its_interval_and_an_overlapping_runner_up():
    finals = [[0.50, 0.70], [0.55, 0.75]]  # means 0.60 and 0.65, wide intervals
    best = result_of(finals).best
    assert (best.trial, best.runner_up, best.overlaps) == (0, 1, True)
    np.testing.assert_allclose((best.low, best.high), scipy_t(finals[0]), rtol=1e-6)
    assert best.interval == "95% t-interval"
    assert "95% t-interval [-0.671, 1.87]; runner-up trial 1 overlaps it: within noise" in repr(
        best)


def test_best_reports_a_clear_winner():
    best = result_of([[0.10, 0.11, 0.12], [0.50, 0.52, 0.51]]).best
    assert (best.trial, best.runner_up, best.overlaps) == (0, 1, False)
    assert repr(best).endswith("runner-up trial 1 does not overlap it")
    assert best.high < 0.5
    no_interval = result_of([[0.10, 0.11, 0.12], [0.50, 0.52, 0.51]]).best_config(
        interval=None)
    assert "interval" not in repr(no_interval) and no_interval.overlaps is None


@pytest.mark.parametrize("mode", ["min", "max"])
def test_rank_lower_prefers_the_best_pessimistic_bound(mode):
    # trial 0: the best mean but noisy; trial 1: slightly worse mean, steady over seeds.
    good, steady = (0.30, 0.32) if mode == "min" else (0.70, 0.68)
    noise = 0.2
    finals = [[good - noise, good + noise, good], [steady - 0.001, steady + 0.001, steady]]
    result = result_of(finals, mode)
    assert result.best.trial == 0
    assert result.best.overlaps is True  # the noisy winner is within noise of the steady one
    best = result.best_config(rank="lower")
    assert (best.trial, best.runner_up, best.rank) == (1, 0, "lower")
    assert result.summary(rank="lower")["trial"].tolist() == [1, 0]
    bound = "_high" if mode == "min" else "_low"  # upper bound for min, lower for max
    frame = result.summary(rank="lower")
    column = frame[f"{result.metric}{bound}"]
    assert (column.iloc[0] < column.iloc[1]) if mode == "min" else (column.iloc[0] > column.iloc[1])


def test_one_seed_has_no_interval_and_never_crashes():
    result = result_of([[0.3], [0.2], [0.4]])
    best = result.best
    assert best.trial == 1 and np.isnan(best.low) and np.isnan(best.high)
    assert best.overlaps is None
    assert repr(best).endswith("; no 95% t-interval (one seed or a non-finite value)")
    frame = result.summary(interval="t")
    assert frame["train_loss_low"].isna().all()
    # rank="lower" with no interval anywhere: the mean decides, as with rank="mean"
    assert frame["trial"].tolist() == result.summary(rank="lower")["trial"].tolist() == [1, 0, 2]
    # a one-seed trial ranks after every trial with an interval, whatever its mean
    mixed = result_of([[0.5, 0.6, 0.55], [0.01]])
    assert mixed.best.trial == 1 and mixed.best_config(rank="lower").trial == 0
    figure = result.plot()
    assert figure.axes[1].get_ylabel() == "final train_loss"  # no bars, none claimed


def test_diverged_seeds_have_no_interval_and_rank_last():
    finals = [[0.5, 0.51, 0.52], [0.1, 0.2], [0.4, 0.41, 0.42]]
    result = result_of(finals, diverged=[False, False, False, True, False, False, False, False])
    frame = result.summary(interval="t", rank="lower")
    assert frame["trial"].tolist() == [2, 0, 1]
    assert np.isnan(frame.iloc[-1][["train_loss_low", "train_loss_high"]].astype(float)).all()
    best = result.best
    assert (best.trial, best.runner_up, best.overlaps) == (2, 0, False)
    # with only a diverged trial behind it there is no runner-up to compare with
    alone = result_of(finals[:2], diverged=[False, False, False, True, False]).best
    assert (alone.trial, alone.runner_up, alone.overlaps) == (0, None, None)
    assert "runner-up" not in repr(alone)


def test_rank_trials_keeps_the_mean_order_without_intervals():
    result = result_of([[0.5, 0.6], [0.1, 0.2]])
    stats = result._trial_stats("train_loss", "min")
    order, bounds = rank_trials(stats, "min")
    assert bounds is None and order.tolist() == stats.order.tolist() == [1, 0]


def test_plot_error_bars_are_the_t_intervals():
    finals = [[0.5, 0.7, 0.6], [0.2, 0.3, 0.28], [0.9, 0.95, 0.97]]
    figure = result_of(finals).plot()
    assert isinstance(figure, matplotlib.figure.Figure)
    panel = figure.axes[1]
    assert panel.get_ylabel() == "final train_loss (mean, bars: 95% t-interval over 3 seeds)"
    segments = [s for c in panel.collections for s in c.get_segments()]
    spans = sorted((float(s[:, 1].min()), float(s[:, 1].max())) for s in segments)
    expected = sorted(scipy_t(v) for v in finals)
    np.testing.assert_allclose(spans, expected, rtol=1e-6)
