"""Score tables: runs side by side (`nlbkit train`), one row per run (`evaluate`, `ensemble`), and
nlb_tools' result list (`validate`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nlbkit.nlb.datasets import DATASET_NAMES
from nlbkit.nlb.keys import METRIC_NAMES
from nlbkit.nlb.marker import tensors_label
from nlbkit.scoring.evaluate import RunScore


def order_for_table(scores: Sequence[RunScore]) -> list[RunScore]:
    """Runs of the same dataset and bin next to each other (registry order), models in given order."""

    def key(item: tuple[int, RunScore]) -> tuple:
        index, s = item
        return (DATASET_NAMES.index(s.run.dataset), s.run.bin_ms, s.run.phase, index)

    return [s for _, s in sorted(enumerate(scores), key=key)]


def _format_value(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if np.isnan(value) else f"{value:.4f}"


def format_table(scores: Sequence[RunScore]) -> str:
    """A plain-text table: one row per run, one column per metric present in any run."""
    rows = order_for_table(scores)
    metrics = [m for m in METRIC_NAMES if any(m in s.scores for s in rows)]
    # extra columns (few-shot co-bps) after the official metrics, in the order they first appear
    metrics += list(dict.fromkeys(k for s in rows for k in s.scores if k not in METRIC_NAMES))
    header = ["dataset", "bin", "phase", "model", "run", *metrics]
    body = [
        [
            tensors_label(s.run.dataset, s.run.tensors),
            f"{s.run.bin_ms} ms",
            s.run.phase,
            s.run.model,
            s.run.run_dir.name,
            *(_format_value(s.scores.get(m)) for m in metrics),
        ]
        for s in rows
    ]
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    n_text = 5

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i < n_text else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def format_results(results: list[dict[str, dict[str, float]]]) -> str:
    """nlb_tools' result list as a two-column table: 'split  metric  value'."""
    lines = []
    for entry in results:
        for split, metrics in entry.items():
            for name, value in metrics.items():
                lines.append(f"{split:<26} {name:<16} {_format_value(value):>8}")
    return "\n".join(lines)


def side_by_side(rows: Mapping[str, Mapping[str, float]]) -> str:
    """Runs side by side: one column per run (e.g. langevin, smoothing), one row per metric."""
    names = list(rows)
    metric_names: list[str] = []
    for scores in rows.values():
        metric_names += [m for m in scores if m not in metric_names]
    width = max([len(m) for m in metric_names] + [6])
    lines = [" " * width + "".join(f"{n:>12}" for n in names)]
    for metric in metric_names:
        cells = "".join(f"{_format_value(rows[n].get(metric)):>12}" for n in names)
        lines.append(f"{metric:<{width}}{cells}")
    return "\n".join(lines)
