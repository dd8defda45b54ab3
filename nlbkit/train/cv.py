"""K-fold cross-validation of LangevinFlow and the smoothing baseline on a file of train trials.

The trials of a train-only tensor file (nlb_tools' train key names at its root, 5 ms bins) are
permuted with a seed and cut into `n_folds` disjoint folds of `fold_size` trials (default: as many
as fit, 75 trials -> 5 x 15). For each fold and seed, each model is fitted on every other trial and
scored on the fold with the official metrics (`train_run` with the fold as `eval_index`, so the
split is the one `nlbkit train --from-tensors` makes, with its trials named explicitly; fold 0 of
split seed s is exactly the 15-of-75 holdout of `--from-tensors --seed s`). At 20 ms
the 5 ms file is first rebinned (`rebin_trials`: spikes summed over 4 bins, behaviour averaged).

Runs go seed by seed (every fold of the first seed, then of the next). One row per model x fold x
seed goes to `cv.csv`, rewritten after every run so that a stopped benchmark keeps what
finished; the summary rows (mean and sample sd, ddof=1, over folds x seeds) follow. The
smoothing baseline does not depend on the seed: it is fitted once per fold and its row repeated
for each seed, so both models average over the same folds x seeds.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nlbkit.claims import claim
from nlbkit.config import RunConfig
from nlbkit.errors import NlbkitError
from nlbkit.models import get_model
from nlbkit.nlb.tensor_file import read_train_trials, rebin_trials, write_train_trials
from nlbkit.paths import atomic_path
from nlbkit.train.members import MemberPlan

SOURCE_BIN_MS = 5
METRICS = ("co-bps", "fp-bps", "vel R2")
MODELS = ("langevin", "smoothing")  # the default --models
FIELDS = ("model", "fold", "seed", *METRICS, "epochs", "seconds")


def fold_indices(
    n_trials: int, n_folds: int, fold_size: int | None = None, seed: int = 0
) -> list[np.ndarray]:
    """`n_folds` disjoint, sorted index arrays of `fold_size` trials (default n_trials // n_folds)
    from a permutation of range(n_trials) seeded by `seed`; trials beyond n_folds x fold_size are
    in no fold (they always train)."""
    size = fold_size or n_trials // max(n_folds, 1)
    if n_folds < 2 or size < 1 or n_folds * size > n_trials:
        raise NlbkitError(f"cannot cut {n_trials} trials into {n_folds} folds of {size} (need >= 2 folds)")
    if n_trials - size < 2:
        raise NlbkitError(f"folds of {size} of {n_trials} trials leave too few to fit")
    order = np.random.default_rng(seed).permutation(n_trials)
    return [np.sort(order[k * size : (k + 1) * size]) for k in range(n_folds)]


@dataclass
class CvPlan:
    """What one benchmark runs: folds (all or a subset) x seeds x models."""

    n_folds: int = 5
    fold_size: int | None = None
    split_seed: int = 0
    seeds: Sequence[int] = (0, 1)
    folds: Sequence[int] | None = None  # None: every fold
    models: Sequence[str] = MODELS
    # LangevinFlow as an ensemble (`nlbkit train --ensemble/--bag`): per fold and seed s, members of
    # seeds s, s+1, ... and the row of their mean ("langevin x3" / "langevin bag3") beside theirs.
    members: MemberPlan | None = None
    # Mixed ensembles: per fold and seed, the mean of these models' rates (each a tuple of names
    # among `models`), scored as a row of its own named "a+b+c".
    mixes: Sequence[tuple[str, ...]] = ()

    def chosen_folds(self) -> list[int]:
        chosen = list(range(self.n_folds)) if self.folds is None else list(self.folds)
        bad = [k for k in chosen if not 0 <= k < self.n_folds]
        if bad or not chosen:
            raise NlbkitError(f"folds {bad or chosen} not in 0..{self.n_folds - 1}")
        return chosen


@dataclass
class CvResult:
    rows: list[dict] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)
    csv_path: Path | None = None


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Per model, a 'mean' and an 'sd' row over its rows (sample sd, ddof=1; NaN for one row)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        for stat in ("mean", "sd"):
            row = {"model": model, "fold": stat, "seed": f"n={len(mine)}"}
            for key in (*METRICS, "epochs", "seconds"):
                values = np.array([float(r[key]) for r in mine if r.get(key) not in ("", None)])
                if stat == "mean":
                    row[key] = float(values.mean()) if values.size else math.nan
                else:
                    row[key] = float(values.std(ddof=1)) if values.size > 1 else math.nan
            out.append(row)
    return out


def write_csv(path: Path, rows: Sequence[dict], summary: Sequence[dict]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows([{k: r.get(k, "") for k in FIELDS} for r in [*rows, *summary]])
    return path


def format_summary(summary: Sequence[dict]) -> str:
    """'model  co-bps mean ± sd  ...' lines."""
    means = {r["model"]: r for r in summary if r["fold"] == "mean"}
    sds = {r["model"]: r for r in summary if r["fold"] == "sd"}
    lines = [f"{'model':<14} {'n':>5}  " + "  ".join(f"{m:>17}" for m in METRICS)]
    for model, mean in means.items():
        cells = [f"{mean[m]:8.4f} ± {sds[model][m]:.4f}" for m in METRICS]
        lines.append(f"{model:<14} {mean['seed'][2:]:>5}  " + "  ".join(f"{c:>17}" for c in cells))
    return "\n".join(lines)


def paired_differences(rows: Sequence[dict], reference: str) -> list[dict]:
    """Each other model against `reference` on the (fold, seed) pairs both ran: per metric, the
    mean and sample sd of model - reference over the pairs, on how many it was above, and a 95% t
    interval over the per-fold means (seeds averaged within a fold, since they share its trials)."""
    from scipy import stats

    def by_pair(model: str) -> dict[tuple, dict]:
        mine = (r for r in rows if r["model"] == model and r["fold"] not in ("mean", "sd"))
        return {(r["fold"], r["seed"]): r for r in mine}

    base = by_pair(reference)
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        if model == reference:
            continue
        mine = by_pair(model)
        pairs = sorted(mine.keys() & base.keys())
        if not pairs:
            continue
        row = {"model": model, "reference": reference, "n": len(pairs)}
        for m in METRICS:
            diffs = np.array([float(mine[p][m]) - float(base[p][m]) for p in pairs])
            if np.isnan(diffs).all():
                continue
            folds = sorted({p[0] for p in pairs})
            fold_means = np.array(
                [np.nanmean([d for p, d in zip(pairs, diffs, strict=True) if p[0] == k]) for k in folds]
            )
            half = (stats.t.ppf(0.975, len(folds) - 1) * fold_means.std(ddof=1) / np.sqrt(len(folds))
                    if len(folds) > 1 else math.nan)
            row[m] = {
                "mean": float(np.nanmean(diffs)),
                "sd": float(np.nanstd(diffs, ddof=1)) if len(diffs) > 1 else math.nan,
                "above": int((diffs > 0).sum()),
                "ci": (float(fold_means.mean() - half), float(fold_means.mean() + half)),
                "folds": len(folds),
            }
        out.append(row)
    return out


def format_paired(paired: Sequence[dict]) -> str:
    """One line per model and metric: 'langevin - smoothing  co-bps  +0.1234 ± 0.0300 ...'."""
    lines = []
    for row in paired:
        for m in METRICS:
            if m not in row:
                continue
            d = row[m]
            lines.append(
                f"{row['model']} - {row['reference']}  {m:<7} {d['mean']:+.4f} ± {d['sd']:.4f}  "
                f"above on {d['above']} of {row['n']}  95% CI over {d['folds']} fold means "
                f"[{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]"
            )
    return "\n".join(lines)


def source_for_bin(tensors: Path, bin_ms: int, out_dir: Path) -> Path:
    """The train-only file to fit at `bin_ms`: `tensors` itself at 5 ms, else a rebinned copy in out_dir."""
    if bin_ms == SOURCE_BIN_MS:
        return tensors
    if bin_ms % SOURCE_BIN_MS:
        raise NlbkitError(f"bin {bin_ms} ms is not a multiple of the file's {SOURCE_BIN_MS} ms")
    factor = bin_ms // SOURCE_BIN_MS
    trials = read_train_trials(tensors)
    for name in ("heldin", "heldin_forward"):
        if getattr(trials, name).shape[1] % factor:
            raise NlbkitError(
                f"{tensors}: {name} bins are not a multiple of {factor}; cannot rebin to {bin_ms} ms"
            )
    out = out_dir / f"train_{bin_ms}ms.h5"
    return write_train_trials(
        out, rebin_trials(trials, factor), {"bin_ms": bin_ms, "rebinned_from": str(tensors)}
    )


def run_cv(
    dataset: str,
    cfg: RunConfig | Mapping[str, RunConfig],
    tensors: str | Path,
    bin_ms: int,
    out_dir: str | Path,
    plan: CvPlan | None = None,
    progress: Callable[[str], None] | None = None,
    train_progress: bool = False,
) -> CvResult:
    """Run `plan` on `tensors` (a 5 ms train-only file) at `bin_ms`; write out_dir/cv.csv (see module doc).

    `cfg`: one configuration for every model, or one per model name (each model's defaults,
    `build_config(..., model=name)`).

    `out_dir` is claimed for the whole run (`nlbkit.claims`): one cross-validation per folder."""
    with claim(out_dir, "cross-validation folder"):
        return _run_cv(dataset, cfg, tensors, bin_ms, Path(out_dir), plan, progress, train_progress)


def _run_cv(dataset: str, cfg: RunConfig | Mapping[str, RunConfig], tensors: str | Path, bin_ms: int,
            out_dir: Path, plan: CvPlan | None, progress: Callable[[str], None] | None,
            train_progress: bool) -> CvResult:
    plan = plan or CvPlan()
    for model in plan.models:
        get_model(model)
    configs = {m: cfg for m in plan.models} if isinstance(cfg, RunConfig) else dict(cfg)
    missing = [m for m in plan.models if m not in configs]
    if missing:
        raise NlbkitError(f"no configuration for {', '.join(missing)}")
    n_trials = len(read_train_trials(tensors))  # a bad file fails here, before torch is imported
    folds = fold_indices(n_trials, plan.n_folds, plan.fold_size, plan.split_seed)
    chosen = plan.chosen_folds()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = source_for_bin(Path(tensors), bin_ms, out_dir)

    from nlbkit.train.run import TrainRequest, train_run

    result = CvResult(csv_path=out_dir / "cv.csv")
    say = progress or (lambda line: None)
    smoothing_rows: dict[int, dict] = {}  # fold -> its smoothing row (fitted once, seed-free)
    smoothing_runs: dict[int, Path] = {}  # fold -> its smoothing run directory
    for mix in plan.mixes:
        unknown = [m for m in mix if m not in plan.models]
        if len(mix) < 2 or unknown:
            raise NlbkitError(f"mixed ensemble {'+'.join(mix)}: needs two or more of --models "
                              f"({', '.join(plan.models)})")

    def record(row: dict, announce: bool = True) -> None:
        """Add a row, rewrite the CSV (a stopped benchmark keeps what finished) and print it."""
        result.rows.append(row)
        result.summary = summarise(result.rows)
        write_csv(result.csv_path, result.rows, result.summary)
        if announce:
            scores = "  ".join(f"{m} {row[m]:.4f}" for m in METRICS)
            say(f"fold {row['fold']} seed {row['seed']} {row['model']:<9} {scores}  "
                f"({row['epochs']} epochs, {row['seconds']} s)")

    # Seed-major: every fold of the first seed before the second, so a stopped run has all folds.
    for seed in plan.seeds:
        for k in chosen:
            ran: dict[str, Path] = {}  # model -> the run directory of this fold and seed
            for model in plan.models:
                if model == "smoothing" and k in smoothing_rows:
                    record({**smoothing_rows[k], "seed": seed}, announce=False)
                    ran[model] = smoothing_runs[k]
                    continue
                run_cfg = copy.deepcopy(configs[model])
                run_cfg.train.seed = seed
                run_cfg.train.compare_smoothing = False
                if get_model(model).uses_torch and plan.members is not None:
                    rows, ran[model] = _ensemble_rows(dataset, model, run_cfg, plan.members, source, bin_ms,
                                                      out_dir, k, seed, folds[k], train_progress)
                    for row in rows:
                        record(row)
                    continue
                started = time.perf_counter()
                outcome = train_run(
                    TrainRequest(
                        dataset,
                        run_cfg,
                        bin_ms=bin_ms,
                        phase="val",
                        model=model,
                        from_tensors=source,
                        run_root=out_dir / "runs",
                        tag=f"fold{k}_seed{seed}",
                        overwrite=True,
                        progress=train_progress,
                        eval_index=folds[k],
                    ),
                )
                row = {
                    "model": model,
                    "fold": k,
                    "seed": seed,
                    **{m: outcome.scores.get(m, math.nan) for m in METRICS},
                    "epochs": outcome.epochs,
                    "seconds": round(time.perf_counter() - started, 1),
                }
                if model == "smoothing":
                    smoothing_rows[k], smoothing_runs[k] = row, outcome.run.path
                ran[model] = outcome.run.path
                record(row)
            for mix in plan.mixes:
                record(_mix_row(mix, [ran[m] for m in mix], out_dir, k, seed))
    result.summary = summarise(result.rows)
    write_csv(result.csv_path, result.rows, result.summary)
    return result


def _mix_row(mix: tuple[str, ...], run_dirs: list[Path], out_dir: Path, fold: int, seed: int) -> dict:
    """The row of the mean of `run_dirs`' rates (runs of the models of `mix` on one fold)."""
    from nlbkit.ensemble import ensemble_runs

    name = "+".join(mix)
    output = out_dir / "runs" / f"mix_{'_'.join(mix)}_fold{fold}_seed{seed}"
    scores = ensemble_runs(run_dirs, output, overwrite=True).ensemble.scores
    return {"model": name, "fold": fold, "seed": seed, **{m: scores.get(m, math.nan) for m in METRICS},
            "epochs": "", "seconds": ""}


def _ensemble_rows(dataset, model, cfg, members: MemberPlan, source, bin_ms, out_dir, fold, seed, eval_index,
                   train_progress) -> tuple[list[dict], Path]:
    """Rows of each member (`model`, its own seed) and of their mean (e.g. 'langevin x3'), and the
    directory of that mean."""
    from nlbkit.train.members import train_members

    started = time.perf_counter()
    outcome = train_members(
        dataset, cfg, members, bin_ms=bin_ms, phase="val", model=model, from_tensors=source,
        run_root=out_dir / "runs", tag=f"fold{fold}_seed{seed}_{members.label}", overwrite=True,
        progress=train_progress, say=lambda line: None, eval_index=eval_index,
    )
    rows = []
    for k, member in enumerate(outcome.members):
        rows.append({"model": model, "fold": fold, "seed": seed + k,
                     **{m: member.scores.get(m, math.nan) for m in METRICS}, "epochs": member.epochs,
                     "seconds": ""})
    scores = outcome.ensemble.ensemble.scores
    rows.append({"model": f"{model} {members.label}", "fold": fold, "seed": seed,
                 **{m: scores.get(m, math.nan) for m in METRICS}, "epochs": "",
                 "seconds": round(time.perf_counter() - started, 1)})
    return rows, Path(outcome.ensemble.run_dir)
