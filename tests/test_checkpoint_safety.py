"""Checkpoints load with weights_only=True: one carrying pickled code is refused and never runs."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from nlbkit.errors import NlbkitError
from nlbkit.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from nlbkit.train.run import TrainRequest, train_run
from tests.training_fixtures import tiny_config, write_prepared


class CreatesAFile:
    """Pickles as a call to open(path, 'w'): unpickling it would create `path`."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil(path, side_effect) -> None:
    torch.save({"epoch": 1, "model": {}, "payload": CreatesAFile(side_effect)}, path)
    assert not side_effect.exists()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    tensors = write_prepared(root / "data" / "mc_maze_small" / "tensors_5ms.h5")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config("train.epochs=2"),
            from_tensors=tensors,
            run_root=root / "runs",
            progress=False,
        ),
    )
    return tensors, out.run


def test_a_pickled_callable_is_refused_without_running(tmp_path):
    path, side_effect = tmp_path / "evil.pt", tmp_path / "pwned"
    _evil(path, side_effect)
    with pytest.raises(NlbkitError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "(io.open)" in message
    assert not side_effect.exists()


def test_cli_refuses_a_tampered_run_in_one_line(run, tmp_path, nlbkit_cli):
    tensors, good = run
    tampered = tmp_path / "run"
    shutil.copytree(good.path, tampered)
    side_effect = tmp_path / "pwned"
    _evil(tampered / "checkpoints" / "best.pt", side_effect)
    proc = nlbkit_cli("predict", tampered, "--input", tensors, "--output", tmp_path / "p.h5", check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and str(tampered / "checkpoints" / "best.pt") in lines[0]
    assert not side_effect.exists() and not (tmp_path / "p.h5").exists()


def test_resume_refuses_a_tampered_last_checkpoint(run, tmp_path):
    tensors, good = run
    root = tmp_path / "runs"
    shutil.copytree(good.path, root / good.path.name)
    side_effect = tmp_path / "pwned"
    _evil(root / good.path.name / "checkpoints" / "last.pt", side_effect)
    with pytest.raises(NlbkitError, match="last.pt: refusing to load"):
        train_run(
            TrainRequest(
                "mc_maze_small",
                tiny_config("train.epochs=3"),
                from_tensors=tensors,
                run_root=root,
                resume=True,
                progress=False,
            ),
        )
    assert not side_effect.exists()


def test_saved_checkpoints_hold_only_what_weights_only_accepts(run):
    _, good = run
    for path in (good.last_ckpt, good.best_ckpt):
        state = torch.load(path, weights_only=True)
        assert {"model", "optimizer", "scheduler", "rng"} <= set(state)


def test_random_states_survive_a_weights_only_round_trip(tmp_path):
    shuffle = torch.Generator().manual_seed(3)
    random.seed(1), np.random.seed(2), torch.manual_seed(4)
    np.random.normal()  # leaves a cached Gaussian in numpy's state
    save_checkpoint({"rng": rng_state(shuffle)}, tmp_path / "s.pt")

    def draws():
        picked = int(torch.randint(9, (1,), generator=shuffle))
        return random.random(), np.random.normal(), float(torch.rand(1)), picked

    first = [draws() for _ in range(3)]
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    shuffle.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "s.pt", needs=("rng",))["rng"], shuffle)
    assert [draws() for _ in range(3)] == first


def test_missing_and_corrupt_checkpoints_are_one_line(tmp_path):
    with pytest.raises(NlbkitError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NlbkitError, match=r"junk.pt: not a readable checkpoint") as caught:
        load_checkpoint(tmp_path / "junk.pt")
    assert "\n" not in str(caught.value)
