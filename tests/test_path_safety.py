"""--run-dir, --output, --tag and --name cannot put what nlbkit writes outside its root."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nlbkit.cli import main
from nlbkit.ensemble import ensemble_runs
from nlbkit.errors import NlbkitError
from nlbkit.paths import check_inside_workdir, check_plain_name
from nlbkit.runs import run_name
from tests.training_fixtures import write_prepared

SMALL = "mc_maze_small"


def _refused(*args: str) -> str:
    """Run `nlbkit ARGS` in this process; it must fail with exactly one 'error: ' line."""
    result = CliRunner().invoke(main, list(args))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    (tmp_path / "inner").mkdir()
    monkeypatch.chdir(tmp_path / "inner")
    write_prepared(tmp_path / "inner" / "data" / SMALL / "tensors_5ms.h5")
    return tmp_path


@pytest.mark.parametrize("tag", ["../x", "/tmp/abs", "a/b", "..", ".hidden", ""])
def test_train_refuses_a_tag_that_is_not_a_plain_name(workdir, tag):
    line = _refused("train", SMALL, "--tag", tag, "--model", "smoothing")
    assert f"--tag '{tag}'" in line
    assert not (workdir / "inner" / "runs").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["inner"]


@pytest.mark.parametrize("command", [
    ("train", SMALL, "--model", "smoothing", "--run-dir", "../x"),
    ("sweep", SMALL, "--run-dir", "../x"),
    ("train-all", SMALL, "--run-dir", "../x"),
    ("ensemble", "runs/a", "--output", "../x"),
    ("report", "runs/a", "--output", "sub/../../x"),
    ("submit", "runs/a", "--output", "../x.h5"),
    ("predict", "runs/a", "--input", "x.h5", "--output", "../x.h5"),
])
def test_relative_outputs_that_climb_out_are_refused(workdir, command):
    line = _refused(*command)
    assert "leaves the working directory" in line and command[-1] in line
    assert sorted(p.name for p in workdir.iterdir()) == ["inner"]


def test_sweep_refuses_a_name_that_is_not_a_plain_name(workdir):
    line = _refused("sweep", SMALL, "--name", "../escape")
    assert "--name '../escape'" in line


def test_plain_names_and_inside_paths_pass(tmp_path):
    for ok in ("s0", "sweep_rank2", "full16", "v1.2", "a-b+c"):
        assert check_plain_name(ok, "--tag") == ok
    for ok in ("runs", "runs/sub", "./runs", "a/../b", str(tmp_path / "abs")):
        check_inside_workdir(ok, "--run-dir")
    with pytest.raises(NlbkitError, match="--tag '../x'"):
        run_name(SMALL, 5, "val", "langevin", "../x")  # the library refuses it too


def test_train_with_an_absolute_run_dir_still_works(workdir):
    root = workdir / "elsewhere"
    result = CliRunner().invoke(main, ["train", SMALL, "--model", "smoothing", "--run-dir", str(root),
                                       "--tag", "t1"])
    assert result.exit_code == 0, result.output
    assert (root / f"{SMALL}_5ms_val_smoothing_t1" / "scores.json").exists()


def test_ensemble_overwrite_never_replaces_a_folder_that_is_not_a_run(workdir):
    root = workdir / "elsewhere"
    members = []
    for tag in ("a", "b"):
        args = ["train", SMALL, "--model", "smoothing", "--run-dir", str(root), "--tag", tag]
        assert CliRunner().invoke(main, args).exit_code == 0
        members.append(root / f"{SMALL}_5ms_val_smoothing_{tag}")
    precious = workdir / "inner" / "notes"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine\n")
    with pytest.raises(NlbkitError, match="not a run directory"):
        ensemble_runs(members, precious, overwrite=True)
    assert (precious / "keep.txt").read_text() == "mine\n"
    assert all(json.loads((m / "run.json").read_text())["model"] == "smoothing" for m in members)
