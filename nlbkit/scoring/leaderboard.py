"""Where locally scored runs would rank among the published NLB'21 entries (`nlbkit leaderboard`).

Each run is scored as `nlbkit evaluate` scores it (`score_run`: test-phase runs against the public
`eval_data_test.h5`), then put beside the published entries of the same dataset, bin and phase
(`nlbkit/nlb/published.csv`, docs/published.md), ranked by co-bps. A run's rank is the one it would
have had among the published entries alone: 1 + the number of entries with a higher co-bps (a tie
shares the better rank). Val-phase runs are compared only with published val-phase entries.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from nlbkit.nlb.datasets import DATASET_NAMES
from nlbkit.nlb.keys import METRIC_NAMES, TRAIN_GROUP
from nlbkit.nlb.marker import GENERATED_LABEL
from nlbkit.nlb.published import PublishedEntry, load_published, published_for
from nlbkit.paths import atomic_path
from nlbkit.runs import RunInfo
from nlbkit.scoring.evaluate import RunScore, score_run

RANK_METRIC = "co-bps"


@dataclass
class RankedRun:
    """One scored run, with its scope and the rank it would have had among the published entries."""

    score: RunScore
    n_trials: int  # eval trials scored
    targets: str  # what the run was scored against
    rank: int | None = None  # None when there is no published entry or its co-bps is NaN
    of: int = 0  # published entries + this run

    @property
    def run(self) -> RunInfo:
        return self.score.run

    @property
    def saw_val_trials(self) -> bool:
        """Test-phase training uses train+val; val-phase training (or a held-out split) does not."""
        return self.run.eval_index is None and TRAIN_GROUP[self.run.phase] == "trainval"

    def scope(self) -> str:
        seen = ("saw the val trials (the test phase trains on train+val)" if self.saw_val_trials
                else "did not see the scored trials")
        return (f"{self.run.run_dir.name}: {self.run.phase} phase, {self.run.bin_ms} ms bins, "
                f"{self.n_trials} eval trials scored against {self.targets}; the model {seen}")


@dataclass
class Board:
    """The published entries and the runs of one dataset, bin and phase."""

    dataset: str
    bin_ms: int
    phase: str
    published: list[PublishedEntry]
    runs: list[RankedRun] = field(default_factory=list)

    @property
    def title(self) -> str:
        generated = f" ({GENERATED_LABEL})" if any(r.score.generated for r in self.runs) else ""
        return f"{self.dataset}{generated} {self.bin_ms} ms, {self.phase} phase"

    def note(self) -> str | None:
        """Why there is nothing to rank against, if so."""
        if self.published:
            return None
        if self.phase == "val":
            return ("no published val-phase entries with a source for this dataset and bin; val-phase "
                    "scores are not comparable with the test-phase leaderboard, so no rank is given")
        return "no published entries for this dataset and bin (docs/published.md lists what there is)"

    def metrics(self) -> list[str]:
        """The metrics that any entry or run of the board has, in nlb_tools' order."""
        present = {m for e in self.published for m in e.scores}
        present |= {m for r in self.runs for m, v in r.score.scores.items() if not math.isnan(v)}
        return [m for m in METRIC_NAMES if m in present]

    def rows(self) -> list[dict]:
        """Published entries and runs together, best co-bps first (runs marked `kind='nlbkit'`)."""
        rows = [
            {"kind": "published", "name": e.method, "rank": published_rank(e.scores.get(RANK_METRIC),
                                                                           self.published, exclude=e),
             "scores": dict(e.scores), "source": e.source, "source_detail": e.source_detail}
            for e in self.published
        ]
        rows += [
            {"kind": "nlbkit", "name": r.run.run_dir.name, "model": r.run.model, "rank": r.rank,
             "scores": dict(r.score.scores), "run_dir": str(r.run.run_dir)}
            for r in self.runs
        ]
        return sorted(rows, key=lambda row: -_rank_value(row["scores"]))

    def as_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "bin_ms": self.bin_ms,
            "phase": self.phase,
            "rank_metric": RANK_METRIC,
            "n_published": len(self.published),
            "note": self.note(),
            "runs": [
                {"run_dir": str(r.run.run_dir), "model": r.run.model, "phase": r.run.phase,
                 "bin_ms": r.run.bin_ms, "n_trials": r.n_trials, "targets": r.targets,
                 "saw_val_trials": r.saw_val_trials, "rank": r.rank, "of": r.of,
                 "scores": r.score.scores}
                for r in self.runs
            ],
            "rows": self.rows(),
        }


def _rank_value(scores: dict[str, float]) -> float:
    value = scores.get(RANK_METRIC)
    return -math.inf if value is None or math.isnan(value) else value


def published_rank(value: float | None, published: Sequence[PublishedEntry],
                   exclude: PublishedEntry | None = None) -> int | None:
    """1 + the number of published entries (other than `exclude`) with a higher co-bps."""
    if value is None or math.isnan(value):
        return None
    others = [e.scores.get(RANK_METRIC) for e in published if e is not exclude]
    return 1 + sum(1 for o in others if o is not None and o > value)


def _n_eval_trials(run: RunInfo) -> int:
    with h5py.File(run.rates_path, "r") as h5:
        return int(h5[run.group]["eval_rates_heldout"].shape[0])


def _targets_label(run: RunInfo, targets_file: str | os.PathLike | None,
                   data_dir: str | os.PathLike | None) -> str:
    if run.eval_index is not None:
        return f"train trials held out of {run.tensors}"
    if run.phase == "test":
        if targets_file is None:
            from nlbkit.scoring.evaluate import default_test_targets

            targets_file = default_test_targets(data_dir, run.tensors)
        return str(targets_file)
    return f"the val targets of {run.tensors if data_dir is None and run.tensors else 'the data dir'}"


def rank_runs(
    run_dirs: Sequence[str | os.PathLike],
    data_dir: str | os.PathLike | None = None,
    targets_file: str | os.PathLike | None = None,
    entries: list[PublishedEntry] | None = None,
) -> list[Board]:
    """Score each run (as `nlbkit evaluate` does) and rank it among the published entries of its
    dataset, bin and phase; one `Board` per (dataset, bin, phase), in registry order."""
    entries = load_published() if entries is None else entries
    boards: dict[tuple[str, int, str], Board] = {}
    for run_dir in run_dirs:
        score = score_run(run_dir, data_dir=data_dir, targets_file=targets_file)
        run = score.run
        key = (run.dataset, run.bin_ms, run.phase)
        if key not in boards:
            boards[key] = Board(*key, published=published_for(*key, entries))
        board = boards[key]
        rank = published_rank(score.scores.get(RANK_METRIC), board.published) if board.published else None
        board.runs.append(RankedRun(score, _n_eval_trials(run), _targets_label(run, targets_file, data_dir),
                                    rank, len(board.published) + 1))
    return [boards[k] for k in sorted(boards, key=lambda k: (DATASET_NAMES.index(k[0]), k[1], k[2]))]


def format_rank_intervals(boards: Sequence[Board], n_boot: int, seed: int = 0, data_dir=None,
                          targets_file=None) -> str:
    """Per run: its co-bps with a 95% bootstrap interval over its eval trials, and the published
    ranks at the interval's ends (scoring.bootstrap)."""
    from nlbkit.scoring.bootstrap import run_intervals

    lines = [f"co-bps with 95% bootstrap intervals over eval trials ({n_boot} resamples, seed {seed}):"]
    for board in boards:
        for ranked in board.runs:
            [result] = run_intervals([ranked.run.run_dir], n_boot, seed, 0.95, data_dir, targets_file)
            co = result.intervals[RANK_METRIC]
            ranks = ""
            if board.published:
                best, worst = (published_rank(v, board.published) for v in (co.high, co.low))
                ranks = f"; rank {ranked.rank} of {ranked.of}, {best}-{worst} across the interval"
            lines.append(f"  {ranked.run.run_dir.name} ({result.n_trials} trials): {co}{ranks}")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if math.isnan(value) else f"{value:.4f}"


def _short_source(row: dict) -> str:
    """The source's authors and year; doubtful cells (source_detail says so) are flagged."""
    short = row["source"].split(",")[0]
    return short + (" (a doubtful cell: docs/published.md)" if "doubtful" in row["source_detail"] else "")


def format_board(board: Board) -> str:
    """The board as plain text: scope lines, then the ranked table (nlbkit's runs marked '>')."""
    lines = [f"== {board.title}: {len(board.published)} published entries, {len(board.runs)} nlbkit run(s)"]
    lines += [f"   {r.scope()}" for r in board.runs]
    for r in board.runs:
        if r.rank is not None:
            lines.append(f"   {r.run.run_dir.name} would rank {r.rank} of {r.of} by {RANK_METRIC}")
    if board.note():
        lines.append(f"   {board.note()}")
    metrics = board.metrics()
    header = [" ", "rank", "entry", *metrics, "source"]
    body = [
        [">" if row["kind"] == "nlbkit" else "", "-" if row["rank"] is None else str(row["rank"]),
         row["name"], *(_cell(row["scores"].get(m)) for m in metrics),
         "nlbkit run" if row["kind"] == "nlbkit" else _short_source(row)]
        for row in board.rows()
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    numeric = set(range(3, 3 + len(metrics))) | {1}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = "  ".join(" " * w if i == 0 else "-" * w for i, w in enumerate(widths))
    lines += [line(header), rule, *(line(r) for r in body)]
    return "\n".join(lines)


def format_boards(boards: Sequence[Board]) -> str:
    return "\n\n".join(format_board(b) for b in boards)


def boards_json(boards: Sequence[Board]) -> dict:
    return {"source": "nlbkit/nlb/published.csv (docs/published.md)", "boards": [b.as_json() for b in boards]}


def board_figure(board: Board):
    """Published entries as horizontal bars (best co-bps at the top), nlbkit's runs in orange; one
    panel per metric. Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = board.rows()
    metrics = board.metrics() or [RANK_METRIC]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 1.5, 0.3 * len(rows) + 1.6),
                             sharey=True, squeeze=False)
    names = [row["name"] + (" (?)" if "doubtful" in row.get("source_detail", "") else "") for row in rows]
    colours = ["C1" if row["kind"] == "nlbkit" else "0.6" for row in rows]
    for ax, metric in zip(axes[0], metrics, strict=True):
        values = [row["scores"].get(metric) for row in rows]
        ys = range(len(rows))
        ax.barh(list(ys), [0.0 if v is None or math.isnan(v) else v for v in values], color=colours)
        for y, v in zip(ys, values, strict=True):
            if v is None or math.isnan(v):
                ax.text(0, y, " n/a", va="center", fontsize=7, color="0.4")
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(metric)
        ax.set_yticks(list(ys), names, fontsize=8)
    axes[0][0].invert_yaxis()  # shared: best co-bps at the top of every panel
    for label, row in zip(axes[0][0].get_yticklabels(), rows, strict=True):
        if row["kind"] == "nlbkit":
            label.set_color("C1")
            label.set_fontweight("bold")
    title = f"{board.title}: published entries (grey) and nlbkit runs (orange); (?): a doubtful cell"
    if board.note():
        title += "\n" + board.note()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def write_figures(boards: Sequence[Board], out_dir: str | os.PathLike) -> list[Path]:
    """One PNG per board: `<dataset>_<bin>ms_<phase>.png` in `out_dir`."""
    import matplotlib.pyplot as plt

    written = []
    for board in boards:
        path = Path(out_dir) / f"{board.dataset}_{board.bin_ms}ms_{board.phase}.png"
        fig = board_figure(board)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def write_json(boards: Sequence[Board], path: str | os.PathLike) -> Path:
    """`boards_json` as an indented JSON file, written atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(boards_json(boards), indent=2) + "\n")
    return Path(path)
