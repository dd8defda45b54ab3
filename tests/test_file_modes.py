"""Files nlbkit writes get the mode a plain open() would give (0o666 less the umask), atomically."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from nlbkit.nlb.h5io import write_h5_groups
from nlbkit.nlb.keys import RATE_KEYS
from nlbkit.paths import atomic_path, current_umask, write_json
from nlbkit.runs import write_rates

UMASK_MODES = [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)]


@pytest.fixture(params=UMASK_MODES, ids=lambda p: f"umask{p[0]:03o}")
def umask(request):
    mask, expected = request.param
    old = os.umask(mask)
    try:
        yield expected
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_umask_is_read_without_changing_it(umask):
    before = os.umask(0o022)
    os.umask(before)
    assert current_umask() == before
    assert os.umask(before) == before


def test_plain_file_gets_open_mode(tmp_path, umask):
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x\n")
    write_json(tmp_path / "run.json", {"a": 1})
    reference = tmp_path / "plain.txt"
    reference.write_text("x\n")
    assert _mode(reference) == umask
    assert _mode(tmp_path / "a.txt") == umask and _mode(tmp_path / "run.json") == umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "plain.txt", "run.json"]


def test_hdf5_written_through_the_package_gets_open_mode(tmp_path, umask):
    rates = {key: np.ones((2, 3, 4), np.float32) for key in RATE_KEYS if key.startswith("eval")}
    write_rates(tmp_path / "rates.h5", "mc_maze_small", 5, "val", rates)
    write_h5_groups(tmp_path / "g.h5", {"g": {"x": np.arange(3)}})
    assert _mode(tmp_path / "rates.h5") == umask and _mode(tmp_path / "g.h5") == umask


def test_replacing_an_old_file_takes_the_umask_not_its_mode(tmp_path, umask):
    path = tmp_path / "old.txt"
    path.write_text("old\n")
    path.chmod(0o400)
    with atomic_path(path) as tmp:
        tmp.write_text("new\n")
    assert path.read_text() == "new\n" and _mode(path) == umask


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_synth_files_from_the_cli_follow_the_umask(tmp_path):
    script = ("import os, sys; os.umask(0o022); from nlbkit.cli import main; "
              "sys.argv = ['nlbkit', 'synth', 'mc_maze_small', '--data-dir', sys.argv[1]]; main()")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, capture_output=True)
    written = [p for p in (tmp_path / "mc_maze_small").iterdir() if p.is_file()]
    assert written and {p.name: _mode(p) for p in written} == {p.name: 0o644 for p in written}
