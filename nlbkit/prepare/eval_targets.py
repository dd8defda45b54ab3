"""Evaluation targets: nlb_tools' `make_eval_target_tensors(include_psth=True)`, val phase (and
test phase, for generated data).

Keys as nlb_tools names them: `eval_spikes_heldout`, `train_behavior`, `eval_behavior`,
`eval_spikes_heldin_forward`, `eval_spikes_heldout_forward`, and where the dataset has them
`train_decode_mask`/`eval_decode_mask` (bool `(trials, 2)`), `eval_cond_idx`/`train_cond_idx`
(object arrays of int64 index arrays, one per condition), `psth` (float64 `(conditions, bins,
held-in + held-out units)`), `eval_jitter`/`train_jitter` (int64 bins).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import BehaviorSource
from nlbkit.prepare.binning import count_spikes, place_jagged
from nlbkit.prepare.inputs import Context, behavior, draw_jitter, jittered, stacked, window_params
from nlbkit.prepare.psth import condition_mean, conditions, gaussian_kernel, stack_psths
from nlbkit.prepare.windows import Windows


def _eval_heldout_variable(ctx: Context, mask, params, extra, jitter_ms) -> np.ndarray:
    """Variable-length eval windows, padded as the spec says (nlb_tools' `make_jagged_array`)."""
    spec = ctx.spec
    w = ctx.windows(mask, params, extra)
    if len(w.rows) != mask.sum() or np.any(w.n_bins == 0):
        raise NlbkitError(f"{ctx.session.path}: an eval trial has no window (missing event time?)")
    length = int(w.n_bins.max())
    counts = count_spikes(ctx.session.heldout, w.first_bin, length, ctx.bin_ms)
    max_len = round(spec.eval_seg_len_ms / ctx.bin_ms) if spec.eval_seg_len_ms else length
    jitter_bins = None if jitter_ms is None else np.round(jitter_ms / ctx.bin_ms).astype(np.int64)
    return place_jagged(counts, w.n_bins, max_len, spec.eval_pad, jitter_bins).astype(np.float32)


def val_target(ctx: Context) -> dict[str, np.ndarray]:
    """Targets for scoring val-trial predictions of a model trained on the train trials."""
    return eval_target(ctx, ("train",), "val")


def test_target(ctx: Context) -> dict[str, np.ndarray]:
    """Targets for scoring test-trial predictions of a model trained on the train and val trials:
    a group of nlb_tools' `eval_data_test.h5` (`make_eval_target_tensors(ds, name, ['train', 'val'],
    'test')`). Needs a session holding the test trials' held-out spikes, which only generated data
    has (NLB's test files hold held-in units only)."""
    return eval_target(ctx, ("train", "val"), "test")


def eval_target(ctx: Context, fit_splits: tuple[str, ...], eval_split: str) -> dict[str, np.ndarray]:
    """Targets for the `eval_split` trials of a model trained on the `fit_splits` trials."""
    spec, trials, s = ctx.spec, ctx.trials, ctx.session
    if s.heldout is None:
        raise NlbkitError(f"{s.path}: no held-out units; eval targets need them")
    train, evals = ctx.split_mask(*fit_splits), ctx.split_mask(eval_split)
    if not evals.any():
        raise NlbkitError(f"{s.path}: no trials with split '{eval_split}'")
    # nlb_tools: test-phase PSTHs average every trial but those of split 'none'
    ignore = ctx.split_mask("none") if eval_split == "test" else ~(train | evals)
    params = window_params(spec.eval_window)
    extra, train_jit, eval_jit = None, None, None
    if spec.jitter is not None:
        train_jit, eval_jit = draw_jitter(ctx, train), draw_jitter(ctx, evals)
        params, extra = jittered(ctx, params, [(train, train_jit), (evals, eval_jit)])
    out: dict[str, np.ndarray] = {}
    if params.align_range is None:
        out["eval_spikes_heldout"] = _eval_heldout_variable(ctx, evals, params, extra, eval_jit)
        if spec.behavior_source is BehaviorSource.CONTINUOUS:
            raise NlbkitError(f"{spec.name}: continuous behaviour needs fixed eval windows")
    else:
        (out["eval_spikes_heldout"],) = stacked(ctx, [s.heldout], ctx.windows(evals, params, extra), "eval")
    out["train_behavior"] = behavior(ctx, train, params)
    out["eval_behavior"] = behavior(ctx, evals, params)
    fp_windows = ctx.windows(evals, params.forward(spec.fp_len_ms), extra)
    fp = stacked(ctx, [s.heldin, s.heldout], fp_windows, "forward")
    out["eval_spikes_heldin_forward"], out["eval_spikes_heldout_forward"] = fp
    if spec.decode_mask_field is not None:
        col = trials[spec.decode_mask_field]
        out["train_decode_mask"] = np.stack([col[train] == 0, col[train] == 1]).T
        out["eval_decode_mask"] = np.stack([col[evals] == 0, col[evals] == 1]).T
    if spec.psth is not None:
        train_idx, eval_idx, psth = make_psth(ctx, train, evals, ignore)
        out["eval_cond_idx"], out["train_cond_idx"], out["psth"] = eval_idx, train_idx, psth
        if spec.jitter is not None:
            out["eval_jitter"] = np.round(eval_jit / ctx.bin_ms).astype(np.int64)
            out["train_jitter"] = np.round(train_jit / ctx.bin_ms).astype(np.int64)
    return out


def _object_array(items: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def make_psth(ctx: Context, train: np.ndarray, evals: np.ndarray, ignore: np.ndarray):
    """(train_cond_idx, eval_cond_idx, psth) as nlb_tools' `_make_psth`, per condition."""
    spec, trials, s = ctx.spec.psth, ctx.trials, ctx.session
    params = window_params(spec.window)
    skip = trials[spec.skip_field] == 1 if spec.skip_field else np.zeros(len(ignore), dtype=bool)
    align = trials[params.align_field or "start_time"].astype(np.float64)
    ids = trials["trial_id"]
    train_ids, eval_ids = ids[train & ~np.isnan(align)], ids[evals & ~np.isnan(align)]
    kernel = gaussian_kernel(spec.kern_sd_ms)
    psths, train_idx, eval_idx = [], [], []
    # many small matrix products: BLAS threads would only contend (with each other and other jobs)
    with threadpool_limits(limits=1, user_api="blas"):
        for comb in conditions(trials, spec.cond_fields, ~ignore):
            in_cond = np.ones(len(ignore), dtype=bool)
            for name, value in zip(spec.cond_fields, comb, strict=True):
                in_cond &= trials[name] == value
            select = in_cond & ~ignore & ~skip
            if not select.any():
                continue
            w = ctx.windows(select, params)
            w = _drop_short(w)
            mean = condition_mean(s, [s.heldin, s.heldout], w, ctx.bin_ms, kernel)
            min_len = int(w.n_bins.min())
            psths.append(mean[:min_len] if spec.pad == "back" else mean[-min_len:])
            kept = ids[w.rows]
            train_idx.append(np.sort(np.flatnonzero(np.isin(train_ids, kept))))
            eval_idx.append(np.sort(np.flatnonzero(np.isin(eval_ids, kept))))
    if not psths:
        raise NlbkitError(f"{s.path}: no condition has trials for the PSTH")
    if spec.seg_len_ms is None:
        max_len = max(p.shape[0] for p in psths)
    else:
        max_len = round(spec.seg_len_ms / ctx.bin_ms)
    return _object_array(train_idx), _object_array(eval_idx), stack_psths(psths, max_len, spec.pad)


def _drop_short(w: Windows) -> Windows:
    """Trials without bins leave; those shorter than 0.8 of the mean length too (nlb_tools' rule)."""
    keep = w.n_bins > 0
    mean_len = w.n_bins[keep].mean()
    keep &= ~(w.n_bins < 0.8 * mean_len)
    return Windows(w.rows[keep], w.first_bin[keep], w.n_bins[keep], w.align_bin[keep])

