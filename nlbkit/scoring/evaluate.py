"""Scoring runs locally: HDF5 groups in and out, run directories, eval targets, score tables.

Val-phase targets come from the `val_target` group of `data/<dataset>/tensors_<bin>ms.h5`;
test-phase targets from a file in the layout of nlb_tools' `eval_data_test.h5` (one group per
dataset and bin: 'mc_maze', 'mc_maze_20', ..., each with the eval-target arrays).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import DATASET_NAMES, get_spec
from nlbkit.nlb.h5io import load_test_target, load_val_target, open_h5, read_h5_groups
from nlbkit.nlb.tensor_file import holdout_targets, train_trials
from nlbkit.paths import tensors_path
from nlbkit.scoring.metrics import METRIC_NAMES, evaluate_group
from nlbkit.synth.marker import is_generated, tensors_label

PHASES = ("val", "test")
# Which tensor groups hold the trials a phase trains on and scores on.
TRAIN_GROUP = {"val": "train", "test": "trainval"}
EVAL_GROUP = {"val": "val", "test": "test"}


@dataclass(frozen=True)
class RunInfo:
    """What `run.json` says about a run directory."""

    run_dir: Path
    dataset: str
    bin_ms: int
    phase: str
    model: str
    tensors: Path | None = None
    created: str = ""
    eval_index: tuple[int, ...] | None = None  # runs scored on held-out train trials of `tensors`

    @property
    def group(self) -> str:
        return get_spec(self.dataset).group_name(self.bin_ms)

    @property
    def rates_path(self) -> Path:
        return self.run_dir / "rates.h5"


def read_run(run_dir: str | os.PathLike) -> RunInfo:
    """Read `RUN_DIR/run.json`; a missing or malformed file is an error naming it."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "run.json"
    if not meta_path.exists():
        raise NlbkitError(f"{run_dir}: not a run directory (no run.json)")
    try:
        meta = json.loads(meta_path.read_text())
        info = RunInfo(
            run_dir=run_dir,
            dataset=str(meta["dataset"]),
            bin_ms=int(meta["bin_ms"]),
            phase=str(meta["phase"]),
            model=str(meta.get("model", "?")),
            tensors=Path(meta["tensors"]) if meta.get("tensors") else None,
            created=str(meta.get("created", "")),
            eval_index=tuple(int(i) for i in meta["eval_index"]) if meta.get("eval_index") else None,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise NlbkitError(f"{meta_path}: malformed run.json ({exc!r})") from None
    get_spec(info.dataset)
    if info.phase not in PHASES:
        raise NlbkitError(f"{meta_path}: phase '{info.phase}' is neither 'val' nor 'test'")
    return info


def read_rates(run: RunInfo) -> dict[str, np.ndarray]:
    """The rate arrays of a run (`rates.h5`, group named after dataset and bin)."""
    if not run.rates_path.exists():
        raise NlbkitError(f"{run.rates_path}: no rates (has the run finished?)")
    return read_h5_groups(run.rates_path, [run.group])[run.group]


def val_targets_path(dataset: str, bin_ms: int, data_dir: str | os.PathLike | None) -> Path:
    return tensors_path(dataset, bin_ms, data_dir)


def holdout_target(tensors_file: str | os.PathLike, eval_index: Sequence[int]) -> dict[str, np.ndarray]:
    """The eval targets of a run that held out train trials `eval_index` of a train-only tensor file
    (nlb_tools' `*_train_<bin>ms.h5` layout), as training built them."""
    with open_h5(tensors_file) as h5:
        every = train_trials(h5, Path(tensors_file))
    held = np.asarray(eval_index, dtype=int)
    if held.size == 0 or held.min() < 0 or held.max() >= len(every):
        raise NlbkitError(f"{tensors_file}: held-out trial indices do not fit its {len(every)} trials")
    kept = np.setdiff1d(np.arange(len(every)), held)
    return holdout_targets(every.subset(kept), every.subset(held))


def target_for(
    dataset: str,
    bin_ms: int,
    phase: str,
    data_dir: str | os.PathLike | None = None,
    targets_file: str | os.PathLike | None = None,
    tensors_file: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """The eval targets of one group in one phase.

    val: `val_target` of `tensors_file` (or the data dir's tensor file); test: `targets_file`.
    """
    group = get_spec(dataset).group_name(bin_ms)
    if phase == "test":
        if targets_file is None:
            raise NlbkitError(
                f"{group}: test-phase scoring needs --targets FILE.h5 (nlb_tools' eval_data_test.h5; "
                "`nlbkit fetch --targets` puts it in the data dir, where it is found by default)"
            )
        return load_test_target(targets_file, group)
    if tensors_file is None:
        tensors_file = val_targets_path(dataset, bin_ms, data_dir)
    return load_val_target(tensors_file)


@dataclass
class RunScore:
    """The scores of one run, under nlb_tools' metric names."""

    run: RunInfo
    scores: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "run_dir": str(self.run.run_dir),
            "dataset": self.run.dataset,
            "bin_ms": self.run.bin_ms,
            "phase": self.run.phase,
            "model": self.run.model,
            "generated_data": self.run.tensors is not None and is_generated(self.run.tensors.parent),
            "scores": self.scores,
        }


def default_test_targets(data_dir: str | os.PathLike | None) -> Path | None:
    """`<data_dir>/eval_data_test.h5` (where `nlbkit fetch --targets` puts it) when it exists."""
    from nlbkit.fetch.targets import targets_path

    path = targets_path(data_dir)
    return path if path.exists() else None


def score_run(
    run_dir: str | os.PathLike,
    phase: str | None = None,
    data_dir: str | os.PathLike | None = None,
    targets_file: str | os.PathLike | None = None,
) -> RunScore:
    """Score one run directory against the targets of its phase.

    The val targets come from `data_dir` when given, else from the tensor file the run recorded.
    """
    run = read_run(run_dir)
    if phase is not None and phase != run.phase:
        raise NlbkitError(f"{run.run_dir}: a {run.phase}-phase run cannot be scored in phase {phase}")
    tensors_file = None
    if data_dir is None and run.tensors is not None and run.tensors.exists():
        tensors_file = run.tensors
    if run.eval_index is not None:
        if run.tensors is None:
            raise NlbkitError(f"{run.run_dir}: run.json lists held-out trials but no tensor file")
        target = holdout_target(run.tensors, run.eval_index)
    else:
        if run.phase == "test" and targets_file is None:
            targets_file = default_test_targets(data_dir)
        target = target_for(run.dataset, run.bin_ms, run.phase, data_dir, targets_file, tensors_file)
    try:
        scores = evaluate_group(run.dataset, run.bin_ms, target, read_rates(run))
    except (KeyError, ValueError) as exc:
        raise NlbkitError(f"{run.rates_path}: cannot be scored ({exc})") from None
    except NlbkitError as exc:
        raise NlbkitError(f"{run.rates_path}: {exc}") from None
    return RunScore(run, scores)


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
