"""What training tells the user: early stop, Ctrl-C, NaN loss, plain log lines, the time estimate."""

import io

import pytest
from click.testing import CliRunner

from nlbkit.cli import main
from nlbkit.report.figures import chosen_and_stop_epochs
from nlbkit.train.loop import Trainer
from nlbkit.train.progress import EpochProgress, estimate_line, plain_every
from nlbkit.train.run import TrainRequest, train_run
from tests.training_fixtures import tiny_config, write_prepared

TINY = ["--set", "model.hidden=8", "--set", "model.ff_dim=16", "--set", "train.batch_size=8",
        "--set", "model.prediction_samples=2", "--set", "train.val_every=1",
        "--set", "train.compare_smoothing=false", "--device", "cpu"]


@pytest.fixture
def tensors(tmp_path):
    return write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")


def test_early_stop_is_announced(tensors, tmp_path, monkeypatch, capsys):
    scores = iter([0.1, 0.3, 0.2, 0.1, 0.05, 0.0, 0.0, 0.0])
    monkeypatch.setattr(Trainer, "_validate", lambda self, kl_weight: (1.0, next(scores)))
    cfg = tiny_config("train.epochs=8", "train.kl_ramp_epochs=1", "train.patience=3")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=True,
        ),
    )
    note = "stopped at epoch 5: no better validation co-bps for 3 epochs; best at epoch 2"
    assert out.epochs == 5 and out.stop_note == note
    assert note in capsys.readouterr().err


def test_chosen_checkpoint_and_stop_come_from_the_log():
    rows = [{"epoch": str(e), "best_co_bps": b} for e, b in ((1, ""), (2, "0.3"), (3, "0.3"), (4, "0.3"))]
    assert chosen_and_stop_epochs(rows, 10) == (2, 4)
    assert chosen_and_stop_epochs(rows, 4) == (2, None)
    no_val = [{"epoch": "1", "best_co_bps": ""}, {"epoch": "2", "best_co_bps": ""}]
    assert chosen_and_stop_epochs(no_val, 2) == (2, None)


def test_a_log_gets_plain_lines_not_a_bar():
    stream = io.StringIO()
    progress = EpochProgress(total=40, device="cpu", stream=stream, tty=False)
    for epoch in range(1, 41):
        progress.update(epoch, 0.5, 0.1 if epoch % 2 else float("nan"))  # validation every 2nd epoch
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and "nan" not in stream.getvalue()
    assert plain_every(40) == 2
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == [
        f"epoch {e}/40" for e in (1, *range(2, 41, 2))
    ]
    assert sum(line.startswith("estimated training time") for line in lines) == 1


def test_without_validation_trials_the_lines_show_the_loss_and_promise_no_early_stop():
    stream = io.StringIO()
    progress = EpochProgress(total=6, device="cpu", stream=stream, tty=False, validates=False)
    for epoch in range(1, 7):
        progress.update(epoch, 0.5, float("nan"))
    progress.close()
    text = stream.getvalue()
    assert "epoch 6/6: loss 0.5000 (" in text
    assert "val co-bps" not in text and "nan" not in text and "early stopping" not in text
    assert "early stopping may end it sooner" in estimate_line(1.0, 3, 6, "cpu")


def test_a_long_cpu_estimate_points_at_cuda_and_the_measured_configuration():
    long = estimate_line(90.0, 3, 2000, "cpu")
    assert long.startswith("estimated training time: 49.9 h more for epochs 4-2000")
    assert "--device cuda" in long and "--preset cpu" in long and "docs/results.md" in long
    assert "--device cuda" not in estimate_line(90.0, 3, 2000, "cuda")
    assert "--device cuda" not in estimate_line(0.5, 3, 300, "cpu")


def _interrupt_at(epoch: int, monkeypatch) -> None:
    honest = Trainer._train_epoch

    def train_epoch(self, kl_weight):
        if self.epoch + 1 == epoch:
            raise KeyboardInterrupt
        return honest(self, kl_weight)

    monkeypatch.setattr(Trainer, "_train_epoch", train_epoch)


def test_ctrl_c_keeps_the_checkpoint_and_gives_the_resume_command(tensors, tmp_path, monkeypatch):
    _interrupt_at(3, monkeypatch)
    args = ["train", "mc_maze_small", "--from-tensors", str(tensors), "--run-dir", str(tmp_path / "r"),
            "--epochs", "5", "--quiet", *TINY]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    err = result.stderr.strip()
    assert "Aborted" not in result.output and len(err.splitlines()) == 1
    assert "interrupted during epoch 3 of 5" in err and "last.pt (epoch 2) is kept" in err
    resume = err.split("continue with: ")[1]
    assert resume.startswith("nlbkit train mc_maze_small --from-tensors") and resume.endswith("--resume")
    monkeypatch.undo()
    again = CliRunner().invoke(main, resume.split()[1:])
    assert again.exit_code == 0, again.output
    assert "co-bps" in again.stdout


def test_ctrl_c_before_any_checkpoint_says_start_again(tensors, tmp_path, monkeypatch):
    _interrupt_at(1, monkeypatch)
    args = ["train", "mc_maze_small", "--from-tensors", str(tensors), "--run-dir", str(tmp_path / "r"),
            "--epochs", "2", "--quiet", *TINY]
    err = CliRunner().invoke(main, args).stderr
    assert "before any checkpoint" in err and "start again with: nlbkit train" in err
    assert err.strip().endswith("--overwrite") and "--resume" not in err


def test_nan_loss_suggests_a_lower_learning_rate_not_resume(tensors, tmp_path, monkeypatch):
    def poisoned(self, kl_weight):
        from nlbkit.train.loop import TrainingDiverged

        raise TrainingDiverged(self._diverged_message(float("nan")), 0)

    monkeypatch.setattr(Trainer, "_train_epoch", poisoned)
    args = ["train", "mc_maze_small", "--from-tensors", str(tensors), "--run-dir", str(tmp_path / "r"),
            "--epochs", "2", "--quiet", "--set", "train.lr=0.01", *TINY]
    err = CliRunner().invoke(main, args).stderr.strip()
    assert len(err.splitlines()) == 1 and "no checkpoint" in err
    assert "--resume" not in err
    assert err.endswith("--overwrite --set train.lr=0.001")


@pytest.mark.slow  # a fresh interpreter importing torch: ~25 s on the shared machine
def test_a_real_sigint_during_training(tensors, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    runs = tmp_path / "r"
    args = [sys.executable, "-m", "nlbkit", "train", "mc_maze_small", "--from-tensors", str(tensors),
            "--run-dir", str(runs), "--epochs", "100000", *TINY]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = runs / "mc_maze_small_5ms_val_langevin" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    line = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(line) == 1 and "is kept; continue with: nlbkit train mc_maze_small" in line[0], err[-2000:]
    assert line[0].endswith("--resume") and "Traceback" not in err


def test_the_estimate_says_how_the_epochs_ran():
    line = estimate_line(12.0, 3, 2000, "cpu", setting="bfloat16 autocast, 2 threads")
    assert "(12.00 s an epoch on cpu, bfloat16 autocast, 2 threads" in line


def test_a_run_says_its_precision_and_threads(tmp_path):
    import torch

    from nlbkit.nlb.tensor_file import load_phase_data
    from nlbkit.runs import RunDir
    from nlbkit.train.loop import Trainer
    from nlbkit.train.run import build_langevin
    from tests.training_fixtures import tiny_config, write_prepared

    cfg = tiny_config("train.threads=1")
    data = load_phase_data(write_prepared(tmp_path / "t.h5"), "val", 0.2, 0)
    net = build_langevin(cfg, data.n_heldin, data.n_heldout, data.n_forward)
    trainer = Trainer(net, cfg.train, RunDir(tmp_path / "run"), data.fit, None, torch.device("cpu"))
    torch.set_num_threads(1)
    assert trainer.setting() == "float32, 1 thread"


def test_resume_of_a_finished_run_says_there_is_nothing_to_resume(tensors, tmp_path):
    args = ["train", "mc_maze_small", "--from-tensors", str(tensors), "--run-dir", str(tmp_path / "r"),
            "--epochs", "2", "--quiet", *TINY]
    assert CliRunner().invoke(main, args).exit_code == 0
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "holds a finished run" in again.stderr and "--resume" not in again.stderr
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 1 and len(resumed.stderr.strip().splitlines()) == 1
    assert "finished (rates and scores written); nothing to resume" in resumed.stderr
    assert "--overwrite" in resumed.stderr and "--tag NAME" in resumed.stderr


def test_resume_without_a_checkpoint_says_start_again(tensors, tmp_path, monkeypatch):
    _interrupt_at(1, monkeypatch)
    args = ["train", "mc_maze_small", "--from-tensors", str(tensors), "--run-dir", str(tmp_path / "r"),
            "--epochs", "2", "--quiet", *TINY]
    CliRunner().invoke(main, args)
    monkeypatch.undo()
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 1 and "no checkpoint to resume; pass --overwrite" in resumed.stderr
