"""The figures of `nlbkit report`: each function takes a `ReportData` and returns a figure, or raises
`Skip` naming what the run lacks. Rates are drawn in spikes per second (rates per bin / bin width).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import get_spec
from nlbkit.report.data import ReportData, Skip
from nlbkit.synth.latents import MAX_RATE_HZ

N_NEURONS = 4
N_TRIALS = 3
N_CONDITIONS = 8
SMOOTH_SD_MS = 40.0
N_SECTORS = 8  # reach directions, when no condition list colours the trials
NO_VALIDATION = ("no validation trials (train.val_fraction = 0):\nevery trial trains; the rates come\n"
                 "from the last (averaged) weights")


def _hz(data: ReportData) -> float:
    return 1000.0 / data.bin_ms


def _time_ms(n_bins: int, bin_ms: int) -> np.ndarray:
    return np.arange(n_bins) * bin_ms


def _column(rows: list[dict[str, str]], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key, "") != "" else np.nan for r in rows])


def chosen_and_stop_epochs(rows: list[dict[str, str]], max_epochs: int | None) -> tuple[int, int | None]:
    """(epoch of the chosen checkpoint, epoch of an early stop or None) from metrics.csv's rows.

    The chosen checkpoint is the first epoch reaching the final best validation co-bps (the last
    epoch when there was no validation); an early stop is a log ending before `max_epochs`.
    """
    epochs = [int(float(r["epoch"])) for r in rows]
    best = rows[-1].get("best_co_bps", "")
    chosen = next((e for e, r in zip(epochs, rows, strict=True) if best != "" and r["best_co_bps"] == best),
                  epochs[-1])
    stopped = epochs[-1] if max_epochs is not None and epochs[-1] < max_epochs else None
    return chosen, stopped


def _max_epochs(data: ReportData) -> int | None:
    try:
        return data.run.config().train.epochs
    except NlbkitError:
        return None


def training_curves(data: ReportData):
    """Loss, NLL and validation NLL; validation co-bps; KL weight and learning rate, per epoch.

    Dashed lines mark the chosen checkpoint's epoch and, where early stopping ended the run, its
    last epoch.
    """
    if not data.metrics:
        raise Skip(f"no metrics.csv ({data.model} runs have no training log)")
    rows = data.metrics
    epoch = _column(rows, "epoch")
    chosen, stopped = chosen_and_stop_epochs(rows, _max_epochs(data))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    co_bps = _column(rows, "val_co_bps")
    keep = ~np.isnan(co_bps)
    for ax in axes[:2] if keep.any() else axes[:1]:
        ax.axvline(chosen, color="k", ls=":", lw=1, label=f"checkpoint (epoch {chosen})")
        if stopped is not None:
            ax.axvline(stopped, color="C3", ls="--", lw=1, label=f"early stop (epoch {stopped})")
    for key, style in (("loss", "-"), ("nll", "-"), ("val_nll", "o-")):
        values = _column(rows, key)
        keep = ~np.isnan(values)
        if keep.any():
            axes[0].plot(epoch[keep], values[keep], style, ms=3, label=key)
    axes[0].set(xlabel="epoch", ylabel="per bin and neuron", title="loss")
    axes[0].legend(frameon=False)
    axes[1].set(xlabel="epoch", ylabel="bits/spike", title="validation co-bps")
    if keep.any():
        axes[1].plot(epoch[keep], co_bps[keep], "o-", ms=3, label="validation co-bps")
        axes[1].plot(epoch, _column(rows, "best_co_bps"), "--", label="best so far")
        axes[1].legend(frameon=False)
    else:
        axes[1].text(0.5, 0.5, NO_VALIDATION, ha="center", va="center", fontsize=9,
                     transform=axes[1].transAxes)
    axes[2].plot(epoch, _column(rows, "kl_weight"), color="C2", label="KL weight")
    axes[2].set(xlabel="epoch", ylabel="KL weight", title="schedules")
    twin = axes[2].twinx()
    twin.semilogy(epoch, _column(rows, "lr"), color="C3", label="learning rate")
    twin.set_ylabel("learning rate")
    fig.legend(*[sum(x, []) for x in zip(axes[2].get_legend_handles_labels(),
                                          twin.get_legend_handles_labels(), strict=True)],
               loc="lower right", frameon=False, fontsize=8)
    fig.suptitle(f"{data.run.path.name}: training")
    fig.tight_layout()
    return fig


def condition_labels(data: ReportData, n_trials: int) -> tuple[np.ndarray, str]:
    """Per eval trial, a condition number (-1: none) and what it means."""
    labels = -np.ones(n_trials, dtype=int)
    cond_idx = (data.targets or {}).get("eval_cond_idx")
    if cond_idx is not None and len(cond_idx):
        for cond, idx in enumerate(cond_idx):
            labels[np.asarray(idx, dtype=int)] = cond
        return labels, "condition"
    behavior = data.eval_trials.behavior if data.eval_trials is not None else None
    if behavior is not None and behavior.shape[-1] >= 2:
        # No condition list (held-out train trials): bin the reach direction into sectors.
        mean = np.nanmean(behavior[..., :2], axis=1)
        angle = np.arctan2(mean[:, 1], mean[:, 0])
        sector = ((angle + math.pi) / (2 * math.pi) * N_SECTORS).astype(int) % N_SECTORS
        return sector, f"reach direction ({N_SECTORS} sectors)"
    return labels, "no conditions known"


def label_color(label: int, meaning: str):
    """One colour per condition (tab10), around the colour wheel for reach directions, grey for none."""
    if label < 0:
        return "0.6"
    if meaning.startswith("reach"):
        return plt.get_cmap("hsv")(label / N_SECTORS)
    return f"C{label % 10}"


def condition_legend(ax, labels: np.ndarray, meaning: str) -> None:
    """A legend of the colours `label_color` gave: one entry per condition (or reach sector)."""
    shown = sorted({int(label) for label in labels})
    if meaning.startswith("reach"):
        names = {s: f"{-180 + s * 360 // N_SECTORS}..{-180 + (s + 1) * 360 // N_SECTORS} deg" for s in shown}
    else:
        names = {c: "no condition" if c < 0 else f"condition {c}" for c in shown}
    for label in shown[:12]:
        ax.plot([], [], "-", color=label_color(label, meaning), label=names[label])
    ax.legend(frameon=False, fontsize=7, title=meaning if len(shown) <= 12 else f"{meaning} (12 shown)",
              title_fontsize=7)


# A network's latents the figure shows: run_latents' `which`, and its name in the title.
NETWORK_LATENTS = {
    "langevin": ("state", "latent state [z, v, h]"),
    "ndt": ("h", "last layer's states"),
    "lfads": ("factors", "factors"),
}


def latent_trajectories(data: ReportData):
    """The first principal components of the inferred latent state, coloured by condition."""
    from nlbkit.train.latents import principal_components, run_latents

    if data.model not in NETWORK_LATENTS:
        raise Skip(f"{data.model} runs have no latent states")
    if data.eval_trials is None:
        raise Skip("the run's tensor file is missing, so there are no spikes to infer latents from")
    which, shown = NETWORK_LATENTS[data.model]
    latents = run_latents(data.run.path, data.eval_trials.heldin, which=which)
    n_obs = latents.n_observed
    pcs, ratios = principal_components(latents.values[:, :n_obs], 3)
    labels, meaning = condition_labels(data, pcs.shape[0])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    t = latents.times_ms()[:n_obs]
    for trial, label in enumerate(labels):
        color = label_color(label, meaning)
        axes[0].plot(pcs[trial, :, 0], pcs[trial, :, 1], color=color, lw=0.8, alpha=0.8)
        axes[0].plot(pcs[trial, 0, 0], pcs[trial, 0, 1], "o", color=color, ms=3)
        axes[1].plot(t, pcs[trial, :, 0], color=color, lw=0.8, alpha=0.8)
    axes[0].set(xlabel=f"PC1 ({ratios[0]:.0%})", ylabel=f"PC2 ({ratios[1]:.0%})",
                title=f"{shown}, eval trials (dot: start)")
    axes[1].set(xlabel="time in window (ms)", ylabel="PC1",
                title=f"PC1 over time (one model step = {latents.step_ms:g} ms)")
    condition_legend(axes[1], labels, meaning)
    fig.suptitle(f"{data.run.path.name}: inferred latents, coloured by {meaning}")
    fig.tight_layout()
    return fig


def _smoothed_hz(spikes: np.ndarray, bin_ms: int) -> np.ndarray:
    from nlbkit.models.smoothing import gaussian_window, smooth_spikes

    return smooth_spikes(spikes, gaussian_window(SMOOTH_SD_MS, bin_ms)) * 1000.0 / bin_ms


def rates_vs_spikes(data: ReportData):
    """Predicted rates of the most active held-out neurons against their smoothed spikes."""
    trials = data.eval_trials
    if trials is None or trials.heldout is None:
        raise Skip("no held-out spikes of the eval trials (test phase, or tensor file missing)")
    predicted = data.rates["eval_rates_heldout"] * _hz(data)
    smoothed = _smoothed_hz(trials.heldout, data.bin_ms)
    neurons = np.argsort(-np.nanmean(trials.heldout, axis=(0, 1)))[:N_NEURONS]
    t = _time_ms(predicted.shape[1], data.bin_ms)
    fig, axes = plt.subplots(len(neurons), N_TRIALS, figsize=(11, 2.0 * len(neurons)), sharex=True,
                             squeeze=False)
    for row, neuron in enumerate(neurons):
        for col in range(min(N_TRIALS, predicted.shape[0])):
            ax = axes[row, col]
            label = f"spikes, {SMOOTH_SD_MS:.0f} ms smoothing"
            ax.plot(t, smoothed[col, :, neuron], color="0.5", lw=1, label=label)
            ax.plot(t, predicted[col, :, neuron], color="C0", lw=1.3, label="predicted rate")
            if row == 0:
                ax.set_title(f"eval trial {col}")
            if col == 0:
                ax.set_ylabel(f"held-out {neuron}\n(spikes/s)")
    axes[-1, 0].set_xlabel("time in window (ms)")
    axes[0, 0].legend(frameon=False, fontsize=7)
    fig.suptitle(f"{data.run.path.name}: held-out neurons, predicted vs smoothed spikes")
    fig.tight_layout()
    return fig


def psths(data: ReportData):
    """Condition-averaged predicted rates against the true PSTHs, for the most active held-out neurons."""
    from nlbkit.scoring.metrics import condition_psths

    targets = data.targets or {}
    if "psth" not in targets or "eval_cond_idx" not in targets:
        raise Skip("no PSTH targets (only in val-phase runs of datasets scored on psth R2)")
    rates = np.concatenate([data.rates["eval_rates_heldin"], data.rates["eval_rates_heldout"]], axis=2)
    # dmfc_rsg's eval trials are jittered in time: undone before averaging, as psth R2 does.
    predicted = condition_psths(rates, targets["eval_cond_idx"], targets.get("eval_jitter"))
    true = targets["psth"]
    n_heldout = data.rates["eval_rates_heldout"].shape[2]
    activity = np.nanmean(true[:, :, data.n_heldin:], axis=(0, 1))
    neurons = data.n_heldin + np.argsort(-activity)[: min(N_NEURONS, n_heldout)]
    conds = [c for c, p in enumerate(predicted) if p is not None][:N_CONDITIONS]
    t = _time_ms(true.shape[1], data.bin_ms)
    fig, axes = plt.subplots(1, len(neurons), figsize=(3.2 * len(neurons), 3.4), squeeze=False)
    for ax, neuron in zip(axes[0], neurons, strict=False):
        for k, cond in enumerate(conds):
            ax.plot(t, true[cond, :, neuron] * _hz(data), "--", color=f"C{k % 10}", lw=1)
            ax.plot(t, predicted[cond][:, neuron] * _hz(data), "-", color=f"C{k % 10}", lw=1.3)
        ax.set(title=f"held-out neuron {neuron - data.n_heldin}", xlabel="time in window (ms)")
    axes[0, 0].set_ylabel("spikes/s")
    axes[0, 0].plot([], [], "k-", label="predicted")
    axes[0, 0].plot([], [], "k--", label="true PSTH")
    for k, cond in enumerate(conds):
        axes[0, -1].plot([], [], "-", color=f"C{k % 10}", label=f"condition {cond}")
    for ax in dict.fromkeys([axes[0, 0], axes[0, -1]]):
        ax.legend(frameon=False, fontsize=7)
    fig.suptitle(f"{data.run.path.name}: PSTHs of {len(conds)} conditions (colour), predicted vs true")
    fig.tight_layout()
    return fig


def decoded_velocity(data: ReportData):
    """Hand velocity decoded from the rates (ridge, fitted on the train trials) against the true one."""
    from sklearn.metrics import r2_score

    from nlbkit.scoring.metrics import fit_ridge_decoder

    targets = data.targets or {}
    if not get_spec(data.dataset).decodes_velocity:
        raise Skip(f"{data.dataset}'s behaviour is not decoded (it is scored by tp corr)")
    if "eval_behavior" not in targets or "train_behavior" not in targets:
        raise Skip("no behaviour targets (test phase, or a dataset without behaviour)")
    if "train_rates_heldin" not in data.rates:
        raise Skip("the rates file holds no train rates to fit a decoder on")

    def stack(prefix: str) -> np.ndarray:
        parts = (data.rates[f"{prefix}_rates_heldin"], data.rates[f"{prefix}_rates_heldout"])
        return np.concatenate(parts, axis=2)

    train_x, eval_x = stack("train"), stack("eval")
    train_y, eval_y = targets["train_behavior"], targets["eval_behavior"]
    keep = ~np.isnan(train_y.reshape(-1, train_y.shape[2])[:, 0])
    decoder = fit_ridge_decoder(
        train_x.reshape(-1, train_x.shape[2])[keep], train_y.reshape(-1, train_y.shape[2])[keep]
    )
    decoded = decoder.predict(eval_x.reshape(-1, eval_x.shape[2])).reshape(*eval_x.shape[:2], -1)
    valid = ~np.isnan(eval_y[..., 0])
    r2 = r2_score(eval_y[valid], decoded[valid])
    t = _time_ms(eval_y.shape[1], data.bin_ms)
    n_dims = min(2, eval_y.shape[2])
    fig, axes = plt.subplots(1, n_dims + 1, figsize=(4.2 * (n_dims + 1), 3.6))
    for dim in range(n_dims):
        for trial in range(min(N_TRIALS, eval_y.shape[0])):
            axes[dim].plot(t, eval_y[trial, :, dim], "--", color=f"C{trial}", lw=1)
            axes[dim].plot(t, decoded[trial, :, dim], "-", color=f"C{trial}", lw=1.3)
        axes[dim].set(title=f"behaviour {'xy'[dim] if n_dims == 2 else dim} (dashed: true)",
                      xlabel="time in window (ms)")
    labels, meaning = condition_labels(data, eval_y.shape[0])
    for trial in range(eval_y.shape[0]):
        color = label_color(labels[trial], meaning)
        true_path = np.nancumsum(eval_y[trial, :, :2], axis=0)
        axes[-1].plot(*true_path.T, "--", color=color, lw=0.8)
        axes[-1].plot(*np.cumsum(np.where(valid[trial, :, None], decoded[trial, :, :2], 0), axis=0).T,
                      "-", color=color, lw=1)
    axes[-1].set(title=f"integrated paths by {meaning}", xlabel="x (a.u.)", ylabel="y (a.u.)")
    condition_legend(axes[-1], labels, meaning)
    fig.suptitle(f"{data.run.path.name}: decoded vs true behaviour, eval trials (R2 {r2:.3f})")
    fig.tight_layout()
    return fig


def true_rates(data: ReportData):
    """Generated data: inferred rates against the true rates the spikes were drawn from."""
    from sklearn.metrics import r2_score

    if data.true_rates is None:
        raise Skip("no ground truth (only generated data from `nlbkit synth` has true rates)")
    keys = ("eval_rates_heldin", "eval_rates_heldout")
    inferred = np.concatenate([data.rates[k] for k in keys], axis=2) * _hz(data)
    truth = np.concatenate([data.true_rates[k] for k in keys], axis=2) * _hz(data)
    r2 = r2_score(truth.reshape(-1), inferred.reshape(-1))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    rng = np.random.default_rng(0)
    pick = rng.choice(truth.size, size=min(truth.size, 20000), replace=False)
    axes[0].scatter(truth.reshape(-1)[pick], inferred.reshape(-1)[pick], s=2, alpha=0.3)
    top = float(max(truth.max(), inferred.max()))
    axes[0].plot([0, top], [0, top], "k--", lw=1)
    if truth.max() >= MAX_RATE_HZ - 1e-3:
        # The generator caps rates there (as real neurons saturate): a column of points at the cap.
        axes[0].axvline(MAX_RATE_HZ, color="C3", ls=":", lw=1,
                        label=f"{MAX_RATE_HZ:.0f} Hz: the generator's ceiling on true rates")
        axes[0].legend(frameon=False, fontsize=7, loc="upper left")
    axes[0].set(xlabel="true rate (spikes/s)", ylabel="inferred rate (spikes/s)",
                title=f"all eval bins and neurons (R2 {r2:.3f})")
    t = _time_ms(truth.shape[1], data.bin_ms)
    neurons = np.argsort(-truth.mean(axis=(0, 1)))[:N_NEURONS]
    for k, neuron in enumerate(neurons):
        axes[1].plot(t, truth[0, :, neuron], "--", color=f"C{k}", lw=1)
        axes[1].plot(t, inferred[0, :, neuron], "-", color=f"C{k}", lw=1.3)
    axes[1].set(xlabel="time in window (ms)", ylabel="spikes/s",
                title="eval trial 0, most active neurons (dashed: true)")
    fig.suptitle(f"{data.run.path.name}: inferred vs true rates (generated data)")
    fig.tight_layout()
    return fig


def ensemble_members(data: ReportData):
    """An ensemble's local scores beside each member's, and the members' validation co-bps curves."""
    from nlbkit.runs import RunDir

    saved = RunDir(data.run.path).ensemble_summary() if data.model == "ensemble" else None
    if saved is None:
        raise Skip("not an ensemble (no ensemble.json)")
    members = saved.get("members", [])
    metrics = [m for m in ("co-bps", "vel R2", "psth R2", "fp-bps") if m in (saved.get("scores") or {})]
    if not metrics:
        raise Skip("the ensemble has no local scores (test phase without targets)")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    width = 0.8 / (len(members) + 1)
    x = np.arange(len(metrics))
    tags = [Path(m["run_dir"]).name.rsplit("_", 1)[-1] for m in members]  # s0, s1, ... / f0, ...
    for k, member in enumerate(members):
        values = [member["scores"].get(m, np.nan) for m in metrics]
        shade = str(0.45 + 0.4 * k / max(1, len(members) - 1))
        axes[0].bar(x + k * width, values, width, color=shade, edgecolor="0.3", label=f"member {tags[k]}")
    axes[0].bar(x + len(members) * width, [saved["scores"][m] for m in metrics], width, color="C0",
                label=f"mean of {len(members)}")
    axes[0].set_xticks(x + 0.4 - width / 2, metrics)
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].set(title="local scores", ylabel="score")
    axes[0].legend(frameon=False, fontsize=8)
    logs = {tag: RunDir(Path(m["run_dir"])).metrics() for tag, m in zip(tags, members, strict=True)}
    validated = any(r.get("val_co_bps") for rows in logs.values() for r in rows)
    key, title, unit = (("val_co_bps", "members' validation co-bps", "bits/spike") if validated else
                        ("loss", "members' training loss (no validation trials)", "per bin and neuron"))
    for tag, rows in logs.items():
        rows = [r for r in rows if r.get(key)]
        if rows:
            axes[1].plot(_column(rows, "epoch"), _column(rows, key), ".-", lw=1, ms=3, label=f"member {tag}")
    axes[1].set(xlabel="epoch", ylabel=unit, title=title)
    if any(logs.values()):
        axes[1].legend(frameon=False, fontsize=8)
    else:
        axes[1].text(0.5, 0.5, "no member has a metrics.csv (smoothing members, or logs removed)",
                     ha="center", va="center", transform=axes[1].transAxes)
    fig.suptitle(f"{data.run.path.name}: ensemble of {len(members)}")
    fig.tight_layout()
    return fig


FIGURES = (
    ("training_curves", training_curves),
    ("ensemble_members", ensemble_members),
    ("latent_trajectories", latent_trajectories),
    ("rates_vs_spikes", rates_vs_spikes),
    ("psth", psths),
    ("decoded_velocity", decoded_velocity),
    ("true_rates", true_rates),
)
