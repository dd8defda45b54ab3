"""`nlbkit report RUN_DIR`: the figures of a run, as PNG files in `RUN_DIR/report/`.

Each figure needs some pieces of the run (its log, its checkpoint, its rates, the tensor file it
recorded, the eval targets, the ground truth of generated data); a figure whose pieces are missing
is skipped with a note saying which, so that smoothing runs and ensembles get what applies to them
(an ensemble gets `ensemble_members`: its scores beside its members', and their validation curves).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nlbkit.errors import NlbkitError
from nlbkit.paths import atomic_path
from nlbkit.report.data import REPORT_DIR, Skip, load_report_data


def save_figure(fig, path: Path) -> Path:
    """Write a matplotlib figure as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


@dataclass
class ReportResult:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (figure, reason)
    notes: list[str] = field(default_factory=list)


def make_report(
    run_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Draw every figure that applies to the run into `output` (default RUN_DIR/report/)."""
    data = load_report_data(run_dir)  # before matplotlib: a wrong RUN_DIR answers at once
    import matplotlib

    matplotlib.use("Agg")
    from nlbkit.report import figures as report_plots

    folder = Path(output) if output is not None else Path(run_dir) / REPORT_DIR
    result = ReportResult(notes=list(data.notes))
    for name, draw in report_plots.FIGURES:
        if progress is not None:
            progress(name)
        try:
            fig = draw(data)
        except Skip as reason:
            result.skipped.append((name, str(reason)))
            continue
        result.written.append(save_figure(fig, folder / f"{name}.png"))
    if not result.written:
        raise NlbkitError(f"{run_dir}: no figure could be drawn ({'; '.join(r for _, r in result.skipped)})")
    return result
