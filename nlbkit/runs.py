"""Run directories: where a training run keeps its configuration, checkpoints, rates and scores.

Layout of `runs/<dataset>_<bin>ms_<phase>_<model>[_<tag>]/`:
`run.json` (what was run on what), `config.json` (the resolved configuration), `metrics.csv` (one row
per epoch), `checkpoints/last.pt` and `checkpoints/best.pt`, `rates.h5` (the submission's key names)
and `scores.json` (local scores under nlb_tools' metric names).
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nlbkit.claims import check_not_being_written
from nlbkit.config import RunConfig, from_dict, to_dict
from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import get_spec
from nlbkit.nlb.h5io import open_h5
from nlbkit.nlb.keys import PHASES, RATE_KEYS
from nlbkit.paths import atomic_path, check_plain_name, write_json

ENSEMBLE_MODEL = "ensemble"  # run.json's model of a run holding the mean of other runs' rates


def run_name(dataset: str, bin_ms: int, phase: str, model: str, tag: str | None = None) -> str:
    if tag:
        check_plain_name(tag, "--tag")  # one path component: the run stays under its root
    name = f"{dataset}_{bin_ms}ms_{phase}_{model}"
    return f"{name}_{tag}" if tag else name


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
    eval_source: str | None = None  # 'val' | 'test' | 'holdout'
    seed: int | None = None
    n_heldin: int | None = None
    n_heldout: int | None = None
    n_forward: int | None = None
    n_bins: int | None = None
    members: tuple[str, ...] = ()  # ensembles: the member run directories

    @property
    def group(self) -> str:
        return get_spec(self.dataset).group_name(self.bin_ms)

    @property
    def rates_path(self) -> Path:
        return self.run_dir / "rates.h5"

    def as_json(self) -> dict[str, Any]:
        """The `run.json` mapping (paths as strings, empty fields left out)."""
        out = {}
        for key, value in asdict(self).items():
            if key == "run_dir" or value in (None, (), ""):
                continue
            if isinstance(value, Path):
                value = str(value)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, run_dir: Path, meta: dict[str, Any]) -> RunInfo:
        known = {f.name for f in fields(cls)} - {"run_dir"}
        values = {k: v for k, v in meta.items() if k in known}
        for key in ("eval_index", "members"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        for key in ("bin_ms", "seed", "n_heldin", "n_heldout", "n_forward", "n_bins"):
            if values.get(key) is not None:
                values[key] = int(values[key])
        if values.get("tensors"):
            values["tensors"] = Path(values["tensors"])
        values.setdefault("model", "?")
        return cls(run_dir=run_dir, **values)


@dataclass
class RunDir:
    """A run directory and the paths inside it."""

    path: Path

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def config_json(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def rates_h5(self) -> Path:
        return self.path / "rates.h5"

    @property
    def scores_json(self) -> Path:
        return self.path / "scores.json"

    @property
    def ensemble_json(self) -> Path:
        return self.path / "ensemble.json"

    @property
    def last_ckpt(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def best_ckpt(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    @property
    def smoothing_weights(self) -> Path:
        return self.path / "checkpoints" / "smoothing.npz"

    @property
    def gpfa_weights(self) -> Path:
        return self.path / "checkpoints" / "gpfa.npz"

    def info(self) -> RunInfo:
        """`run.json`, checked; a missing or malformed file is an error naming it, and so is a run
        that another process is writing (`nlbkit.claims`): no reader sees it half-written."""
        check_not_being_written(self.path)
        try:
            meta = json.loads(self.run_json.read_text())
            info = RunInfo.from_json(self.path, meta)
        except FileNotFoundError:
            raise NlbkitError(f"{self.path}: not a run directory (no run.json)") from None
        except json.JSONDecodeError as exc:
            raise NlbkitError(f"{self.run_json}: not valid JSON ({exc})") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise NlbkitError(f"{self.run_json}: malformed run.json ({exc})") from None
        get_spec(info.dataset)
        if info.phase not in PHASES:
            raise NlbkitError(f"{self.run_json}: phase '{info.phase}' is neither 'val' nor 'test'")
        return info

    def write_info(self, info: RunInfo | dict[str, Any]) -> Path:
        meta = info.as_json() if isinstance(info, RunInfo) else dict(info)
        meta["created"] = meta.get("created") or datetime.now(UTC).isoformat()
        return write_json(self.run_json, meta)

    def write_config(self, cfg: RunConfig) -> Path:
        return write_json(self.config_json, to_dict(cfg))

    def config(self) -> RunConfig:
        try:
            return from_dict(json.loads(self.config_json.read_text()))
        except FileNotFoundError:
            raise NlbkitError(f"{self.path}: no config.json in this run directory") from None
        except (json.JSONDecodeError, NlbkitError) as exc:
            raise NlbkitError(f"{self.config_json}: {exc}") from None

    def finished(self, newer_than: Path | None = None) -> bool:
        """Whether a run ended here: its rates and scores are written (training writes the scores
        last). With `newer_than`, the rates must also be no older than that file (its input)."""
        if not (self.rates_h5.exists() and self.scores_json.exists()):
            return False
        return newer_than is None or not self.older_than(newer_than)

    def older_than(self, path: Path) -> bool:
        """Whether the rates were written before `path` last changed (a tensor file written again
        since the run read it); False without rates or without `path`."""
        if not (self.rates_h5.exists() and path.exists()):
            return False
        return self.rates_h5.stat().st_mtime < path.stat().st_mtime

    def next_steps(self) -> str:
        """What a user can do with an existing run directory: resume only an unfinished one."""
        if self.finished() or self.ensemble_json.exists():
            return "it holds a finished run; pass --overwrite to train it again, or --tag NAME for a new one"
        return "pass --resume to continue it, --overwrite to start it again, or --tag NAME for a new one"

    def check_resumable(self, model: str, epochs: int | None = None) -> None:
        """Refuse, in one line, to resume anything but a `model` run with a checkpoint that has not
        finished (or finished fewer than `epochs` epochs: asked for more, it trains on)."""
        again = "pass --overwrite to train it again, or --tag NAME for a new run"
        info = self.info() if self.run_json.exists() else None
        if self.ensemble_json.exists() or (info is not None and info.model == ENSEMBLE_MODEL):
            raise NlbkitError(f"{self.path}: an ensemble of other runs; nothing to resume: {again}")
        if info is not None and info.model != model:
            raise NlbkitError(f"{self.path}: a '{info.model}' run, not '{model}'; nothing to resume: {again}")
        logged = self.metrics()
        done = int(logged[-1]["epoch"]) if logged and logged[-1].get("epoch", "").isdigit() else None
        if self.finished() and (epochs is None or done is None or done >= epochs):
            raise NlbkitError(f"{self.path}: finished (rates and scores written); nothing to resume: {again}")
        if not self.last_ckpt.exists():
            raise NlbkitError(f"{self.path}: no checkpoint to resume; pass --overwrite to start it again")

    def scores(self) -> dict[str, float] | None:
        return _optional_json(self.scores_json)

    def write_scores(self, scores: dict[str, float]) -> Path:
        return write_json(self.scores_json, scores)

    def ensemble_summary(self) -> dict[str, Any] | None:
        """`ensemble.json` of an ensemble run (its members' scores and its own); None elsewhere."""
        return _optional_json(self.ensemble_json)

    def write_ensemble_summary(self, members: list[dict[str, Any]], scores: dict[str, float]) -> Path:
        return write_json(self.ensemble_json, {"members": members, "scores": scores})

    def metrics(self) -> list[dict[str, str]]:
        """The rows of `metrics.csv` (one per logged epoch); none when there is no log."""
        if not self.metrics_csv.exists():
            return []
        with open(self.metrics_csv, newline="") as handle:
            return list(csv.DictReader(handle))

    def write_metrics(self, rows: list[dict], fieldnames: list[str]) -> Path:
        with atomic_path(self.metrics_csv) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        return self.metrics_csv

    def rates(self) -> dict[str, np.ndarray]:
        """The rate arrays of `rates.h5` (its one group, named after dataset and bin)."""
        if not self.rates_h5.exists():
            raise NlbkitError(f"{self.rates_h5}: no rates (has the run finished?)")
        return read_rates_file(self.rates_h5)[1]

    def write_rates(self, info: RunInfo, rates: dict[str, np.ndarray]) -> Path:
        return write_rates(self.rates_h5, info.dataset, info.bin_ms, info.phase, rates)


def _optional_json(path: Path) -> Any:
    """The JSON in `path`, None when there is no such file; malformed JSON is an error naming it."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NlbkitError(f"{path}: not valid JSON ({exc})") from None


def read_run(run_dir: str | Path) -> RunInfo:
    """The checked `run.json` of `run_dir`."""
    return RunDir(Path(run_dir)).info()


def read_rates(run: RunInfo) -> dict[str, np.ndarray]:
    """The rate arrays of a run."""
    return RunDir(run.run_dir).rates()


def create_run(
    root: str | Path,
    name: str,
    info: dict[str, Any],
    cfg: RunConfig,
    resume: bool = False,
    overwrite: bool = False,
) -> RunDir:
    """Make (or, with `resume`, reopen) a run directory and write run.json and config.json.

    An existing directory is an error unless `resume` (keeps its checkpoints and log; only an
    unfinished run of the same model with a checkpoint, see `RunDir.check_resumable`) or
    `overwrite` (starts it afresh). The caller holds the directory's claim (`nlbkit.claims.claim`)
    from here until its last file is written.
    """
    run = RunDir(Path(root) / name)
    if run.path.exists() and any(run.path.iterdir()):
        if overwrite and not resume:
            shutil.rmtree(run.path)
        elif resume:
            run.check_resumable(info["model"], cfg.train.epochs)
        else:
            raise NlbkitError(f"{run.path}: run directory exists; {run.next_steps()}")
    elif resume:
        raise NlbkitError(f"{run.path}: nothing to resume (no such run directory)")
    (run.path / "checkpoints").mkdir(parents=True, exist_ok=True)
    run.write_info(info)
    run.write_config(cfg)
    return run


def split_rates(rates: np.ndarray, n_heldin: int, n_bins: int) -> dict[str, np.ndarray]:
    """(trials, T+F, Nin+Nout) -> heldin/heldout over T bins and their forward bins."""
    return {
        "heldin": rates[:, :n_bins, :n_heldin],
        "heldout": rates[:, :n_bins, n_heldin:],
        "heldin_forward": rates[:, n_bins:, :n_heldin],
        "heldout_forward": rates[:, n_bins:, n_heldin:],
    }


def rates_dict(
    train_rates: np.ndarray | None, eval_rates: np.ndarray, n_heldin: int, n_bins: int
) -> dict[str, np.ndarray]:
    """The submission arrays (float32) from model outputs for the fit and the eval trials.

    Without `train_rates` only the four eval arrays are returned.
    """
    evals = split_rates(eval_rates, n_heldin, n_bins)
    out = {
        "eval_rates_heldin": evals["heldin"],
        "eval_rates_heldout": evals["heldout"],
        "eval_rates_heldin_forward": evals["heldin_forward"],
        "eval_rates_heldout_forward": evals["heldout_forward"],
    }
    if train_rates is not None:
        train = split_rates(train_rates, n_heldin, n_bins)
        out = {"train_rates_heldin": train["heldin"], "train_rates_heldout": train["heldout"], **out}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def write_rates(
    path: str | Path, dataset: str, bin_ms: int, phase: str, rates: dict[str, np.ndarray]
) -> Path:
    """One group `spec.group_name(bin_ms)` holding the rate arrays; written atomically.

    All six arrays, or the four eval ones alone (rates predicted for eval trials only).
    """
    missing = [k for k in RATE_KEYS if k not in rates and k.startswith("eval")]
    if missing:
        raise NlbkitError(f"rates for {path} lack {', '.join(missing)}")
    keys = [k for k in RATE_KEYS if k in rates]
    for key in keys:
        values = rates[key]
        if not np.isfinite(values).all() or (values < 0).any():
            raise NlbkitError(f"{key}: rates must be finite and non-negative; not writing {path}")
    group_name = get_spec(dataset).group_name(bin_ms)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        group = h5.create_group(group_name)
        group.attrs.update({"dataset": dataset, "bin_ms": bin_ms, "phase": phase})
        for key in keys:
            group.create_dataset(key, data=np.asarray(rates[key], dtype=np.float32))
    return Path(path)


def read_rates_file(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(group name, arrays) of a one-group rates file; one line naming the file if it is not one."""
    with open_h5(path) as h5:
        names = list(h5)
        if len(names) != 1:
            raise NlbkitError(f"{path}: expected one group of rates, found {names}")
        return names[0], {k: np.asarray(v[()]) for k, v in h5[names[0]].items()}
