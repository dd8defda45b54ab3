"""Ensembles trained in one command: `nlbkit train --ensemble N` and `--bag K`.

`--ensemble N` trains N members of seeds seed, seed+1, ..., each choosing its checkpoint on its own
seeded validation share (`train.val_fraction`). `--bag K` (bagging, "CV bagging") trains K members
whose validation trials are the K disjoint folds of the training trials (`train.val_folds`): member
k chooses its checkpoint and stops on fold k and fits the rest, so every training trial's held-out
neurons train K-1 members and choose one. Member k has seed seed+k in both.

Members are ordinary run directories beside the ensemble, tagged `s<k>` (`--ensemble`) or `f<k>`
(`--bag`) after the run's own tag; the ensemble is the untagged name (the one a single run would
have), written by `nlbkit.ensemble.ensemble_runs`: the mean of the members' rates, its scores, and
`ensemble.json` with the members' scores. `evaluate`, `submit`, `validate` and `report` read it like
any run. On a file of train trials only every member holds out the same trials (those of the
first member's seed). The smoothing baseline is fitted once, beside the first member.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nlbkit.claims import claim
from nlbkit.config import RunConfig
from nlbkit.ensemble import EnsembleResult, ensemble_runs
from nlbkit.errors import NlbkitError
from nlbkit.nlb.tensor_file import is_train_only
from nlbkit.runs import ENSEMBLE_MODEL, RunDir, run_name

if TYPE_CHECKING:
    from nlbkit.train.run import TrainOutcome


@dataclass(frozen=True)
class MemberPlan:
    """`count` members: seeds (`bagging` False) or validation folds of the training trials (True)."""

    count: int
    bagging: bool = False

    def __post_init__(self) -> None:
        if self.count < 2:
            what = "--bag" if self.bagging else "--ensemble"
            raise NlbkitError(f"{what} needs at least 2 members, got {self.count}")

    @property
    def label(self) -> str:
        """How the ensemble is named in tables and cv rows: 'x3' (3 seeds) / 'bag3' (3 bagged)."""
        return f"bag{self.count}" if self.bagging else f"x{self.count}"

    def member_tag(self, k: int, tag: str | None) -> str:
        own = f"{'f' if self.bagging else 's'}{k}"
        return f"{tag}_{own}" if tag else own

    def member_config(self, cfg: RunConfig, k: int) -> RunConfig:
        member = copy.deepcopy(cfg)
        member.train.seed = cfg.train.seed + k
        member.train.compare_smoothing = cfg.train.compare_smoothing and k == 0
        if self.bagging:
            member.train.val_folds, member.train.val_fold = self.count, k
        return member


@dataclass
class MembersOutcome:
    members: list[TrainOutcome]  # TrainOutcome: imported for type checking only (torch)
    ensemble: EnsembleResult
    baseline: dict[str, float] = field(default_factory=dict)


def member_plan(n_seeds: int | None, n_bags: int | None) -> MemberPlan | None:
    """The plan of `--ensemble N` or `--bag K` (at most one of them), None for a single run."""
    if n_seeds and n_bags:
        raise NlbkitError("--ensemble and --bag are two kinds of ensemble; give one")
    if not (n_seeds or n_bags):
        return None
    return MemberPlan(n_seeds or n_bags, bagging=bool(n_bags))


def train_members(
    dataset: str,
    cfg: RunConfig,
    plan: MemberPlan,
    *,
    bin_ms: int = 5,
    phase: str = "val",
    model: str = "langevin",
    data_dir: str | Path | None = None,
    from_tensors: str | Path | None = None,
    run_root: str | Path = "runs",
    tag: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
    eval_index: np.ndarray | None = None,
) -> MembersOutcome:
    """Train the members of `plan` and write their ensemble (see the module doc).

    With `resume`, finished members are kept and unfinished ones continue from their checkpoints.
    """
    from nlbkit.train.run import TrainOutcome, TrainRequest, train_run  # torch: here, not at import

    if tag is None and from_tensors is not None and is_train_only(from_tensors):
        tag = "holdout"
    output = Path(run_root) / run_name(dataset, bin_ms, phase, model, tag)
    with claim(output):  # the whole ensemble, members included: one command at a time
        member_runs = [
            RunDir(Path(run_root) / run_name(dataset, bin_ms, phase, model, plan.member_tag(k, tag)))
            for k in range(plan.count)
        ]
        if output.exists() and any(output.iterdir()) and not (resume or overwrite):
            raise NlbkitError(f"{output}: run directory exists; {RunDir(output).next_steps()}")
        if resume and not overwrite:
            _check_resumable(RunDir(output), member_runs)
        members: list[TrainOutcome] = []
        baseline: dict[str, float] = {}
        for k, member_run in enumerate(member_runs):
            member_cfg = plan.member_config(cfg, k)
            head = f"member {k + 1}/{plan.count} (seed {member_cfg.train.seed}" + (
                f", validates on fold {k})" if plan.bagging else ")"
            )
            started = time.perf_counter()
            if resume and member_run.finished():
                outcome = TrainOutcome(run=member_run, scores=member_run.scores() or {})
                say(f"{head}: finished before, kept: {member_run.path}")
            else:
                say(f"{head}: training -> {member_run.path}")
                outcome = train_run(
                    TrainRequest(
                        dataset,
                        member_cfg,
                        bin_ms=bin_ms,
                        phase=phase,
                        model=model,
                        data_dir=data_dir,
                        from_tensors=from_tensors,
                        run_root=run_root,
                        tag=plan.member_tag(k, tag),
                        resume=resume and member_run.last_ckpt.exists(),
                        overwrite=overwrite or (resume and not member_run.last_ckpt.exists()),
                        progress=progress,
                        eval_index=eval_index,
                    ),
                )
                shown = "  ".join(f"{m} {v:.4f}" for m, v in outcome.scores.items() if m in _SHOWN)
                say(f"{head}: {shown or 'done'}  "
                    f"({outcome.epochs} epochs, {time.perf_counter() - started:.0f} s)")
            if k == 0:
                baseline = outcome.baseline
                held = outcome.run.info().eval_index
                if eval_index is None and held is not None:
                    eval_index = np.asarray(held)  # every member holds out the first member's trials
            members.append(outcome)
        ensemble = ensemble_runs(
            [m.run.path for m in members], output, overwrite=True, data_dir=data_dir
        )
        return MembersOutcome(members=members, ensemble=ensemble, baseline=baseline)


_SHOWN = ("co-bps", "vel R2", "psth R2", "fp-bps")


def _check_resumable(output: RunDir, member_runs: list[RunDir]) -> None:
    """`--resume` of an ensemble: refuse a directory holding a single run, or an ensemble whose
    members have all finished (nothing is left to train)."""
    again = "pass --overwrite to train it again, or --tag NAME for a new run"
    if output.run_json.exists() and output.info().model != ENSEMBLE_MODEL:
        raise NlbkitError(f"{output.path}: a single '{output.info().model}' run, not an ensemble; "
                          f"nothing to resume: {again}")
    if output.finished() and all(m.finished() for m in member_runs):
        raise NlbkitError(f"{output.path}: an ensemble whose members have all finished; nothing to "
                          f"resume: {again}")
