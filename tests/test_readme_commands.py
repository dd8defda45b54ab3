"""The README's code blocks, as written: every `nlbkit` line parses (its sub-command and options
exist), every path it names is in the repository or written by an earlier line of the README, and
no `train` line lands on a run directory an earlier line finished (it would stop there).

Running them all for real would take far too long; `test_readme_flow.py` and the other end-to-end
tests run what they do.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from nlbkit.cli import main
from nlbkit.runs import run_name

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_commands(text: str) -> list[list[str]]:
    """The `nlbkit ...` lines of the ```bash blocks, as argument lists (comments stripped)."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [shlex.split(line, comments=True) for block in blocks for line in block.splitlines()]
    return [args[1:] for args in lines if args and args[0] == "nlbkit"]


def parse(args: list[str]) -> tuple[str, dict]:
    """(sub-command, its parsed parameters) with click's own parser; a UsageError if it does not parse."""
    root = click.Context(main)
    command = main.get_command(root, args[0])
    if command is None:
        raise click.UsageError(f"no sub-command '{args[0]}'")
    with command.make_context(args[0], args[1:], parent=root) as ctx:
        return args[0], dict(ctx.params)


def _train_runs(p: dict) -> tuple[set[str], str]:
    """(run directories a `train` line writes, the one it is refused on when it exists)."""
    dataset, bin_ms, phase, model = p["dataset"], int(p["bin_ms"]), p["phase"], p["model_name"]
    root, tag = p["run_root"], p["tag"]
    config = Path(p["config_file"]) if p["config_file"] else None
    if tag is None and config is not None and config.name == "best_config.json":
        tag = config.parent.name.removeprefix(f"{dataset}_{bin_ms}ms_")  # the sweep's name
    main_run = f"{root}/{run_name(dataset, bin_ms, phase, model, tag)}"
    runs = {main_run}
    count = p["n_seeds"] or p["n_bags"]
    for k in range(count or 0):
        member = f"{'f' if p['n_bags'] else 's'}{k}"
        runs.add(f"{root}/{run_name(dataset, bin_ms, phase, model, f'{tag}_{member}' if tag else member)}")
    if model == "langevin":
        runs.add(f"{root}/{run_name(dataset, bin_ms, phase, 'smoothing')}")
    return runs, main_run


def _outputs(name: str, p: dict) -> set[str]:
    """What a command line writes, as the paths a later line may name."""
    if name == "prepare":
        return {f"data/{p['dataset']}/tensors_{b}ms.h5" for b in p["bins"]}
    if name == "fetch" and p["targets"]:
        return {"data/eval_data_test.h5"}
    if name == "sweep":
        sweep = f"{p['run_root']}/{p['name'] or p['dataset'] + '_' + p['bin_ms'] + 'ms_sweep'}"
        return {sweep, f"{sweep}/best_config.json"}
    if name == "train":
        return _train_runs(p)[0]
    if name in ("submit", "ensemble") and p["output"] is not None:
        return {str(p["output"])}
    return set()


def _named_paths(args: list[str]) -> list[str]:
    return [a for a in args[1:] if not a.startswith("-") and ("/" in a or a.endswith((".h5", ".json")))]


def check_readme(text: str) -> list[str]:
    """Every problem of the README's command lines, one line each (empty when all is well)."""
    problems, written = [], set()
    for args in readme_commands(text):
        line = "nlbkit " + " ".join(args)
        try:
            name, params = parse(args)
        except click.ClickException as exc:
            problems.append(f"{line}: {exc.format_message()}")
            continue
        if name == "train":
            runs, main_run = _train_runs(params)
            if main_run in written and not (params["overwrite"] or params["resume"]):
                problems.append(f"{line}: {main_run} was finished by an earlier line")
        outputs = _outputs(name, params)
        for path in _named_paths(args):
            if path not in written | outputs and not (ROOT / path).exists():
                problems.append(f"{line}: {path} is neither in the repository nor written before")
        written |= outputs
    return problems


def test_the_readme_has_command_lines():
    commands = readme_commands(README.read_text())
    assert len(commands) >= 15 and {"train", "submit", "evaluate", "cv"} <= {c[0] for c in commands}


def test_every_readme_command_parses_and_names_paths_that_exist():
    assert check_readme(README.read_text()) == []


@pytest.mark.parametrize("line, problem", [
    ("nlbkit trian mc_maze_small", "no sub-command 'trian'"),
    ("nlbkit train mc_maze_small --bins 5", "No such option '--bins'"),
    ("nlbkit cv mc_maze_small mc_maze_small_train_5ms.h5", "mc_maze_small_train_5ms.h5 is neither"),
    ("nlbkit leaderboard runs/mc_maze_5ms_test_langevin", "runs/mc_maze_5ms_test_langevin is neither"),
    ("nlbkit train mc_maze_small\nnlbkit train mc_maze_small --ensemble 3", "finished by an earlier line"),
])
def test_the_check_finds_what_fails_as_written(line, problem):
    found = check_readme(f"```bash\n{line}\n```\n")
    assert len(found) == 1 and problem in found[0]
