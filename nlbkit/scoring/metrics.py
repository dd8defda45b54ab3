"""The NLB metrics, computed as nlb_tools' `evaluation.py` computes them.

Arrays are (trials, bins, neurons): rates and spike counts per bin. Every metric casts its inputs to
float64 first, as nlb_tools does, so that scores agree with the official ones to rounding.

`evaluate_group` scores one dataset at one bin size; `evaluate` scores a whole submission and returns
nlb_tools' result structure (a list of `{split: {metric: value}}`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import gammaln
from threadpoolctl import threadpool_limits

from nlbkit.errors import NlbkitError

if TYPE_CHECKING:
    from sklearn.model_selection import GridSearchCV

# scikit-learn and scipy.stats (about 2 s to import) are imported where a metric needs them, so
# that commands which only read or check files answer at once.
from nlbkit.nlb.datasets import DATASET_NAMES, get_spec

logger = logging.getLogger(__name__)

RIDGE_ALPHAS = np.logspace(-4, 0, 9)
# Columns of dmfc_rsg's eval behaviour that define a condition for tp corr (is_eye, theta, is_short).
TP_COND_COLUMNS = [0, 1, 2]


def _f64(array) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def neg_log_likelihood(rates: np.ndarray, spikes: np.ndarray) -> float:
    """Total Poisson NLL over the bins where `spikes` is not NaN; zero rates count as 1e-9."""
    if rates.shape != spikes.shape:
        raise NlbkitError(f"rates {rates.shape} and spikes {spikes.shape} differ in shape")
    keep = ~np.isnan(spikes)
    rates, spikes = rates[keep], spikes[keep]
    if np.isnan(rates).any():
        raise NlbkitError("NaN rate predictions found where spikes are observed")
    if (rates < 0).any():
        raise NlbkitError("negative rate predictions found")
    rates = np.where(rates == 0, 1e-9, rates)
    return float(np.sum(rates - spikes * np.log(rates) + gammaln(spikes + 1.0)))


def bits_per_spike(rates: np.ndarray, spikes: np.ndarray) -> float:
    """Bits per spike of `rates` over the null model that predicts each neuron's mean count."""
    null = np.broadcast_to(
        np.nanmean(spikes, axis=tuple(range(spikes.ndim - 1)), keepdims=True), spikes.shape
    )
    nll_model = neg_log_likelihood(rates, spikes)
    nll_null = neg_log_likelihood(np.array(null), spikes)
    return float((nll_null - nll_model) / np.nansum(spikes) / np.log(2))


def _flatten_time(array: np.ndarray) -> np.ndarray:
    """(trials, bins, channels) -> (trials * bins, channels); 2-D input is returned as is."""
    return array.reshape(-1, array.shape[2]) if array.ndim > 2 else array


def ridge_r2(
    train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray
) -> float:
    """R2 on eval of a ridge decoder cross-validated over alpha in logspace(-4, 0, 9) on train.

    x: (samples, units) rates; y: (samples, channels) behaviour. Samples whose first behaviour
    channel is NaN are dropped; a NaN rate left after that is an error.
    """
    train_keep = ~np.isnan(train_y[:, 0])
    eval_keep = ~np.isnan(eval_y[:, 0])
    train_x, train_y = train_x[train_keep], train_y[train_keep]
    eval_x, eval_y = eval_x[eval_keep], eval_y[eval_keep]
    if np.isnan(train_x).any() or np.isnan(eval_x).any():
        raise NlbkitError("NaN rate predictions found within the trial times used for decoding")
    decoder = fit_ridge_decoder(train_x, train_y)
    with threadpool_limits(limits=1, user_api="blas"):
        return float(decoder.score(eval_x, eval_y))


def fit_ridge_decoder(train_x: np.ndarray, train_y: np.ndarray) -> GridSearchCV:
    """A ridge decoder from rates (samples, units) to behaviour (samples, channels), alpha chosen by
    5-fold cross-validation over logspace(-4, 0, 9), as nlb_tools decodes. No NaN allowed."""
    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV

    decoder = GridSearchCV(Ridge(), {"alpha": RIDGE_ALPHAS})
    # The 45 small ridge fits gain nothing from BLAS threads, and on a busy machine threads that
    # wait for each other made them 5x slower (55 s against 10 s for all NLB groups).
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        # The smallest alphas meet nearly collinear rates; cross-validation rejects them.
        warnings.filterwarnings("ignore", category=LinAlgWarning)
        decoder.fit(train_x, train_y)
    return decoder


def decode_masks(
    n_train: int, n_eval: int, train_mask: np.ndarray | None, eval_mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (trials, n_masks) decode masks of train and eval trials: one decoder over every
    trial when either is missing."""
    if train_mask is None or eval_mask is None:
        return np.ones((n_train, 1), dtype=bool), np.ones((n_eval, 1), dtype=bool)
    return np.asarray(train_mask, dtype=bool), np.asarray(eval_mask, dtype=bool)


def velocity_r2(
    train_rates: np.ndarray,
    train_behavior: np.ndarray,
    eval_rates: np.ndarray,
    eval_behavior: np.ndarray,
    train_decode_mask: np.ndarray | None = None,
    eval_decode_mask: np.ndarray | None = None,
) -> float:
    """Behaviour decoding R2, one ridge decoder per decode mask column, averaged.

    rates: (trials, bins, neurons), behaviour: (trials, bins, channels); masks: (trials, n_masks)
    booleans (area2_bump decodes bump and no-bump trials separately). No mask: one decoder.
    """
    train_decode_mask, eval_decode_mask = decode_masks(
        len(train_rates), len(eval_rates), train_decode_mask, eval_decode_mask
    )
    scores = [
        ridge_r2(
            _flatten_time(train_rates[train_decode_mask[:, i]]),
            _flatten_time(train_behavior[train_decode_mask[:, i]]),
            _flatten_time(eval_rates[eval_decode_mask[:, i]]),
            _flatten_time(eval_behavior[eval_decode_mask[:, i]]),
        )
        for i in range(train_decode_mask.shape[1])
    ]
    return float(np.mean(scores))


def shift_trials(rates: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Shift each trial later in time by `jitter[i]` bins (earlier if negative), NaN-filling.

    rates: (trials, bins, neurons); jitter: (trials,) integer bins. Undoes dmfc_rsg's input jitter.
    """
    n_bins = rates.shape[1]
    source = np.arange(n_bins)[None, :] - np.asarray(jitter, dtype=np.int64)[:, None]
    inside = (source >= 0) & (source < n_bins)
    shifted = np.take_along_axis(rates, np.clip(source, 0, n_bins - 1)[..., None], axis=1)
    shifted[~inside] = np.nan
    return shifted


def condition_psths(
    eval_rates: np.ndarray, cond_idx: Sequence[np.ndarray], jitter: np.ndarray | None = None
) -> list[np.ndarray | None]:
    """Per condition, the mean over its trials of the (jitter-corrected) rates; None if empty."""
    if jitter is None:
        jitter = np.zeros(eval_rates.shape[0], dtype=np.int64)
    shifted = shift_trials(eval_rates, jitter)
    return [
        shifted[np.asarray(idx, dtype=np.int64)].mean(axis=0) if np.size(idx) else None
        for idx in cond_idx
    ]


def psth_r2(
    psth: np.ndarray,
    eval_rates: np.ndarray,
    eval_cond_idx: Sequence[np.ndarray],
    jitter: np.ndarray | None = None,
) -> float:
    """R2 of condition-averaged predicted rates to the true PSTHs, over bins where the PSTH exists.

    psth: (conditions, bins, neurons); eval_rates: (trials, bins, neurons) held-in + held-out;
    eval_cond_idx[c]: eval trial indices of condition c; jitter: (trials,) bins (dmfc_rsg).
    """
    true_list, pred_list = [], []
    for cond, pred in enumerate(condition_psths(eval_rates, eval_cond_idx, jitter)):
        if pred is None:
            continue
        keep = ~np.isnan(psth[cond, :, 0])
        if np.isnan(pred[keep]).any():
            raise NlbkitError("NaN rate predictions found within the trial times used for the PSTH")
        true_list.append(psth[cond][keep])
        pred_list.append(pred[keep])
    from sklearn.metrics import r2_score

    return float(r2_score(np.vstack(true_list), np.vstack(pred_list)))


def neural_speeds(eval_rates: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Mean norm of the step between consecutive observed bins of each trial's rates.

    eval_rates: (trials, bins, neurons); observed: (trials, bins) bool (dmfc_rsg's set..go bins).
    Steps join consecutive observed bins even across a gap, as nlb_tools does. (trials,) output.
    """
    n_trials, n_bins = observed.shape
    positions = np.where(observed, np.arange(n_bins)[None, :], -1)
    previous = np.maximum.accumulate(positions, axis=1)
    # The observed bin before bin t, for every observed bin that has one.
    prev_of = np.concatenate([np.full((n_trials, 1), -1), previous[:, :-1]], axis=1)
    has_step = observed & (prev_of >= 0)
    steps = eval_rates - np.take_along_axis(eval_rates, np.clip(prev_of, 0, None)[..., None], axis=1)
    norms = np.where(has_step, np.linalg.norm(steps, axis=-1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return norms.sum(axis=1) / has_step.sum(axis=1)


def speed_tp_correlation(
    eval_spikes_heldout: np.ndarray, eval_rates: np.ndarray, eval_behavior: np.ndarray
) -> float:
    """dmfc_rsg: Pearson r between neural speed in set..go and the produced interval tp.

    Computed within each (is_eye, theta, is_short) condition and averaged. The set..go bins are
    those where `eval_spikes_heldout` is not NaN; eval_behavior: (trials, 5), tp last. A condition
    with a single eval trial, where nlb_tools raises, is left out with a warning.
    """
    from scipy.stats import pearsonr

    speeds = neural_speeds(eval_rates, ~np.isnan(eval_spikes_heldout[..., 0]))
    cond_values = eval_behavior[:, TP_COND_COLUMNS]
    conds = np.unique(cond_values, axis=0)
    conds = conds[~np.all(np.isnan(conds), axis=1)]
    correlations = []
    for cond in conds:
        in_cond = np.all(cond_values == cond, axis=1)
        if in_cond.sum() < 2:
            # nlb_tools fails here (a correlation needs two trials); real NLB splits never do.
            logger.warning("tp corr: condition %s has one eval trial; left out", cond.tolist())
            continue
        r, _ = pearsonr(speeds[in_cond], eval_behavior[in_cond][:, -1])
        correlations.append(r)
    return float(np.mean(correlations)) if correlations else float("nan")


def evaluate_group(
    dataset: str, bin_ms: int, target: Mapping[str, np.ndarray], rates: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Score one dataset at one bin size, as nlb_tools' `evaluate` does for its group.

    target: the eval-target arrays of the group (`eval_spikes_heldout`, `train_behavior`,
    `eval_behavior`, forward spikes, optional `psth`/`eval_cond_idx`/`eval_jitter`/decode masks).
    rates: the submission arrays (RATE_KEYS; train rates are not needed for dmfc_rsg).
    Returns {metric: value} under nlb_tools' metric names, without scaling prefixes.
    """
    spec = get_spec(dataset)
    eval_heldout = _f64(rates["eval_rates_heldout"])
    eval_rates = np.concatenate([_f64(rates["eval_rates_heldin"]), eval_heldout], axis=-1)
    spikes_heldout = _f64(target["eval_spikes_heldout"])
    result = {"co-bps": bits_per_spike(eval_heldout, spikes_heldout)}
    # Targets without behaviour (train trials held out of a file without `train_behavior`) get
    # the spike metrics alone.
    if "eval_behavior" in target:
        eval_behavior = _f64(target["eval_behavior"])
        if not spec.decodes_velocity:
            result["tp corr"] = speed_tp_correlation(spikes_heldout, eval_rates, eval_behavior)
        else:
            train_rates = np.concatenate(
                [_f64(rates["train_rates_heldin"]), _f64(rates["train_rates_heldout"])], axis=-1
            )
            result["vel R2"] = velocity_r2(
                train_rates,
                _f64(target["train_behavior"]),
                eval_rates,
                eval_behavior,
                target.get("train_decode_mask"),
                target.get("eval_decode_mask"),
            )
    if "psth" in target:
        jitter = target.get("eval_jitter")
        result["psth R2"] = psth_r2(_f64(target["psth"]), eval_rates, target["eval_cond_idx"], jitter)
    if "eval_rates_heldin_forward" in rates and "eval_spikes_heldin_forward" in target:
        spikes_fp = np.concatenate(
            [_f64(target["eval_spikes_heldin_forward"]), _f64(target["eval_spikes_heldout_forward"])],
            axis=-1,
        )
        rates_fp = np.concatenate(
            [_f64(rates["eval_rates_heldin_forward"]), _f64(rates["eval_rates_heldout_forward"])],
            axis=-1,
        )
        result["fp-bps"] = bits_per_spike(rates_fp, spikes_fp)
    return result


def split_name(dataset: str, bin_ms: int) -> str:
    """The result split a group is reported under ('mc_maze_20_split', 'mc_maze_scaling_split')."""
    spec = get_spec(dataset)
    if spec.scale_prefix:
        return "mc_maze_scaling_split" if bin_ms == 5 else f"mc_maze_scaling_{bin_ms}_split"
    return f"{spec.group_name(bin_ms)}_split"


def evaluate(
    targets: Mapping[str, Mapping[str, np.ndarray]],
    submission: Mapping[str, Mapping[str, np.ndarray]],
) -> list[dict[str, dict[str, float]]]:
    """Score every group present in both `submission` and `targets`, as nlb_tools' `evaluate`.

    Both map group names ('mc_maze', 'mc_maze_20', ...) to their arrays. Result: a list of
    {split: {metric: value}}; the scaled mc_maze sets share one split per bin size, with their
    metrics prefixed '[500] ', '[250] ', '[100] '. A group missing from the targets is skipped
    with a warning; an unknown group name is ignored (as nlb_tools does; `validate` catches it).
    """
    result_list: list[dict[str, dict[str, float]]] = []
    scaling: dict[int, dict[str, float]] = {5: {}, 20: {}}
    for dataset in DATASET_NAMES:
        spec = get_spec(dataset)
        for bin_ms in (5, 20):
            group = spec.group_name(bin_ms)
            if group not in submission or "eval_rates_heldout" not in submission[group]:
                continue
            if group not in targets or "eval_spikes_heldout" not in targets[group]:
                logger.warning("evaluation data for %s not found", group)
                continue
            scores = evaluate_group(dataset, bin_ms, targets[group], submission[group])
            if spec.scale_prefix:
                scaling[bin_ms].update({f"{spec.scale_prefix} {k}": v for k, v in scores.items()})
            else:
                result_list.append({split_name(dataset, bin_ms): scores})
    for bin_ms, scores in scaling.items():
        if scores:
            result_list.append({split_name("mc_maze_small", bin_ms): scores})
    return result_list
