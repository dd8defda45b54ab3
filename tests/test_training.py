import json

import h5py
import numpy as np
import pytest
import torch

from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import get_spec
from nlbkit.nlb.keys import RATE_KEYS
from nlbkit.nlb.tensor_file import TrialSet
from nlbkit.runs import read_run
from nlbkit.submit.evalai import merge_runs
from nlbkit.train.loop import add_heldin_of, ramp
from nlbkit.train.run import TrainRequest, build_langevin, predict_file, train_run
from tests.training_fixtures import N_IN, N_OUT, F, T, tiny_config, write_prepared, write_train_only


@pytest.fixture
def tensors(tmp_path):
    return write_prepared(tmp_path / "data" / "mc_maze_small" / "tensors_5ms.h5")


def test_ramp_warms_up_linearly():
    assert [ramp(e, 4) for e in (0, 2, 4, 9)] == [0.0, 0.5, 1.0, 1.0]
    assert ramp(0, 0) == 1.0


def test_train_writes_every_run_file(tensors, tmp_path):
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config(),
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    run = out.run
    assert run.path.name == "mc_maze_small_5ms_val_langevin"
    for path in (
        run.run_json,
        run.config_json,
        run.metrics_csv,
        run.rates_h5,
        run.scores_json,
        run.last_ckpt,
        run.best_ckpt,
    ):
        assert path.exists(), path
    info = json.loads(run.run_json.read_text())
    assert {"dataset", "bin_ms", "phase", "model", "seed", "tensors", "created"} <= set(info)
    saved = json.loads(run.config_json.read_text())
    assert saved["model"]["hidden"] == 8
    assert saved["model"]["bins_per_step"] == 4  # auto, resolved for 5 ms bins and saved as such
    assert [int(r["epoch"]) for r in run.metrics()] == [1, 2, 3]
    with h5py.File(run.rates_h5) as h5:
        group = h5["mc_maze_small"]
        assert set(group) == set(RATE_KEYS)
        assert group.attrs["phase"] == "val"
        assert group["train_rates_heldin"].shape == (16, T, N_IN)
        assert group["eval_rates_heldout"].shape == (6, T, N_OUT)
        assert group["eval_rates_heldout_forward"].shape == (6, F, N_OUT)
        assert group["eval_rates_heldin"].dtype == np.float32
    scores = json.loads(run.scores_json.read_text())
    assert {"co-bps", "fp-bps", "vel R2"} <= set(scores)
    assert scores == out.scores


@pytest.mark.slow
def test_langevin_scores_come_with_the_baseline(tensors, tmp_path):
    cfg = tiny_config("train.compare_smoothing=true", "train.epochs=1")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    assert set(out.baseline) == set(out.scores)
    assert (tmp_path / "runs" / "mc_maze_small_5ms_val_smoothing" / "rates.h5").exists()


def test_test_phase_predicts_test_trials(tensors, tmp_path):
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config("train.epochs=1"),
            phase="test",
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    assert out.scores == {}
    with h5py.File(out.run.rates_h5) as h5:
        assert h5["mc_maze_small/train_rates_heldin"].shape[0] == 22  # trainval
        assert h5["mc_maze_small/eval_rates_heldin"].shape[0] == 5  # test


def test_train_only_file_holds_out_a_seeded_share(tmp_path):
    path = write_train_only(tmp_path / "train.h5")
    cfg = tiny_config("train.eval_fraction=0.2", "train.epochs=1")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            from_tensors=path,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    info = json.loads(out.run.run_json.read_text())
    assert out.run.path.name.endswith("_holdout")
    assert len(info["eval_index"]) == 4 and info["eval_source"] == "holdout"
    assert "co-bps" in out.scores


def test_cpu_runs_repeat_with_the_same_seed(tensors, tmp_path):
    def once(root):
        out = train_run(
            TrainRequest(
                "mc_maze_small",
                tiny_config(),
                from_tensors=tensors,
                run_root=root,
                progress=False,
            ),
        )
        with h5py.File(out.run.rates_h5) as h5:
            return [r["loss"] for r in out.run.metrics()], h5["mc_maze_small/eval_rates_heldout"][()]

    losses_a, rates_a = once(tmp_path / "a")
    losses_b, rates_b = once(tmp_path / "b")
    assert losses_a == losses_b
    np.testing.assert_array_equal(rates_a, rates_b)


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tensors, tmp_path):
    root = tmp_path / "runs"
    train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config("train.epochs=2"),
            from_tensors=tensors,
            run_root=root,
            progress=False,
        ),
    )
    resumed = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config("train.epochs=4"),
            from_tensors=tensors,
            run_root=root,
            resume=True,
            progress=False,
        ),
    )
    straight = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config("train.epochs=4"),
            from_tensors=tensors,
            run_root=tmp_path / "other",
            progress=False,
        ),
    )
    log_resumed, log_straight = resumed.run.metrics(), straight.run.metrics()
    assert [int(r["epoch"]) for r in log_resumed] == [1, 2, 3, 4]
    assert [r["loss"] for r in log_resumed] == [r["loss"] for r in log_straight]
    assert torch.load(resumed.run.last_ckpt, weights_only=True)["epoch"] == 4


def test_existing_run_dir_needs_resume_or_overwrite(tensors, tmp_path):
    kwargs = dict(from_tensors=tensors, run_root=tmp_path / "runs", progress=False)
    train_run(TrainRequest("mc_maze_small", tiny_config("train.epochs=1"), **kwargs))
    with pytest.raises(NlbkitError, match="run directory exists"):
        train_run(TrainRequest("mc_maze_small", tiny_config("train.epochs=1"), **kwargs))
    train_run(TrainRequest("mc_maze_small", tiny_config("train.epochs=1"), overwrite=True, **kwargs))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tensors, tmp_path):
    calls = {"n": 0}

    def poisoned(cfg, n_in, n_out, n_fwd):
        net = build_langevin(cfg, n_in, n_out, n_fwd)
        honest = net.loss

        def loss(heldin, target, kl_weight):
            calls["n"] += 1
            value, parts = honest(heldin, target, kl_weight)
            return (value * float("nan"), parts) if calls["n"] > 4 else (value, parts)  # 2 batches/epoch

        net.loss = loss
        return net

    cfg = tiny_config("train.epochs=5", "train.val_fraction=0")
    with pytest.raises(
        NlbkitError, match=r"loss became nan at epoch 3.*last good checkpoint .*last.pt \(epoch 2\)"
    ):
        train_run(
            TrainRequest(
                "mc_maze_small",
                cfg,
                from_tensors=tensors,
                run_root=tmp_path / "runs",
                progress=False,
            ),
            model_factory=poisoned,
        )
    run_dir = tmp_path / "runs" / "mc_maze_small_5ms_val_langevin"
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (run_dir / "rates.h5").exists()


def test_predict_writes_submission_keys(tensors, tmp_path):
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config("train.epochs=1"),
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    with h5py.File(tensors) as h5:
        eval_only = tmp_path / "eval.h5"
        with h5py.File(eval_only, "w") as dst:
            dst["eval_spikes_heldin"] = h5["val/eval_spikes_heldin"][()]
    path = predict_file(out.run.path, eval_only, tmp_path / "pred.h5", device="cpu")
    with h5py.File(path) as h5:
        assert set(h5["mc_maze_small"]) == {k for k in RATE_KEYS if k.startswith("eval")}
        assert h5["mc_maze_small/eval_rates_heldin_forward"].shape == (6, F, N_IN)
    both = predict_file(out.run.path, tensors, tmp_path / "both.h5", device="cpu")
    with h5py.File(both) as h5:
        assert set(h5["mc_maze_small"]) == set(RATE_KEYS)
        assert h5["mc_maze_small/train_rates_heldout"].shape == (16, T, N_OUT)


def test_predict_rejects_wrong_neuron_count(tensors, tmp_path):
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config("train.epochs=1"),
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as h5:
        h5["eval_spikes_heldin"] = np.zeros((2, T, N_IN + 1), dtype=np.float32)
    with pytest.raises(NlbkitError, match=r"bad.h5: 'eval_spikes_heldin' has shape"):
        predict_file(out.run.path, bad, tmp_path / "x.h5", device="cpu")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow
def test_cli_train_and_predict(tensors, tmp_path, nlbkit_cli):
    runs = tmp_path / "runs"
    proc = nlbkit_cli(
        "train",
        "mc_maze_small",
        "--data-dir",
        tensors.parent.parent,
        "--run-dir",
        runs,
        "--set",
        "model.hidden=8",
        "--set",
        "model.ff_dim=16",
        "--set",
        "train.batch_size=8",
        "--set",
        "model.prediction_samples=2",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--quiet",
    )
    assert "co-bps" in proc.stdout and "smoothing" in proc.stdout
    assert "add --ensemble 3" in proc.stdout  # mc_maze_small's measured default is a 3-seed mean
    run_dir = runs / "mc_maze_small_5ms_val_langevin"
    nlbkit_cli("predict", run_dir, "--input", tensors, "--output", tmp_path / "p.h5")
    assert (tmp_path / "p.h5").exists()
    missing = nlbkit_cli("train", "mc_maze_small", "--data-dir", tmp_path / "nowhere", check=False)
    assert missing.returncode == 1 and "tensor file not found" in missing.stderr


def test_bins_must_fill_the_dataset_window_at_the_bin_width():
    spec = get_spec("mc_maze")
    spec.check_bins("f.h5", 5, 140, 40)
    spec.check_bins("f.h5", 20, 35, 10)
    get_spec("dmfc_rsg").check_bins("f.h5", 20, 75, 10)
    wrong = (r"^f.h5: 140 \+ 40 bins \+ forward, but mc_maze at 20 ms has 35 \+ 10 \(700 \+ 200 ms\) "
             r"\(bins of 5 ms\?\)$")
    with pytest.raises(NlbkitError, match=wrong):
        spec.check_bins("f.h5", 20, 140, 40)
    with pytest.raises(NlbkitError, match=r"f.h5: 16 bins, but mc_maze at 5 ms has 140 \(700 ms\)$"):
        spec.check_bins("f.h5", 5, 16)


def test_a_tensor_file_of_another_bin_width_is_refused(tensors, tmp_path):
    root = tmp_path / "runs"
    wrong = r"tensors_5ms.h5: 140 \+ 40 bins \+ forward, but mc_maze_small at 20 ms"
    with pytest.raises(NlbkitError, match=wrong):
        train_run(
            TrainRequest(
                "mc_maze_small",
                tiny_config(),
                bin_ms=20,
                from_tensors=tensors,
                run_root=root,
                progress=False,
            ),
        )
    assert not root.exists()  # refused before a run directory is made
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            tiny_config("train.epochs=1"),
            from_tensors=tensors,
            run_root=root,
            progress=False,
        ),
    )
    wide = tmp_path / "tensors_20ms.h5"
    with h5py.File(wide, "w") as h5:
        h5["eval_spikes_heldin"] = np.zeros((2, T // 4, N_IN), dtype=np.float32)
    wrong = r"tensors_20ms.h5: 35 bins, but mc_maze_small at 5 ms has 140 \(700 ms\) \(bins of 20 ms\?\)"
    with pytest.raises(NlbkitError, match=wrong):
        predict_file(out.run.path, wide, tmp_path / "x.h5", device="cpu")
    assert not (tmp_path / "x.h5").exists()
    # A run recorded as 20 ms whose rates hold 5 ms bins (written before this check) is not submitted.
    info = json.loads(out.run.run_json.read_text())
    out.run.run_json.write_text(json.dumps({**info, "bin_ms": 20}))
    wrong = r"rates.h5: 140 \+ 40 bins \+ forward, but mc_maze_small at 20 ms .*of 5 ms\?"
    with pytest.raises(NlbkitError, match=wrong):
        merge_runs([read_run(out.run.path)])


def test_validation_trials_train_through_their_heldin_only():
    rng = np.random.default_rng(0)

    def trials(n: int) -> TrialSet:
        return TrialSet(
            *(
                rng.poisson(1.0, (n, b, k)).astype(np.float32)
                for b, k in ((T, N_IN), (T, N_OUT), (F, N_IN), (F, N_OUT), (T, 2))
            )
        )

    fit, val = trials(5), trials(3)
    both = add_heldin_of(fit, val)
    assert len(both) == 8
    np.testing.assert_array_equal(both.heldin, np.concatenate([fit.heldin, val.heldin]))
    np.testing.assert_array_equal(both.heldin_forward[5:], val.heldin_forward)
    np.testing.assert_array_equal(both.heldout[:5], fit.heldout)
    assert np.isnan(both.heldout[5:]).all() and np.isnan(both.heldout_forward[5:]).all()
    assert not np.isnan(val.heldout).any()  # the validation set itself keeps its targets
    target = both.target()
    assert np.isnan(target[5:, :, N_IN:]).all() and not np.isnan(target[:, :, :N_IN]).any()


def test_no_checkpoint_is_chosen_during_the_kl_warm_up(tensors, tmp_path, monkeypatch):
    from nlbkit.train.loop import Trainer

    scores = iter([0.9, 0.8, 0.1, 0.3, 0.2, 0.1])  # a validation peak inside the warm-up
    monkeypatch.setattr(Trainer, "_validate", lambda self, kl_weight: (1.0, next(scores)))
    cfg = tiny_config("train.epochs=6", "train.kl_ramp_epochs=3", "train.patience=2")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    log = out.run.metrics()
    assert [float(r["best_co_bps"]) for r in log[2:]] == [0.1, 0.3, 0.3, 0.3]
    assert torch.load(out.run.best_ckpt, weights_only=True)["epoch"] == 4
    assert out.epochs == 6  # patience counts from the best epoch, not from the warm-up peak


@pytest.mark.parametrize("lr_on", ["val_nll", "val_co_bps"])
def test_lr_schedule_follows_the_chosen_validation_figure(tensors, tmp_path, monkeypatch, lr_on):
    from nlbkit.train.loop import Trainer

    # The validation NLL keeps falling while the co-bps stalls after the warm-up (as on real data).
    figures = iter([(1.0, 0.1), (0.9, 0.2), (0.8, 0.2), (0.7, 0.2), (0.6, 0.2), (0.5, 0.2)])
    monkeypatch.setattr(Trainer, "_validate", lambda self, kl_weight: next(figures))
    cfg = tiny_config("train.epochs=6", "train.kl_ramp_epochs=2", "train.lr_patience=1",
                      "train.lr=0.004", f"train.lr_on={lr_on}", "train.patience=100")
    out = train_run(
        TrainRequest(
            "mc_maze_small",
            cfg,
            from_tensors=tensors,
            run_root=tmp_path / "runs",
            progress=False,
        ),
    )
    lrs = [float(r["lr"]) for r in out.run.metrics()]
    if lr_on == "val_nll":
        assert lrs == [0.004] * 6
    else:
        # co-bps 0.2 at epoch 2 (first stepped value), no better at 3 and 4 (patience 1): halved
        # after epoch 4, and again after the next stalled pair.
        assert lrs == [0.004, 0.004, 0.004, 0.004, 0.002, 0.002]


def test_recurrent_l2_is_the_mean_square_of_the_recurrent_weights_and_shrinks_them(tensors, tmp_path):
    from nlbkit.train.loop import recurrent_mean_square

    net = build_langevin(tiny_config("model.initial_encoder=bidirectional"), N_IN, N_OUT, F)
    hh = [net.encoder.weight_hh, net.backward_encoder.weight_hh_l0]
    expected = sum(float((w.detach().double() ** 2).sum()) for w in hh) / sum(w.numel() for w in hh)
    assert float(recurrent_mean_square(net).detach()) == pytest.approx(expected, rel=1e-6)
    squares = {}
    for l2 in (0.0, 50.0):
        cfg = tiny_config("train.epochs=4", f"train.l2_recurrent={l2}")
        root = tmp_path / str(l2)
        out = train_run(
            TrainRequest(
                "mc_maze_small",
                cfg,
                from_tensors=tensors,
                run_root=root,
                progress=False,
            ),
        )
        state = torch.load(out.run.last_ckpt, weights_only=True)["model"]
        squares[l2] = float((state["encoder.weight_hh"] ** 2).mean())
    assert squares[50.0] < 0.9 * squares[0.0]
