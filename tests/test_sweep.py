import csv
import json

import pytest
import torch

from nlbkit.config import TrainConfig, build_config, to_dict
from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import DATASET_NAMES
from nlbkit.runs import RunDir
from nlbkit.sweep.run import (
    SweepOptions,
    base_config,
    make_scheduler,
    restore_checkpoint,
    run_sweep,
    trial_config,
)
from nlbkit.sweep.space import load_space, param_space, pbt_mutations
from tests.synth_run_fixtures import synth_tensors, tiny_run
from tests.training_fixtures import write_prepared

TINY = (
    "model.ff_dim=16",
    "model.prediction_samples=2",
    "train.batch_size=8",
    "train.val_samples=2",
    "train.kl_ramp_epochs=2",
    "train.device=cpu",
    "smoothing.max_iter=50",
)
TINY_SPACE = {
    "fixed": {"train.val_every": 1, "train.compare_smoothing": False},
    "space": {
        "model.hidden": {"choice": [8, 16]},
        "model.channels": {"choice": [2, 4]},
        "train.lr": {"loguniform": [1e-3, 1e-2]},
        "model.dropout": {"uniform": [0.0, 0.2]},
    },
    "pbt_mutations": ["train.lr", "model.dropout"],
    "asha": {"grace_period": 2, "reduction_factor": 2},
    "pbt": {"perturbation_interval": 2},
}


def _space_file(tmp_path, content) -> str:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(content))
    return str(path)


@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_every_dataset_has_a_valid_default_space(dataset):
    space = load_space(dataset)
    keys = set(space.keys())
    # latent size, oscillator channels, coupling width, damping, KL weight, dropouts, learning rate
    assert {"model.hidden", "model.channels", "model.kernel_taps", "model.damping", "train.kl_max",
            "model.dropout", "model.cd_rate", "train.lr"} <= keys
    nested = param_space(space)
    assert set(nested) == {"model", "train"} and "hidden" in nested["model"]
    assert set(pbt_mutations(space)["train"]) <= {"lr", "kl_max", "weight_decay", "grad_clip"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"space": {}}, "non-empty 'space'"),
        ({"space": {"train.lr": {"normal": [0, 1]}}}, "unknown distribution 'normal'"),
        ({"space": {"train.lr": {"uniform": [1, 0]}}}, "low < high"),
        ({"space": {"train.lrate": {"uniform": [0, 1]}}}, "unknown config key 'train.lrate'"),
        ({"space": {"model.hidden": {"choice": [8.5]}}}, "integer"),
        ({"space": {"model.hidden": {"choice": [8]}}, "pbt_mutations": ["model.hidden"]}, "PBT cannot"),
        (
            {"space": {"train.lr": {"uniform": [0.1, 1]}}, "pbt_mutations": ["model.dropout"]},
            "not in 'space'",
        ),
    ],
)
def test_bad_space_files_are_refused_with_the_file_named(tmp_path, content, message):
    path = _space_file(tmp_path, content)
    with pytest.raises(NlbkitError, match=message) as info:
        load_space("mc_maze_small", path)
    assert str(tmp_path) in str(info.value)


def test_base_config_layers_fixed_values_then_set_then_max_epochs(tmp_path):
    space = load_space("mc_maze_small", _space_file(tmp_path, TINY_SPACE))
    opts = SweepOptions("mc_maze_small", overrides=("train.val_every=3",), max_epochs=7)
    cfg = base_config(opts, space)
    assert cfg.train.val_every == 3 and cfg.train.epochs == 7 and cfg.train.compare_smoothing is False
    trial = trial_config(to_dict(cfg), {"model": {"hidden": 16}, "train": {"lr": 0.005}})
    assert trial.model.hidden == 16 and trial.train.lr == 0.005 and trial.train.epochs == 7


def test_a_sweep_holds_back_validation_trials_where_the_dataset_trains_on_every_trial(tmp_path):
    """Defaults that train on every trial (val_fraction 0) leave a sweep nothing to rank on."""
    space = load_space("mc_maze_small", _space_file(tmp_path, TINY_SPACE))
    every = tmp_path / "every_trial.json"
    every.write_text(json.dumps({"train": {"val_fraction": 0}}))
    assert build_config("mc_maze_small", every).train.val_fraction == 0
    cfg = base_config(SweepOptions("mc_maze_small", config_file=every), space)
    assert cfg.train.val_fraction == TrainConfig.val_fraction > 0
    kept = base_config(SweepOptions("mc_maze_small", overrides=("train.val_fraction=0.3",)), space)
    assert kept.train.val_fraction == 0.3
    with pytest.raises(NlbkitError, match="val_fraction must be above 0"):
        base_config(SweepOptions("mc_maze_small", overrides=("train.val_fraction=0",)), space)


def test_a_local_sweep_asking_for_more_than_the_machine_has_is_refused(tmp_path):
    tensors = write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")
    with pytest.raises(NlbkitError, match="exceeds"):
        run_sweep(SweepOptions("mc_maze_small", cpus=1, cpus_per_trial=2, from_tensors=tensors,
                               run_root=tmp_path))
    if not torch.cuda.is_available():
        with pytest.raises(NlbkitError, match="GPU"):
            run_sweep(SweepOptions("mc_maze_small", gpus_per_trial=1, from_tensors=tensors,
                                   run_root=tmp_path))
    assert not (tmp_path / "mc_maze_small_5ms_sweep").exists()


def test_restore_checkpoint_gives_a_copied_optimiser_the_trials_learning_rate(tmp_path):
    tensors = write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")
    donor = tiny_run(tensors, tmp_path / "runs", "donor", "train.lr=0.002").run
    folder = tmp_path / "ckpt"
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.csv", "config.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes((donor.path / name).read_bytes())
    target = RunDir(tmp_path / "runs" / "exploiter")
    cfg = build_config("mc_maze_small", overrides=["train.lr=0.0005"])
    restore_checkpoint(folder, target, cfg)
    state = torch.load(target.last_ckpt, weights_only=True)
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [0.0005]
    assert target.best_ckpt.exists() and target.metrics_csv.read_text() == donor.metrics_csv.read_text()
    # Same learning rate (a plain resume): the saved optimiser, with its schedule, is left alone.
    same = RunDir(tmp_path / "runs" / "resumed")
    restore_checkpoint(folder, same, build_config("mc_maze_small", overrides=["train.lr=0.002"]))
    assert same.last_ckpt.read_bytes() == donor.last_ckpt.read_bytes()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synth_tensors(tmp_path_factory.mktemp("sweep") / "data")


@pytest.mark.slow
def test_tiny_asha_sweep_on_a_local_ray_instance_and_its_resume(synth, tmp_path):
    opts = SweepOptions(
        "mc_maze_small", samples=2, scheduler="asha", cpus=2, from_tensors=synth, run_root=tmp_path,
        space_file=_space_file(tmp_path, TINY_SPACE), overrides=TINY, max_epochs=3, verbose=0,
    )
    result = run_sweep(opts)
    assert result.path == tmp_path / "mc_maze_small_5ms_sweep"
    assert len(result.rows) == 2 and {r["status"] for r in result.rows} <= {"finished", "stopped"}
    assert result.rows[0]["best_val_co_bps"] >= result.rows[1]["best_val_co_bps"]
    for row in result.rows:
        run = RunDir(next((result.path / "trials").glob(f"*_{row['trial']}")))
        cfg = run.config()
        assert cfg.model.hidden == row["model.hidden"] and cfg.train.lr == pytest.approx(row["train.lr"])
        with open(run.metrics_csv, newline="") as handle:
            assert 1 <= len(list(csv.DictReader(handle))) <= 3
        if row["status"] == "finished":
            assert run.rates_h5.exists() and run.scores()["co-bps"] == pytest.approx(row["eval_co_bps"])
    finished = [r for r in result.rows if r["status"] == "finished"]
    assert finished, "at least the first trial at each ASHA rung goes on"
    best = build_config("mc_maze_small", result.best_config)
    assert best.model.hidden == result.rows[0]["model.hidden"]
    assert best.train.compare_smoothing is True and best.train.val_every == 5  # search-only values undone
    assert (result.path / "results.csv").exists()
    again = run_sweep(opts)  # a finished sweep resumes to the same trials, none added
    assert sorted(r["trial"] for r in again.rows) == sorted(r["trial"] for r in result.rows)
    assert len(list((result.path / "trials").iterdir())) == 2
    # The README's next step: train the winner; it gets its own run directory (tag 'sweep').
    from click.testing import CliRunner

    from nlbkit.cli import main

    trained = CliRunner().invoke(main, ["train", "mc_maze_small", "--config", str(result.best_config),
                                        "--from-tensors", str(synth), "--run-dir", str(tmp_path), "--quiet"])
    assert trained.exit_code == 0, trained.output
    assert RunDir(tmp_path / "mc_maze_small_5ms_val_langevin_sweep").scores_json.exists()


class _SavingController:
    """The state Ray Tune's controller keeps for one trial, with the controller's own pause and stop
    methods: the trial reached the generation first and the checkpoint of its pause is still saving."""

    def __init__(self, trial):
        from types import SimpleNamespace

        from ray.tune.execution.tune_controller import TuneController

        actor = object()
        self._cached_trial_decisions = {trial.trial_id: "PAUSE"}
        self._trial_to_actor, self._actor_to_trial = {trial: actor}, {actor: trial}
        self._actor_manager = SimpleNamespace(clear_actor_task_futures=lambda tracked_actor: None)
        for name in ("_schedule_trial_stop", "_schedule_trial_pause", "pause_trial"):
            setattr(self, name, getattr(TuneController, name).__get__(self))

    def _set_trial_status(self, trial, status):
        trial.set_status(status)

    def _mark_trial_to_checkpoint(self, trial):
        pass

    def _maybe_cache_trial_actor(self, trial):
        return False

    def _remove_actor(self, tracked_actor):
        pass


def test_a_trial_pbt_pauses_while_it_saves_has_no_stop_pending():
    """PBT's exploit pauses a trial whose own pause is still saving: Ray Tune's pause leaves a STOP
    pending that the restarted trial's next save would carry out; through SynchronousPBT's
    controller nothing stays pending and the trial is paused."""
    from ray.tune.experiment import Trial

    from nlbkit.sweep.pbt import PausingController, SynchronousPBT

    outcomes = []
    for controller in (lambda c: c, PausingController):
        trial = Trial("run_trial", config={}, trial_id="t_00000", stub=True)
        trial.set_status(Trial.RUNNING)
        trial.temporary_state.saving_to = object()  # the pause's save, not resolved yet
        state = _SavingController(trial)
        controller(state).pause_trial(trial, should_checkpoint=False)
        outcomes.append((trial.status, dict(state._cached_trial_decisions)))
    assert outcomes[1] == (Trial.PAUSED, {})
    # Ray's own pause leaves a decision pending (2.60: STOP), which is what the controller clears.
    assert outcomes[0][0] == Trial.PAUSED and outcomes[0][1]
    scheduler = make_scheduler("pbt", load_space("mc_maze_small", None), 10)
    assert isinstance(scheduler, SynchronousPBT) and scheduler._synch


@pytest.mark.slow
def test_tiny_pbt_sweep_runs_through_checkpoints(synth, tmp_path):
    opts = SweepOptions(
        "mc_maze_small", samples=2, scheduler="pbt", cpus=2, from_tensors=synth, run_root=tmp_path,
        name="pbt", space_file=_space_file(tmp_path, TINY_SPACE), overrides=TINY, max_epochs=4,
        verbose=0,
    )
    result = run_sweep(opts)
    assert len(result.rows) == 2 and all(r["status"] == "finished" for r in result.rows)
    learning_rates = []
    for row in result.rows:
        run = RunDir(next((result.path / "trials").glob(f"*_{row['trial']}")))
        assert run.rates_h5.exists() and run.scores()["co-bps"] == pytest.approx(row["eval_co_bps"])
        with open(run.metrics_csv, newline="") as handle:
            log = list(csv.DictReader(handle))
        assert [int(r["epoch"]) for r in log] == [1, 2, 3, 4]
        learning_rates.append([float(r["lr"]) for r in log])
    # Synchronous PBT at epoch 2: the worse trial continued from the better one's checkpoint (its
    # log's first two epochs) with a perturbed learning rate (the last two).
    exploited = [lrs for lrs in learning_rates if lrs[1] != lrs[2]]
    assert len(exploited) == 1 and exploited[0][:2] in [other[:2] for other in learning_rates if other is not
                                                         exploited[0]]
    assert result.best_config is not None and result.best_config.exists()
