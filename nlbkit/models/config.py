"""Hyper-parameters of the LangevinFlow model (training hyper-parameters live with the training loop)."""

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
