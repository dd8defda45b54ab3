"""`nlbkit bench`: benchmarks of nlbkit against nlb_tools, side by side."""

from __future__ import annotations

from pathlib import Path

import click

from nlbkit.errors import NlbkitError


@click.group(name="bench")
def command() -> None:
    """Benchmarks: nlbkit against nlb_tools, side by side, in one run."""


@command.command(name="prepare")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/bench"),
              show_default=True, help="Where the generated sessions and outputs go (reused if present).")
@click.option("--sizes", default=",".join(("1/16", "1/8", "1/4", "1/2", "1")), show_default=True,
              help="Fractions of the mc_maze-sized session (trials kept), comma-separated.")
@click.option("--bin-ms", type=click.Choice(["5", "20"]), default="5", show_default=True)
@click.option("--mem-cap-gb", type=float, default=12.0, show_default=True,
              help="nlb_tools (or nlbkit) is killed when its process tree's RSS passes this.")
@click.option("--timeout-s", type=float, default=1800.0, show_default=True,
              help="A run past this many seconds is killed and counts as not surviving.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the figures here (default: <work-dir>/bench_prepare.json).")
def prepare_command(work_dir: Path, sizes: str, bin_ms: str, mem_cap_gb: float, timeout_s: float,
                    seed: int, json_path: Path | None) -> None:
    """Time `prepare` (wall, peak RSS) against nlb_tools' tensor functions doing the same work.

    \b
    Generates an mc_maze-sized session (synth mc_maze --scale full: ~2,900 trials, 137 + 45
    units, 1 kHz behaviour) and smaller fractions of it, runs nlbkit's prepare on each, and
    nlb_tools (reference environment) on growing sizes until it fails or hits a cap. Prints a
    table and the ratios on the largest size both finish; writes them to JSON.
    """
    from fractions import Fraction

    from nlbkit.prepare.bench import run_prepare_benchmark, table, write_json

    parts = [s.strip() for s in sizes.split(",") if s.strip()]
    try:
        bad = [p for p in parts if not 0 < Fraction(p) <= 1]
    except (ValueError, ZeroDivisionError) as exc:
        raise NlbkitError(f"--sizes: {exc}") from None
    if bad or not parts:
        raise NlbkitError(f"--sizes: fractions must lie in (0, 1], got {sizes!r}")
    result = run_prepare_benchmark(work_dir, parts, int(bin_ms), mem_cap_gb, timeout_s, seed=seed,
                                   log=click.echo)
    click.echo(table(result))
    path = write_json(result, json_path or work_dir / "bench_prepare.json")
    click.echo(f"figures written to {path}")
