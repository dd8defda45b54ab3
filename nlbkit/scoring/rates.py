"""Local scores of a run's rates against the eval trials' targets, under nlb_tools' metric names."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nlbkit.scoring import metrics


def score_rates(
    dataset: str, bin_ms: int, targets: Mapping[str, np.ndarray] | None, rates: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """co-bps, fp-bps, vel R2 (and psth R2 / tp corr where the targets allow) of submission rates.

    `targets` is nlb_tools' eval-target dict for the group (`eval_spikes_heldout`, forward spikes,
    behaviour, ...); None (test phase) gives no scores.
    """
    if targets is None:
        return {}
    if hasattr(metrics, "evaluate_group") and "eval_behavior" in targets:
        return {k: float(v) for k, v in metrics.evaluate_group(dataset, bin_ms, targets, rates).items()}
    return _basic_scores(targets, rates)


def _basic_scores(targets: Mapping[str, np.ndarray], rates: Mapping[str, np.ndarray]) -> dict[str, float]:
    """co-bps and fp-bps alone, for targets without behaviour."""
    scores = {"co-bps": metrics.bits_per_spike(rates["eval_rates_heldout"], targets["eval_spikes_heldout"])}
    if "eval_spikes_heldin_forward" in targets:
        spikes = np.concatenate(
            [targets["eval_spikes_heldin_forward"], targets["eval_spikes_heldout_forward"]], -1
        )
        predicted = np.concatenate(
            [rates["eval_rates_heldin_forward"], rates["eval_rates_heldout_forward"]], -1
        )
        scores["fp-bps"] = metrics.bits_per_spike(predicted, spikes)
    return scores


def format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """Runs side by side: one column per run (e.g. langevin, smoothing), one row per metric."""
    names = list(rows)
    metric_names: list[str] = []
    for scores in rows.values():
        metric_names += [m for m in scores if m not in metric_names]
    width = max([len(m) for m in metric_names] + [6])
    lines = [" " * width + "".join(f"{n:>12}" for n in names)]
    for metric in metric_names:
        cells = "".join(f"{rows[n][metric]:>12.4f}" if metric in rows[n] else f"{'-':>12}" for n in names)
        lines.append(f"{metric:<{width}}{cells}")
    return "\n".join(lines)
