"""Model input tensors: nlb_tools' `make_train_input_tensors` and `make_eval_input_tensors`.

Spike tensors are `(trials, bins, units)` float32 spike counts per bin (NaN where unobserved);
behaviour is float64 `(trials, bins, channels)` (or `(trials, fields)` for trial-info behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import BehaviorSource, DatasetSpec, Window
from nlbkit.prepare.binning import behavior_rows, count_spikes, n_bins, place_jagged, resample_behavior
from nlbkit.prepare.nwb import Session, UnitGroup
from nlbkit.prepare.windows import NS_PER_MS, WindowParams, Windows, seconds_to_ns, trial_windows

JITTER_SUFFIX = "_jitter_time"


def window_params(window: Window) -> WindowParams:
    """A spec window as nlb_tools' make_params (its 'end_time' is the NWB 'stop_time')."""
    end = window.end_field or "stop_time"
    return WindowParams(
        align_field=window.align_field,
        align_range=window.align_range,
        start_field=window.start_field or "start_time",
        end_field="stop_time" if end == "end_time" else end,
        allow_overlap=window.allow_overlap,
    )


@dataclass
class Context:
    """A session on a bin grid, with the resampled behaviour computed once when first needed."""

    session: Session
    spec: DatasetSpec
    bin_ms: int
    _behavior: np.ndarray | None = field(default=None, repr=False)

    @property
    def trials(self) -> dict[str, np.ndarray]:
        return self.session.trials

    @property
    def n_bins(self) -> int:
        return n_bins(self.session.n_samples, self.bin_ms)

    def split_mask(self, *splits: str) -> np.ndarray:
        return np.isin(self.trials["split"], splits)

    def behavior(self) -> np.ndarray:
        if self._behavior is None:
            self._behavior = resample_behavior(self.session, self.spec.behavior_fields[0], self.bin_ms)
        return self._behavior

    def windows(self, mask: np.ndarray, params: WindowParams, extra=None) -> Windows:
        return trial_windows(self.trials, mask, params, self.bin_ms, self.n_bins, extra)


def draw_jitter(ctx: Context, mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """dmfc_rsg's window shifts (ms) for the selected trials, as nlb_tools' `_prep_jitter` draws them.

    Upper bound `clip(max_ms - tp, 0, clip_ms)` (0 for test trials) floored to whole bins; one
    draw of the legacy global generator seeded with `seed` per trial, in table order; rounded.
    """
    jitter = ctx.spec.jitter
    rows = np.flatnonzero(mask)
    tp = ctx.trials.get(jitter.field)
    tp = np.full(len(rows), np.nan) if tp is None else tp[rows].astype(np.float64)
    upper = np.clip(jitter.max_ms - tp, 0.0, jitter.clip_ms)
    upper = np.where(ctx.trials["split"][rows] == "test", 0.0, upper)
    upper = np.floor(np.round(upper / ctx.bin_ms, 4))
    rng = np.random.RandomState(seed)  # the stream `np.random.seed(seed); np.random.random()` gives
    draws = np.array([rng.random_sample() * (hi - 0.0) + 0.0 for hi in upper])
    return np.round(draws) * ctx.bin_ms


def jittered(ctx: Context, params: WindowParams, parts: list[tuple[np.ndarray, np.ndarray]]):
    """Params aligned to a jittered copy of the align field, and that field's (ns, valid) values.

    `parts` pairs a trial mask with its jitter (ms); later parts overwrite earlier ones.
    """
    base = params.align_field or params.start_field
    name = base.replace("_time", JITTER_SUFFIX)
    ns, ok = seconds_to_ns(ctx.trials[base])
    out_ns, out_ok = np.zeros_like(ns), np.zeros_like(ok)
    for mask, jitter_ms in parts:
        rows = np.flatnonzero(mask)
        shift = np.round(np.nan_to_num(jitter_ms) * NS_PER_MS).astype(np.int64)
        out_ns[rows] = ns[rows] + shift
        out_ok[rows] = ok[rows] & np.isfinite(jitter_ms)
    new = replace(params, align_field=name) if params.align_field else replace(params, start_field=name)
    return new, {name: (out_ns, out_ok)}


def stacked(ctx: Context, groups: list[UnitGroup | None], w: Windows, what: str) -> list[np.ndarray]:
    """nlb_tools' `make_stacked_array`: equal-length windows of each group's spike counts."""
    keep = w.n_bins > 0
    lengths = np.unique(w.n_bins[keep])
    if len(lengths) > 1:
        raise NlbkitError(
            f"{ctx.session.path}: {what} windows have unequal lengths {lengths.tolist()} (trials cut by "
            "overlap or the session edge); nlb_tools cannot stack them either"
        )
    length = int(lengths[0]) if len(lengths) else 0
    return [count_spikes(g, w.first_bin[keep], length, ctx.bin_ms) for g in groups if g is not None]


def jagged_behavior(ctx: Context, mask: np.ndarray, params: WindowParams) -> np.ndarray:
    """nlb_tools' `make_jagged_array` of the behaviour field over lagged windows (NaN-padded at the back)."""
    w = ctx.windows(mask, params)
    if len(w.rows) != mask.sum() or np.any(w.n_bins == 0):
        raise NlbkitError(f"{ctx.session.path}: a trial has no behaviour window (missing align time?)")
    max_len = int(w.n_bins.max()) if len(w.rows) else 0
    rows = behavior_rows(ctx.behavior(), w.first_bin, w.n_bins, max_len)
    return place_jagged(rows, w.n_bins, max_len)


def trial_info_behavior(ctx: Context, mask: np.ndarray) -> np.ndarray:
    """Behaviour read from trial columns, `(trials, fields)` float64."""
    return np.stack([ctx.trials[f][mask].astype(np.float64) for f in ctx.spec.behavior_fields], axis=1)


def behavior(ctx: Context, mask: np.ndarray, params: WindowParams) -> np.ndarray:
    """Behaviour for the selected trials, NaN on trials the spec masks out."""
    spec = ctx.spec
    if spec.behavior_source is BehaviorSource.CONTINUOUS:
        values = jagged_behavior(ctx, mask, params.shifted(spec.lag_ms))
    else:
        values = trial_info_behavior(ctx, mask)
    if spec.behavior_mask_field is not None:
        values[ctx.trials[spec.behavior_mask_field][mask] != 0] = np.nan
    return values


def train_input(ctx: Context, mask: np.ndarray) -> dict[str, np.ndarray]:
    """`make_train_input_tensors(include_behavior=True, include_forward_pred=True)` for `mask`."""
    params = window_params(ctx.spec.train_window)
    extra = None
    if ctx.spec.jitter is not None:
        params, extra = jittered(ctx, params, [(mask, draw_jitter(ctx, mask))])
    s = ctx.session
    heldin, heldout = stacked(ctx, [s.heldin, s.heldout], ctx.windows(mask, params, extra), "train")
    out = {"train_spikes_heldin": heldin, "train_spikes_heldout": heldout}
    out["train_behavior"] = behavior(ctx, mask, params)
    fp_windows = ctx.windows(mask, params.forward(ctx.spec.fp_len_ms), extra)
    fp = stacked(ctx, [s.heldin, s.heldout], fp_windows, "forward")
    out["train_spikes_heldin_forward"], out["train_spikes_heldout_forward"] = fp
    return out


def eval_input(ctx: Context, mask: np.ndarray) -> dict[str, np.ndarray]:
    """`make_eval_input_tensors` for `mask`: held-out spikes too unless a test trial is selected."""
    params = window_params(ctx.spec.train_window)
    extra = None
    if ctx.spec.jitter is not None:
        params, extra = jittered(ctx, params, [(mask, draw_jitter(ctx, mask))])
    with_heldout = not np.any(ctx.trials["split"][mask] == "test")
    groups = [ctx.session.heldin, ctx.session.heldout if with_heldout else None]
    if with_heldout and ctx.session.heldout is None:
        raise NlbkitError(f"{ctx.session.path}: no held-out units for the eval trials")
    arrays = stacked(ctx, groups, ctx.windows(mask, params, extra), "eval")
    out = {"eval_spikes_heldin": arrays[0]}
    if with_heldout:
        out["eval_spikes_heldout"] = arrays[1]
    return out
