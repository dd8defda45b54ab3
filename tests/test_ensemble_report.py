import json
import shutil

import numpy as np
import pytest

from nlbkit.ensemble import ensemble_runs, mean_rates
from nlbkit.errors import NlbkitError
from nlbkit.report.make import make_report
from nlbkit.runs import read_rates, read_run
from nlbkit.scoring.evaluate import score_run
from nlbkit.submit.evalai import submit_runs
from tests.synth_run_fixtures import synth_tensors, tiny_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two LangevinFlow seeds and a smoothing run on generated mc_maze_small tensors."""
    root = tmp_path_factory.mktemp("ensemble")
    tensors = synth_tensors(root / "data")
    first = tiny_run(tensors, root / "runs", "s0", "train.seed=0").run.path
    second = tiny_run(tensors, root / "runs", "s1", "train.seed=1").run.path
    smoothing = tiny_run(tensors, root / "runs", None, model="smoothing").run.path
    return root, first, second, smoothing


def test_ensemble_rates_are_the_members_mean(runs, tmp_path):
    _, first, second, _ = runs
    result = ensemble_runs([first, second], tmp_path / "ens")
    members = [read_rates(read_run(d)) for d in (first, second)]
    ensemble = read_rates(read_run(result.run_dir))
    assert set(ensemble) == set(members[0]) and len(ensemble) == 6
    for key, value in ensemble.items():
        assert value.dtype == np.float32
        np.testing.assert_allclose(value, (members[0][key] + members[1][key]) / 2, rtol=1e-6)
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["model"] == "ensemble" and info["members"] == [str(first), str(second)]
    assert [m.run.run_dir for m in result.members] == [first, second]


def test_evaluate_and_submit_take_an_ensemble(runs, tmp_path, nlbkit_cli):
    _, first, second, _ = runs
    result = ensemble_runs([first, second], tmp_path / "ens")
    stored = json.loads((result.run_dir / "scores.json").read_text())
    rescored = score_run(result.run_dir).scores
    assert stored == pytest.approx(rescored) and "co-bps" in stored
    # The members' and the ensemble's scores differ: it really is a different set of rates.
    assert rescored["co-bps"] != pytest.approx(result.members[0].scores["co-bps"])
    out = nlbkit_cli("evaluate", str(first), str(result.run_dir), "--json")
    listed = json.loads(out.stdout)["runs"]
    assert [r["model"] for r in listed] == ["langevin", "ensemble"]
    assert listed[1]["scores"]["co-bps"] == pytest.approx(rescored["co-bps"])
    path = submit_runs([result.run_dir], tmp_path / "sub.h5")
    checked = nlbkit_cli("validate", str(path), check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_ensemble_cli_prints_members_and_ensemble(runs, tmp_path, nlbkit_cli):
    _, first, second, _ = runs
    out = nlbkit_cli("ensemble", str(first), str(second), "--output", str(tmp_path / "ens"))
    assert out.returncode == 0, out.stderr
    assert "co-bps" in out.stdout
    assert first.name in out.stdout and second.name in out.stdout and "ens" in out.stdout
    again = nlbkit_cli("ensemble", str(first), str(second), "--output", str(tmp_path / "ens"), check=False)
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_ensemble_refuses_runs_of_other_trials(runs, tmp_path):
    _, first, second, _ = runs
    other = tmp_path / "other_bin"
    shutil.copytree(second, other)
    info = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**info, "bin_ms": 20}))
    with pytest.raises(NlbkitError, match="bin_ms differs"):
        ensemble_runs([first, other], tmp_path / "ens")
    with pytest.raises(NlbkitError, match="at least two"):
        ensemble_runs([first], tmp_path / "ens")
    with pytest.raises(NlbkitError, match="listed twice"):
        ensemble_runs([first, first], tmp_path / "ens")
    assert not (tmp_path / "ens").exists()


def _run_on(run_dir, tensors, target):
    """A copy of the run directory `run_dir` at `target` that records `tensors` as its tensor file."""
    shutil.copytree(run_dir, target)
    info = json.loads((target / "run.json").read_text())
    (target / "run.json").write_text(json.dumps({**info, "tensors": str(tensors)}))
    return target


def _older_as_trained(copy, original) -> None:
    """Give `copy` the original's times: the runs moved onto it are then newer than their tensor
    file, as a run trained on a file written before it is (a stale run is refused)."""
    import os

    stat = original.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_ensemble_accepts_runs_on_copies_of_one_tensor_file(runs, tmp_path):
    import h5py

    _, first, second, _ = runs
    tensors = read_run(first).tensors
    copy = tmp_path / "elsewhere" / tensors.name
    copy.parent.mkdir()
    shutil.copyfile(tensors, copy)
    with h5py.File(copy, "r+") as h5:  # provenance differs, as in each `nlbkit cv --out` copy
        h5.attrs["rebinned_from"] = str(tmp_path / "another" / "path.h5")
    assert copy.read_bytes() != tensors.read_bytes()
    _older_as_trained(copy, tensors)
    moved = _run_on(second, copy, tmp_path / "second_on_copy")
    result = ensemble_runs([first, moved], tmp_path / "ens")
    expected = ensemble_runs([first, second], tmp_path / "ens_same_file")
    for key, value in read_rates(read_run(expected.run_dir)).items():
        np.testing.assert_array_equal(read_rates(read_run(result.run_dir))[key], value)


def test_ensemble_refuses_runs_on_files_with_other_trials(runs, tmp_path):
    import h5py

    from nlbkit.nlb.tensor_file import trials_fingerprint

    _, first, second, _ = runs
    tensors = read_run(first).tensors
    other = tmp_path / tensors.name
    shutil.copyfile(tensors, other)
    assert trials_fingerprint(other) == trials_fingerprint(tensors)
    with h5py.File(other, "r+") as h5:  # one more spike in one bin of one train trial
        h5["train/train_spikes_heldin"][0, 0, 0] += 1
    assert trials_fingerprint(other) != trials_fingerprint(tensors)
    _older_as_trained(other, tensors)
    moved = _run_on(second, other, tmp_path / "second_on_other")
    with pytest.raises(NlbkitError, match="files with other trials"):
        ensemble_runs([first, moved], tmp_path / "ens")
    missing = _run_on(second, tmp_path / "gone.h5", tmp_path / "second_on_nothing")
    with pytest.raises(NlbkitError, match="gone.h5: tensor file not found"):
        ensemble_runs([first, missing], tmp_path / "ens")
    assert not (tmp_path / "ens").exists()


def test_mean_rates_refuses_other_shapes(runs, tmp_path):
    _, first, second, _ = runs
    other = tmp_path / "fewer_trials"
    shutil.copytree(second, other)
    import h5py

    with h5py.File(other / "rates.h5", "r+") as h5:
        group = h5[next(iter(h5))]
        data = group["eval_rates_heldout"][()]
        del group["eval_rates_heldout"]
        group["eval_rates_heldout"] = data[:-1]
    with pytest.raises(NlbkitError, match="not the same trials"):
        mean_rates([read_run(first), read_run(other)])


def _assert_pngs(paths):
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 5000 and data.startswith(PNG_MAGIC), path


def test_report_draws_every_figure_of_a_langevin_run_on_generated_data(runs):
    _, first, _, _ = runs
    result = make_report(first)
    names = sorted(p.stem for p in result.written)
    assert names == sorted(["training_curves", "latent_trajectories", "rates_vs_spikes", "psth",
                            "decoded_velocity", "true_rates"]), result.skipped
    assert all(p.parent == first / "report" for p in result.written)
    _assert_pngs(result.written)


def test_report_skips_what_a_smoothing_run_lacks(runs, nlbkit_cli):
    _, _, _, smoothing = runs
    out = nlbkit_cli("report", str(smoothing))
    assert out.returncode == 0, out.stderr
    assert "skipped training_curves" in out.stdout and "skipped latent_trajectories" in out.stdout
    written = sorted((smoothing / "report").glob("*.png"))
    assert {p.stem for p in written} == {"rates_vs_spikes", "psth", "decoded_velocity", "true_rates"}
    _assert_pngs(written)


def test_report_of_an_ensemble_draws_its_members(runs, tmp_path):
    _, first, second, _ = runs
    result = ensemble_runs([first, second], tmp_path / "ens")
    report = make_report(result.run_dir)
    names = {p.stem for p in report.written}
    assert "ensemble_members" in names and "training_curves" not in names
    _assert_pngs(report.written)
    single = make_report(first, output=tmp_path / "single")
    assert ("ensemble_members", "not an ensemble (no ensemble.json)") in single.skipped


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_report_of_runs_without_validation_says_so_and_labels_every_member(runs, tmp_path):
    import matplotlib.pyplot as plt

    from nlbkit.report import figures
    from nlbkit.report.data import load_report_data

    root, *_ = runs
    tensors = root / "data" / "mc_maze_small" / "tensors_5ms.h5"
    members = [tiny_run(tensors, tmp_path / "runs", f"s{k}", f"train.seed={k}", "train.val_fraction=0")
               .run.path for k in range(2)]
    curves = figures.training_curves(load_report_data(members[0]))
    assert curves.axes[1].get_legend() is None and not curves.axes[1].lines
    assert [t.get_text() for t in curves.axes[1].texts] == [figures.NO_VALIDATION]
    assert "val_nll" not in _legend(curves.axes[0])
    ensemble = ensemble_runs(members, tmp_path / "ens")
    fig = figures.ensemble_members(load_report_data(ensemble.run_dir))
    scores, logs = fig.axes[:2]
    assert _legend(scores) == ["member s0", "member s1", "mean of 2"]
    assert logs.get_title() == "members' training loss (no validation trials)"
    assert _legend(logs) == ["member s0", "member s1"] and len(logs.lines) == 2 and not logs.texts
    plt.close("all")


def test_condition_colours_and_the_rate_ceiling_are_explained(runs):
    import matplotlib.pyplot as plt

    from nlbkit.report import figures
    from nlbkit.report.data import load_report_data

    _, first, _, _ = runs
    data = load_report_data(first)
    latents = figures.latent_trajectories(data)
    labels, meaning = figures.condition_labels(data, data.rates["eval_rates_heldin"].shape[0])
    assert meaning == "condition"
    assert _legend(latents.axes[1]) == [f"condition {c}" for c in sorted(set(labels))]
    assert _legend(figures.decoded_velocity(data).axes[-1]) == _legend(latents.axes[1])
    assert any(t.startswith("condition ") for t in _legend(figures.psths(data).axes[-1]))
    top = max(data.true_rates[k].max() for k in ("eval_rates_heldin", "eval_rates_heldout"))
    top_hz = top * 1000 / data.bin_ms
    ceiling = [t for t in _legend(figures.true_rates(data).axes[0]) if "ceiling" in t]
    assert bool(ceiling) == (top_hz >= figures.MAX_RATE_HZ - 1e-3)
    plt.close("all")
