"""Run directories -> `nlbkit evaluate` / `submit` / `validate`, and the errors a user can meet.

Run directories and tensor files are written by hand here in the contract's layout, with random
rates and targets (tests/eval_layouts.py), so these tests stand on their own.
"""

from __future__ import annotations

import json
import os
import stat

import h5py
import numpy as np
import pytest
from eval_layouts import random_rates, random_target, write_run, write_tensors_file
from test_metrics_parity import assert_results_equal

from nlbkit.errors import NlbkitError
from nlbkit.nlb.h5io import read_h5_groups, write_h5_groups
from nlbkit.runs import read_run
from nlbkit.scoring.evaluate import score_run
from nlbkit.scoring.metrics import evaluate, evaluate_group
from nlbkit.submit.evalai import default_runs, evalai_upload, merge_runs, submit_runs
from nlbkit.submit.validate import validate_submission

GROUPS = [("mc_maze_small", 5), ("mc_maze_small", 20), ("dmfc_rsg", 20)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """data/ with tensor files (val targets), runs/ with a langevin and a smoothing run per group."""
    root = tmp_path_factory.mktemp("workspace")
    rng = np.random.default_rng(11)
    data, runs = root / "data", root / "runs"
    targets, run_dirs = {}, {}
    for dataset, bin_ms in GROUPS:
        target = random_target(dataset, bin_ms, rng)
        targets[(dataset, bin_ms)] = target
        tensors = write_tensors_file(data, dataset, bin_ms, target, rng)
        for model in ("langevin", "smoothing"):
            rates = random_rates(dataset, bin_ms, rng)
            run = write_run(runs, dataset, bin_ms, "val", model, rates, tensors)
            run_dirs[(dataset, bin_ms, model)] = run
    return {"root": root, "data": data, "runs": runs, "targets": targets, "run_dirs": run_dirs}


def _group(dataset, bin_ms):
    return dataset if bin_ms == 5 else f"{dataset}_{bin_ms}"


def test_evaluate_cli_prints_models_side_by_side(workspace, nlbkit_cli):
    dirs = workspace["run_dirs"]
    args = [dirs[("mc_maze_small", 5, "langevin")], dirs[("dmfc_rsg", 20, "smoothing")],
            dirs[("mc_maze_small", 5, "smoothing")], dirs[("dmfc_rsg", 20, "langevin")]]
    out = nlbkit_cli("evaluate", *args).stdout.splitlines()
    assert out[0].split()[:5] == ["dataset", "bin", "phase", "model", "run"]
    assert "co-bps" in out[0] and "tp corr" in out[0] and "vel R2" in out[0]
    rows = [line.split() for line in out[2:]]
    assert [(r[0], r[4]) for r in rows] == [  # registry order, same dataset and bin together
        ("dmfc_rsg", "smoothing"), ("dmfc_rsg", "langevin"),
        ("mc_maze_small", "langevin"), ("mc_maze_small", "smoothing"),
    ]


@pytest.mark.parity
def test_evaluate_json_equals_nlb_tools_on_the_same_files(workspace, nlbkit_cli, run_reference, tmp_path):
    dirs = [workspace["run_dirs"][(d, b, "langevin")] for d, b in GROUPS]
    payload = json.loads(nlbkit_cli("evaluate", "--json", *dirs).stdout)
    targets = {_group(d, b): workspace["targets"][(d, b)] for d, b in GROUPS}
    target_file = write_h5_groups(tmp_path / "targets.h5", targets)
    submission = submit_runs(dirs, tmp_path / "sub.h5")
    reference = run_reference("evaluate_ref.py", target_file, submission)
    ours = {(r["dataset"], r["bin_ms"]): r["scores"] for r in payload["runs"]}
    splits = {split: m for entry in reference for split, m in entry.items()}
    assert ours[("dmfc_rsg", 20)] == pytest.approx(splits["dmfc_rsg_20_split"], abs=1e-9)
    small5 = {f"[100] {k}": v for k, v in ours[("mc_maze_small", 5)].items()}
    assert small5 == pytest.approx(splits["mc_maze_scaling_split"], abs=1e-9)


@pytest.mark.parity
def test_submit_validate_and_nlb_tools_agree(workspace, run_reference, tmp_path):
    dirs = [workspace["run_dirs"][(d, b, "langevin")] for d, b in GROUPS]
    path = submit_runs(dirs, tmp_path / "sub.h5")
    with h5py.File(path) as h5:
        assert sorted(h5) == ["dmfc_rsg_20", "mc_maze_small", "mc_maze_small_20"]
        assert h5.attrs["phase"] == "val"
        assert all(h5["mc_maze_small"][k].dtype == np.float32 for k in h5["mc_maze_small"])
    report = validate_submission(path, data_dir=workspace["data"])
    assert report.ok, report.errors
    assert any("missing mc_maze_large" in w for w in report.warnings)
    targets = {_group(d, b): workspace["targets"][(d, b)] for d, b in GROUPS}
    reference = run_reference("evaluate_ref.py", write_h5_groups(tmp_path / "t.h5", targets), path)
    assert_results_equal(report.scores, reference)


def test_submit_cli_then_validate_cli(workspace, nlbkit_cli, tmp_path):
    out_file = tmp_path / "leaderboard.h5"
    out = nlbkit_cli("submit", "--runs", workspace["runs"], "--phase", "val", "-o", out_file).stdout
    assert "mc_maze_small_20" in out and out_file.exists()
    result = nlbkit_cli("validate", out_file, "--data-dir", workspace["data"])
    assert "valid val-phase submission" in result.stdout
    assert "[100] co-bps" in result.stdout and "dmfc_rsg_20_split" in result.stdout


def _set_meta(run_dir, **values):
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, **values}))
    return run_dir


def test_submit_takes_the_untagged_run_of_each_dataset_and_bin(tmp_path):
    rng = np.random.default_rng(0)

    def run(dataset, bin_ms, phase, model="langevin", tag=None, created="2026-01-01T00:00:00"):
        return write_run(tmp_path, dataset, bin_ms, phase, model, random_rates(dataset, bin_ms, rng),
                         created=created, tag=tag)

    # The leaderboard path's mean of 3 seeds, and its members written later than it was.
    _set_meta(run("mc_maze_small", 5, "test"), model="ensemble")
    for k in range(3):
        run("mc_maze_small", 5, "test", tag=f"s{k}", created="2026-03-01T00:00:00")
    run("mc_maze_small", 20, "test")
    run("mc_maze_small", 20, "test", tag="sweep", created="2026-03-01T00:00:00")
    picked = default_runs(tmp_path, "test")
    assert [r.run_dir.name for r in picked] == ["mc_maze_small_5ms_test_langevin",
                                                "mc_maze_small_20ms_test_langevin"]
    # A run scored on held-out train trials is never taken, whatever its name and date.
    run("mc_maze_small", 5, "val")
    _set_meta(run("mc_maze_small", 5, "val", tag="holdout", created="2026-03-01T00:00:00"),
              eval_source="holdout", eval_index=[0, 1])
    _set_meta(run("dmfc_rsg", 20, "val", created="2026-03-01T00:00:00"), eval_source="holdout")
    assert [r.run_dir.name for r in default_runs(tmp_path, "val")] == ["mc_maze_small_5ms_val_langevin"]


def test_submit_refuses_to_guess_between_runs(tmp_path, nlbkit_cli):
    rng = np.random.default_rng(1)
    for model in ("langevin", "smoothing"):
        write_run(tmp_path, "mc_maze_small", 5, "test", model, random_rates("mc_maze_small", 5, rng))
    with pytest.raises(NlbkitError, match="several untagged runs .*_langevin, .*_smoothing; pass the run"):
        default_runs(tmp_path, "test", None)
    assert [r.model for r in default_runs(tmp_path, "test", "smoothing")] == ["smoothing"]
    write_run(tmp_path, "mc_maze_small", 20, "test", "langevin", random_rates("mc_maze_small", 20, rng),
              tag="s1")
    with pytest.raises(NlbkitError, match="mc_maze_small at 20 ms: no untagged run, only .*_langevin_s1"):
        default_runs(tmp_path, "test")
    with pytest.raises(NlbkitError, match="no finished smoothing runs in phase val"):
        default_runs(tmp_path, "val", "smoothing")
    result = nlbkit_cli("submit", "--runs", tmp_path, "-o", tmp_path / "x.h5", check=False)
    assert result.returncode == 1 and not (tmp_path / "x.h5").exists()
    assert result.stderr.count("\n") == 1 and "no untagged run, only" in result.stderr


def test_merge_refuses_duplicates_and_mixed_phases(workspace, tmp_path):
    dirs = workspace["run_dirs"]
    both = [read_run(dirs[("mc_maze_small", 5, model)]) for model in ("langevin", "smoothing")]
    with pytest.raises(NlbkitError, match="both hold 'mc_maze_small'"):
        merge_runs(both)
    test_run = write_run(tmp_path, "mc_maze_small", 20, "test", "langevin",
                         random_rates("mc_maze_small", 20, np.random.default_rng(0)))
    with pytest.raises(NlbkitError, match="mix phases"):
        merge_runs([both[0], read_run(test_run)])


def test_test_phase_scoring_needs_targets(workspace, tmp_path):
    rates = random_rates("mc_maze_small", 5, np.random.default_rng(2))
    run = write_run(tmp_path, "mc_maze_small", 5, "test", "langevin", rates)
    with pytest.raises(NlbkitError, match="needs --targets"):
        score_run(run)
    target = workspace["targets"][("mc_maze_small", 5)]
    targets_file = write_h5_groups(tmp_path / "eval_data_test.h5", {"mc_maze_small": target})
    scores = score_run(run, targets_file=targets_file).scores
    assert scores == evaluate_group("mc_maze_small", 5, target, rates)
    with pytest.raises(NlbkitError, match="cannot be scored in phase val"):
        score_run(run, phase="val")


# --- validation errors --------------------------------------------------------------------------

@pytest.fixture
def good_file(workspace, tmp_path):
    """A valid val-phase submission of the workspace's langevin runs; returns (path, arrays)."""
    dirs = [workspace["run_dirs"][(d, b, "langevin")] for d, b in GROUPS]
    groups, _ = merge_runs([read_run(d) for d in dirs])
    return tmp_path / "sub.h5", groups


def _write(path, groups, phase="val"):
    return write_h5_groups(path, groups, root_attrs={"phase": phase})


def _errors(path, workspace):
    return validate_submission(path, data_dir=workspace["data"]).errors


def test_misnamed_group_is_an_error_with_a_suggestion(good_file, workspace):
    path, groups = good_file
    groups["mc-maze-small"] = groups.pop("mc_maze_small")
    errors = _errors(_write(path, groups), workspace)
    assert any("'mc-maze-small' is not an NLB group name. Did you mean 'mc_maze_small'?" in e for e in errors)


def test_missing_key_wrong_shape_and_dtype(good_file, workspace):
    path, groups = good_file
    del groups["mc_maze_small"]["eval_rates_heldin_forward"]
    groups["mc_maze_small_20"]["eval_rates_heldout"] = groups["mc_maze_small_20"]["eval_rates_heldout"][:-1]
    groups["dmfc_rsg_20"]["train_rates_heldin"] = groups["dmfc_rsg_20"]["train_rates_heldin"].astype(np.int32)
    errors = _errors(_write(path, groups), workspace)
    assert "mc_maze_small: missing eval_rates_heldin_forward" in errors
    shape_error = "mc_maze_small_20/eval_rates_heldout: shape (23, 35, 4), "
    shape_errors = [e for e in errors if e.startswith(shape_error)]
    assert len(shape_errors) == 1  # the tensor file and the eval targets agree: said once
    assert "expected (24, 35, 4) (from " in shape_errors[0] and " and the eval targets)" in shape_errors[0]
    assert "dmfc_rsg_20/train_rates_heldin: dtype int32, expected float32" in errors


def test_a_group_of_another_bin_width_is_named(good_file, tmp_path):
    path, groups = good_file
    groups["mc_maze_small_20"] = groups.pop("mc_maze_small")  # 5 ms rates under the 20 ms name
    errors = validate_submission(_write(path, groups), data_dir=tmp_path / "nothing").errors
    assert ("mc_maze_small_20: 140 + 40 bins + forward, but mc_maze_small at 20 ms has 35 + 10 "
            "(700 + 200 ms) (bins of 5 ms?)") in errors


def test_nan_and_negative_rates_inside_the_window(good_file, workspace):
    path, groups = good_file
    groups["mc_maze_small"]["eval_rates_heldout"][3, 10, 0] = np.nan
    groups["mc_maze_small"]["train_rates_heldin"][5, 0, 2] = -0.1
    errors = _errors(_write(path, groups), workspace)
    nan_error = ("mc_maze_small/eval_rates_heldout: NaN rates inside the evaluated window "
                 "(1 values in trials 3)")
    assert nan_error in errors
    assert any(e.startswith("mc_maze_small/train_rates_heldin: negative rates") for e in errors)


@pytest.mark.parity
def test_dmfc_nan_allowed_before_set_as_in_nlb_tools(good_file, workspace, run_reference, tmp_path):
    path, groups = good_file
    target = workspace["targets"][("dmfc_rsg", 20)]
    padded = np.isnan(target["eval_spikes_heldout"][:, :2, 0])  # bins before set, unread by the PSTH
    for key in ("eval_rates_heldin", "eval_rates_heldout"):
        groups["dmfc_rsg_20"][key][:, :2][padded] = np.nan
    report = validate_submission(_write(path, groups), data_dir=workspace["data"])
    assert report.ok, report.errors
    targets = {_group(d, b): workspace["targets"][(d, b)] for d, b in GROUPS}
    reference = run_reference("evaluate_ref.py", write_h5_groups(tmp_path / "t.h5", targets), path)
    assert_results_equal(report.scores, reference)
    inside = np.argwhere(~np.isnan(target["eval_spikes_heldout"][:, :, 0]))[0]
    groups["dmfc_rsg_20"]["eval_rates_heldin"][inside[0], inside[1], 0] = np.nan
    errors = _errors(_write(path, groups), workspace)
    nan_error = "dmfc_rsg_20/eval_rates_heldin: NaN rates inside the evaluated window"
    assert any(e.startswith(nan_error) for e in errors)


def test_validate_cli_lists_problems_and_exits_1(good_file, workspace, nlbkit_cli):
    path, groups = good_file
    groups["mc_maze_small"]["eval_rates_heldin"][0, 0, 0] = np.inf
    proc = nlbkit_cli("validate", _write(path, groups), "--data-dir", workspace["data"], check=False)
    assert proc.returncode == 1
    assert "invalid: mc_maze_small/eval_rates_heldin: infinite rates" in proc.stderr
    assert "not fit for upload" in proc.stderr.splitlines()[-1]


def test_validate_without_tensors_checks_structure(good_file, tmp_path):
    path, groups = good_file
    report = validate_submission(_write(path, groups, phase="test"), data_dir=tmp_path / "none")
    assert report.ok and report.scores is None
    assert any("shapes not checked" in w for w in report.warnings)
    groups["dmfc_rsg_20"]["eval_rates_heldout"][0, 5, :] = np.nan  # not front padding
    errors = validate_submission(_write(path, groups), data_dir=tmp_path / "none").errors
    assert "dmfc_rsg_20/eval_rates_heldout: NaN rates other than whole bins before set" in errors


def test_unreadable_file(tmp_path):
    bad = tmp_path / "sub.h5"
    bad.write_text("not hdf5")
    with pytest.raises(NlbkitError, match="not a readable HDF5 file"):
        validate_submission(bad)


def test_write_is_atomic(tmp_path):
    target = tmp_path / "sub.h5"
    with pytest.raises(KeyError):
        from nlbkit.submit.evalai import write_submission

        write_submission({"mc_maze": {"eval_rates_heldin": np.zeros((1, 1, 1))}}, target, "test")
    assert list(tmp_path.iterdir()) == []


# --- evalai ---------------------------------------------------------------------------------------

def _fake_evalai(bin_dir, body):
    bin_dir.mkdir()
    script = bin_dir / "evalai"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_evalai_upload_runs_the_cli(tmp_path, monkeypatch):
    log = tmp_path / "args.txt"
    _fake_evalai(tmp_path / "bin", f'echo "$@" > {log}; read answer; echo "answer=$answer" >> {log}; '
                                    'echo "Your file sub.h5 with the ID 9 is successfully submitted."')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    out = evalai_upload(tmp_path / "sub.h5", phase="val")
    assert "successfully submitted" in out
    assert log.read_text().splitlines() == [f"challenge 1256 phase 2539 submit --file {tmp_path / 'sub.h5'}",
                                            "answer=N"]


def test_evalai_failures_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(NlbkitError, match="evalai CLI is not installed"):
        evalai_upload(tmp_path / "sub.h5")
    _fake_evalai(tmp_path / "bin", 'echo "The authentication token json file does not exist"; exit 1')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin")
    with pytest.raises(NlbkitError, match="evalai set_token"):
        evalai_upload(tmp_path / "sub.h5")


def test_evaluate_table_and_read_back(workspace):
    run = workspace["run_dirs"][("mc_maze_small", 20, "langevin")]
    score = score_run(run)
    target = workspace["targets"][("mc_maze_small", 20)]
    rates = read_h5_groups(run / "rates.h5")["mc_maze_small_20"]
    assert score.scores == evaluate_group("mc_maze_small", 20, target, rates)
    assert evaluate({"mc_maze_small_20": target}, {"mc_maze_small_20": rates})[0]["mc_maze_scaling_20_split"]


# --- make leaderboard / leaderboard-val -----------------------------------------------------------

def _make_dry_run(tmp_path, target, **variables):
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    settings = {"DATA": tmp_path / "data", "RUNS": tmp_path / "runs", "SUBMISSIONS": tmp_path / "sub",
                "DATASETS": "mc_maze_small", "BINS": "5", **variables}
    cmd = ["make", "-n", "-o", ".venv/.installed", target, *(f"{k}={v}" for k, v in settings.items())]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True)
    return proc.stdout


def test_leaderboard_val_chains_every_stage_and_skips_what_is_done(tmp_path):
    out = _make_dry_run(tmp_path, "leaderboard-val", SYNTH="1")
    stages = ["nlbkit synth mc_maze_small", "nlbkit prepare mc_maze_small --bin-ms 5",
              "nlbkit train-all mc_maze_small --bin-ms 5 --model langevin", "--phase val", "nlbkit submit",
              "nlbkit validate", "nlbkit evaluate"]
    positions = [out.find(stage) for stage in stages]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), out
    # Data, tensors and rates in place, each newer than its input: only the last stages remain.
    stamp = tmp_path / "data" / "mc_maze_small" / ".nlbkit-synth-small"
    tensors = tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5"
    rates = tmp_path / "runs" / "mc_maze_small_5ms_val_langevin" / "rates.h5"
    for age, path in ((300, stamp), (200, tensors), (100, rates)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age))
    out = _make_dry_run(tmp_path, "leaderboard-val", SYNTH="1")
    assert "nlbkit synth" not in out and "nlbkit prepare" not in out and "nlbkit train" not in out
    assert "nlbkit submit" in out and "nlbkit evaluate" in out
    os.utime(tensors)  # new tensors: the run is out of date and is trained again
    assert "nlbkit train-all mc_maze_small" in _make_dry_run(tmp_path, "leaderboard-val", SYNTH="1")


def test_leaderboard_runs_the_test_phase_for_every_dataset_and_bin(tmp_path):
    out = _make_dry_run(tmp_path, "leaderboard", DATASETS="mc_rtt dmfc_rsg", BINS="5 20")
    for dataset in ("mc_rtt", "dmfc_rsg"):
        assert f"nlbkit fetch {dataset}" in out
    # One training command for every run, as Ray tasks; ADDRESS and SEEDS reach it.
    train = [line for line in out.splitlines() if "nlbkit train-all" in line]
    assert len(train) == 1 and "mc_rtt dmfc_rsg --bin-ms 5 --bin-ms 20 --model langevin" in train[0]
    assert "--phase test" in train[0] and "--seeds" not in train[0] and "--address" not in train[0]
    out = _make_dry_run(tmp_path, "leaderboard", ADDRESS="head:6379", SEEDS="3", GPUS_PER_TASK="0.5")
    assert "--address head:6379" in out and "--seeds 3" in out and "--gpus-per-task 0.5" in out
    assert "leaderboard_test.h5" in out and "nlbkit validate" in out


def test_submit_without_run_dirs_names_the_runs_it_took(workspace, tmp_path):
    from click.testing import CliRunner

    from nlbkit.cli import main

    out_file = tmp_path / "picked.h5"
    result = CliRunner().invoke(main, ["submit", "--runs", str(workspace["runs"]), "--phase", "val",
                                       "-o", str(out_file)])
    assert result.exit_code == 0, result.output
    listed = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    expected = [str(workspace["run_dirs"][(d, b, "langevin")]) for d, b in GROUPS]
    assert sorted(listed) == sorted(expected)
    assert "took the untagged langevin run of each dataset and bin" in result.stdout


def test_a_deliberate_subset_is_not_warned_about_the_scaled_sets(good_file, workspace):
    path, groups = good_file
    _write(path, groups)
    warned = validate_submission(path, data_dir=workspace["data"], score=False).warnings
    assert any("scaled mc_maze sets" in w for w in warned)
    quiet = validate_submission(path, data_dir=workspace["data"], score=False, subset=True).warnings
    assert not any("scaled mc_maze sets" in w for w in quiet)


def test_make_demo_validates_a_subset_and_the_full_leaderboard_does_not(tmp_path):
    demo = _make_dry_run(tmp_path, "leaderboard-val", SYNTH="1")
    assert [line for line in demo.splitlines() if "nlbkit validate" in line and "--subset" in line]
    full = _make_dry_run(tmp_path, "leaderboard", DATASETS=("mc_maze mc_rtt area2_bump dmfc_rsg "
                                                            "mc_maze_large mc_maze_medium mc_maze_small"))
    validate = [line for line in full.splitlines() if "nlbkit validate" in line]
    assert validate and not any("--subset" in line for line in validate)
