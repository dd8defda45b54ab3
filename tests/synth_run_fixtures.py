"""Generated mc_maze_small tensors (`nlbkit synth --scale small`, `prepare`) and tiny runs on them."""

from __future__ import annotations

from pathlib import Path

from nlbkit.train.run import TrainOutcome, TrainRequest, train_run
from tests.training_fixtures import tiny_config

DATASET = "mc_maze_small"


def synth_tensors(data_dir: Path) -> Path:
    """Generate mc_maze_small at small scale under `data_dir` and build its 5 ms tensors."""
    from nlbkit.prepare.tensors import prepare
    from nlbkit.synth.generate import write_dataset

    write_dataset(DATASET, data_dir, seed=0, scale="small")
    return prepare(DATASET, 5, data_dir, progress=False)


def tiny_run(
    tensors: Path, run_root: Path, tag: str | None, *overrides: str, model: str = "langevin"
) -> TrainOutcome:
    """A LangevinFlow (or smoothing) run of a few epochs on `tensors`."""
    return train_run(
        TrainRequest(
            DATASET,
            tiny_config(*overrides),
            from_tensors=tensors,
            run_root=run_root,
            tag=tag,
            model=model,
            progress=False,
        ),
    )
