"""The one scoring path: the eval targets of a run (val, test or held-out train trials) and its scores.

Val-phase targets come from the `val_target` group of `data/<dataset>/tensors_<bin>ms.h5`;
test-phase targets from a file in the layout of nlb_tools' `eval_data_test.h5` (one group per
dataset and bin: 'mc_maze', 'mc_maze_20', ..., each with the eval-target arrays).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import get_spec
from nlbkit.nlb.h5io import load_test_target, load_val_target, open_h5
from nlbkit.nlb.marker import is_generated
from nlbkit.nlb.tensor_file import holdout_targets, train_trials
from nlbkit.paths import tensors_path
from nlbkit.runs import RunDir, RunInfo, read_rates, read_run
from nlbkit.scoring.metrics import evaluate_group


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


def eval_targets_for(
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


def score_rates(
    dataset: str,
    bin_ms: int,
    targets: Mapping[str, np.ndarray] | None,
    rates: Mapping[str, np.ndarray],
    source: str | os.PathLike = "rates",
) -> dict[str, float]:
    """The one scoring path: nlb_tools' metrics of submission `rates` against a group's eval
    `targets` (co-bps and fp-bps always; vel R2 / tp corr and psth R2 where the targets hold
    behaviour and PSTHs). None (test phase without a targets file) gives no scores."""
    if targets is None:
        return {}
    try:
        return {k: float(v) for k, v in evaluate_group(dataset, bin_ms, targets, rates).items()}
    except (KeyError, ValueError) as exc:
        raise NlbkitError(f"{source}: cannot be scored ({exc})") from None
    except NlbkitError as exc:
        raise NlbkitError(f"{source}: {exc}") from None


@dataclass
class RunScore:
    """The scores of one run, under nlb_tools' metric names."""

    run: RunInfo
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def generated(self) -> bool:
        """Whether the run's tensor file was made from `nlbkit synth`'s generated data."""
        return self.run.tensors is not None and is_generated(self.run.tensors.parent)

    def as_json(self) -> dict:
        return {
            "run_dir": str(self.run.run_dir),
            "dataset": self.run.dataset,
            "bin_ms": self.run.bin_ms,
            "phase": self.run.phase,
            "model": self.run.model,
            "generated_data": self.generated,
            "scores": self.scores,
        }


def default_test_targets(
    data_dir: str | os.PathLike | None, tensors: str | os.PathLike | None = None
) -> Path | None:
    """The test-phase targets found without --targets. For generated data (the folder of the
    tensor file `tensors` comes from `nlbkit synth`) the ones `synth` wrote beside it, never the
    real ones; otherwise `<data_dir>/eval_data_test.h5` (where `nlbkit fetch --targets` puts it).
    None when there are none."""
    from nlbkit.fetch.test_targets import TARGETS_FILE, targets_path

    if tensors is not None and is_generated(Path(tensors).parent):
        path = Path(tensors).parent / TARGETS_FILE
    else:
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
    run, target, rates = scoring_inputs(run_dir, phase, data_dir, targets_file)
    return RunScore(run, score_rates(run.dataset, run.bin_ms, target, rates, run.rates_path))


def scoring_inputs(
    run_dir: str | os.PathLike,
    phase: str | None = None,
    data_dir: str | os.PathLike | None = None,
    targets_file: str | os.PathLike | None = None,
) -> tuple[RunInfo, dict[str, np.ndarray] | None, dict[str, np.ndarray]]:
    """(run, its eval targets or None, its rates), checked as every scorer needs them: the phase
    asked for, a run not older than its tensor file, rates of the dataset's bins."""
    run = read_run(run_dir)
    if phase is not None and phase != run.phase:
        raise NlbkitError(f"{run.run_dir}: a {run.phase}-phase run cannot be scored in phase {phase}")
    check_current(run, data_dir)
    target = run_target(run, data_dir, targets_file)
    rates = read_rates(run)
    if "eval_rates_heldin" in rates and "eval_rates_heldin_forward" in rates:
        get_spec(run.dataset).check_bins(run.rates_path, run.bin_ms, rates["eval_rates_heldin"].shape[1],
                                         rates["eval_rates_heldin_forward"].shape[1])
    return run, target, rates


def run_tensors(run: RunInfo, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The tensor file a run is scored against: the data dir's when given, else the one it recorded."""
    if data_dir is not None and run.eval_index is None:
        return tensors_path(run.dataset, run.bin_ms, data_dir)
    return run.tensors


def check_current(run: RunInfo, data_dir: str | os.PathLike | None = None) -> None:
    """Refuse a run whose rates are older than its tensor file (written again since, e.g. after a
    new `synth` and `prepare`): its scores would compare predictions of other trials."""
    tensors = run_tensors(run, data_dir)
    if tensors is not None and RunDir(run.run_dir).older_than(tensors):
        raise NlbkitError(
            f"{run.run_dir}: its rates are older than {tensors}, written again since the run; "
            "train it again (--overwrite) on the current file"
        )


def run_target(
    run: RunInfo,
    data_dir: str | os.PathLike | None = None,
    targets_file: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """The eval targets a run is scored against (see `score_run`)."""
    tensors_file = None
    if data_dir is None and run.tensors is not None and run.tensors.exists():
        tensors_file = run.tensors
    if run.eval_index is not None:
        if run.tensors is None:
            raise NlbkitError(f"{run.run_dir}: run.json lists held-out trials but no tensor file")
        return holdout_target(run.tensors, run.eval_index)
    if run.phase == "test" and targets_file is None:
        targets_file = default_test_targets(data_dir, run_tensors(run, data_dir))
    return eval_targets_for(run.dataset, run.bin_ms, run.phase, data_dir, targets_file, tensors_file)
