"""`nlbkit train` and `nlbkit predict` as functions: data in, a run directory out.

`train_run` reads a tensor file, fits LangevinFlow (or a baseline: smoothing, GPFA), writes the run
directory (config, log, checkpoints, `rates.h5`, `scores.json`) and, for LangevinFlow, fits the
smoothing baseline on the same trials so that every score has the baseline's beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from nlbkit.claims import ClaimHeld, claim, holder_of
from nlbkit.config import GpfaConfig, RunConfig, SmoothingConfig, TrainConfig, resolve_for_bin
from nlbkit.errors import NlbkitError
from nlbkit.models import get_model
from nlbkit.models.smoothing import SmoothingBaseline
from nlbkit.nlb.datasets import check_bin, get_spec
from nlbkit.nlb.h5io import open_h5
from nlbkit.nlb.tensor_file import PhaseData, TrialSet, load_phase_data
from nlbkit.paths import tensors_path
from nlbkit.runs import RunDir, RunInfo, create_run, rates_dict, run_name, write_rates
from nlbkit.scoring.evaluate import default_test_targets, eval_targets_for, score_rates
from nlbkit.train.checkpoint import load_checkpoint, load_weights
from nlbkit.train.loop import (
    Trainer,
    add_heldin_of,
    add_heldin_only,
    predict,
    resolve_device,
    seed_everything,
    split_validation,
    training_threads,
)

ModelFactory = Callable[[RunConfig, int, int, int], torch.nn.Module]


def build_langevin(cfg: RunConfig, n_heldin: int, n_heldout: int, n_forward: int) -> torch.nn.Module:
    return get_model("langevin").build(cfg, n_heldin, n_heldout, n_forward)


def factory_of(model: str, model_factory: ModelFactory | None = None) -> ModelFactory:
    """`model_factory` when given (tests, benchmarks), else the registry's builder of `model`."""
    return model_factory or get_model(model).build


@dataclass
class TrainOutcome:
    run: RunDir
    scores: dict[str, float]
    baseline: dict[str, float] = field(default_factory=dict)  # the smoothing baseline's, same trials
    epochs: int = 0
    stop_note: str | None = None  # why training ended before its last epoch (early stopping)


@dataclass(frozen=True)
class TrainRequest:
    """What `train_run` trains, on which trials, and where it writes.

    The model (`model`, a registry name) with configuration `cfg` on `dataset` at `bin_ms`; the
    trials: `phase`'s tensors under `data_dir`, or the file `from_tensors`, where `eval_index`
    picks the scored trials of a file of train trials only (cross-validation) instead of a seeded
    share; the run directory `<run_root>/<name>[_<tag>]`, which must not exist unless `resume`
    (continue an unfinished run of the same model) or `overwrite` (start it again).
    """

    dataset: str
    cfg: RunConfig
    bin_ms: int = 5
    phase: str = "val"
    model: str = "langevin"
    data_dir: str | Path | None = None
    from_tensors: str | Path | None = None
    eval_index: np.ndarray | None = None
    run_root: str | Path = "runs"
    tag: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


def train_run(
    request: TrainRequest,
    *,
    model_factory: ModelFactory | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> TrainOutcome:
    """Train `request.model` and write its run directory; see the module doc.

    `on_epoch(epoch)` is called after each completed epoch, once its `metrics.csv` row and
    checkpoints are written (a hyper-parameter search reads them there).
    """
    dataset, cfg, bin_ms, model = request.dataset, request.cfg, request.bin_ms, request.model
    tag, run_root, resume, progress = request.tag, request.run_root, request.resume, request.progress
    spec = get_spec(dataset)
    check_bin(bin_ms)
    entry = get_model(model)
    resolve_for_bin(cfg, bin_ms)
    if request.from_tensors:
        path = Path(request.from_tensors)
    else:
        path = tensors_path(dataset, bin_ms, request.data_dir)
    data = load_phase_data(path, request.phase, cfg.train.eval_fraction, cfg.train.seed, request.eval_index)
    spec.check_bins(path, bin_ms, data.fit.heldin.shape[1], data.n_forward)
    spec.check_bins(path, bin_ms, data.eval.heldin.shape[1])
    if data.eval.heldin.shape[2] != data.n_heldin:
        raise NlbkitError(
            f"{path}: eval trials have {data.eval.heldin.shape[2]} held-in neurons, "
            f"train trials {data.n_heldin}"
        )
    if tag is None and data.source == "holdout":
        tag = "holdout"
    info = {
        "dataset": dataset,
        "bin_ms": bin_ms,
        "phase": data.phase,
        "model": model,
        "seed": cfg.train.seed,
        "tensors": str(path),
        "eval_source": data.source,
        "n_heldin": data.n_heldin,
        "n_heldout": data.n_heldout,
        "n_forward": data.n_forward,
        "n_bins": int(data.fit.heldin.shape[1]),
    }
    if data.eval_index is not None:
        info["eval_index"] = data.eval_index.tolist()
    name = run_name(dataset, bin_ms, data.phase, model, tag)
    with claim(Path(run_root) / name):  # before the exists check: one writer per run directory
        run = create_run(run_root, name, info, cfg, resume, request.overwrite)
        if model == "gpfa":
            train_rates, eval_rates = _fit_gpfa(run, data, cfg.gpfa, bin_ms, cfg.train.seed)
            epochs, stop_note = 0, None
        elif not entry.uses_torch:
            train_rates, eval_rates = _fit_smoothing(run, data, cfg.smoothing, bin_ms)
            epochs, stop_note = 0, None
        else:
            train_rates, eval_rates, epochs, stop_note = _fit_torch(
                run, data, cfg, model, resume, progress, factory_of(model, model_factory), on_epoch
            )
        rates = rates_dict(train_rates, eval_rates, data.n_heldin, data.fit.heldin.shape[1])
        run.write_rates(RunInfo.from_json(run.path, info), rates)
        targets = data.targets or _test_targets(dataset, bin_ms, data, request.data_dir, path)
        scores = score_rates(dataset, bin_ms, targets, rates, run.rates_h5)
        run.write_scores(scores)
    outcome = TrainOutcome(run=run, scores=scores, epochs=epochs, stop_note=stop_note)
    if entry.uses_torch and cfg.train.compare_smoothing and scores:
        outcome.baseline = baseline_scores(replace(request, phase=data.phase, tag=tag), info)
    return outcome


def _test_targets(dataset: str, bin_ms: int, data: PhaseData, data_dir, tensors: Path) -> dict | None:
    """A test-phase run's targets where `nlbkit evaluate` would find them without --targets
    (generated data: those `synth` wrote), else None (no scores yet)."""
    found = default_test_targets(data_dir, tensors) if data.phase == "test" else None
    return None if found is None else eval_targets_for(dataset, bin_ms, "test", targets_file=found)


def _fit_smoothing(
    run: RunDir, data: PhaseData, cfg: SmoothingConfig, bin_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    fit = data.fit
    baseline = SmoothingBaseline(bin_ms, cfg.kern_sd_ms, cfg.alpha, cfg.log_offset, cfg.max_iter)
    baseline.fit(fit.heldin, fit.heldout, fit.heldin_forward, fit.heldout_forward)
    baseline.save(run.smoothing_weights)
    return baseline.predict_rates(fit.heldin), baseline.predict_rates(data.eval.heldin)


def _fit_gpfa(
    run: RunDir, data: PhaseData, cfg: GpfaConfig, bin_ms: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from nlbkit.models.gpfa import GpfaBaseline  # elephant only where GPFA runs

    fit = data.fit
    gpfa = GpfaBaseline(
        bin_ms, cfg.latent_dim, cfg.bin_factor, cfg.glm_alpha, cfg.em_max_iters, cfg.tau_init_ms,
        cfg.forward_sd_ms, cfg.glm_max_iter, seed,
    )
    gpfa.fit(fit.heldin, fit.heldout, fit.heldin_forward, fit.heldout_forward)
    gpfa.save(run.gpfa_weights)
    return gpfa.predict_rates(fit.heldin), gpfa.predict_rates(data.eval.heldin)


def training_trials(data: PhaseData, tc: TrainConfig) -> tuple[TrialSet, TrialSet | None]:
    """(the trials a network fits, its validation trials or None), as `tc` splits `data.fit`:
    validation trials and, with `fit_eval_heldin`, the eval trials train through their held-in
    spikes alone."""
    fit, val = split_validation(data.fit, tc.val_fraction, tc.seed, tc.val_folds, tc.val_fold)
    if val is not None and tc.fit_val_heldin:
        fit = add_heldin_of(fit, val)
    if tc.fit_eval_heldin:
        fit = add_heldin_only(fit, data.eval.heldin)
    return fit, val


def _fit_torch(
    run: RunDir,
    data: PhaseData,
    cfg: RunConfig,
    model: str,
    resume: bool,
    progress: bool,
    model_factory: ModelFactory,
    on_epoch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, int, str | None]:
    tc = cfg.train
    device = resolve_device(tc.device)
    if device.type == "cpu":
        torch.set_num_threads(training_threads(tc, get_model(model).settings(cfg).hidden))
    seed_everything(tc.seed)
    net = model_factory(cfg, data.n_heldin, data.n_heldout, data.n_forward)
    fit, val = training_trials(data, tc)
    if hasattr(net, "set_baseline_rates"):
        mean_counts = torch.as_tensor(np.nan_to_num(np.nanmean(fit.target(), axis=(0, 1))))
        net.set_baseline_rates(mean_counts)
    trainer = Trainer(net, tc, run, fit, val, device, progress=progress, on_epoch=on_epoch)
    if resume and run.last_ckpt.exists():
        trainer.resume()
    epochs = trainer.fit()
    trainer.load_best()
    rates_of = seeded_predictor(net, cfg, device, model)
    return rates_of(data.fit.heldin), rates_of(data.eval.heldin), epochs, trainer.stop_note


def seeded_predictor(
    net: torch.nn.Module, cfg: RunConfig, device: torch.device, model: str = "langevin"
) -> Callable[[np.ndarray], np.ndarray]:
    """Held-in counts (trials, T, Nin) -> rates (trials, T+F, N) with the run's prediction samples
    (of `model`'s section) and batch size. Seeds torch first, so a run's stochastic passes do not
    depend on what ran before (where training stopped): called in the same order, it predicts what
    training did."""
    seed_everything(cfg.train.seed)
    samples, batch = get_model(model).settings(cfg).prediction_samples, cfg.train.batch_size
    return lambda heldin: predict(net, heldin, samples, batch, device)


def baseline_scores(request: TrainRequest, info: dict) -> dict[str, float]:
    """The smoothing baseline's scores on the same trials: a matching run if there is one, else fit.

    Looked for under the run's own tag, then untagged (`--tag s0`, `--tag s1`, a sweep's best
    configuration all share one baseline). A new fit goes to the untagged name while that is free,
    and to the run's own tag when another command is fitting the untagged one at that moment.
    """
    dataset, bin_ms, phase, run_root = request.dataset, request.bin_ms, request.phase, request.run_root
    own = run_name(dataset, bin_ms, phase, "smoothing", request.tag)
    default_tag = "holdout" if info.get("eval_source") == "holdout" else None
    shared = run_name(dataset, bin_ms, phase, "smoothing", default_tag)
    for name in dict.fromkeys((own, shared)):
        sibling = RunDir(Path(run_root) / name)
        if sibling.run_json.exists() and sibling.scores_json.exists() and holder_of(sibling.path) is None:
            other, current = sibling.info(), RunInfo.from_json(sibling.path, info)
            same = all(getattr(other, k) == getattr(current, k) for k in ("tensors", "eval_index"))
            if same and sibling.config().smoothing == request.cfg.smoothing:
                return sibling.scores() or {}
    target_tag = default_tag if not (Path(run_root) / shared).exists() else request.tag

    def fit(fit_tag: str | None) -> dict[str, float]:
        smoothing = replace(
            request, model="smoothing", tag=fit_tag, resume=False, overwrite=True, progress=False
        )
        return train_run(smoothing).scores

    try:
        return fit(target_tag)
    except ClaimHeld:
        if target_tag == request.tag:
            raise
        return fit(request.tag)  # another command fits the shared baseline right now: fit one of this tag


def _read_input(path: Path, run_phase: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(eval_spikes_heldin, train_spikes_heldin or None) from the file's root, else its phase groups."""
    with open_h5(path, "input file") as h5:
        eval_group, train_group = h5, h5
        if "eval_spikes_heldin" not in h5:
            eval_name, train_name = ("val", "train") if run_phase == "val" else ("test", "trainval")
            if eval_name not in h5 or "eval_spikes_heldin" not in h5[eval_name]:
                raise NlbkitError(f"{path}: no 'eval_spikes_heldin' (at the root or in group '{eval_name}')")
            eval_group, train_group = h5[eval_name], h5.get(train_name, {})
        train = train_group["train_spikes_heldin"][()] if "train_spikes_heldin" in train_group else None
        return np.asarray(eval_group["eval_spikes_heldin"][()]), train


def predict_file(
    run_dir: str | Path,
    input_path: str | Path,
    output: str | Path,
    device: str = "auto",
    model_factory: ModelFactory | None = None,
) -> Path:
    """Rates of a trained run for the trials of `input_path`, written to `output` (rates.h5 format)."""
    run = RunDir(Path(run_dir))
    info, cfg = run.info(), run.config()
    missing = [k for k in ("n_heldin", "n_heldout", "n_forward") if getattr(info, k) is None]
    if missing:
        raise NlbkitError(f"{run.run_json}: missing {', '.join(missing)} (needed to rebuild the model)")
    eval_heldin, train_heldin = _read_input(Path(input_path), info.phase)
    n_heldin = info.n_heldin
    for name, array in (("eval_spikes_heldin", eval_heldin), ("train_spikes_heldin", train_heldin)):
        if array is not None and (array.ndim != 3 or array.shape[2] != n_heldin):
            raise NlbkitError(
                f"{input_path}: '{name}' has shape {array.shape}; the run expects (trials, bins, {n_heldin})"
            )
    get_spec(info.dataset).check_bins(input_path, info.bin_ms, eval_heldin.shape[1])
    rate_model = load_rate_model(run, info, cfg, device, model_factory)
    train_rates = rate_model(train_heldin) if train_heldin is not None else None
    rates = rates_dict(train_rates, rate_model(eval_heldin), n_heldin, eval_heldin.shape[1])
    return write_rates(output, info.dataset, info.bin_ms, info.phase, rates)


def load_rate_model(
    run: RunDir, info: RunInfo, cfg: RunConfig, device: str, model_factory: ModelFactory | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """A function from held-in counts (trials, T, Nin) to rates (trials, T+F, N) for the run's model."""
    if info.model == "smoothing":
        if not run.smoothing_weights.exists():
            raise NlbkitError(f"{run.smoothing_weights}: fitted baseline missing")
        return SmoothingBaseline.load(run.smoothing_weights).predict_rates
    if info.model == "gpfa":
        from nlbkit.models.gpfa import GpfaBaseline

        if not run.gpfa_weights.exists():
            raise NlbkitError(f"{run.gpfa_weights}: fitted GPFA baseline missing")
        return GpfaBaseline.load(run.gpfa_weights).predict_rates
    torch_device = resolve_device(device)
    net = load_network(run, info, cfg, torch_device, model_factory)
    return seeded_predictor(net, cfg, torch_device, info.model)


def load_network(
    run: RunDir,
    info: RunInfo,
    cfg: RunConfig,
    device: torch.device,
    model_factory: ModelFactory | None = None,
) -> torch.nn.Module:
    """The run's network with the weights of its best checkpoint (its last when there is no best),
    in eval mode on `device`."""
    path = run.best_ckpt if run.best_ckpt.exists() else run.last_ckpt
    if not path.exists():
        raise NlbkitError(f"{run.path}: no checkpoint (checkpoints/best.pt or last.pt)")
    net = factory_of(info.model, model_factory)(cfg, info.n_heldin, info.n_heldout, info.n_forward).to(device)
    return load_weights(net, load_checkpoint(path, device), path).eval()
