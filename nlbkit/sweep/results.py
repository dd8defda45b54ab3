"""The results of a sweep: one row per trial, `results.csv`, the best configurations, a table."""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlbkit.config import RunConfig, flatten, from_dict, to_dict
from nlbkit.nlb.keys import METRIC_NAMES
from nlbkit.paths import atomic_path, write_json
from nlbkit.runs import RunDir
from nlbkit.sweep.space import SearchSpace, short_name

RANK_METRIC = "best_co_bps"  # the best validation co-bps so far: what trials are ranked by
N_BEST = 3


def metric_key(name: str) -> str:
    """'co-bps' -> 'eval_co_bps', 'vel R2' -> 'eval_vel_r2' (plain column names)."""
    return "eval_" + name.lower().replace("-", "_").replace(" ", "_")


@dataclass
class SweepResult:
    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)  # best first
    best_config: Path | None = None
    unfinished: int = 0  # trials neither ended nor failed: the sweep was interrupted


def _status(trial, run: RunDir | None) -> str:
    """finished (wrote its rates), stopped (by the scheduler), error, or unfinished (interrupted)."""
    if trial.status == "ERROR":
        return "error"
    if trial.status != "TERMINATED":
        return "unfinished"
    return "finished" if run is not None and run.rates_h5.exists() else "stopped"


def _run_log(run: RunDir | None) -> tuple[int, float]:
    """(epochs logged, best validation co-bps) from a trial's metrics.csv."""
    rows = run.metrics() if run is not None else []
    if not rows:
        return 0, math.nan
    values = [float(r["val_co_bps"]) for r in rows if r.get("val_co_bps", "") != ""]
    return len(rows), max(values) if values else math.nan


def saved_trials(experiment: Path) -> list:
    """The trials of a Tune experiment as last saved (statuses, configs, last results)."""
    from ray.tune import ExperimentAnalysis

    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.ERROR)  # pending trials have no results yet: not worth a warning
    try:
        return list(ExperimentAnalysis(str(experiment)).trials)
    finally:
        tune_logger.setLevel(level)


def summarize(trials: list, space: SearchSpace, trials_root: Path) -> list[dict[str, Any]]:
    """One row per trial, best validation co-bps first, read from the trials' run directories."""
    rows = []
    for trial in trials:
        found = trial_run_dir(trials_root, trial.trial_id)
        run = RunDir(found) if found is not None else None
        epochs, best = _run_log(run)
        scores = (run.scores() if run is not None else None) or {}
        values = flatten(trial.config or {})
        row = {
            "trial": trial.trial_id,
            "status": _status(trial, run),
            "epochs": epochs,
            "best_val_co_bps": best,
            **{metric_key(name): scores.get(name, math.nan) for name in METRIC_NAMES},
            **{key: values.get(key) for key in space.keys()},
        }
        rows.append(row)

    def rank(row: dict[str, Any]) -> float:
        value = row["best_val_co_bps"]
        return -math.inf if value is None or math.isnan(value) else value

    return sorted(rows, key=rank, reverse=True)


def trial_run_dir(trials_root: Path, trial: str) -> Path | None:
    found = sorted(trials_root.glob(f"*_{trial}"))
    return found[0] if found else None


def write_results(sweep_dir: Path, experiment: Path, space: SearchSpace, plain: RunConfig) -> SweepResult:
    """results.csv, best_config.json and best_configs/rank<k>_<trial>.json.

    `plain` is the configuration without the space's fixed values (dataset defaults, --config,
    --set): the best configurations get those keys back from it, since the fixed values serve the
    search (validation every epoch, no baseline fit), not the model.
    """
    rows = summarize(saved_trials(experiment), space, sweep_dir / "trials")
    unfinished = sum(row["status"] == "unfinished" for row in rows)
    result = SweepResult(path=sweep_dir, rows=rows, unfinished=unfinished)
    if not rows:
        return result
    with atomic_path(sweep_dir / "results.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ranked = [r for r in rows if not math.isnan(r["best_val_co_bps"])]
    for index, row in enumerate(ranked[:N_BEST], start=1):
        run_dir = trial_run_dir(sweep_dir / "trials", row["trial"])
        if run_dir is None or not (run_dir / "config.json").exists():
            continue
        data = flatten(to_dict(RunDir(run_dir).config()))
        plain_values = flatten(to_dict(plain))
        data.update({key: plain_values[key] for key in space.fixed})
        data = to_dict(from_dict(data))
        write_json(sweep_dir / "best_configs" / f"rank{index}_{row['trial']}.json", data)
        if index == 1:
            write_json(sweep_dir / "best_config.json", data)
            result.best_config = sweep_dir / "best_config.json"
    return result


def sweep_config_tag(config_file: str | Path, dataset: str, bin_ms: int) -> str | None:
    """The run tag `nlbkit train --config` takes for a sweep's best configuration; None for other files.

    `<root>/mc_maze_small_5ms_sweep/best_config.json` -> 'sweep' (`--name full16` -> 'full16');
    `.../best_configs/rank2_<trial>.json` -> 'sweep_rank2'. The run then sits beside the untagged
    one (`..._val_langevin_sweep`) instead of colliding with it.
    """
    path = Path(config_file)
    rank = None
    if path.parent.name == "best_configs" and path.name.startswith("rank"):
        rank, sweep_dir = path.name.split("_", 1)[0], path.parent.parent
    elif path.name == "best_config.json":
        sweep_dir = path.parent
    else:
        return None
    if not (sweep_dir / "sweep.json").exists():
        return None
    prefix = f"{dataset}_{bin_ms}ms_"
    name = sweep_dir.name
    tag = name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else name
    return f"{tag}_{rank}" if rank else tag


def format_rows(rows: list[dict[str, Any]], limit: int = 10) -> str:
    """The trials as a plain-text table, best first."""
    if not rows:
        return "no trials"
    columns = list(rows[0])
    names = [short_name(c) if "." in c else c for c in columns]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.4g}"
        return "-" if value is None else str(value)

    body = [[cell(r[c]) for c in columns] for r in rows[:limit]]
    widths = [max(len(x) for x in col) for col in zip(names, *body, strict=False)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in body]
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in results.csv")
    return "\n".join(lines)
