"""`prepare` and `submit` killed (SIGKILL) while writing, or meeting a full disk: no file under its
final name is ever partial, an earlier output survives, and a rerun completes.

The kill is real: a child process writes with one write function wrapped to SIGKILL itself part-way
through the file. The full disk is simulated as the fetch tests do: a write raises ENOSPC.
"""

from __future__ import annotations

import errno
import hashlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from eval_layouts import random_rates, write_run

from nlbkit.cli import main
from nlbkit.prepare.tensors import prepare
from nlbkit.synth.generate import write_dataset

ROOT = Path(__file__).resolve().parents[1]
DATASET = "mc_maze_small"
FULL = "no space left on the device; the previous file is unchanged"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def killed_child(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a child Python; it is expected to die by SIGKILL."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def nwb_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nwb")
    write_dataset(DATASET, root, seed=0, scale="small")
    return root


# --- prepare -------------------------------------------------------------------------------------------

PREPARE_KILLED_AFTER_ONE_GROUP = """
    import os, signal
    import nlbkit.prepare.tensors as tensors
    real = tensors._write_group
    def write_then_die(group, arrays, compress):
        real(group, arrays, compress)
        os.kill(os.getpid(), signal.SIGKILL)  # one group on disk, the others not
    tensors._write_group = write_then_die
    tensors.prepare({dataset!r}, 5, {data!r}, progress=False)
"""


def test_prepare_killed_leaves_no_partial_file_and_reruns(nwb_dir):
    final = nwb_dir / DATASET / "tensors_5ms.h5"
    killed_child(PREPARE_KILLED_AFTER_ONE_GROUP.format(dataset=DATASET, data=str(nwb_dir)))
    assert not final.exists()
    assert [p.name for p in final.parent.glob(".tensors_5ms.h5.*.part")]  # the killed writer's
    prepare(DATASET, 5, nwb_dir, progress=False)
    with h5py.File(final, "r") as h5:
        assert {"train", "val", "test", "val_target"} <= set(h5)
    assert list(final.parent.glob(".tensors_5ms.h5.*.part")) == []  # removed by the rerun
    before = digest(final)
    killed_child(PREPARE_KILLED_AFTER_ONE_GROUP.format(dataset=DATASET, data=str(nwb_dir)))
    assert digest(final) == before  # the complete file from before the kill, untouched


def test_prepare_on_a_full_disk_keeps_the_old_file(nwb_dir, monkeypatch):
    import nlbkit.prepare.tensors as tensors

    final = nwb_dir / DATASET / "tensors_20ms.h5"
    prepare(DATASET, 20, nwb_dir, progress=False)
    before = digest(final)
    real = tensors._write_group
    calls = {"n": 0}

    def fill_up(group, arrays, compress):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(group, arrays, compress)

    monkeypatch.setattr(tensors, "_write_group", fill_up)
    args = ["prepare", DATASET, "--bin-ms", "20", "--data-dir", str(nwb_dir), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {final}: {FULL}"
    assert digest(final) == before
    assert list(final.parent.glob(".tensors_20ms.h5.*.part")) == []


# --- submit --------------------------------------------------------------------------------------------

@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(3)
    return [write_run(tmp_path / "runs", DATASET, b, "val", "langevin", random_rates(DATASET, b, rng))
            for b in (5, 20)]


SUBMIT_KILLED_MID_FILE = """
    import os, signal, h5py
    real = h5py.Group.create_dataset
    count = [0]
    def create_then_die(self, *args, **kwargs):
        count[0] += 1
        if count[0] == 4:
            os.kill(os.getpid(), signal.SIGKILL)  # three arrays written, the rest not
        return real(self, *args, **kwargs)
    h5py.Group.create_dataset = create_then_die
    from nlbkit.submit.evalai import submit_runs
    submit_runs({runs!r}, {output!r})
"""


@pytest.mark.slow  # two fresh interpreters importing the scoring stack: ~15 s on the shared machine
def test_submit_killed_leaves_no_partial_file_and_reruns(runs, tmp_path):
    output = tmp_path / "sub.h5"
    code = SUBMIT_KILLED_MID_FILE.format(runs=[str(r) for r in runs], output=str(output))
    killed_child(code)
    assert not output.exists()
    assert list(tmp_path.glob(".sub.h5.*.part"))
    result = CliRunner().invoke(main, ["submit", *map(str, runs), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert list(tmp_path.glob(".sub.h5.*.part")) == []
    with h5py.File(output, "r") as h5:
        assert set(h5) == {DATASET, f"{DATASET}_20"} and len(h5[DATASET]) == 6
    before = digest(output)
    killed_child(code)
    assert digest(output) == before


def test_submit_on_a_full_disk_keeps_the_old_file(runs, tmp_path, monkeypatch):
    output = tmp_path / "sub.h5"
    assert CliRunner().invoke(main, ["submit", *map(str, runs), "-o", str(output)]).exit_code == 0
    before = digest(output)
    real = h5py.Group.create_dataset
    count = {"n": 0}

    def fill_up(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fill_up)
    result = CliRunner().invoke(main, ["submit", *map(str, runs), "-o", str(output)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {output}: {FULL}"
    assert digest(output) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_only_dead_writers_temporaries_are_removed(tmp_path):
    from nlbkit.paths import _part_prefix, remove_stale_parts

    final = tmp_path / "out.h5"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
        dead_pid = int(dead.stdout)
        parts = {pid: tmp_path / f"{_part_prefix(final)}{pid}-x.part" for pid in (alive.pid, dead_pid)}
        other_host = tmp_path / f".out.h5.elsewhere-{dead_pid}-x.part"
        for path in [*parts.values(), other_host]:
            path.write_bytes(b"partial")
        assert remove_stale_parts(final) == [parts[dead_pid]]
        assert parts[alive.pid].exists() and other_host.exists()
    finally:
        alive.kill()
        alive.wait()
