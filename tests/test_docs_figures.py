"""One source for each measured figure: what the README and `nlbkit train --help` quote of the current
defaults is what the first section of docs/results.md gives, never a copy of its own that drifts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"(?<![\d.])-?0\.\d{3,4}(?: ± 0\.\d{3,4})?(?![\d.])")  # 0.2625, 0.2625 ± 0.0359


def current_figures() -> set[str]:
    """Every figure of docs/results.md's first section (the current defaults), before how they were chosen."""
    text = (ROOT / "docs" / "results.md").read_text()
    current = text.split("\n## How the current defaults were chosen", 1)[0]
    found = {m.group(0) for m in FIGURE.finditer(current)}
    return found | {f.split(" ± ")[0] for f in found}


def foreign_figures(text: str, allowed: set[str]) -> list[str]:
    return sorted({m.group(0) for m in FIGURE.finditer(text)} - allowed)


def test_the_checker_sees_the_current_table_and_flags_a_stale_figure():
    allowed = current_figures()
    assert {"0.2625 ± 0.0359", "0.2612 ± 0.0366", "0.2509"} <= allowed
    # the figures `nlbkit train --help` once quoted for the mean of 3 seeds and for single runs
    assert foreign_figures("3 seeds averaged scored 0.259 co-bps against 0.214 single", allowed) == [
        "0.214", "0.259"]


def test_readme_and_train_help_quote_only_the_current_table():
    allowed = current_figures()
    help_text = subprocess.run([sys.executable, "-m", "nlbkit", "train", "--help"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    assert "--ensemble" in help_text and "docs/results.md" in help_text
    for name, text in (("README.md", (ROOT / "README.md").read_text()), ("nlbkit train --help", help_text)):
        assert not foreign_figures(text, allowed), f"{name} quotes figures docs/results.md does not give"
