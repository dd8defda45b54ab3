"""Hyper-parameters of the network models: LangevinFlow, NDT and LFADS (training hyper-parameters
live with the training loop). Torch-free, so configs resolve without importing torch.

Every network config has `hidden` (the width the CPU thread rule reads) and `prediction_samples`
(stochastic passes averaged for the predicted rates).
"""

from __future__ import annotations

from dataclasses import dataclass

from nlbkit.errors import NlbkitError

VARIANTS = ("nlbkit", "released")
DECODERS = ("transformer", "gru")
INITIAL_ENCODERS = ("forward", "bidirectional")
# Extensions of the released model; variant "released" has none of them.
EXTENSIONS = ("learn_step_size", "learn_damping", "symplectic", "controller")


@dataclass
class LangevinConfig:
    """Model hyper-parameters. Defaults are those of the released model (20 ms, mc_maze).

    variant:
      "released" - the released model's structure: unit-norm coupling kernels and, as its per-step
                   regulariser, a velocity penalty sum_t |v_t|^2 / (2 velocity_prior_var) (what the
                   released "KL" computes, less constants); none of the extensions.
      "nlbkit"   - the paper's model with a correct KL: kernels with a zero-initialised gain; per
                   step, the KL between the posterior and the Langevin transition, which is zero
                   unless a controller infers impulses. Extensions are switches.
    Both feed the encoder the current bin (the paper's Algorithm 1), not the released lagged bin.

    Ablation switches: coupling (False: W = 0), dynamics (False: the decoder sees h_t only),
    noise_and_damping (False: gamma = 0 and no stochastic force), decoder ("transformer" | "gru").
    Extensions: learn_step_size, learn_damping, symplectic (velocity Verlet), controller (inferred
    per-step impulses on v from the encoder state, with their KL).
    """

    hidden: int = 280  # H; z and v have size H, viewed as channels x sites
    channels: int = 4  # C oscillator channels; H % C == 0
    kernel_taps: int = 3
    step_size: float = 0.01  # h
    damping: float = 0.55  # gamma
    mass: float = 1.0
    temperature: float = 1.0
    dropout: float = 0.05
    cd_rate: float = 0.5  # coordinated dropout keep probability (0 or 1 disables)
    cd_pass_rate: float = 0.0  # share of kept entries whose loss is not blocked
    heads: int = 2
    ff_dim: int = 512
    prediction_samples: int = 50
    # Bins per model step: 1 steps once per bin (released); k > 1 feeds the encoder counts summed
    # over k bins and interpolates the per-step log-rates to the bins. 0: `nlbkit train` picks the
    # k that makes a step 20 ms (the released models' bin width); a model built directly takes 0 as 1.
    bins_per_step: int = 0
    variant: str = "nlbkit"
    coupling: bool = True
    dynamics: bool = True
    noise_and_damping: bool = True
    decoder: str = "transformer"
    # What infers (z_0, v_0): "forward" - h_0, the forward GRU after the first step (released);
    # "bidirectional" - h_0 and the final state of a GRU reading the observed steps backwards, so
    # the initial condition sees the whole trial. An ablation switch (docs/langevin.md).
    initial_encoder: str = "forward"
    learn_step_size: bool = False
    learn_damping: bool = False
    symplectic: bool = False
    controller: bool = False
    velocity_prior_var: float = 0.1  # variant "released": variance of the velocity penalty

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise NlbkitError naming the first inconsistent field."""
        problems = list(self._problems())
        if problems:
            raise NlbkitError(f"langevin config: {problems[0]}")

    def _problems(self):
        if self.variant not in VARIANTS:
            yield f"variant must be one of {VARIANTS}, got {self.variant!r}"
        if self.initial_encoder not in INITIAL_ENCODERS:
            yield f"initial_encoder must be one of {INITIAL_ENCODERS}, got {self.initial_encoder!r}"
        if self.decoder not in DECODERS:
            yield f"decoder must be one of {DECODERS}, got {self.decoder!r}"
        if self.hidden <= 0 or self.channels <= 0 or self.hidden % self.channels:
            yield f"hidden {self.hidden} must be a positive multiple of channels {self.channels}"
        if self.kernel_taps <= 0 or self.kernel_taps % 2 == 0:
            yield f"kernel_taps must be odd and positive, got {self.kernel_taps}"
        width = 3 * self.hidden if self.dynamics else self.hidden
        if self.decoder == "transformer" and (self.heads <= 0 or width % self.heads):
            yield f"decoder width {width} is not divisible by heads {self.heads}"
        if self.step_size <= 0 or self.mass <= 0 or self.temperature <= 0:
            yield "step_size, mass and temperature must be positive"
        if not 0.0 <= self.damping < 1.0:
            yield f"damping must lie in [0, 1), got {self.damping}"
        if not 0.0 <= self.dropout < 1.0:
            yield f"dropout must lie in [0, 1), got {self.dropout}"
        if not 0.0 <= self.cd_rate <= 1.0 or not 0.0 <= self.cd_pass_rate <= 1.0:
            yield "cd_rate and cd_pass_rate must lie in [0, 1]"
        if self.bins_per_step < 0:
            yield f"bins_per_step must be 0 (auto) or positive, got {self.bins_per_step}"
        if self.prediction_samples < 1:
            yield f"prediction_samples must be at least 1, got {self.prediction_samples}"
        if self.velocity_prior_var <= 0:
            yield "velocity_prior_var must be positive"
        if self.variant == "released":
            on = [name for name in EXTENSIONS if getattr(self, name)]
            if on:
                yield f"variant 'released' has no {', '.join(on)}; set them to false"
        noisy = self.noise_and_damping and self.damping > 0
        if self.learn_damping and not self.noise_and_damping:
            yield "learn_damping needs noise_and_damping"
        if self.controller and not noisy:
            yield "controller needs a stochastic force (noise_and_damping with damping > 0)"
        if not self.dynamics and (self.controller or self.learn_step_size or self.learn_damping):
            yield "dynamics off leaves nothing for controller/learn_step_size/learn_damping to act on"

    @property
    def cd_active(self) -> bool:
        """Whether coordinated dropout applies in training (a keep rate of 0 or 1 disables it)."""
        return 0.0 < self.cd_rate < 1.0


def _first_problem(section: str, problems) -> None:
    problems = list(problems)
    if problems:
        raise NlbkitError(f"{section} config: {problems[0]}")


@dataclass
class NdtConfig:
    """The Neural Data Transformer (Ye & Pandarinath 2021): masked modelling of binned spikes.

    Held-in counts of every bin (forward bins zero) are embedded linearly, given a learned position
    embedding and read by `layers` Transformer encoder layers over the whole trial; a linear
    readout gives every neuron's log-rate in every bin. In training a share `mask_ratio` of the
    observed bins is masked (of those, `mask_zero_ratio` zeroed, then `mask_random_ratio` of the
    rest replaced by random counts, the others left as they are): the held-in loss counts on the
    masked bins only, the held-out neurons and forward bins always.
    """

    hidden: int = 128  # the embedding width (d_model)
    layers: int = 2
    heads: int = 2
    ff_dim: int = 256
    dropout: float = 0.3  # in the layers (attention, feed-forward) and before the readout
    embed_dropout: float = 0.3  # on the embedded inputs
    mask_ratio: float = 0.25
    mask_zero_ratio: float = 0.8
    mask_random_ratio: float = 0.5
    norm_first: bool = True  # pre-norm layers (post-norm, the 2017 layout, when False)
    # Bins per token, as LangevinFlow's model steps (0: `nlbkit train` makes a token 20 ms): a
    # token's input is its bins' counts summed, log-rates are interpolated to the bins, and a
    # masked token masks all its bins.
    bins_per_step: int = 0
    prediction_samples: int = 1  # deterministic in eval mode: one pass

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _first_problem("ndt", self._problems())

    def _problems(self):
        if self.hidden <= 0 or self.layers <= 0 or self.ff_dim <= 0:
            yield "hidden, layers and ff_dim must be positive"
        if self.heads <= 0 or self.hidden % self.heads:
            yield f"hidden {self.hidden} is not divisible by heads {self.heads}"
        for name in ("dropout", "embed_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                yield f"{name} must lie in [0, 1), got {getattr(self, name)}"
        for name in ("mask_ratio", "mask_zero_ratio", "mask_random_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                yield f"{name} must lie in [0, 1], got {getattr(self, name)}"
        if self.prediction_samples < 1:
            yield f"prediction_samples must be at least 1, got {self.prediction_samples}"
        if self.bins_per_step < 0:
            yield f"bins_per_step must be 0 (auto) or positive, got {self.bins_per_step}"


@dataclass
class LfadsConfig:
    """An LFADS-style sequential VAE (Sussillo et al. 2016; Pandarinath et al. 2018).

    A bidirectional GRU reads the observed held-in counts; its two final states give the posterior
    of the generator's initial state g_0 (prior N(0, ic_prior_var I)). The generator GRU runs from
    g_0 over every bin, observed and forward; factors are a linear map of its state (after dropout)
    and log-rates a linear map of the factors. With `controller`, a second bidirectional GRU's
    per-bin states feed a controller GRU that infers an input u_t to the generator each bin
    (posterior N(mu_t, sigma_t^2), prior N(0, co_prior_var I)). Coordinated dropout (keep rate
    `cd_rate`) as in LangevinFlow.
    """

    hidden: int = 64  # generator GRU width
    encoder: int = 64  # each direction of the initial-condition encoder
    factors: int = 32
    ic_prior_var: float = 0.1
    dropout: float = 0.2  # on the encoders' inputs and on the generator state before the factors
    cd_rate: float = 0.7  # coordinated dropout keep probability (0 or 1 disables)
    cd_pass_rate: float = 0.0
    controller: bool = False
    controller_hidden: int = 32
    controller_encoder: int = 32  # each direction of the controller's encoder
    inputs: int = 1  # dimension of the inferred input u_t
    co_prior_var: float = 0.1
    # Bins per generator step, as LangevinFlow's (0: `nlbkit train` makes a step 20 ms).
    bins_per_step: int = 0
    prediction_samples: int = 20

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _first_problem("lfads", self._problems())

    def _problems(self):
        sizes = ("hidden", "encoder", "factors", "controller_hidden", "controller_encoder", "inputs")
        bad = [name for name in sizes if getattr(self, name) <= 0]
        if bad:
            yield f"{', '.join(bad)} must be positive"
        if self.ic_prior_var <= 0 or self.co_prior_var <= 0:
            yield "ic_prior_var and co_prior_var must be positive"
        if not 0.0 <= self.dropout < 1.0:
            yield f"dropout must lie in [0, 1), got {self.dropout}"
        if not 0.0 <= self.cd_rate <= 1.0 or not 0.0 <= self.cd_pass_rate <= 1.0:
            yield "cd_rate and cd_pass_rate must lie in [0, 1]"
        if self.bins_per_step < 0:
            yield f"bins_per_step must be 0 (auto) or positive, got {self.bins_per_step}"
        if self.prediction_samples < 1:
            yield f"prediction_samples must be at least 1, got {self.prediction_samples}"

    @property
    def cd_active(self) -> bool:
        return 0.0 < self.cd_rate < 1.0
