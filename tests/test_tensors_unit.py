"""Binning rules of nlb_tools pinned on small hand-made inputs, and bad input to `nlbkit prepare`.

The rules (nlb_tools 0.0.4, `NWBDataset.load` / `resample` / `make_trial_data`):
- a spike at t s falls in 1 ms sample `int(round(t * 1000, 6))`;
- a group is observed on samples `[ceil(start ms), floor(end ms))` of its first unit's intervals; a
  spike in an unobserved sample is lost (the sample is NaN);
- a resampled bin sums its samples and is NaN iff its first sample is unobserved;
- a window keeps the bins whose start lies in `[align + lo, align + hi - 1 us]`, cut at the next
  selected trial's window start unless overlap is allowed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from nlbkit.errors import NlbkitError
from nlbkit.prepare.binning import count_spikes, place_jagged
from nlbkit.prepare.nwb import UnitGroup, _observed_ranges, _sample_index, read_session
from nlbkit.prepare.tensors import build_eval_input, load_tensors, prepare
from nlbkit.prepare.windows import WindowParams, seconds_to_ns, trial_windows

SMALL = "mc_maze_small"
TRAIN_NAME = "sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb"
TEST_NAME = "sub-Jenkins_ses-small_desc-test_ecephys.nwb"


def test_spike_sample_is_truncated_after_rounding_to_6_decimals():
    times = np.array([0.005, 0.0049999996, 0.0049994, 0.0019999, 0.0, 1.2345678])
    np.testing.assert_array_equal(_sample_index(times), [5, 5, 4, 1, 0, 1234])


def _group(spike_samples: list[int], observed: list[tuple[int, int]]) -> UnitGroup:
    return UnitGroup.from_spikes(
        np.array([0]), [np.array(spike_samples, dtype=np.int32)], np.array(observed, dtype=np.int64), 100
    )


def test_spikes_on_bin_edges_go_to_the_bin_they_start():
    group = _group([0, 4, 5, 9, 10, 14, 15], [(0, 100)])
    counts = count_spikes(group, np.array([0]), 4, 5)
    np.testing.assert_array_equal(counts[0, :, 0], [2, 2, 2, 1])


def test_bins_are_nan_where_their_first_sample_is_unobserved():
    # observed 0..12.3 ms -> samples [0, 12); and from 20.1 ms -> samples [21, 40)
    observed = _observed_ranges(np.array([[0.0, 0.0123], [0.0201, 0.040]]), 100)
    np.testing.assert_array_equal(observed, [[0, 12], [21, 40]])
    # bin 2 (samples 10-14) starts observed: keeps the spike at 11 only (12 and 13 are NaN samples,
    # dropped here by the reader); bin 4 (20-24) starts on an unobserved sample: NaN
    group_read = _group([11, 22], observed.tolist())
    counts = count_spikes(group_read, np.array([0]), 8, 5)[0, :, 0]
    np.testing.assert_array_equal(np.isnan(counts), [False, False, False, True, True, False, False, False])
    assert counts[2] == 1 and counts[5] == 0


def test_seconds_to_ns_matches_pandas_conversion():
    ns, ok = seconds_to_ns(np.array([1.0023, 0.1, np.nan, 12.3456789]))
    assert ok.tolist() == [True, True, False, True]
    assert ns[0] == 1_002_300_000 and ns[1] == 100_000_000 and ns[3] == 12_345_678_900


def _trials(**cols) -> dict[str, np.ndarray]:
    n = len(next(iter(cols.values())))
    base = {"trial_id": np.arange(n), "split": np.array(["train"] * n)}
    return {**base, **{k: np.asarray(v, dtype=float) for k, v in cols.items()}}


def test_fixed_window_keeps_bins_starting_inside_it():
    trials = _trials(start_time=[0.5], stop_time=[2.0], move_onset_time=[1.0023])
    w = trial_windows(trials, np.array([True]), WindowParams("move_onset_time", (-10, 10)), 5, 1000)
    # 992.3 ms .. 1012.299 ms -> bins starting at 995, 1000, 1005, 1010 ms
    assert w.first_bin.tolist() == [199] and w.n_bins.tolist() == [4] and w.align_bin.tolist() == [201]


def test_overlapping_windows_are_cut_unless_overlap_is_allowed():
    trials = _trials(start_time=[0.0, 0.1], stop_time=[0.1, 0.2], move_onset_time=[0.05, 0.08])
    params = WindowParams("move_onset_time", (-20, 40))
    cut = trial_windows(trials, np.array([True, True]), params, 5, 100)
    # trial 0 would end at 90 ms but trial 1's window starts at 60 ms
    assert cut.n_bins.tolist() == [6, 12]
    kept = trial_windows(trials, np.array([True, True]), WindowParams("move_onset_time", (-20, 40),
                                                                       allow_overlap=True), 5, 100)
    assert kept.n_bins.tolist() == [12, 12]


def test_trials_without_align_time_are_left_out():
    trials = _trials(start_time=[0.0, 1.0], stop_time=[0.9, 1.9], move_onset_time=[np.nan, 1.5])
    w = trial_windows(trials, np.array([True, True]), WindowParams("move_onset_time", (-100, 100)), 20, 200)
    assert w.rows.tolist() == [1]


def test_front_padding_with_jitter_shifts_left():
    data = np.arange(6, dtype=float).reshape(1, 6, 1)
    out = place_jagged(data, np.array([4]), 6, pad="front", jitter_bins=np.array([1]))
    np.testing.assert_array_equal(out[0, :, 0], [np.nan, 0, 1, 2, 3, np.nan])
    back = place_jagged(data, np.array([4]), 6)
    np.testing.assert_array_equal(back[0, :, 0], [0, 1, 2, 3, np.nan, np.nan])


def test_real_test_split_reads_and_bins(real_data):
    out = build_eval_input(real_data / SMALL / TEST_NAME, SMALL, 20)
    spikes = out["eval_spikes_heldin"]
    assert spikes.shape == (100, 35, 107) and spikes.dtype == np.float32
    assert not np.isnan(spikes).any() and spikes.sum() > 0


# --- bad input ---------------------------------------------------------------------------------


def _minimal(path: Path, units: bool = True, trials: bool = True) -> None:
    with h5py.File(path, "w") as f:
        if units:
            u = f.create_group("units")
            u["id"] = np.array([0])
            u["spike_times"] = np.array([0.1])
            u["spike_times_index"] = np.array([1])
            u["obs_intervals"] = np.array([[0.0, 1.0]])
            u["obs_intervals_index"] = np.array([1])
            u["heldout"] = np.array([False])
        if trials:
            t = f.create_group("intervals/trials")
            t["id"] = np.array([0])
            t["start_time"] = np.array([0.0])
            t["stop_time"] = np.array([1.0])
            t["split"] = np.array([b"test"])


@pytest.fixture(scope="module")
def generated_small(tmp_path_factory) -> tuple[Path, Path]:
    """A generated mc_maze_small (train NWB, test NWB): filler for the bad-input tests."""
    from nlbkit.synth.generate import write_dataset

    return write_dataset(SMALL, tmp_path_factory.mktemp("generated"), seed=0, scale="small")


@pytest.fixture()
def data_dir(tmp_path, generated_small) -> Path:
    """A data dir with a generated mc_maze_small test NWB and an old tensors file that must survive."""
    folder = tmp_path / SMALL
    folder.mkdir()
    shutil.copy(generated_small[1], folder / TEST_NAME)
    (folder / "tensors_5ms.h5").write_bytes(b"previous tensors")
    return tmp_path


def _bad_train(kind: str, path: Path, good_train: Path) -> None:
    if kind == "text":
        path.write_text("not an NWB file\n")
    elif kind == "truncated":
        blob = good_train.read_bytes()
        path.write_bytes(blob[: len(blob) // 3])
    elif kind == "no-units":
        _minimal(path, units=False)
    elif kind == "no-trials":
        _minimal(path, trials=False)


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "no-units", "no-trials"])
def test_bad_train_file_gives_one_line_and_leaves_old_output(kind, data_dir, generated_small, nlbkit_cli):
    folder = data_dir / SMALL
    _bad_train(kind, folder / TRAIN_NAME, generated_small[0])
    before = sorted(p.name for p in folder.iterdir())
    proc = nlbkit_cli("prepare", SMALL, "--data-dir", data_dir, check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert TRAIN_NAME in lines[0]
    expected = {"missing": "not found", "text": "not a readable", "truncated": "truncated",
                "no-units": "units", "no-trials": "trials"}[kind]
    assert expected in lines[0]
    assert (folder / "tensors_5ms.h5").read_bytes() == b"previous tensors"
    assert sorted(p.name for p in folder.iterdir()) == before


def test_unknown_dataset_names_the_closest(nlbkit_cli, tmp_path):
    proc = nlbkit_cli("prepare", "mc_maze_smal", "--data-dir", tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: unknown dataset 'mc_maze_smal'. Did you mean 'mc_maze_small'? Valid names: mc_maze, "
        "mc_rtt, area2_bump, dmfc_rsg, mc_maze_large, mc_maze_medium, mc_maze_small"
    )
    assert list(tmp_path.iterdir()) == []


def test_library_errors_name_the_file(tmp_path):
    with pytest.raises(NlbkitError, match="no units"):
        path = tmp_path / "x.nwb"
        _minimal(path, units=False)
        read_session(path)
    with pytest.raises(NlbkitError, match="tensors file not found"):
        load_tensors(tmp_path / "nothing.h5")
    with pytest.raises(NlbkitError, match="bin size 10"):
        prepare(SMALL, 10, tmp_path)


def _nlb_smoothed_session(counts: np.ndarray, observed: np.ndarray, kernel: np.ndarray, bin_ms: int):
    """nlb_tools' route: NaN outside observed samples, 'same' convolution of each non-NaN run
    (`smooth_column(ignore_nans=True)`), then `resample` (sum, NaN where a bin's first sample is)."""
    from scipy import signal

    x = counts.astype(float)
    x[~observed] = np.nan
    splits = np.flatnonzero(np.diff(np.isnan(x))) + 1
    y = np.concatenate([seq if np.isnan(seq).any() else signal.convolve(seq, kernel, "same")
                        for seq in np.split(x, splits)])
    n_full = len(y) // bin_ms
    binned = np.nan_to_num(y[: n_full * bin_ms]).reshape(n_full, bin_ms).sum(axis=1)
    binned[np.isnan(y[: n_full * bin_ms : bin_ms])] = np.nan
    return binned


def test_psth_smoothing_per_window_equals_session_smoothing():
    """Each observed stretch is smoothed on its own, also when two fall in one window."""
    from nlbkit.prepare.nwb import Session
    from nlbkit.prepare.psth import gaussian_kernel, smoothed_bins
    from nlbkit.prepare.windows import Windows

    rng = np.random.default_rng(1)
    n_samples, bin_ms = 3000, 5
    spikes = np.sort(rng.choice(n_samples, 600, replace=False))
    # a gap of 40 ms (shorter than the 300-tap kernel) inside the windows, another near the end
    observed = np.array([[0, 1200], [1240, 2800]])
    observed_mask = np.zeros(n_samples, bool)
    for a, b in observed:
        observed_mask[a:b] = True
    group = UnitGroup.from_spikes(np.array([0]), [spikes[observed_mask[spikes]]], observed, n_samples)
    session = Session(Path("x.nwb"), n_samples, group, None, {"trial_id": np.arange(3)})
    first = np.array([0, 200, 500])  # bins: from the session start, across the gap, to the end
    windows = Windows(np.arange(3), first, np.full(3, 100), first)
    kernel = gaussian_kernel(50)
    ours = smoothed_bins(session, group, windows, 100, bin_ms, kernel)[:, :, 0]
    counts = np.bincount(spikes, minlength=n_samples)
    expected = _nlb_smoothed_session(counts, observed_mask, kernel, bin_ms)
    for i, f in enumerate(first):
        want = expected[f : f + 100]
        np.testing.assert_array_equal(np.isnan(ours[i]), np.isnan(want))
        np.testing.assert_allclose(ours[i], want, rtol=1e-10, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("bin_ms", [5, 20])
def test_condition_mean_equals_mean_of_session_smoothing(bin_ms):
    """Observed windows are summed per window shape, the others smoothed one by one; both groups,
    several units, windows of two lengths and align offsets, one reaching before observation."""
    from nlbkit.prepare.nwb import Session
    from nlbkit.prepare.psth import _fully_observed, condition_mean, gaussian_kernel
    from nlbkit.prepare.windows import Windows

    rng = np.random.default_rng(2)
    n_samples = 6000
    observed = np.array([[100, 5000]])
    observed_mask = np.zeros(n_samples, bool)
    observed_mask[100:5000] = True

    def group(n_units: int) -> tuple[UnitGroup, list[np.ndarray]]:
        spikes = [np.unique(rng.choice(n_samples, 900)) for _ in range(n_units)]
        spikes = [s[observed_mask[s]] for s in spikes]
        return UnitGroup.from_spikes(np.arange(n_units), spikes, observed, n_samples), spikes

    (heldin, spikes_in), (heldout, spikes_out) = group(3), group(2)
    session = Session(Path("x.nwb"), n_samples, heldin, heldout, {"trial_id": np.arange(5)})
    kernel = gaussian_kernel(40)
    first = np.array([300, 100, 180, 40, 400]) * 5 // bin_ms  # the 4th reaches before observation
    lengths = np.array([20, 20, 20, 20, 18])
    align = first + np.array([4, 4, 5, 4, 4])
    windows = Windows(np.arange(5), first, lengths, align)
    lo = first * bin_ms - (len(kernel) - 1 - (len(kernel) - 1) // 2)
    full = _fully_observed(observed, lo, lo + lengths * bin_ms + len(kernel) - 1, n_samples)
    assert full.tolist() == [True, True, True, False, True]
    ours = condition_mean(session, [heldin, heldout], windows, bin_ms, kernel)
    keys = np.arange((first - align).min(), (first + lengths - align).max())
    assert ours.shape == (len(keys), 5)
    for u, spikes in enumerate(spikes_in + spikes_out):
        counts = np.bincount(spikes, minlength=n_samples)
        smooth = _nlb_smoothed_session(counts, observed_mask, kernel, bin_ms)
        per_key = [[smooth[f + j] for f, a, n in zip(first, align, lengths, strict=True)
                    for j in range(n) if f + j - a == k] for k in keys]
        expected = np.array([np.nanmean(v) if not np.all(np.isnan(v)) else np.nan for v in per_key])
        np.testing.assert_array_equal(np.isnan(ours[:, u]), np.isnan(expected))
        np.testing.assert_allclose(ours[:, u], expected, rtol=1e-10, atol=1e-12, equal_nan=True)


def test_counts_of_several_units_in_overlapping_windows():
    spikes = [np.array([0, 3, 5, 12, 99]), np.array([1, 2, 50]), np.array([], dtype=np.int64)]
    group = UnitGroup.from_spikes(np.arange(3), spikes, np.array([[0, 100]]), 100)
    counts = count_spikes(group, np.array([0, 1, 19]), 2, 5)  # the last window runs past the end
    assert counts.shape == (3, 2, 3)
    np.testing.assert_array_equal(counts[:, :, 0], [[2, 1], [1, 1], [1, np.nan]])
    np.testing.assert_array_equal(counts[:, :, 1], [[2, 0], [0, 0], [0, np.nan]])
    np.testing.assert_array_equal(counts[:, :, 2], [[0, 0], [0, 0], [0, np.nan]])
    np.testing.assert_array_equal(group.unit_spikes(1), [1, 2, 50])


@pytest.mark.parametrize("q", [5, 20])
@pytest.mark.parametrize("n", [1, 499, 1001, 20_003])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fir_decimation_equals_scipy_bit_for_bit(q, n, dtype):
    from scipy import signal

    from nlbkit.prepare.decimate import decimate_fir

    x = (np.random.default_rng(n).standard_normal(n) * 10).astype(dtype)
    expected = signal.decimate(x, q, n=500, ftype="fir", axis=0)
    got = decimate_fir(x, q)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("sd", [40, 50, 70])
def test_gaussian_kernel_is_scipys_normalised_window(sd):
    from scipy import signal

    from nlbkit.prepare.psth import gaussian_kernel

    window = signal.windows.gaussian(int(6 * sd), sd, sym=True)
    np.testing.assert_array_equal(gaussian_kernel(sd), window / np.sum(window))
