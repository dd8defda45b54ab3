"""Run configuration: the model's, the training loop's and the baselines' settings.

A `RunConfig` has six sections, each a dataclass: `model` (LangevinFlow's `LangevinConfig`),
`ndt` (`NdtConfig`), `lfads` (`LfadsConfig`), `train` (`TrainConfig`, the loop every network
shares), `smoothing` (`SmoothingConfig`) and `gpfa` (`GpfaConfig`). A run's configuration is
resolved in layers: dataclass defaults, then the dataset's defaults (`DATASET_DEFAULTS`, data
rather than code), then the model's own training defaults (`MODEL_DEFAULTS`, for every dataset
and then for this one), then a named preset (`PRESETS`, `--preset`), then a YAML/JSON file
(`--config`), then `key=value` overrides (`--set`). Keys are dotted (`train.lr`); a field name
that exists in one section only may be given bare (`lr`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nlbkit.errors import NlbkitError
from nlbkit.models import get_model
from nlbkit.models.config import LangevinConfig, LfadsConfig, NdtConfig


@dataclass
class TrainConfig:
    """The training loop. Epoch counts are whole passes over the training trials."""

    lr: float = 3e-3
    batch_size: int = 64
    epochs: int = 1000
    weight_decay: float = 2e-5  # reached at the end of the KL warm-up, ramped like the KL weight
    kl_max: float = 0.1
    kl_ramp_epochs: int = 500  # KL weight = kl_max * min(epoch / kl_ramp_epochs, 1)
    lr_factor: float = 0.5  # ReduceLROnPlateau on `lr_on`
    lr_patience: int = 20  # in validations, not epochs
    # What the LR schedule follows: "val_nll" (released; every neuron, so held-in reconstruction
    # keeps it falling long after the held-out co-bps has peaked) or "val_co_bps" (from the end of
    # the KL warm-up, as the checkpoint choice).
    lr_on: str = "val_nll"
    min_lr: float = 1e-5
    patience: int = 200  # early stopping: epochs without a better validation co-bps
    val_every: int = 5  # epochs between validations
    val_samples: int = 10  # stochastic passes averaged for the validation co-bps
    val_fraction: float = 0.15  # training trials held back for validation (checkpoint choice, stopping)
    # Bagging members: val_folds >= 2 replaces val_fraction by fold val_fold of val_folds disjoint
    # folds of the fit trials (a permutation of seed 0, so members of any seed share the folds).
    val_folds: int = 0
    val_fold: int = 0
    # Validation trials also train through their held-in spikes (their held-out ones stay unseen).
    fit_val_heldin: bool = True
    # The scored (eval) trials' held-in spikes also train the held-in reconstruction; their held-out
    # and forward entries are never read (NLB hands the held-in spikes out with the eval trials).
    # Off: on 5 ms real mc_maze_small CV folds 0-1 x seeds 0-1 it lowered co-bps (docs/results-archive.md).
    fit_eval_heldin: bool = False
    eval_fraction: float = 0.2  # files with train trials only: trials held out as the scored eval set
    grad_clip: float = 200.0
    # Exponential moving average of the weights over about this many epochs, at most epochs / 6
    # (0: off). Validation, `best.pt` and the predicted rates use the averaged weights; training
    # goes on with the raw ones.
    ema_epochs: float = 0.0
    # L2 penalty on the recurrent weights (every GRU's weight_hh): l2_recurrent x their mean square,
    # added to the loss (a mean over entries, so the scale does not depend on the model's size).
    l2_recurrent: float = 0.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision on CUDA (bfloat16, or float16 with a gradient scaler)
    # bfloat16 autocast on a CPU with native bfloat16 (AMX or AVX512-BF16; elsewhere it stays off,
    # with a note). The Langevin integration stays float32 either way. On in the defaults of every
    # dataset with the released model (hidden 280), where the decoder's matrix products are most
    # of a step (1.6-3.3x faster an epoch with the thread rule, docs/benchmarks.md); off for
    # mc_maze_small's small model, where per-operation overhead is the cost.
    cpu_amp: bool = False
    # CPU threads for torch; 0: torch's default (every core), except 1 on a machine of <= 2 cores
    # when a step is small (batch_size x hidden < 16384), where two threads of small ops mostly wait.
    threads: int = 0
    compare_smoothing: bool = True  # also fit the smoothing baseline and show its scores beside
    # Seed ensemble of the leaderboard path (`train-all`, `make leaderboard`): this many runs of
    # seeds seed, seed+1, ... whose rates are averaged. mc_maze_small: 3 (docs/results.md).
    seeds: int = 1

    @property
    def holds_back_validation(self) -> bool:
        """Whether some fitted trials are held back to validate: a share, or bagging's folds."""
        return self.val_fraction > 0 or self.val_folds >= 2


@dataclass
class SmoothingConfig:
    """The NLB smoothing baseline: Gaussian kernel width and the Poisson GLM's L2 penalty."""

    kern_sd_ms: float = 50.0
    alpha: float = 0.01
    log_offset: float = 1e-4  # added before the log of smoothed counts
    max_iter: int = 500


@dataclass
class GpfaConfig:
    """The GPFA baseline: latent dimension, GPFA's bin, EM iterations and the Poisson GLMs' penalty."""

    latent_dim: int = 8
    bin_factor: int = 1  # GPFA's bin in data bins (counts summed; latents held over the bins)
    em_max_iters: int = 100
    tau_init_ms: float = 100.0  # initial GP timescale
    glm_alpha: float = 0.01  # L2 penalty of the GLMs from latents to rates
    glm_max_iter: int = 500
    forward_sd_ms: float = 50.0  # kernel of the forward bins' per-bin mean floor


@dataclass
class RunConfig:
    model: LangevinConfig = field(default_factory=LangevinConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    gpfa: GpfaConfig = field(default_factory=GpfaConfig)
    ndt: NdtConfig = field(default_factory=NdtConfig)
    lfads: LfadsConfig = field(default_factory=LfadsConfig)


SECTIONS: tuple[str, ...] = ("model", "train", "smoothing", "gpfa", "ndt", "lfads")

# Released LangevinFlow scripts (20 ms, test phase) where they exist; the smoothing baseline's
# kernel widths and penalties are those of the NLB smoothing baseline. The scaled mc_maze sets have
# no released script: smaller batches for fewer trials, and fewer epochs with a shorter warm-up so
# that a CPU run ends in minutes; measured choices are documented in docs/training.md.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "mc_maze": {
        "train.batch_size": 256,
        "train.cpu_amp": True,
        "train.weight_decay": 2e-5,
        "model.cd_rate": 0.5,
        "train.epochs": 2000,
        "smoothing.kern_sd_ms": 50.0,
        "smoothing.alpha": 0.01,
    },
    "mc_rtt": {
        "train.cpu_amp": True,
        "train.batch_size": 64,
        "model.cd_rate": 0.3,
        "train.epochs": 6000,
        "smoothing.kern_sd_ms": 30.0,
        "smoothing.alpha": 0.1,
    },
    "area2_bump": {
        "train.cpu_amp": True,
        "train.batch_size": 32,
        "model.cd_rate": 0.4,
        "smoothing.kern_sd_ms": 30.0,
        "smoothing.alpha": 0.01,
    },
    "dmfc_rsg": {
        "train.cpu_amp": True,
        "train.batch_size": 64,
        "train.lr": 1e-3,
        "train.weight_decay": 1e-5,
        "model.damping": 0.7,
        "model.cd_rate": 0.6,
        "train.epochs": 1000,
        "smoothing.kern_sd_ms": 60.0,
        "smoothing.alpha": 0.001,
    },
    "mc_maze_large": {
        "train.cpu_amp": True,
        "train.batch_size": 64,
        "model.cd_rate": 0.5,
        "train.epochs": 600,
        "train.kl_ramp_epochs": 150,
        "smoothing.kern_sd_ms": 40.0,
        "smoothing.alpha": 0.1,
    },
    "mc_maze_medium": {
        "train.cpu_amp": True,
        "train.batch_size": 32,
        "model.cd_rate": 0.5,
        "train.epochs": 600,
        "train.kl_ramp_epochs": 150,
        "smoothing.kern_sd_ms": 60.0,
        "smoothing.alpha": 0.1,
    },
    # Measured on real mc_maze_small (docs/results-archive.md): hidden 64 (128 overfits sooner) with the
    # released feed-forward width; dropout 0.2 (0.05 overfits 60 trials within ~150 epochs); no
    # weight decay (Adam's L2 term outweighs the small gradients of a per-bin mean NLL at 5 ms:
    # 0.16-0.18 held-out co-bps with 2e-5 against 0.22-0.23 without); early stopping on the
    # validation co-bps.
    "mc_maze_small": {
        "model.hidden": 64,
        "model.ff_dim": 512,
        "model.dropout": 0.2,
        "model.cd_rate": 0.5,
        "model.prediction_samples": 20,
        "train.batch_size": 16,
        "train.weight_decay": 0.0,
        # Every trial trains, none held back to validate: a fixed 210 epochs (about where the
        # validation co-bps had peaked), and the rates come from the last weights' average. 5-fold
        # CV, chosen on folds 0-1 x seeds 0-1, confirmed on folds 2-4 x seeds 0-1: +0.022 co-bps
        # at 5 ms (6 of 6), +0.003 at 20 ms (3 of 6) (docs/results.md, "How the current
        # defaults were chosen"). `nlbkit sweep` holds back the usual share, since it ranks its
        # trials on them.
        "train.val_fraction": 0.0,
        "train.epochs": 210,
        "train.kl_ramp_epochs": 75,
        "train.patience": 80,
        # 5-fold CV on the real train trials, no setting chosen on them: 3 seeds averaged 0.259
        # co-bps against 0.214 for single runs with the defaults of the time (docs/results-archive.md,
        # "Seed ensembles"); with the current ones, docs/results.md's first table.
        "train.seeds": 3,
        # 5-fold CV x 3 seeds at 5 and 20 ms, chosen on folds 0-1 x seeds 0-1 and confirmed on
        # folds 2-4: single runs +0.029 (5 ms) and +0.018 (20 ms) co-bps; 3-seed means within
        # +-0.004 of those without it (docs/results-archive.md, "An average of the weights"). At 210
        # epochs the horizon is capped at 35 (a sixth of the epochs), as measured.
        "train.ema_epochs": 50,
        "train.val_samples": 10,
        "smoothing.kern_sd_ms": 60.0,
        "smoothing.alpha": 0.1,
        # 5-fold CV on the real train trials at 20 ms, chosen on folds 0-1 (docs/results.md, "The
        # GPFA baseline"): GLM penalty 0.001 against 0.01 (0.1374 against 0.0496 co-bps at 16
        # latents), and 16 latents against 8 and 24 (0.1145, 0.1372).
        "gpfa.latent_dim": 16,
        "gpfa.glm_alpha": 0.001,
    },
}

# The training loop's settings of a network model other than LangevinFlow (whose are the dataset
# defaults above): "*" for every dataset, then the dataset's own. Applied over DATASET_DEFAULTS.
MODEL_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "ndt": {
        "*": {"train.lr": 1e-3, "train.kl_max": 0.0, "train.kl_ramp_epochs": 0},
        # 5-fold CV on the real train trials at 20 ms, chosen on folds 0-1 x seed 0 (docs/results.md,
        # "NDT and LFADS"): a 15 % validation share with early stopping (the checkpoint of the best
        # validation co-bps) against mc_maze_small's fixed 210 epochs on every trial, no weight
        # decay against 1e-4 and 1e-3, width 128 against 64 (and 32), dropout 0.5 against 0.3
        # (and 0.6), half the tokens masked against a quarter (and 0.7).
        "mc_maze_small": {
            "train.val_fraction": 0.15, "train.epochs": 600, "train.patience": 100,
            "train.weight_decay": 0.0,
            "ndt.hidden": 128, "ndt.ff_dim": 256, "ndt.dropout": 0.5, "ndt.embed_dropout": 0.5,
            "ndt.mask_ratio": 0.5,
        },
    },
    "lfads": {
        "*": {"train.lr": 3e-3, "train.kl_max": 1e-4, "train.kl_ramp_epochs": 100},
        # Chosen likewise (docs/results.md, "NDT and LFADS"): validation and early stopping as for
        # NDT, the KL weight 1e-4 against 1e-3 and 1e-5, coordinated dropout keeping half the
        # entries against 0.7; dropout 0.3, 16 factors, 1,200 epochs and the controller tied.
        "mc_maze_small": {
            "train.val_fraction": 0.15, "train.epochs": 600, "train.patience": 100,
            "lfads.cd_rate": 0.5,
        },
    },
}

# Named presets (`nlbkit train --preset NAME`): settings of the model and the loop, applied over
# the dataset's defaults and under --config and --set. "cpu": the configuration docs/results.md
# trained generated full-size mc_maze with at 20 ms ("Generated data at mc_maze scale": 150
# epochs, 0.675 co-bps, 0.974 of the oracle's). benchmarks/epoch_time.py on that data, one
# thread: 5.8 s an epoch, against 35.6 s for mc_maze's defaults (hidden 280, batch 256).
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "model.hidden": 64,
        "model.ff_dim": 512,
        "model.dropout": 0.2,
        "train.batch_size": 64,
        "train.epochs": 150,
        "train.kl_ramp_epochs": 40,
        "train.weight_decay": 0.0,
        "train.patience": 1000,
        "train.val_every": 5,
    },
}


def valid_keys(cfg: RunConfig | None = None) -> list[str]:
    """Every dotted key of a run configuration, e.g. 'train.lr'."""
    cfg = cfg or RunConfig()
    return [f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(getattr(cfg, s))]


def resolve_key(key: str, cfg: RunConfig | None = None, prefer: str | None = None) -> str:
    """The dotted key meant by `key`: dotted, or a bare field name of exactly one section, or of
    several when one of them is the section `prefer` (the trained model's: `hidden` is
    `ndt.hidden` for an NDT run, `model.hidden` for LangevinFlow)."""
    keys = valid_keys(cfg)
    if key in keys:
        return key
    bare = [k for k in keys if k.split(".", 1)[1] == key]
    if len(bare) == 1:
        return bare[0]
    if prefer is not None and f"{prefer}.{key}" in bare:
        return f"{prefer}.{key}"
    if len(bare) > 1:
        raise NlbkitError(f"config key '{key}' is ambiguous: use one of {', '.join(bare)}")
    bare_names: dict[str, list[str]] = {}
    for k in keys:
        bare_names.setdefault(k.split(".", 1)[1], []).append(k)
    close = difflib.get_close_matches(key, keys + list(bare_names), n=6, cutoff=0.5)
    close = list(dict.fromkeys(d for c in close for d in bare_names.get(c, [c])))
    close = sorted(close, key=lambda k: not k.startswith(f"{prefer or 'model'}."))[:4]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    sections = ", ".join(f"{s}.*" for s in SECTIONS)
    raise NlbkitError(
        f"unknown config key '{key}'{hint} (valid keys are {sections}; `nlbkit train --show-config`)"
    )


def _field_type(section: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(section))
    return hints[name]


def coerce(value: Any, kind: Any, key: str) -> Any:
    """`value` (a string from the command line, or a YAML scalar) as the field's type."""
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise NlbkitError(
                f"config key '{key}' takes one of {', '.join(map(str, choices))}, not '{value}'"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, args[0], key)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if isinstance(value, str):
                number = float(value)
                if not number.is_integer():
                    raise ValueError(value)
                return int(number)
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        name = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(kind, str(kind))
        raise NlbkitError(f"config key '{key}' takes {name}, not '{value}'") from None
    return value


def set_value(cfg: RunConfig, key: str, value: Any, prefer: str | None = None) -> None:
    """Set one field, by dotted (or bare, see `resolve_key`) key, converting `value` to the field's type."""
    dotted = resolve_key(key, cfg, prefer)
    section_name, name = dotted.split(".", 1)
    section = getattr(cfg, section_name)
    setattr(section, name, coerce(value, _field_type(section, name), dotted))


def parse_assignment(text: str) -> tuple[str, str]:
    """'train.lr=1e-3' -> ('train.lr', '1e-3')."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise NlbkitError(f"--set expects key=value (e.g. train.lr=1e-3), got '{text}'")
    return key.strip(), value.strip()


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1}} -> {'train.lr': 1}; dotted keys pass through."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{full}."))
        else:
            flat[full] = value
    return flat


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The flat key -> value mapping of a YAML (or JSON) config file."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NlbkitError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise NlbkitError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise NlbkitError(f"{path}: a config file must hold a mapping of keys to values")
    return flatten(loaded)


def build_config(
    dataset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    preset: str | None = None,
    model: str = "langevin",
) -> RunConfig:
    """Defaults, then the dataset's defaults, then `model`'s (MODEL_DEFAULTS), then `preset` (a
    name of PRESETS), then `config_file`, then `key=value` overrides."""
    cfg = RunConfig()
    for key, value in DATASET_DEFAULTS.get(dataset or "", {}).items():
        set_value(cfg, key, value)
    for layer in ("*", dataset or ""):
        for key, value in MODEL_DEFAULTS.get(model, {}).get(layer, {}).items():
            set_value(cfg, key, value)
    if preset is not None:
        if preset not in PRESETS:
            raise NlbkitError(f"unknown preset '{preset}'; presets: {', '.join(PRESETS)}")
        for key, value in PRESETS[preset].items():
            set_value(cfg, key, value)
    # Bare keys of several sections mean the trained model's section.
    prefer = get_model(model).config_section
    if config_file is not None:
        for key, value in read_config_file(config_file).items():
            try:
                set_value(cfg, key, value, prefer)
            except NlbkitError as exc:
                raise NlbkitError(f"{config_file}: {exc}") from None
    for text in overrides:
        set_value(cfg, *parse_assignment(text), prefer)
    try:
        validate(cfg)
    except NlbkitError as exc:
        sources = [str(config_file)] if config_file is not None else []
        sources += ["--set"] if overrides else []
        raise NlbkitError(f"{' with '.join(sources)}: {exc}" if sources else str(exc)) from None
    return cfg


STEP_MS = 20  # the released models' bin width; `model.bins_per_step = 0` makes one step this long


def resolve_for_bin(cfg: RunConfig, bin_ms: int) -> RunConfig:
    """Fill in the settings that depend on the bin width, in place: `bins_per_step` 0 (auto) of
    each network section becomes STEP_MS / bin_ms (4 at 5 ms, 1 at 20 ms; 1 when bin_ms does not
    divide STEP_MS)."""
    for section in (cfg.model, cfg.ndt, cfg.lfads):
        if section.bins_per_step == 0:
            section.bins_per_step = STEP_MS // bin_ms if bin_ms > 0 and STEP_MS % bin_ms == 0 else 1
    return cfg


def validate(cfg: RunConfig) -> None:
    """Check the sections' consistency (e.g. the model's sizes) after all overrides."""
    for section in (cfg.model, cfg.ndt, cfg.lfads):
        section.validate()
    tc = cfg.train
    if tc.batch_size < 1 or tc.epochs < 0 or tc.val_every < 1 or tc.lr <= 0:
        raise NlbkitError(
            "train.batch_size, train.val_every and train.lr must be positive, train.epochs >= 0"
        )
    if tc.l2_recurrent < 0:
        raise NlbkitError(f"train.l2_recurrent must be >= 0, got {tc.l2_recurrent}")
    if tc.lr_on not in ("val_nll", "val_co_bps"):
        raise NlbkitError(f"train.lr_on must be val_nll or val_co_bps, got {tc.lr_on!r}")
    if tc.val_folds and not (tc.val_folds >= 2 and 0 <= tc.val_fold < tc.val_folds):
        raise NlbkitError(
            f"train.val_folds must be 0 or >= 2 and train.val_fold in 0..val_folds-1, "
            f"got {tc.val_folds} and {tc.val_fold}"
        )
    if not 0 <= tc.val_fraction < 1 or not 0 < tc.eval_fraction < 1:
        raise NlbkitError("train.val_fraction must lie in [0, 1) and train.eval_fraction in (0, 1)")


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any]) -> RunConfig:
    """A RunConfig from `to_dict`'s output (e.g. a run's config.json); unknown keys are errors."""
    cfg = RunConfig()
    for key, value in flatten(data).items():
        set_value(cfg, key, value)
    validate(cfg)
    return cfg


def dumps(cfg: RunConfig) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=False)
