"""`nlbkit report RUN_DIR`: the figures of a run, as PNG files in `RUN_DIR/report/`.

Each figure needs some pieces of the run (its log, its checkpoint, its rates, the tensor file it
recorded, the eval targets, the ground truth of generated data); a figure whose pieces are missing
is skipped with a note saying which, so that smoothing runs and ensembles get what applies to them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.evaluation import holdout_target, read_rates, read_run
from nlbkit.nlb.tensor_file import TrialSet, load_phase_data
from nlbkit.paths import atomic_path
from nlbkit.runs import RunDir

REPORT_DIR = "report"


class Skip(Exception):
    """A figure cannot be drawn for this run; the message says what is missing."""


@dataclass
class ReportData:
    """What the figures draw from; None where the run does not have it."""

    run: RunDir
    dataset: str
    bin_ms: int
    phase: str
    model: str
    n_heldin: int
    rates: dict[str, np.ndarray]
    metrics: list[dict[str, str]] | None = None
    eval_trials: TrialSet | None = None  # eval trials' spikes (held-out ones when scored locally)
    targets: dict | None = None  # eval targets: behaviour, psth, condition indices
    true_rates: dict[str, np.ndarray] | None = None  # generated data: the true rates
    notes: list[str] = field(default_factory=list)


def _read_metrics(run: RunDir) -> list[dict[str, str]] | None:
    if not run.metrics_csv.exists():
        return None
    with open(run.metrics_csv, newline="") as handle:
        return list(csv.DictReader(handle))


def _holdout_trials(tensors: Path, eval_index: tuple[int, ...]) -> TrialSet:
    with h5py.File(tensors, "r") as h5:
        index = np.asarray(eval_index)

        def pick(key: str) -> np.ndarray | None:
            return np.asarray(h5[key][()])[index] if key in h5 else None

        return TrialSet(
            heldin=pick("train_spikes_heldin"),
            heldout=pick("train_spikes_heldout"),
            behavior=pick("train_behavior"),
        )


def load_report_data(run_dir: str | os.PathLike) -> ReportData:
    """Gather a run's pieces; missing optional ones are recorded in `notes`."""
    info = read_run(run_dir)
    run = RunDir(Path(run_dir))
    meta = run.info()
    rates = read_rates(info)
    data = ReportData(
        run=run,
        dataset=info.dataset,
        bin_ms=info.bin_ms,
        phase=info.phase,
        model=info.model,
        n_heldin=rates["eval_rates_heldin"].shape[2],
        rates=rates,
        metrics=_read_metrics(run),
    )
    tensors = info.tensors
    if tensors is None or not tensors.exists():
        data.notes.append(f"tensor file {tensors} not found: no spikes, targets or ground truth")
        return data
    if info.eval_index is not None:
        data.eval_trials = _holdout_trials(tensors, info.eval_index)
        data.targets = holdout_target(tensors, info.eval_index)
    else:
        phase_data = load_phase_data(tensors, info.phase)
        data.eval_trials, data.targets = phase_data.eval, phase_data.targets
        truth = tensors.parent / "ground_truth.h5"
        if truth.exists() and meta.get("eval_source", info.phase) == info.phase:
            from nlbkit.synth.oracle import oracle_rates

            data.true_rates = oracle_rates(info.dataset, info.bin_ms, tensors.parent.parent, info.phase)
    return data


def save_figure(fig, path: Path) -> Path:
    """Write a matplotlib figure as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


@dataclass
class ReportResult:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (figure, reason)
    notes: list[str] = field(default_factory=list)


def make_report(
    run_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Draw every figure that applies to the run into `output` (default RUN_DIR/report/)."""
    import matplotlib

    matplotlib.use("Agg")
    from nlbkit import report_plots

    data = load_report_data(run_dir)
    folder = Path(output) if output is not None else Path(run_dir) / REPORT_DIR
    result = ReportResult(notes=list(data.notes))
    for name, draw in report_plots.FIGURES:
        if progress is not None:
            progress(name)
        try:
            fig = draw(data)
        except Skip as reason:
            result.skipped.append((name, str(reason)))
            continue
        result.written.append(save_figure(fig, folder / f"{name}.png"))
    if not result.written:
        raise NlbkitError(f"{run_dir}: no figure could be drawn ({'; '.join(r for _, r in result.skipped)})")
    return result
