"""Bootstrap over eval trials: a confidence interval for a run's scores, and for the difference of two
runs scored on the same trials (paired), so that a lead can be told from trial-sampling noise.

A resample draws the eval trials with replacement; every metric is recomputed on it exactly as
`metrics.evaluate_group` computes it on all trials, but from per-trial sums, so that thousands of
resamples cost about one scoring:

- co-bps and fp-bps: per trial and neuron, the model's Poisson NLL, the spike count and the
  observed bins. The null model's per-neuron mean rate is that of the resample, as on all trials.
- vel R2: the ridge decoder is fitted once on the train trials (which a resample does not touch)
  and predicts every eval bin; per trial and channel, the squared residuals and the sums of y and
  y^2 give each resample's R2 (sklearn's uniform average over channels; one decoder per decode
  mask, averaged, as `velocity_r2`).

psth R2 and tp corr are not resampled (they depend on conditions and on trial pairs in ways that
per-trial sums do not carry): they are left out of the intervals.
Intervals are percentile intervals of `n_boot` resamples from a seeded generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import get_spec
from nlbkit.scoring.metrics import _f64, _flatten_time, decode_masks, fit_ridge_decoder

BOOTSTRAP_METRICS = ("co-bps", "fp-bps", "vel R2")


@dataclass(frozen=True)
class Interval:
    """A metric's value on all trials and its bootstrap interval (`level`, e.g. 0.95)."""

    value: float
    low: float
    high: float
    level: float

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"


@dataclass(frozen=True)
class PairedInterval(Interval):
    """The difference a - b on all trials, its interval, and the share of resamples where a <= b."""

    share_not_above: float = 0.0


def _spike_stats(rates: np.ndarray, spikes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per trial and neuron (trials, N): model NLL without the log-factorial term, spike count,
    observed bins, and the log-factorial term (it cancels between model and null)."""
    if rates.shape != spikes.shape:
        raise NlbkitError(f"rates {rates.shape} and spikes {spikes.shape} differ in shape")
    observed = ~np.isnan(spikes)
    y = np.where(observed, spikes, 0.0)
    r = np.where(observed, rates, 1.0)
    if np.isnan(r).any():
        raise NlbkitError("NaN rate predictions found where spikes are observed")
    r = np.where(r == 0, 1e-9, r)
    nll = np.where(observed, r - y * np.log(r), 0.0).sum(axis=1)
    return nll, y.sum(axis=1), observed.sum(axis=1).astype(np.float64), gammaln(y + 1.0).sum(axis=1)


def _bits_per_spike(weights: np.ndarray, stats: tuple[np.ndarray, ...]) -> np.ndarray:
    """bits per spike for each row of `weights` (resamples, trials): trial multiplicities."""
    nll, count, bins, _ = stats
    model = weights @ nll.sum(axis=1)
    counts, observed = weights @ count, weights @ bins  # (resamples, N)
    mean = np.divide(counts, observed, out=np.zeros_like(counts), where=observed > 0)
    mean = np.where(mean == 0, 1e-9, mean)
    null = (mean * observed - counts * np.log(mean)).sum(axis=1)
    return (null - model) / counts.sum(axis=1) / np.log(2)


def _velocity_stats(
    target: Mapping[str, np.ndarray], rates: Mapping[str, np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per decode mask: (mask over eval trials, per-trial sums (trials, C, 4) of squared residual,
    y, y^2 and kept bins, one row per eval trial)."""
    def both(prefix: str) -> np.ndarray:
        return np.concatenate([_f64(rates[f"{prefix}_heldin"]), _f64(rates[f"{prefix}_heldout"])], -1)

    train_rates, eval_rates = both("train_rates"), both("eval_rates")
    train_y, eval_y = _f64(target["train_behavior"]), _f64(target["eval_behavior"])
    train_mask, eval_mask = decode_masks(
        len(train_rates), len(eval_rates), target.get("train_decode_mask"), target.get("eval_decode_mask")
    )
    out = []
    for i in range(train_mask.shape[1]):
        x, y = _flatten_time(train_rates[train_mask[:, i]]), _flatten_time(train_y[train_mask[:, i]])
        keep = ~np.isnan(y[:, 0])
        decoder = fit_ridge_decoder(x[keep], y[keep])
        kept = ~np.isnan(eval_y[..., :1])  # (trials, bins, 1): ridge_r2 drops the other rows
        flat_x, flat_kept = _flatten_time(eval_rates), kept.reshape(-1)
        if np.isnan(flat_x[flat_kept]).any():
            raise NlbkitError("NaN rate predictions found within the trial times used for decoding")
        pred = np.zeros((flat_x.shape[0], eval_y.shape[2]))
        pred[flat_kept] = decoder.predict(flat_x[flat_kept])
        pred = pred.reshape(eval_y.shape)
        yy = np.where(kept, eval_y, 0.0)
        residual = np.where(kept, (yy - pred) ** 2, 0.0)
        sums = np.stack(
            [residual.sum(1), yy.sum(1), (yy**2).sum(1), np.broadcast_to(kept.sum(1), yy.sum(1).shape)],
            axis=-1,
        )
        out.append((eval_mask[:, i], sums))
    return out


def _velocity_r2(weights: np.ndarray, stats: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    scores = []
    for mask, sums in stats:
        w = weights * mask[None, :]
        res, sy, syy, n = (np.tensordot(w, sums[..., k], axes=(1, 0)) for k in range(4))  # (R, C)
        total = syy - sy**2 / n
        scores.append((1.0 - res / total).mean(axis=1))
    return np.mean(scores, axis=0)


def resample_scores(
    dataset: str,
    target: Mapping[str, np.ndarray],
    rates: Mapping[str, np.ndarray],
    weights: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each bootstrapped metric for each row of `weights` (resamples, eval trials): how many times
    each eval trial is drawn. A row of ones gives the metric on all trials, as `evaluate_group`."""
    weights = np.asarray(weights, dtype=np.float64)
    out = {
        "co-bps": _bits_per_spike(
            weights, _spike_stats(_f64(rates["eval_rates_heldout"]), _f64(target["eval_spikes_heldout"]))
        )
    }
    if "eval_rates_heldin_forward" in rates and "eval_spikes_heldin_forward" in target:
        fp_rates = np.concatenate(
            [_f64(rates["eval_rates_heldin_forward"]), _f64(rates["eval_rates_heldout_forward"])], -1
        )
        fp_spikes = np.concatenate(
            [_f64(target["eval_spikes_heldin_forward"]), _f64(target["eval_spikes_heldout_forward"])], -1
        )
        out["fp-bps"] = _bits_per_spike(weights, _spike_stats(fp_rates, fp_spikes))
    if "eval_behavior" in target and get_spec(dataset).decodes_velocity:
        out["vel R2"] = _velocity_r2(weights, _velocity_stats(target, rates))
    return out


def resample_weights(n_trials: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_trials) multiplicities of trials drawn with replacement, seeded."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_trials, size=(n_boot, n_trials))
    weights = np.zeros((n_boot, n_trials))
    np.add.at(weights, (np.arange(n_boot)[:, None], draws), 1.0)
    return weights


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    return float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))


def bootstrap_scores(
    dataset: str,
    target: Mapping[str, np.ndarray],
    rates: Mapping[str, np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """{metric: Interval} over `n_boot` resamples of the eval trials."""
    n = len(target["eval_spikes_heldout"])
    every = resample_scores(dataset, target, rates, np.ones((1, n)))
    drawn = resample_scores(dataset, target, rates, resample_weights(n, n_boot, seed))
    return {m: Interval(float(every[m][0]), *_interval(drawn[m], level), level) for m in every}


def paired_bootstrap(
    dataset: str,
    target: Mapping[str, np.ndarray],
    rates_a: Mapping[str, np.ndarray],
    rates_b: Mapping[str, np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, PairedInterval]:
    """{metric: PairedInterval} of a - b, both scored on the same resamples of the same trials."""
    n = len(target["eval_spikes_heldout"])
    if len(rates_a["eval_rates_heldout"]) != n or len(rates_b["eval_rates_heldout"]) != n:
        raise NlbkitError(f"paired bootstrap: both runs need rates for the same {n} eval trials")
    ones, weights = np.ones((1, n)), resample_weights(n, n_boot, seed)
    every_a, every_b = (resample_scores(dataset, target, r, ones) for r in (rates_a, rates_b))
    drawn_a, drawn_b = (resample_scores(dataset, target, r, weights) for r in (rates_a, rates_b))
    out = {}
    for m in every_a.keys() & every_b.keys():
        diff = drawn_a[m] - drawn_b[m]
        value = float(every_a[m][0] - every_b[m][0])
        out[m] = PairedInterval(value, *_interval(diff, level), level, float(np.mean(diff <= 0)))
    return {m: out[m] for m in BOOTSTRAP_METRICS if m in out}


@dataclass
class RunIntervals:
    """A run's bootstrap intervals, and its paired difference from the first run where comparable."""

    run_dir: str
    n_trials: int
    intervals: dict[str, Interval]
    paired: dict[str, PairedInterval] | None = None  # against `against`
    against: str | None = None

    def as_json(self) -> dict:
        out = {"n_trials": self.n_trials,
               "intervals": {m: [i.value, i.low, i.high] for m, i in self.intervals.items()}}
        if self.paired is not None:
            out["paired"] = {"against": self.against, **{
                m: {"difference": i.value, "low": i.low, "high": i.high, "share_not_above": i.share_not_above}
                for m, i in self.paired.items()}}
        return out


def run_intervals(
    run_dirs, n_boot: int = 1000, seed: int = 0, level: float = 0.95, data_dir=None, targets_file=None
) -> list[RunIntervals]:
    """Bootstrap intervals of each run's scores, and each later run's paired difference from the
    first where both were scored on the same eval trials (same dataset, bin and targets)."""
    from nlbkit.scoring.evaluate import scoring_inputs

    loaded = []
    for run_dir in run_dirs:
        run, target, rates = scoring_inputs(run_dir, data_dir=data_dir, targets_file=targets_file)
        if target is None:
            raise NlbkitError(f"{run.run_dir}: no targets to bootstrap against (test phase: --targets)")
        loaded.append((run, target, rates))
    out = []
    first_run, first_target, first_rates = loaded[0]
    for run, target, rates in loaded:
        n = len(target["eval_spikes_heldout"])
        intervals = bootstrap_scores(run.dataset, target, rates, n_boot, seed, level)
        result = RunIntervals(str(run.run_dir), n, intervals)
        same = (run.dataset, run.bin_ms) == (first_run.dataset, first_run.bin_ms) and np.array_equal(
            target["eval_spikes_heldout"], first_target["eval_spikes_heldout"], equal_nan=True)
        if run is not first_run and same:
            result.paired = paired_bootstrap(run.dataset, target, rates, first_rates, n_boot, seed, level)
            result.against = str(first_run.run_dir)
        out.append(result)
    return out


def format_intervals(results: list[RunIntervals], n_boot: int, seed: int, level: float) -> str:
    """The lines `nlbkit evaluate --bootstrap` prints."""
    pct = f"{100 * level:g}%"
    lines = [f"bootstrap over eval trials ({n_boot} resamples, seed {seed}), {pct} intervals:"]
    for r in results:
        cells = "  ".join(f"{m} {i}" for m, i in r.intervals.items())
        lines.append(f"  {r.run_dir} ({r.n_trials} trials)  {cells}")
    for r in results:
        if r.paired is None:
            continue
        cells = "  ".join(f"{m} {i.value:+.4f} [{i.low:+.4f}, {i.high:+.4f}] (not above in "
                          f"{100 * i.share_not_above:.1f}%)" for m, i in r.paired.items())
        lines.append(f"paired, {r.run_dir} - {r.against}:  {cells}")
    return "\n".join(lines)
