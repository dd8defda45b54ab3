"""From the archive to tensors: generated NWB files served by a local DANDI-API server, fetched
with a connection cut mid-file, then turned into tensors by `prepare`."""

from __future__ import annotations

import os

os.environ.setdefault("DANDI_NO_ET", "1")
os.environ["DANDI_CACHE"] = "ignore"  # before the dandi client is imported (see test_fetch.py)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from dandi_server import running_server  # noqa: E402

from nlbkit.fetch.archive import fetch  # noqa: E402
from nlbkit.fetch.download import RetryPolicy  # noqa: E402
from nlbkit.nlb.datasets import get_spec  # noqa: E402

DATASET = "mc_maze_small"


@pytest.fixture
def server(monkeypatch):
    yield from running_server(monkeypatch)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from nlbkit.synth.generate import write_dataset

    root = tmp_path_factory.mktemp("generated")
    write_dataset(DATASET, root, seed=0, scale="small")
    return root


def assert_same(actual: np.ndarray, expected: np.ndarray, name: str) -> None:
    """Equal arrays, NaN where NaN; object arrays (index lists per condition) element by element."""
    assert actual.shape == expected.shape, name
    if expected.dtype == object:
        for a, e in zip(actual, expected, strict=True):
            np.testing.assert_array_equal(a, e, err_msg=name)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=name)


@pytest.mark.slow
def test_fetched_generated_files_go_through_prepare(server, generated, tmp_path):
    from nlbkit.prepare.tensors import build_tensors, load_tensors, prepare

    spec = get_spec(DATASET)
    served = {}
    for name in (spec.train_asset_name, spec.test_asset_name):
        content = (generated / DATASET / name).read_bytes()
        served[name] = server.add_asset(spec.dandiset_id, spec.dandiset_version, f"{spec.asset_dir}/{name}",
                                        content)
    train = served[spec.train_asset_name]
    server.drop_after[train.asset_id] = [train.size // 2]

    outcomes = fetch([DATASET], tmp_path, instance=server.api_url, progress=False,
                     policy=RetryPolicy(attempts=3, backoff_s=0.0, timeout_s=30.0))
    assert [o.action for o in outcomes] == ["downloaded", "downloaded"]
    assert server.requests_to(f"/blobs/{train.asset_id}")[-1].headers["Range"].startswith("bytes=")
    for name in served:
        assert (tmp_path / DATASET / name).read_bytes() == (generated / DATASET / name).read_bytes()

    tensors = load_tensors(prepare(DATASET, 5, tmp_path))
    reference = build_tensors(DATASET, 5, generated)
    assert set(tensors) == set(reference)
    for group, arrays in reference.items():
        assert set(tensors[group]) == set(arrays)
        for key, array in arrays.items():
            assert_same(tensors[group][key], array, f"{group}/{key}")
    assert tensors["train"]["train_spikes_heldin"].shape[0] > 0
