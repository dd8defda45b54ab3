"""Every array nlbkit's `prepare` builds equals nlb_tools' own, for all 7 datasets at 5 and 20 ms.

Generated files (nlbkit.synth.generate, scale 'small') are made once per session; nlb_tools runs once per
session in the reference environment (two processes, one per bin size), through
tests/reference/make_tensors_ref.py, which applies the pandas index-sort fix to its loader.
Spike counts, behaviour, masks, indices and jitter must be equal exactly (NaN in the same places);
PSTHs, which both sides smooth with FFTs, to float64 round-off.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import BIN_SIZES_MS, DATASET_NAMES, get_spec
from nlbkit.prepare.tensors import build_eval_input, build_tensors, iter_groups, load_tensors, prepare

pytestmark = [pytest.mark.parity, pytest.mark.slow]

REFERENCE_SCRIPT = Path(__file__).resolve().parent / "reference" / "make_tensors_ref.py"
REAL_TEST_FILES = {
    "mc_maze_small": "mc_maze_small/sub-Jenkins_ses-small_desc-test_ecephys.nwb",
    "mc_maze_medium": "mc_maze_medium/sub-Jenkins_ses-medium_desc-test_ecephys.nwb",
}


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> tuple:
    """All seven datasets, generated once: (data root, {dataset: (train nwb, test nwb)})."""
    from nlbkit.synth.generate import write_dataset

    root = tmp_path_factory.mktemp("tensors_parity_data")
    return root, {name: write_dataset(name, root, seed=0, scale="small") for name in DATASET_NAMES}


def _run_reference_parallel(ref_python, jobs: list[tuple]) -> None:
    """Run make_tensors_ref.py once per (out, args) job, all at the same time."""
    procs = [
        (out, subprocess.Popen([str(ref_python), str(REFERENCE_SCRIPT), str(out), *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for out, args in jobs
    ]
    for out, proc in procs:
        _, err = proc.communicate(timeout=1200)
        if proc.returncode != 0:
            raise AssertionError(f"{REFERENCE_SCRIPT.name} -> {out} failed:\n{err[-4000:]}")


@pytest.fixture(scope="session")
def reference(generated, ref_python, tmp_path_factory) -> dict[int, h5py.File]:
    """nlb_tools' five groups for every dataset, one HDF5 file per bin size."""
    _, files = generated
    out_dir = tmp_path_factory.mktemp("tensors_parity_ref")
    jobs = []
    for bin_ms in BIN_SIZES_MS:
        args = [a for name, (train, test) in files.items() for a in (name, bin_ms, train, test)]
        jobs.append((out_dir / f"ref_{bin_ms}.h5", args))
    _run_reference_parallel(ref_python, jobs)
    handles = {bin_ms: h5py.File(out, "r") for (out, _), bin_ms in zip(jobs, BIN_SIZES_MS, strict=True)}
    yield handles
    for handle in handles.values():
        handle.close()


def _reference_arrays(group: h5py.Group) -> dict:
    out = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):  # per-condition index arrays
            out[key] = [item[str(i)][()] for i in range(len(item))]
        else:
            out[key] = item[()]
    return out


def assert_same(ours: dict, theirs: dict, where: str) -> None:
    """Same keys; each array equal (exactly, or to round-off for the smoothed PSTH)."""
    assert sorted(ours) == sorted(theirs), f"{where}: keys differ"
    for key, expected in theirs.items():
        got = ours[key]
        label = f"{where}/{key}"
        if isinstance(expected, list):
            assert len(got) == len(expected), f"{label}: number of conditions"
            for i, (g, e) in enumerate(zip(got, expected, strict=True)):
                np.testing.assert_array_equal(np.asarray(g, dtype=np.int64), e, err_msg=f"{label}[{i}]")
            continue
        assert got.shape == expected.shape, f"{label}: shape {got.shape} != {expected.shape}"
        if key == "psth":
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{label}: NaN places")
            scale = max(1.0, float(np.nanmax(np.abs(expected))))
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12 * scale, err_msg=label)
        elif expected.dtype.kind == "f":
            np.testing.assert_array_equal(got.astype(np.float64), expected.astype(np.float64), err_msg=label)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=label)
            assert got.dtype.kind == expected.dtype.kind, f"{label}: dtype {got.dtype} vs {expected.dtype}"


def _build_each(dataset: str, bin_ms: int, root) -> tuple[dict, str | None]:
    """nlbkit's groups, and the error it raised if it stopped (the test file comes last)."""
    groups = {}
    try:
        for name, arrays in iter_groups(dataset, bin_ms, root, progress=False):
            groups[name] = arrays
    except NlbkitError as exc:
        return groups, str(exc)
    return groups, None


@pytest.mark.parametrize("bin_ms", BIN_SIZES_MS)
@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_every_group_equals_nlb_tools(generated, reference, dataset, bin_ms):
    root, _ = generated
    theirs = reference[bin_ms][f"{dataset}_{bin_ms}"]
    ours, error = _build_each(dataset, bin_ms, root)
    # where nlb_tools cannot build a file's groups, nlbkit must refuse that file too (not guess)
    if "error_train_file" in theirs.attrs:
        assert error is not None and "train" not in ours
    elif "error_test_file" in theirs.attrs:
        assert error is not None and "test" not in ours
    else:
        assert error is None, error
    assert sorted(ours) == sorted(theirs)
    for group in ours:
        assert_same(ours[group], _reference_arrays(theirs[group]), f"{dataset} {bin_ms} ms {group}")
    if "train" in ours:
        assert np.nansum(ours["train"]["train_spikes_heldout"]) > 0


def test_nlb_tools_accepts_every_generated_file(reference):
    """The generated files must be ones nlb_tools can process, or parity covers less than all."""
    errors = {f"{key}: {attr}": msg for ref in reference.values() for key, group in ref.items()
              for attr, msg in group.attrs.items() if attr.startswith("error_")}
    assert not errors, f"nlb_tools failed on generated files: {errors}"


def test_generated_data_exercise_unobserved_bins(reference):
    """Parity proves little unless some eval windows hold unobserved (NaN) bins."""
    ref = reference[5]
    nan_windows = sum(
        np.isnan(ref[f"{name}_5/{group}/eval_spikes_heldin"][()]).any()
        for name in DATASET_NAMES for group in ("val", "test") if group in ref[f"{name}_5"]
    )
    assert nan_windows >= 2


def test_prepare_writes_what_build_returns(generated):
    root, _ = generated
    built = build_tensors("dmfc_rsg", 20, root)
    path = prepare("dmfc_rsg", 20, root, progress=False)
    with h5py.File(path, "r") as f:
        assert f.attrs["dataset"] == "dmfc_rsg" and int(f.attrs["bin_ms"]) == 20
    loaded = load_tensors(path)
    assert sorted(loaded) == sorted(built)
    for group, arrays in built.items():
        assert sorted(loaded[group]) == sorted(arrays)
        for key, value in arrays.items():
            if value.dtype == object:
                assert all(np.array_equal(a, b) for a, b in zip(loaded[group][key], value, strict=True))
            else:
                assert loaded[group][key].dtype == value.dtype
                np.testing.assert_array_equal(loaded[group][key], value)


def test_compressed_file_holds_the_same_arrays(generated):
    root, _ = generated
    plain = load_tensors(prepare("mc_maze_small", 20, root, progress=False))
    path = prepare("mc_maze_small", 20, root, progress=False, compress=True)
    with h5py.File(path, "r") as f:
        assert f["trainval/train_spikes_heldin"].compression == "lzf"
    packed = load_tensors(path)
    for group, arrays in plain.items():
        for key, value in arrays.items():
            if value.dtype != object:
                np.testing.assert_array_equal(packed[group][key], value, err_msg=f"{group}/{key}")


@pytest.fixture(scope="session")
def reference_real(real_data, run_reference, tmp_path_factory):
    out = tmp_path_factory.mktemp("tensors_real_ref") / "ref.h5"
    args = [a for name, rel in REAL_TEST_FILES.items() for b in BIN_SIZES_MS
            for a in (name, b, "-", real_data / rel)]
    run_reference(REFERENCE_SCRIPT.name, out, *args)
    with h5py.File(out, "r") as f:
        yield {key: f[key]["test/eval_spikes_heldin"][()] for key in f}


@pytest.mark.parametrize("bin_ms", BIN_SIZES_MS)
@pytest.mark.parametrize("dataset", sorted(REAL_TEST_FILES))
def test_real_test_split_equals_nlb_tools(real_data, reference_real, dataset, bin_ms):
    ours = build_eval_input(real_data / REAL_TEST_FILES[dataset], dataset, bin_ms)
    assert list(ours) == ["eval_spikes_heldin"]
    expected = reference_real[f"{dataset}_{bin_ms}"]
    got = ours["eval_spikes_heldin"]
    assert got.shape == expected.shape == (100, 700 // bin_ms, got.shape[2])
    assert got.shape[2] == get_spec(dataset).typical_heldin
    np.testing.assert_array_equal(got, expected)
