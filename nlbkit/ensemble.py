"""Ensembles: the mean of several runs' rates, written as a run directory of its own.

The members must be runs of one dataset, bin and phase, on the same trials (tensor files with the
same contents, `trials_fingerprint`, wherever they lie, and, for runs on held-out train trials, the
same held-out indices), with rate arrays of the same shapes. The ensemble's directory holds what
`nlbkit evaluate` and `nlbkit submit` read from any run: `run.json` (model 'ensemble', the member
list), `rates.h5` (the arithmetic mean of the members' rates per bin, key by key), `scores.json`
when it can be scored locally, and `ensemble.json` with the members' scores beside the ensemble's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from nlbkit.claims import claim
from nlbkit.errors import NlbkitError
from nlbkit.nlb.tensor_file import trials_fingerprint
from nlbkit.paths import fsync_dir, plain_dir_mode
from nlbkit.runs import ENSEMBLE_MODEL, RunDir, RunInfo, read_rates, read_run
from nlbkit.scoring.evaluate import RunScore, score_run


@dataclass
class EnsembleResult:
    run_dir: Path
    members: list[RunScore]  # empty scores where a member cannot be scored locally
    ensemble: RunScore


def _same_file(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return a == b
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.absolute() == b.absolute()


def check_members(members: Sequence[RunInfo]) -> None:
    """Refuse members of different datasets, bins, phases, trials or held-out trials.

    Tensor files at different paths are compared by content: copies of one file are the same trials.
    """
    if len(members) < 2:
        raise NlbkitError("an ensemble needs at least two runs")
    first = members[0]
    fingerprints: dict[Path, str] = {}

    def fingerprint(path: Path) -> str:
        if path not in fingerprints:
            fingerprints[path] = trials_fingerprint(path)
        return fingerprints[path]

    for other in members[1:]:
        for what in ("dataset", "bin_ms", "phase", "eval_index"):
            if getattr(other, what) != getattr(first, what):
                label = "held-out trials" if what == "eval_index" else what
                raise NlbkitError(
                    f"{other.run_dir}: {label} differs from {first.run_dir} "
                    f"({getattr(other, what)!r} vs {getattr(first, what)!r}); an ensemble averages runs "
                    "of the same trials"
                )
        a, b = first.tensors, other.tensors
        if a is None or b is None:
            same = a == b
        else:
            same = _same_file(a, b) or fingerprint(a) == fingerprint(b)
        if not same:
            raise NlbkitError(
                f"{other.run_dir}: trained on {b}, {first.run_dir} on {a}, files with other trials; "
                "an ensemble averages runs of the same trials"
            )
    if len({m.run_dir.absolute() for m in members}) < len(members):
        raise NlbkitError("a run is listed twice; an ensemble of a run with itself is that run")


def mean_rates(members: Sequence[RunInfo]) -> dict[str, np.ndarray]:
    """The key-by-key mean (float32) of the members' rate arrays, (trials, bins, neurons) each."""
    arrays = [read_rates(m) for m in members]
    keys = set(arrays[0])
    for member, rates in zip(members[1:], arrays[1:], strict=True):
        if set(rates) != keys:
            raise NlbkitError(
                f"{member.rates_path}: holds {sorted(rates)}, {members[0].rates_path} {sorted(keys)}"
            )
        for key in keys:
            if rates[key].shape != arrays[0][key].shape:
                raise NlbkitError(
                    f"{member.rates_path}: '{key}' has shape {rates[key].shape}, "
                    f"{members[0].rates_path} {arrays[0][key].shape}; not the same trials"
                )
    return {
        key: np.mean([r[key].astype(np.float64) for r in arrays], axis=0).astype(np.float32)
        for key in sorted(keys)
    }


def _score(run_dir: Path, data_dir, targets_file) -> RunScore:
    """Local scores, or none when the phase's targets are not at hand (test phase without targets)."""
    try:
        return score_run(run_dir, data_dir=data_dir, targets_file=targets_file)
    except NlbkitError as exc:
        if read_run(run_dir).phase == "test" and "targets" in str(exc):
            return RunScore(read_run(run_dir), {})
        raise


def ensemble_runs(
    run_dirs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    overwrite: bool = False,
    data_dir: str | os.PathLike | None = None,
    targets_file: str | os.PathLike | None = None,
) -> EnsembleResult:
    """Average the members' rates into the run directory `output`, score it and the members.

    Holds `output`'s claim while it checks and writes it (`nlbkit.claims`)."""
    with claim(output):
        return _ensemble_runs(run_dirs, Path(output), overwrite, data_dir, targets_file)


def _ensemble_runs(
    run_dirs: Sequence[str | os.PathLike],
    output: Path,
    overwrite: bool,
    data_dir: str | os.PathLike | None,
    targets_file: str | os.PathLike | None,
) -> EnsembleResult:
    members = [read_run(d) for d in run_dirs]
    check_members(members)
    if any(_same_file(output, m.run_dir) for m in members if output.exists()):
        raise NlbkitError(f"{output}: is one of the members; give a new directory")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise NlbkitError(f"{output}: exists; pass --overwrite to replace it")
    if output.exists() and any(output.iterdir()) and not (output / "run.json").exists():
        raise NlbkitError(f"{output}: exists and is not a run directory (no run.json); not replacing it")
    rates = mean_rates(members)
    # The members' trials and shapes; the seed and creation time are the ensemble's own.
    info = dataclasses.replace(
        members[0],
        model=ENSEMBLE_MODEL,
        members=tuple(str(m.run_dir) for m in members),
        created=datetime.now(UTC).isoformat(),
        seed=None,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    # Built in a temporary directory beside `output` and renamed: never a half-written run.
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        staged = RunDir(staging)
        staged.write_info(info)
        staged.write_rates(info, rates)
        ensemble = _score(staging, data_dir, targets_file)
        scored = [_score(m.run_dir, data_dir, targets_file) for m in members]
        if ensemble.scores:
            staged.write_scores(ensemble.scores)
        staged.write_ensemble_summary(
            [{"run_dir": str(s.run.run_dir), "model": s.run.model, "scores": s.scores} for s in scored],
            ensemble.scores,
        )
        os.chmod(staging, plain_dir_mode())  # mkdtemp's 0o700 would hide the run from others
        if output.exists():
            shutil.rmtree(output)
        os.replace(staging, output)
        fsync_dir(output.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    ensemble = RunScore(read_run(output), ensemble.scores)
    return EnsembleResult(run_dir=output, members=scored, ensemble=ensemble)
