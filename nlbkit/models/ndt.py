"""NDT: the Neural Data Transformer (Ye & Pandarinath 2021), masked modelling of binned spikes.

Shapes: B trials, T observed bins, F forward bins, N = N_in + N_out neurons, D = `hidden`.
A token spans k = `bins_per_step` bins (LangevinFlow's model steps, `parts.StepGrid`): S_obs
observed and S_fwd forward tokens, S = S_obs + S_fwd (S = T + F when k is 1).

    input     x (B, S, N_in): the held-in counts summed over each token's bins, zeros in the
              forward tokens
    mask      training only: a share `mask_ratio` of the observed tokens of each trial is masked;
              of those, `mask_zero_ratio` set to 0, then `mask_random_ratio` of the rest set to
              random counts (Poisson at each neuron's mean count), the others left as they are
    embed     e = dropout(Linear(x)) + P,  P a learned position embedding (T+F, D)
    encoder   `layers` Transformer encoder layers, attention over the whole trial, no causal mask
    readout   log r = Linear(dropout(encoder(e)))  (B, S, N) per bin, interpolated to (B, T+F, N)
    loss      mean Poisson NLL over the held-in bins of masked tokens, every held-out neuron and
              every forward bin (the unmasked held-in bins count in the value, pass no gradient)

Held-out neurons and forward bins are never inputs, so they are predicted as in evaluation. In
eval mode nothing is masked or dropped and the rates are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nlbkit.errors import NlbkitError
from nlbkit.models.config import NdtConfig
from nlbkit.models.parts import RateNetwork, masked_poisson_nll

__all__ = ["NDT", "NdtConfig", "NdtOutput", "mask_bins"]


@dataclass
class NdtOutput:
    """log_rates (B, T+F, N) log spikes per bin; kl is 0 (not a latent-variable model); latents
    "h", the last layer's states (B, S, D), what the readout reads."""

    log_rates: Tensor
    kl: Tensor
    latents: dict[str, Tensor]


def mask_bins(
    heldin: Tensor, ratio: float, zero_ratio: float, random_ratio: float, mean_counts: Tensor
) -> tuple[Tensor, Tensor]:
    """(masked inputs (B, S, N_in), masked (B, S) bool): NDT's masking of whole tokens;
    mean_counts (N_in,) the mean count of a token, at which random counts are drawn."""
    b, t, _ = heldin.shape
    masked = torch.rand(b, t, device=heldin.device) < ratio
    zeroed = masked & (torch.rand(b, t, device=heldin.device) < zero_ratio)
    randomised = masked & ~zeroed & (torch.rand(b, t, device=heldin.device) < random_ratio)
    noise = torch.poisson(mean_counts.to(heldin.dtype).expand_as(heldin))
    inputs = torch.where(zeroed[..., None], torch.zeros_like(heldin), heldin)
    inputs = torch.where(randomised[..., None], noise, inputs)
    return inputs, masked


class NDT(RateNetwork):
    """The model of the module docstring; `cfg` is validated on construction."""

    def __init__(self, cfg: NdtConfig, n_heldin: int, n_heldout: int, n_forward: int, max_tokens: int = 512):
        super().__init__(cfg, n_heldin, n_heldout, n_forward)
        self.embed = nn.Linear(n_heldin, cfg.hidden)
        self.embed_dropout = nn.Dropout(cfg.embed_dropout)
        self.position = nn.Parameter(torch.zeros(max_tokens, cfg.hidden))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.hidden, cfg.heads, dim_feedforward=cfg.ff_dim, dropout=cfg.dropout,
            batch_first=True, norm_first=cfg.norm_first,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(cfg.hidden) if cfg.norm_first else nn.Identity()
        self.readout_dropout = nn.Dropout(cfg.dropout)
        self.readout = nn.Linear(cfg.hidden, n_heldin + n_heldout)
        self.register_buffer("mean_counts", torch.ones(n_heldin + n_heldout))

    @torch.no_grad()
    def set_baseline_rates(self, mean_counts: Tensor) -> None:
        """Start the readout at log of each neuron's mean count per bin (N,); the masking's random
        counts are drawn at the held-in neurons' means."""
        self.mean_counts.copy_(mean_counts.clamp_min(1e-3))
        self.readout.bias.copy_(self.mean_counts.log())

    def forward(self, heldin: Tensor) -> NdtOutput:
        """heldin (B, T, N_in) counts -> log-rates (B, T+F, N), nothing masked."""
        self.check_heldin(heldin)
        tokens, pad = self.grid.group(heldin)
        return self._decode(tokens, pad, heldin.shape[1])

    def _decode(self, tokens: Tensor, pad: int, n_bins: int) -> NdtOutput:
        """Observed tokens (B, S_obs, N_in) -> log-rates (B, T+F, N) and the last layer's states."""
        b = tokens.shape[0]
        length = tokens.shape[1] + self.n_steps(0)[1]
        if length > self.position.shape[0]:
            most = self.position.shape[0]
            raise NlbkitError(f"trials of {length} tokens exceed the position embedding's {most}")
        x = torch.cat([tokens, tokens.new_zeros(b, length - tokens.shape[1], self.n_heldin)], dim=1)
        e = self.embed_dropout(self.embed(x)) + self.position[:length]  # (B, S, D)
        h = self.final_norm(self.encoder(e))  # (B, S, D)
        step_log_rates = self.readout(self.readout_dropout(h)).float()  # (B, S, N)
        log_rates = self.grid.unfold(step_log_rates, pad, n_bins)
        return NdtOutput(log_rates, log_rates.new_zeros(()), {"h": h})

    def loss(self, heldin: Tensor, target: Tensor, kl_weight: float) -> tuple[Tensor, dict[str, float]]:
        """Mean Poisson NLL (see the module doc); heldin (B, T, N_in), target (B, T+F, N). In
        training mode tokens are masked first; `kl_weight` is unused (there is no KL)."""
        self.check_heldin(heldin)
        self.check_target(heldin, target)
        b, t, _ = heldin.shape
        tokens, pad = self.grid.group(heldin)
        blocked = None
        if self.training:  # mask_ratio 0: no token is masked, so no held-in bin trains the model
            cfg = self.cfg
            token_means = self.mean_counts[: self.n_heldin] * self.bins_per_step
            tokens, masked = mask_bins(tokens, cfg.mask_ratio, cfg.mask_zero_ratio, cfg.mask_random_ratio,
                                       token_means)
            blocked = (~self.grid.bins_of(masked, pad, t))[..., None].expand(b, t, self.n_heldin)
        nll = masked_poisson_nll(self._decode(tokens, pad, t).log_rates, target, blocked)
        return nll, {"nll": nll.item(), "kl": 0.0, "loss": nll.item()}

    @torch.no_grad()
    def predict_rates(self, heldin: Tensor, n_samples: int | None = None) -> Tensor:
        """Rates per bin (B, T+F, N) in eval mode (deterministic: `n_samples` is not used)."""
        was_training = self.training
        self.eval()
        try:
            return self(heldin).log_rates.exp()
        finally:
            self.train(was_training)


def build(cfg, n_heldin: int, n_heldout: int, n_forward: int) -> NDT:
    """The registry's builder: NDT from a RunConfig's `ndt` section."""
    return NDT(cfg.ndt, n_heldin, n_heldout, n_forward)
