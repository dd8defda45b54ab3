"""Generated datasets: the NLB layout of every file, reproducibility, and true rates that line up
with the tensors nlb_tools cuts from the same files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import BIN_SIZES_MS, DATASET_NAMES, BehaviorSource, get_spec
from nlbkit.nlb.h5io import read_h5_groups
from nlbkit.nlb.marker import generated_files, has_stamp
from nlbkit.synth.generate import GROUND_TRUTH_NAME, oracle_rates, write_dataset
from nlbkit.synth.latents import LatentTimeline, poisson_events
from nlbkit.synth.nwb import in_spans, subtract_spans


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    for name in DATASET_NAMES:
        if name != "mc_maze":  # same layout as the scaled mazes; its full scale is benchmarked
            write_dataset(name, root, seed=3, scale="small")
    return root


SMALL = [name for name in DATASET_NAMES if name != "mc_maze"]


def _ragged(group: h5py.Group, name: str) -> list[np.ndarray]:
    data, index = group[name][()], group[f"{name}_index"][()]
    return np.split(data, index[:-1])


def _trial_columns(spec) -> set[str]:
    needed = {"start_time", "stop_time", "split", spec.train_window.align_field}
    for window in (spec.eval_window, spec.psth.window if spec.psth else None):
        if window is not None:
            needed |= {f for f in (window.align_field, window.start_field, window.end_field) if f}
    if spec.psth:
        needed |= set(spec.psth.cond_fields)
    if spec.behavior_source == BehaviorSource.TRIAL_INFO:
        needed |= set(spec.behavior_fields)
    needed |= {f for f in (spec.decode_mask_field, spec.behavior_mask_field) if f}
    if spec.jitter:
        needed.add(spec.jitter.field)
    return needed


@pytest.mark.parametrize("name", SMALL)
def test_train_file_has_the_nlb_layout(synth_dir, name):
    spec = get_spec(name)
    with h5py.File(synth_dir / name / spec.train_asset_name, "r") as f:
        units = f["units"]
        assert {"spike_times", "obs_intervals", "heldout"} <= set(units.attrs["colnames"])
        heldout = units["heldout"][()]
        assert heldout.dtype == bool and 0 < heldout.sum() < len(heldout)
        obs = _ragged(units, "obs_intervals")
        assert all(np.array_equal(o, obs[0]) for o in obs)  # nlb_tools reads the first unit's only
        assert len(obs[0]) > 1  # gaps: NaN placement matters
        assert np.any(np.abs(obs[0] * 1000 - np.round(obs[0] * 1000)) > 1e-6)  # off the ms grid
        spans = np.asarray(obs[0])
        for times in _ragged(units, "spike_times"):
            assert np.all(np.diff(times) >= 0) and in_spans(times, spans).all()
            assert np.array_equal(times, np.round(times, 6))
        trials = f["intervals/trials"]
        assert _trial_columns(spec) <= set(trials.attrs["colnames"])
        split = trials["split"][()].astype(str)
        assert set(split) - {"none"} == {"train", "val"}
        if spec.behavior_source == BehaviorSource.CONTINUOUS:
            for field in spec.behavior_fields:
                series = f[f"processing/behavior/{field}"]
                assert series["starting_time"].attrs["rate"] == 1000.0
                assert series.attrs["comments"] == "columns=[x,y]"
        else:
            assert "behavior" not in f["processing"]


@pytest.mark.parametrize("name", SMALL)
def test_test_file_holds_heldin_units_and_test_trials(synth_dir, name):
    spec = get_spec(name)
    with h5py.File(synth_dir / name / spec.train_asset_name, "r") as f:
        train_ids = f["units/id"][()][~f["units/heldout"][()]]
    with h5py.File(synth_dir / name / spec.test_asset_name, "r") as f:
        assert not f["units/heldout"][()].any()
        assert np.array_equal(f["units/id"][()], train_ids)  # nlb_tools matches units by id
        trials = f["intervals/trials"]
        assert set(trials["split"][()].astype(str)) == {"test"}
        assert spec.train_window.align_field in trials.attrs["colnames"]
        obs = _ragged(f["units"], "obs_intervals")[0]
        assert len(obs) == len(trials["start_time"])  # one observed span per trial, as the real files


def test_same_seed_same_files_other_seed_other_spikes(tmp_path):
    spec = get_spec("mc_maze_small")
    paths = [write_dataset("mc_maze_small", tmp_path / str(i), seed=s) for i, s in enumerate((5, 5, 6))]
    read = []
    for train, _ in paths:
        with h5py.File(train, "r") as f:
            read.append((f["units/spike_times"][()], f["intervals/trials/move_onset_time"][()]))
    assert np.array_equal(read[0][0], read[1][0]) and np.array_equal(read[0][1], read[1][1])
    assert not np.array_equal(read[0][1], read[2][1])
    assert paths[0][0].name == spec.train_asset_name and paths[0][1].name == spec.test_asset_name


def test_ground_truth_is_compact(synth_dir):
    with h5py.File(synth_dir / "mc_maze_small" / GROUND_TRUTH_NAME, "r") as f:
        assert f["latents"].shape[1] == 3
        assert f["weights"].shape[0] == len(f["bias"]) == len(f["heldout"])


def test_bad_scale_and_phase_are_one_line_errors(synth_dir, tmp_path):
    with pytest.raises(NlbkitError, match="scale"):
        write_dataset("mc_maze_small", tmp_path, scale="huge")
    with pytest.raises(NlbkitError, match="phase"):
        oracle_rates("mc_maze_small", 5, synth_dir, phase="train")
    with pytest.raises(NlbkitError, match="ground truth"):
        oracle_rates("mc_maze_small", 5, tmp_path)


def test_poisson_events_are_poisson():
    rng = np.random.default_rng(0)
    lam = np.full(400_000, 0.3, dtype=np.float32)
    flat, counts = poisson_events(lam, rng)
    full = np.zeros(lam.size, dtype=np.int64)
    full[flat] = counts
    assert abs(full.mean() - 0.3) < 0.005 and abs(full.var() - 0.3) < 0.01
    assert abs((full == 2).mean() - 0.3**2 / 2 * np.exp(-0.3)) < 0.002


def test_latent_timeline_is_zero_between_epochs():
    latents = np.arange(15, dtype=np.float32).reshape(5, 3)
    timeline = LatentTimeline(np.array([10, 20]), np.array([2, 3]), latents)
    z = timeline.at(np.array([9, 10, 11, 12, 20, 22, 23]))
    assert np.array_equal(z[:, 0], [0, 0, 3, 0, 6, 12, 0])
    assert np.array_equal(timeline.dense(9, 13)[:, 0], [0, 0, 3, 0])


def test_subtract_spans():
    got = subtract_spans(np.array([[0.0, 10.0], [20.0, 30.0]]), np.array([[2.0, 3.0], [8.0, 22.0]]))
    assert np.array_equal(got, [[0, 2], [3, 8], [22, 30]])


@pytest.mark.slow
@pytest.mark.parity
@pytest.mark.parametrize("bin_ms", [5, 20])
def test_nlb_tools_builds_every_tensor_and_oracle_windows_line_up(synth_dir, run_reference, tmp_path, bin_ms):
    """nlb_tools loads every generated layout and makes all tensors from it; the oracle's true
    rates sit in exactly its windows: the Poisson likelihood of its spike counts is higher than
    with the rates a bin early or late, and (dmfc_rsg) than without its jitter."""
    out = tmp_path / "ref.h5"
    report = run_reference("synth_smoke_ref.py", "--out", out, synth_dir, bin_ms, *SMALL)
    with h5py.File(out, "r") as f:
        for name in SMALL:
            spec = get_spec(name)
            rates = oracle_rates(name, bin_ms, synth_dir, phase="val")
            test_rates = oracle_rates(name, bin_ms, synth_dir, phase="test")
            pairs = {
                "train_rates_heldin": f[f"{name}/train/train_spikes_heldin"][()],
                "train_rates_heldout": f[f"{name}/train/train_spikes_heldout"][()],
                "eval_rates_heldin": f[f"{name}/val/eval_spikes_heldin"][()],
                "eval_rates_heldout": f[f"{name}/val/eval_spikes_heldout"][()],
                "eval_rates_heldin_forward": f[f"{name}/val_target/eval_spikes_heldin_forward"][()],
                "eval_rates_heldout_forward": f[f"{name}/val_target/eval_spikes_heldout_forward"][()],
            }
            for key, counts in pairs.items():
                assert rates[key].shape == counts.shape, (name, key)
            test_counts = f[f"{name}/test/eval_spikes_heldin"][()]
            assert test_rates["eval_rates_heldin"].shape == test_counts.shape
            assert report[name]["test/eval_spikes_heldin"]["nan"] > 0  # truncated observation
            windows = [(rates[k], c) for k, c in pairs.items() if "forward" not in k]
            windows.append((test_rates["eval_rates_heldin"], test_counts))
            _assert_best_aligned(windows, name)
            if spec.jitter:
                plain = oracle_rates(name, bin_ms, synth_dir, phase="val", jitter=False)
                ll_jit = _poisson_ll(rates["train_rates_heldin"], pairs["train_rates_heldin"])
                assert ll_jit > _poisson_ll(plain["train_rates_heldin"], pairs["train_rates_heldin"])


def _poisson_ll(rates: np.ndarray, counts: np.ndarray) -> float:
    ok = ~np.isnan(counts)
    return float(np.sum(counts[ok] * np.log(rates[ok]) - rates[ok]))


def _assert_best_aligned(windows: list[tuple[np.ndarray, np.ndarray]], what: str) -> None:
    """True rates explain the counts better than the same rates one bin early or late, and
    their total matches the spike count (Poisson, five standard deviations)."""

    def ll(shift: int) -> float:
        return sum(_poisson_ll(np.roll(r, shift, axis=1)[:, 1:-1], c[:, 1:-1]) for r, c in windows)

    aligned = ll(0)
    assert aligned > ll(-1) and aligned > ll(1), what
    total = sum(np.nansum(c) for _, c in windows)
    expected = sum(r[~np.isnan(c)].sum() for r, c in windows)
    assert abs(total - expected) < 5 * np.sqrt(expected), what


@pytest.mark.parametrize("name", SMALL)
def test_test_targets_in_the_eval_data_test_layout_line_up_with_the_true_rates(synth_dir, name):
    """`eval_data_test.h5` beside the dataset: a group per bin with the eval-target keys of a
    val target, for the test trials (in the test file's order), whose held-out and forward spikes
    the true test-trial rates explain best unshifted."""
    spec, folder = get_spec(name), synth_dir / name
    path = folder / "eval_data_test.h5"
    assert has_stamp(path) and path.name in generated_files(folder)
    groups = read_h5_groups(path)
    assert sorted(groups) == sorted(spec.group_name(b) for b in BIN_SIZES_MS)
    with h5py.File(folder / spec.test_asset_name) as f:
        n_test = len(f["intervals/trials/id"])
    for bin_ms in BIN_SIZES_MS:
        target = groups[spec.group_name(bin_ms)]
        assert {"eval_spikes_heldout", "eval_spikes_heldin_forward", "eval_spikes_heldout_forward",
                "train_behavior", "eval_behavior"} <= set(target)
        assert target["eval_spikes_heldout"].shape[:2] == (n_test, spec.trial_bins(bin_ms))
        assert target["eval_spikes_heldout_forward"].shape[:2] == (n_test, spec.forward_bins(bin_ms))
        assert ("psth" in target) == (spec.psth is not None)
        truth = oracle_rates(name, bin_ms, synth_dir, phase="test")
        assert target["train_behavior"].shape[0] == truth["train_rates_heldin"].shape[0]  # train + val
        pairs = [(truth[f"eval_rates_{k}"], target[f"eval_spikes_{k}"])
                 for k in ("heldout", "heldin_forward", "heldout_forward")]
        _assert_best_aligned(pairs, f"{name} {bin_ms} ms")


def test_cli_writes_a_dataset_and_rejects_bad_input(nlbkit_cli, tmp_path):
    spec = get_spec("dmfc_rsg")
    out = nlbkit_cli("synth", "dmfc_rsg", "--data-dir", tmp_path, "--seed", "2").stdout
    assert spec.train_asset_name in out
    assert (tmp_path / "dmfc_rsg" / spec.test_asset_name).exists()
    assert (tmp_path / "dmfc_rsg" / GROUND_TRUTH_NAME).exists()
    bad = nlbkit_cli("synth", "mc_maze_smal", "--data-dir", tmp_path, check=False)
    assert bad.returncode != 0 and "mc_maze_small" in bad.stderr
    bad = nlbkit_cli("bench", "prepare", "--sizes", "2", "--work-dir", tmp_path, check=False)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: --sizes")
