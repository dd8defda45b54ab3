"""The training loop of a rate model: batches, KL/weight-decay warm-up, Adam, checkpoints, early stop.

The model is any `torch.nn.Module` with LangevinFlow's two methods:
`loss(heldin (B, T, Nin), target (B, T+F, Nin+Nout), kl_weight) -> (loss, {"nll", "kl", "loss"})`
and `predict_rates(heldin, n_samples) -> rates per bin (B, T+F, Nin+Nout)`.

Every completed epoch rewrites `metrics.csv` and `checkpoints/last.pt`; each better validation
co-bps writes `checkpoints/best.pt`. A NaN or infinite loss stops the run before anything of that
epoch is saved, so the last checkpoint is the last good state.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from nlbkit.config import TrainConfig
from nlbkit.errors import NlbkitError
from nlbkit.nlb.tensor_file import TrialSet, fold_split, holdout_split
from nlbkit.runs import RunDir
from nlbkit.scoring.metrics import bits_per_spike
from nlbkit.train.checkpoint import load_checkpoint, load_weights, rng_state, save_checkpoint, set_rng_state
from nlbkit.train.progress import EpochProgress, stop_line

CSV_FIELDS = (
    "epoch",
    "kl_weight",
    "lr",
    "loss",
    "nll",
    "kl",
    "val_nll",
    "val_co_bps",
    "best_co_bps",
    "seconds",
)


class TrainingDiverged(NlbkitError):
    """The loss became NaN or infinite; `checkpoint_epoch` is the last saved epoch (0: none)."""

    def __init__(self, message: str, checkpoint_epoch: int = 0) -> None:
        super().__init__(message)
        self.checkpoint_epoch = checkpoint_epoch


class TrainingInterrupted(NlbkitError):
    """Ctrl-C during training; `checkpoint_epoch` is the last saved epoch (0: none)."""

    def __init__(self, message: str, checkpoint_epoch: int = 0) -> None:
        super().__init__(message)
        self.checkpoint_epoch = checkpoint_epoch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NlbkitError("--device cuda asked for, but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise NlbkitError(f"unknown device '{name}': use auto, cpu or cuda")
    return torch.device(name)


# batch_size x hidden at and above which a CPU step is worth splitting over two threads: mc_maze's
# released size (256 x 280) runs 1.7x faster on 2 threads; mc_maze_small's (16 x 64) barely moves.
THREADED_STEP_SIZE = 16384
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # before anything here sets it


def training_threads(cfg: TrainConfig, hidden: int, cores: int | None = None) -> int:
    """torch threads for a CPU run: `cfg.threads` when set, else torch's default (one a physical
    core), except 1 on a machine of <= 2 cores when a step is small (THREADED_STEP_SIZE)."""
    if cfg.threads > 0:
        return cfg.threads
    cores = cores or os.cpu_count() or 1
    if cores <= 2 and cfg.batch_size * hidden < THREADED_STEP_SIZE:
        return 1
    return TORCH_DEFAULT_THREADS


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AMX or AVX512-BF16), so
    autocast to bfloat16 is faster rather than emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The reduced precision of training's forward passes, or None for float32: on CUDA with
    `amp` (bfloat16 where supported, else float16); on a CPU with `cpu_amp` and native bfloat16."""
    if device.type == "cuda":
        if not cfg.amp:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cfg.cpu_amp and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def ramp(epoch: int, ramp_epochs: int) -> float:
    """Warm-up factor of the KL weight and the weight decay: min(epoch / ramp_epochs, 1)."""
    return 1.0 if ramp_epochs <= 0 else min(epoch / ramp_epochs, 1.0)


@dataclass
class DeviceTrials:
    """One set of trials as tensors on the training device."""

    heldin: torch.Tensor  # (trials, T, Nin)
    target: torch.Tensor  # (trials, T+F, Nin+Nout)
    heldout: np.ndarray  # (trials, T, Nout) spike counts, for co-bps

    @classmethod
    def from_trials(cls, trials: TrialSet, device: torch.device) -> DeviceTrials:
        heldin = torch.as_tensor(np.nan_to_num(trials.heldin).astype(np.float32), device=device)
        return cls(heldin, torch.as_tensor(trials.target(), device=device), trials.heldout)


def recurrent_mean_square(model: torch.nn.Module) -> torch.Tensor:
    """Mean square of every recurrent weight matrix of `model` (parameters named `weight_hh*`)."""
    weights = [p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1].startswith("weight_hh")]
    if not weights:
        raise NlbkitError("train.l2_recurrent: the model has no recurrent weights (weight_hh)")
    return sum(w.float().pow(2).sum() for w in weights) / sum(w.numel() for w in weights)


def ema_decay(cfg: TrainConfig, n_fit: int) -> float:
    """Per-step decay of the weights' EMA for `n_fit` trials: 1 - 1 / (horizon x the optimiser
    steps of an epoch), so the horizon does not depend on the dataset's size. The horizon is
    `ema_epochs`, at most a sixth of `epochs`: a short run's average is not dominated by its first
    weights (the average starts from them)."""
    steps = math.ceil(n_fit / cfg.batch_size)
    horizon = min(cfg.ema_epochs, cfg.epochs / 6)
    return 1.0 - 1.0 / max(1.0, horizon * steps)


def split_validation(
    trials: TrialSet, fraction: float, seed: int, folds: int = 0, fold: int = 0
) -> tuple[TrialSet, TrialSet | None]:
    """(trials to fit, trials to validate on): a seeded `fraction` of the trials, or with `folds`
    >= 2 fold `fold` of that many disjoint folds (bagging); no validation when fraction is 0 or
    too few trials."""
    if folds >= 2:
        kept, held = fold_split(len(trials), folds, fold)
        return trials.subset(kept), trials.subset(held)
    if fraction <= 0 or len(trials) < 4:
        return trials, None
    kept, held = holdout_split(len(trials), fraction, seed)
    return trials.subset(kept), trials.subset(held)


def add_heldin_of(fit: TrialSet, val: TrialSet) -> TrialSet:
    """`fit` followed by the `val` trials with their held-out neurons (observed and forward bins)
    set to NaN: the model learns from the validation trials' held-in spikes, which a test trial
    also offers, while the held-out spikes that validation scores stay unseen."""
    hidden = val.subset(np.arange(len(val)))
    hidden.heldout = np.full(val.heldout.shape, np.nan, dtype=np.float32)
    hidden.heldout_forward = np.full(val.heldout_forward.shape, np.nan, dtype=np.float32)

    def join(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
        return None if a is None or b is None else np.concatenate([a, b.astype(a.dtype)], axis=0)

    return TrialSet(
        *(
            join(getattr(fit, k), getattr(hidden, k))
            for k in ("heldin", "heldout", "heldin_forward", "heldout_forward", "behavior")
        )
    )


def add_heldin_only(fit: TrialSet, heldin: np.ndarray) -> TrialSet:
    """`fit` followed by trials known by their held-in spikes (trials, T, Nin) alone: their
    held-out neurons and forward bins are NaN, so left out of the loss. Only `heldin` is read, so
    the eval trials' scored spikes (held-out, forward) cannot reach training through here."""
    n = heldin.shape[0]

    def blank(like: np.ndarray) -> np.ndarray:
        return np.full((n, *like.shape[1:]), np.nan, dtype=np.float32)

    def join(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b.astype(a.dtype)], axis=0)

    return TrialSet(
        heldin=join(fit.heldin, np.asarray(heldin)),
        heldout=join(fit.heldout, blank(fit.heldout)),
        heldin_forward=join(fit.heldin_forward, blank(fit.heldin_forward)),
        heldout_forward=join(fit.heldout_forward, blank(fit.heldout_forward)),
        behavior=None,
    )


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    heldin: np.ndarray | torch.Tensor,
    n_samples: int | None,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """Rates per bin (trials, T+F, N) in eval mode, `batch_size` trials at a time."""
    model.eval()
    heldin = torch.as_tensor(
        np.nan_to_num(np.asarray(heldin, dtype=np.float32)) if isinstance(heldin, np.ndarray) else heldin
    )
    parts = []
    for start in range(0, heldin.shape[0], batch_size):
        batch = heldin[start : start + batch_size].to(device)
        parts.append(model.predict_rates(batch, n_samples=n_samples).float().cpu().numpy())
    return np.concatenate(parts, axis=0)


class Trainer:
    """Trains one model into one run directory; `fit()` returns the epoch it stopped at."""

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        run: RunDir,
        fit: TrialSet,
        val: TrialSet | None,
        device: torch.device,
        progress: bool = True,
        on_epoch: Callable[[int, dict], None] | None = None,
    ) -> None:
        self.model = model.to(device)
        self.cfg = cfg
        self.run = run
        self.device = device
        self.progress = progress
        self.on_epoch = on_epoch
        self.fit_set = DeviceTrials.from_trials(fit, device)
        self.val_set = DeviceTrials.from_trials(val, device) if val is not None else None
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="max" if cfg.lr_on == "val_co_bps" else "min",
            factor=cfg.lr_factor,
            patience=cfg.lr_patience,
            min_lr=cfg.min_lr,
        )
        self.shuffle = torch.Generator().manual_seed(cfg.seed)
        self.epoch = 0  # epochs completed
        self.best_co_bps = -math.inf
        self.best_epoch = 0
        self.rows: list[dict] = []
        self.saved_epoch = 0  # epoch of checkpoints/last.pt
        self.stop_note: str | None = None  # why training ended before cfg.epochs, if it did
        self.amp_dtype = autocast_dtype(cfg, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ema_decay = ema_decay(cfg, self.fit_set.heldin.shape[0]) if cfg.ema_epochs > 0 else None
        self.averaged = self._weight_average()

    def _weight_average(self) -> torch.optim.swa_utils.AveragedModel | None:
        """The EMA of the weights when `ema_epochs` > 0, at the per-step decay `ema_decay` (fixed
        when the run starts: a resumed run keeps it, whatever `epochs` it is resumed with)."""
        if self.ema_decay is None:
            return None
        return torch.optim.swa_utils.AveragedModel(
            self.model,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(self.ema_decay),
            use_buffers=True,
        )

    @property
    def scored_model(self) -> torch.nn.Module:
        """The weights that validation scores and `best.pt` keeps: the EMA when on, else the model."""
        return self.model if self.averaged is None else self.averaged.module

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def setting(self) -> str:
        """How the steps run: 'bfloat16 autocast, 2 threads', 'float32, 1 thread', ..."""
        precision = f"{str(self.amp_dtype).removeprefix('torch.')} autocast" if self.amp_dtype else "float32"
        if self.device.type != "cpu":
            return precision
        threads = torch.get_num_threads()
        return f"{precision}, {threads} thread{'s' if threads > 1 else ''}"

    # --- checkpoints -------------------------------------------------------------------------------
    def state(self, scored: bool = False) -> dict:
        """Everything to resume from; `scored`: with the scored weights (the EMA) as "model"."""
        state = {
            "epoch": self.epoch,
            "model": (self.scored_model if scored else self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_co_bps": self.best_co_bps,
            "best_epoch": self.best_epoch,
            "rng": rng_state(self.shuffle),
        }
        if self.averaged is not None:
            state["ema"] = self.averaged.state_dict()
            state["ema_decay"] = self.ema_decay
        return state

    def save(self, path, scored: bool = False) -> None:
        save_checkpoint(self.state(scored), path)

    def resume(self) -> None:
        """Continue from `checkpoints/last.pt`: weights, optimiser, scheduler, RNGs and the log."""
        if not self.run.last_ckpt.exists():
            raise NlbkitError(f"{self.run.last_ckpt}: no checkpoint to resume from")
        needs = ("model", "optimizer", "scheduler", "scaler", "epoch", "best_co_bps", "best_epoch", "rng")
        state = load_checkpoint(self.run.last_ckpt, self.device, needs)
        load_weights(self.model, state, self.run.last_ckpt)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best_co_bps, self.best_epoch = (
            state["epoch"],
            state["best_co_bps"],
            state["best_epoch"],
        )
        set_rng_state(state["rng"], self.shuffle)
        if self.averaged is not None:
            if "ema" not in state:
                raise NlbkitError(f"{self.run.last_ckpt}: saved without train.ema_epochs; resume without it")
            self.ema_decay = float(state.get("ema_decay", self.ema_decay))
            self.averaged = self._weight_average()
            self.averaged.load_state_dict(state["ema"])
        self.rows = [r for r in self.run.metrics() if int(r["epoch"]) <= self.epoch]
        self.saved_epoch = self.epoch

    def _write_log(self) -> None:
        self.run.write_metrics(self.rows, CSV_FIELDS)

    # --- one epoch ---------------------------------------------------------------------------------
    def _train_epoch(self, kl_weight: float, max_batches: int | None = None) -> dict[str, float]:
        """One pass over the fit trials in shuffled batches (the first `max_batches` only, for
        benchmarks); the mean loss, NLL and KL, weighted by batch size."""
        self.model.train()
        n = self.fit_set.heldin.shape[0]
        order = torch.randperm(n, generator=self.shuffle)
        totals = {"loss": 0.0, "nll": 0.0, "kl": 0.0}
        starts = range(0, n, self.cfg.batch_size)
        for start in starts if max_batches is None else starts[:max_batches]:
            index = order[start : start + self.cfg.batch_size].to(self.device)
            with self._autocast():
                loss, parts = self.model.loss(
                    self.fit_set.heldin[index], self.fit_set.target[index], kl_weight
                )
            if self.cfg.l2_recurrent > 0:
                loss = loss + self.cfg.l2_recurrent * recurrent_mean_square(self.model)
            value = float(loss.detach())
            if not math.isfinite(value):
                saved = self.saved_epoch if self.run.last_ckpt.exists() else 0
                raise TrainingDiverged(self._diverged_message(value), saved)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.averaged is not None:
                self.averaged.update_parameters(self.model)
            share = len(index) / n
            for key in totals:
                totals[key] += (value if key == "loss" else float(parts.get(key, 0.0))) * share
        return totals

    def _diverged_message(self, value: float) -> str:
        kept = (
            f"the last good checkpoint is {self.run.last_ckpt} (epoch {self.epoch})"
            if self.run.last_ckpt.exists()
            else "no epoch had completed, so there is no checkpoint"
        )
        return f"loss became {value} at epoch {self.epoch + 1}; training stopped and {kept}"

    def _validate(self, kl_weight: float) -> tuple[float, float]:
        """(validation NLL, co-bps of the held-out neurons over the observed bins)."""
        val, net = self.val_set, self.scored_model
        with torch.no_grad(), self._autocast():
            net.eval()
            _, parts = net.loss(val.heldin, val.target, kl_weight)
        rates = predict(net, val.heldin, self.cfg.val_samples, self.cfg.batch_size, self.device)
        n_bins, n_heldin = val.heldin.shape[1], val.heldin.shape[2]
        co_bps = bits_per_spike(
            rates[:, :n_bins, n_heldin:].astype(np.float64), val.heldout.astype(np.float64)
        )
        return float(parts["nll"]), co_bps

    # --- the loop ----------------------------------------------------------------------------------
    def fit(self) -> int:
        """Train until `cfg.epochs` or early stopping; returns the epochs completed.

        Sets `stop_note` when early stopping ended it. Ctrl-C raises TrainingInterrupted, naming the
        last checkpoint, which is kept.
        """
        cfg = self.cfg
        progress = EpochProgress(cfg.epochs, self.epoch, self.device.type, enabled=self.progress,
                                 validates=self.val_set is not None, setting=self.setting())
        if self.device.type == "cpu" and cfg.cpu_amp and self.amp_dtype is None:
            progress.say("train.cpu_amp: this CPU has no native bfloat16, so training runs in float32")
        try:
            while self.epoch < cfg.epochs and not self._patience_spent():
                loss, co_bps = self._run_epoch()
                progress.update(self.epoch, loss, co_bps)
                if self.on_epoch is not None:
                    self.on_epoch(self.epoch, self.rows[-1])
        except KeyboardInterrupt:
            raise self._interrupted() from None
        finally:
            progress.close()
        if self.epoch < cfg.epochs and self._patience_spent():
            since = max(self.best_epoch, self._selection_start())
            self.stop_note = stop_line(self.epoch, self.epoch - since, self.best_epoch)
            progress.say(self.stop_note)
        return self.epoch

    def _run_epoch(self) -> tuple[float, float]:
        """One epoch, its log row and checkpoints; (training loss, validation co-bps or NaN)."""
        cfg = self.cfg
        started = time.perf_counter()
        warm = ramp(self.epoch, cfg.kl_ramp_epochs)
        kl_weight = cfg.kl_max * warm
        for group in self.optimizer.param_groups:
            group["weight_decay"] = cfg.weight_decay * warm
        totals = self._train_epoch(kl_weight)
        self.epoch += 1
        row = {
            "epoch": self.epoch,
            "kl_weight": kl_weight,
            "lr": self.optimizer.param_groups[0]["lr"],
            **totals,
            "val_nll": "",
            "val_co_bps": "",
            "best_co_bps": "",
        }
        improved, co_bps = False, float("nan")
        if self.val_set is not None and (self.epoch % cfg.val_every == 0 or self.epoch == cfg.epochs):
            val_nll, co_bps = self._validate(kl_weight)
            if cfg.lr_on == "val_nll":
                self.scheduler.step(val_nll)
            elif self.epoch >= self._selection_start() and math.isfinite(co_bps):
                self.scheduler.step(co_bps)
            row.update(val_nll=val_nll, val_co_bps=co_bps)
            if co_bps > self.best_co_bps and self.epoch >= self._selection_start():
                self.best_co_bps, self.best_epoch, improved = co_bps, self.epoch, True
        row["best_co_bps"] = self.best_co_bps if math.isfinite(self.best_co_bps) else ""
        row["seconds"] = round(time.perf_counter() - started, 4)
        self.rows.append(row)
        # The log first: stopped between the two, a resume drops the row of an epoch it redoes;
        # the other way round it would keep the checkpoint of an epoch whose row is lost.
        self._write_log()
        if improved or self.val_set is None:
            self.save(self.run.best_ckpt, scored=True)
        self.save(self.run.last_ckpt)
        self.saved_epoch = self.epoch
        return totals["loss"], co_bps

    def _interrupted(self) -> TrainingInterrupted:
        if self.run.last_ckpt.exists():
            saved = self.saved_epoch
            return TrainingInterrupted(
                f"interrupted during epoch {self.epoch + 1} of {self.cfg.epochs}; the last checkpoint "
                f"{self.run.last_ckpt} (epoch {saved}) is kept",
                saved,
            )
        return TrainingInterrupted(
            f"interrupted during epoch {self.epoch + 1}, before any checkpoint was written", 0
        )

    def _selection_start(self) -> int:
        """First epoch whose checkpoint may be chosen: the end of the KL warm-up (or the last epoch).

        During the warm-up the objective is still changing; a validation peak there (measured on a
        few trials) chose an epoch-45 checkpoint scoring 0.08 held-out co-bps on real mc_maze_small
        where the post-warm-up ones scored ~0.2.
        """
        return min(self.cfg.kl_ramp_epochs, self.cfg.epochs)

    def _patience_spent(self) -> bool:
        """Early stopping: `patience` epochs since the best validation co-bps (or the warm-up's end)."""
        since = max(self.best_epoch, self._selection_start())
        return self.val_set is not None and self.epoch - since >= self.cfg.patience

    def load_best(self) -> None:
        """Weights of the best checkpoint (the last one when there was no validation)."""
        path = self.run.best_ckpt if self.run.best_ckpt.exists() else self.run.last_ckpt
        load_weights(self.model, load_checkpoint(path, self.device), path)
