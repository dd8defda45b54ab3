"""What a report draws from: a run's log, checkpoint, rates, tensors, targets and ground truth."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from nlbkit.nlb.tensor_file import TrialSet, load_phase_data
from nlbkit.runs import RunDir
from nlbkit.scoring.evaluate import holdout_target

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
    run = RunDir(Path(run_dir))
    info = run.info()
    rates = run.rates()
    data = ReportData(
        run=run,
        dataset=info.dataset,
        bin_ms=info.bin_ms,
        phase=info.phase,
        model=info.model,
        n_heldin=rates["eval_rates_heldin"].shape[2],
        rates=rates,
        metrics=run.metrics() or None,
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
        if truth.exists() and (info.eval_source or info.phase) == info.phase:
            from nlbkit.synth.oracle import oracle_rates

            data.true_rates = oracle_rates(info.dataset, info.bin_ms, tensors.parent.parent, info.phase)
    return data
