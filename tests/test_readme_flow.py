"""The README's sweep-then-train step works as written, and tagged runs share one smoothing baseline."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nlbkit.cli import main
from nlbkit.config import set_value, to_dict
from nlbkit.sweep.results import sweep_config_tag
from tests.training_fixtures import tiny_config, write_prepared

SMALL = "mc_maze_small"


def _nlbkit(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A working directory with data/mc_maze_small/tensors_5ms.h5 and a tiny configuration file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NLBKIT_DATA", raising=False)
    write_prepared(tmp_path / "data" / SMALL / "tensors_5ms.h5")
    cfg = tiny_config("train.compare_smoothing=true")
    (tmp_path / "tiny.json").write_text(json.dumps(to_dict(cfg)))
    return tmp_path, cfg


def _smoothing_runs(root) -> list[str]:
    return sorted(p.name for p in (root / "runs").iterdir() if "_smoothing" in p.name)


@pytest.mark.slow
def test_train_with_a_sweeps_best_config_after_a_plain_run(workdir):
    root, cfg = workdir
    _nlbkit("train", SMALL, "--bin-ms", "5", "--phase", "val", "--config", "tiny.json", "--quiet")
    assert _smoothing_runs(root) == [f"{SMALL}_5ms_val_smoothing"]
    baseline = root / "runs" / f"{SMALL}_5ms_val_smoothing" / "scores.json"
    stamp = baseline.stat().st_mtime_ns

    # What `nlbkit sweep mc_maze_small` leaves: sweep.json and the winner's full configuration.
    sweep = root / "runs" / f"{SMALL}_5ms_sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"dataset": SMALL, "bin_ms": 5}))
    set_value(cfg, "model.hidden", 12)
    (sweep / "best_config.json").write_text(json.dumps(to_dict(cfg)))

    out = _nlbkit("train", SMALL, "--config", f"runs/{SMALL}_5ms_sweep/best_config.json", "--quiet")
    run = root / "runs" / f"{SMALL}_5ms_val_langevin_sweep"
    assert out.splitlines()[0] == f"run: {run.relative_to(root)}"
    assert json.loads((run / "config.json").read_text())["model"]["hidden"] == 12
    assert "smoothing" in out  # the baseline's scores beside
    assert _smoothing_runs(root) == [f"{SMALL}_5ms_val_smoothing"]  # reused, not fitted again
    assert baseline.stat().st_mtime_ns == stamp

    for seed in ("0", "1"):  # docs/sweep.md's seeds-then-ensemble loop reuses it too
        _nlbkit("train", SMALL, "--config", "tiny.json", "--seed", seed, "--tag", f"s{seed}", "--quiet")
    assert _smoothing_runs(root) == [f"{SMALL}_5ms_val_smoothing"]
    assert baseline.stat().st_mtime_ns == stamp


def test_a_tagged_run_first_fits_the_shared_baseline(workdir):
    root, _ = workdir
    _nlbkit("train", SMALL, "--config", "tiny.json", "--tag", "s0", "--quiet")
    assert _smoothing_runs(root) == [f"{SMALL}_5ms_val_smoothing"]


def test_other_smoothing_settings_fit_their_own_baseline(workdir):
    root, _ = workdir
    _nlbkit("train", SMALL, "--config", "tiny.json", "--quiet")
    _nlbkit("train", SMALL, "--config", "tiny.json", "--tag", "a", "--set", "smoothing.kern_sd_ms=80",
            "--quiet")
    assert _smoothing_runs(root) == [f"{SMALL}_5ms_val_smoothing", f"{SMALL}_5ms_val_smoothing_a"]


def test_sweep_config_tag(tmp_path):
    sweep = tmp_path / f"{SMALL}_5ms_sweep"
    (sweep / "best_configs").mkdir(parents=True)
    assert sweep_config_tag(sweep / "best_config.json", SMALL, 5) is None  # no sweep.json: not a sweep
    (sweep / "sweep.json").write_text("{}")
    assert sweep_config_tag(sweep / "best_config.json", SMALL, 5) == "sweep"
    assert sweep_config_tag(sweep / "best_configs" / "rank2_ab12.json", SMALL, 5) == "sweep_rank2"
    assert sweep_config_tag(tmp_path / "mine.json", SMALL, 5) is None
    named = tmp_path / "full16"
    named.mkdir()
    (named / "sweep.json").write_text("{}")
    assert sweep_config_tag(named / "best_config.json", SMALL, 5) == "full16"
