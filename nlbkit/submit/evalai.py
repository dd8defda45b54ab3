"""EvalAI submission files: merge run rates into one HDF5, and upload it with the `evalai` CLI.

The file holds one group per dataset and bin ('mc_maze', 'mc_maze_20', ..., 'mc_maze_small_20'),
each with the six float32 arrays of `RATE_KEYS` (trials, bins, neurons; rates per bin). Root attrs
`phase` ('val' or 'test') and `runs` (the run directories merged) say where it came from;
`nlbkit_generated` marks the rates of generated data (`nlbkit synth`).
Checking a file before upload lives in `nlbkit.submit.validate`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from nlbkit.claims import claim
from nlbkit.errors import NlbkitError
from nlbkit.models import MODEL_NAMES
from nlbkit.nlb.datasets import BIN_SIZES_MS, DATASET_NAMES, get_spec
from nlbkit.nlb.h5io import Groups, write_h5_groups
from nlbkit.nlb.keys import RATE_KEYS
from nlbkit.nlb.marker import GENERATED_STAMP, H5_ATTR, is_generated
from nlbkit.runs import ENSEMBLE_MODEL, RunInfo, read_rates, read_run, run_name

EVALAI_CHALLENGE = 1256
# EvalAI phase ids of the NLB'21 challenge ('evalai challenge 1256 phases' lists them).
EVALAI_PHASE_IDS = {"val": 2539, "test": 2540}
SUBMISSIONS_DIR = Path("submissions")

GROUP_NAMES: tuple[str, ...] = tuple(
    get_spec(name).group_name(bin_ms) for name in DATASET_NAMES for bin_ms in BIN_SIZES_MS
)


def find_runs(runs_root: str | os.PathLike) -> list[RunInfo]:
    """Every run directory directly under `runs_root` that has a run.json and rates."""
    root = Path(runs_root)
    if not root.is_dir():
        raise NlbkitError(f"{root}: no runs directory")
    runs = []
    for meta in sorted(root.glob("*/run.json")):
        run = read_run(meta.parent)
        if run.rates_path.exists():
            runs.append(run)
    return runs


def default_runs(
    runs_root: str | os.PathLike, phase: str, model: str | None = "langevin"
) -> list[RunInfo]:
    """The run of each dataset and bin that `nlbkit submit` takes when given no RUN_DIR: the
    untagged one, `<dataset>_<bin>ms_<phase>_<model>` (what the leaderboard path writes; with
    `model` None, of any model). Runs scored on held-out train trials are never taken. Several
    untagged runs of one dataset and bin, or tagged ones only, are an error naming them."""
    models = [model] if model is not None else [*MODEL_NAMES, ENSEMBLE_MODEL]
    candidates: dict[tuple[str, int], list[RunInfo]] = {}
    for run in find_runs(runs_root):
        if run.phase != phase or run.eval_source == "holdout":
            continue
        names = [run_name(run.dataset, run.bin_ms, run.phase, m) for m in models]
        if run.model in models or any(run.run_dir.name.startswith(n) for n in names):
            candidates.setdefault((run.dataset, run.bin_ms), []).append(run)
    if not candidates:
        which = f"{model} " if model else ""
        raise NlbkitError(f"{runs_root}: no finished {which}runs in phase {phase}")
    chosen = []
    for (dataset, bin_ms), runs in sorted(candidates.items(),
                                          key=lambda kv: (DATASET_NAMES.index(kv[0][0]), kv[0][1])):
        names = {run_name(dataset, bin_ms, phase, m) for m in models}
        untagged = [r for r in runs if r.run_dir.name in names]
        if len(untagged) == 1:
            chosen.append(untagged[0])
            continue
        listed = ", ".join(str(r.run_dir) for r in (untagged or runs))
        what = "several untagged runs" if untagged else "no untagged run, only"
        raise NlbkitError(f"{dataset} at {bin_ms} ms: {what} {listed}; pass the run directories to submit")
    return chosen


def merge_runs(runs: Sequence[RunInfo]) -> tuple[Groups, str]:
    """The submission groups of `runs` (one group each) and their common phase.

    Two runs of the same dataset and bin, runs of different phases, or a rates file lacking one of
    the six keys are errors naming the runs.
    """
    if not runs:
        raise NlbkitError("no runs to merge")
    phases = {run.phase for run in runs}
    if len(phases) > 1:
        raise NlbkitError(f"runs mix phases {sorted(phases)}: a submission holds one phase")
    groups: Groups = {}
    owner: dict[str, Path] = {}
    for run in runs:
        if run.group in groups:
            raise NlbkitError(f"{owner[run.group]} and {run.run_dir} both hold '{run.group}'; pass one")
        rates = read_rates(run)
        missing = [key for key in RATE_KEYS if key not in rates]
        if missing:
            raise NlbkitError(f"{run.rates_path}: missing {', '.join(missing)}")
        check_rate_arrays(run.rates_path, rates)
        get_spec(run.dataset).check_bins(run.rates_path, run.bin_ms, rates["eval_rates_heldin"].shape[1],
                                         rates["eval_rates_heldin_forward"].shape[1])
        groups[run.group] = {key: np.asarray(rates[key], dtype=np.float32) for key in RATE_KEYS}
        owner[run.group] = run.run_dir
    return groups, phases.pop()


def check_rate_arrays(path: str | os.PathLike, rates: dict[str, np.ndarray]) -> None:
    """The six arrays of one run agree with each other and hold rates: 3-D (trials, bins, neurons),
    finite, non-negative; held-in and held-out share trials and bins, observed and forward bins
    share neurons, train and eval share bins and neurons. Else an NlbkitError naming `path`."""
    for key in RATE_KEYS:
        values = np.asarray(rates[key])
        if values.ndim != 3:
            raise NlbkitError(f"{path}: {key} has shape {values.shape}, not (trials, bins, neurons)")
        if not np.isfinite(values).all() or (values < 0).any():
            bad = int((~np.isfinite(values)).sum() + (values < 0).sum())
            raise NlbkitError(f"{path}: {key} holds {bad} NaN, infinite or negative rate(s)")
    shape = {key: np.shape(rates[key]) for key in RATE_KEYS}
    pairs = [  # (key, key, axes that must agree, what they are)
        ("eval_rates_heldin", "eval_rates_heldout", (0, 1), "trials and bins"),
        ("eval_rates_heldin_forward", "eval_rates_heldout_forward", (0, 1), "trials and forward bins"),
        ("eval_rates_heldin", "eval_rates_heldin_forward", (0, 2), "trials and neurons"),
        ("eval_rates_heldout", "eval_rates_heldout_forward", (0, 2), "trials and neurons"),
        ("train_rates_heldin", "train_rates_heldout", (0, 1), "trials and bins"),
        ("train_rates_heldin", "eval_rates_heldin", (1, 2), "bins and neurons"),
        ("train_rates_heldout", "eval_rates_heldout", (1, 2), "bins and neurons"),
    ]
    for a, b, axes, what in pairs:
        if any(shape[a][i] != shape[b][i] for i in axes):
            raise NlbkitError(f"{path}: {a} {shape[a]} and {b} {shape[b]} differ in {what}")


def default_output(phase: str, root: str | os.PathLike = SUBMISSIONS_DIR) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"nlbkit_{phase}_{stamp}.h5"


def write_submission(
    groups: Groups, output: str | os.PathLike, phase: str, runs: Iterable[RunInfo] = ()
) -> Path:
    """Write the groups as float32 in the EvalAI layout, atomically, holding the file's claim
    (`nlbkit.claims`); returns the path."""
    data = {
        name: {key: np.asarray(arrays[key], dtype=np.float32) for key in RATE_KEYS}
        for name, arrays in groups.items()
    }
    runs = list(runs)
    run_dirs = [str(run.run_dir) for run in runs]
    root_attrs = {"phase": phase, "runs": run_dirs} if run_dirs else {"phase": phase}
    if any(run.tensors is not None and is_generated(run.tensors.parent) for run in runs):
        root_attrs[H5_ATTR] = GENERATED_STAMP  # rates of generated data: never an upload
    with claim(output, "submission file"):  # two submits to one file at once: one writes it
        return write_h5_groups(output, data, root_attrs=root_attrs)


def submit_runs(
    run_dirs: Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    runs_root: str | os.PathLike = "runs",
    phase: str = "test",
    model: str | None = "langevin",
) -> Path:
    """Merge the given run directories (or `default_runs`) into one file."""
    runs = [read_run(d) for d in run_dirs] if run_dirs else default_runs(runs_root, phase, model)
    groups, run_phase = merge_runs(runs)
    return write_submission(groups, output or default_output(run_phase), run_phase, runs)


Runner = Callable[..., subprocess.CompletedProcess]


def evalai_command(path: str | os.PathLike, challenge: int, phase_id: int, large: bool) -> list[str]:
    cmd = ["evalai", "challenge", str(challenge), "phase", str(phase_id), "submit", "--file", str(path)]
    return [*cmd, "--large"] if large else cmd


def evalai_upload(
    path: str | os.PathLike,
    phase: str = "test",
    challenge: int = EVALAI_CHALLENGE,
    phase_id: int | None = None,
    large: bool = False,
    method_name: str | None = None,
    runner: Runner = subprocess.run,
) -> str:
    """Upload a submission with the `evalai` CLI; returns what it printed.

    The CLI asks whether to add submission details: nlbkit answers no, or gives `method_name`.
    A missing CLI, or one without a token (`evalai set_token TOKEN`), is an error saying so.
    """
    if shutil.which("evalai") is None:
        raise NlbkitError(
            "the evalai CLI is not installed: `pip install evalai`, then `evalai set_token TOKEN`"
        )
    phase_id = phase_id if phase_id is not None else EVALAI_PHASE_IDS[phase]
    answers = f"y\n{method_name}\n\n\n\n" if method_name else "N\n"
    proc = runner(
        evalai_command(path, challenge, phase_id, large), input=answers, capture_output=True, text=True
    )
    output = (proc.stdout or "") + (proc.stderr or "")
    failed = proc.returncode != 0 or "error" in output.lower() and "successfully" not in output.lower()
    if failed:
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        raise NlbkitError(
            f"evalai upload of {path} failed (exit {proc.returncode}): {last}. "
            "Is the token set (`evalai set_token TOKEN`) and the challenge joined?"
        )
    return output
