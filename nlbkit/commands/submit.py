"""`nlbkit submit RUN_DIR...`: merge runs into one EvalAI submission file (and upload it)."""

from __future__ import annotations

from pathlib import Path

import click

from nlbkit.commands import inside_workdir


@click.command(name="submit")
@click.argument("run_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None, callback=inside_workdir,
              help="Submission file; default submissions/nlbkit_<phase>_<time>.h5.")
@click.option("--runs", "runs_root", type=click.Path(path_type=Path), default=Path("runs"),
              show_default=True, help="Where to look for runs when no RUN_DIR is given.")
@click.option("--phase", type=click.Choice(["val", "test"]), default="test", show_default=True,
              help="Phase of the runs picked when no RUN_DIR is given.")
@click.option("--model", default="langevin", show_default=True,
              help="Model of the runs picked when no RUN_DIR is given ('any' for every model).")
@click.option("--evalai", "upload", is_flag=True,
              help="Upload the file with the evalai CLI (pip install evalai; evalai set_token TOKEN).")
@click.option("--challenge", type=int, default=1256, show_default=True, help="EvalAI challenge id of NLB'21.")
@click.option("--phase-id", type=int, default=None,
              help="EvalAI phase id; default 2539 for val files, 2540 for test files.")
@click.option("--large", is_flag=True, help="Pass --large to evalai (files over 400 MB).")
@click.option("--method-name", default=None, help="Method name sent with the EvalAI submission.")
def command(run_dirs: tuple[Path, ...], output: Path | None, runs_root: Path, phase: str, model: str,
            upload: bool, challenge: int, phase_id: int | None, large: bool, method_name: str | None) -> None:
    """Merge the rates of RUN_DIR(s) into one EvalAI HDF5 file.

    \b
    Without RUN_DIR, takes the untagged run (<dataset>_<bin>ms_<phase>_<model>, what the leaderboard
    path writes) of each dataset and bin under --runs in --phase; never a run scored on held-out
    train trials. Where a dataset and bin has several such runs, or tagged ones only, it names them
    and writes nothing: pass the run directories.
    Groups are named as EvalAI expects ('mc_maze', 'mc_maze_20', ...); the file is written to a
    temporary name and renamed. Check it with `nlbkit validate FILE` before uploading.
    \b
    Examples:
      nlbkit submit runs/mc_maze_small_5ms_test_langevin runs/mc_maze_small_20ms_test_langevin
      nlbkit submit --phase test -o submissions/nlb.h5 --evalai
    """
    import h5py

    from nlbkit.submit.evalai import evalai_upload, submit_runs

    path = submit_runs(run_dirs, output, runs_root, phase, None if model == "any" else model)
    from nlbkit.nlb.marker import GENERATED_LABEL, H5_ATTR

    with h5py.File(path, "r") as h5:
        file_phase, groups = str(h5.attrs["phase"]), list(h5.keys())
        taken = [r.decode() if isinstance(r, bytes) else str(r) for r in h5.attrs.get("runs", [])]
        generated = f", {GENERATED_LABEL}" if H5_ATTR in h5.attrs else ""
    if not run_dirs:
        which = "run" if model == "any" else f"{model} run"
        click.echo(f"took the untagged {which} of each dataset and bin under {runs_root} ({phase} phase):")
        for run_dir in taken:
            click.echo(f"  {run_dir}")
    click.echo(f"wrote {path} ({file_phase} phase{generated}): {', '.join(groups)}")
    if upload:
        click.echo(evalai_upload(path, file_phase, challenge, phase_id, large, method_name))
