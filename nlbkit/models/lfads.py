"""LFADS: latent factor analysis via dynamical systems (Sussillo et al. 2016; Pandarinath et al. 2018),
written from the papers.

Shapes: B trials, T observed bins, F forward bins, N = N_in + N_out neurons, G = `hidden`
(generator), E = `encoder`, K = `factors`, U = `inputs`. A generator step spans k =
`bins_per_step` bins (LangevinFlow's model steps, `parts.StepGrid`): S_obs observed steps, L steps
in all (L = T + F when k is 1).

    encoder     (e_fwd, e_bwd) = final states of a bidirectional GRU over dropout(x)  (B, 2E)
                x (B, S_obs, N_in) the observed held-in counts summed over each step's bins
    initial     q(g_0) = N(mu(e), diag exp lv(e)),  prior N(0, ic_prior_var I)          (B, G)
    generator   g_t = GRU(u_t, g_{t-1}) for t = 1..L, from g_0                          (B, L, G)
                u_t = 0 without a controller; with one:
    controller  c_t = GRUCell([a_t, f_{t-1}], c_{t-1}),  q(u_t) = N(mu(c_t), diag exp lv(c_t)),
                prior N(0, co_prior_var I); a_t the per-bin states of a second bidirectional GRU
                over dropout(x) (zeros in the forward bins), f_0 the factors of g_0
    factors     f_t = W_f dropout(g_t)  (no bias)                                      (B, L, K)
    rates       log r_t = W_r f_t + b_r  (B, L, N) per bin, interpolated to (B, T+F, N)
    loss        mean Poisson NLL + kl_weight * (KL(q(g_0) | p) + sum_t KL(q(u_t) | p))  per trial

Coordinated dropout (keep rate `cd_rate`) drops held-in input entries in training and keeps the
kept ones out of the gradient, as in LangevinFlow. Without a controller the generator is one fused
GRU over zero inputs; with one it steps bin by bin, since u_t depends on f_{t-1}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nlbkit.models.config import LfadsConfig
from nlbkit.models.parts import (
    RateNetwork,
    gaussian_kl_to_standard,
    mean_log_rate_prediction,
)

__all__ = ["LFADS", "LfadsConfig", "LfadsOutput"]


@dataclass
class LfadsOutput:
    """log_rates (B, T+F, N); kl scalar, mean per trial, split in kl_terms ("kl_initial",
    "kl_inputs" with a controller); latents "g" (B, L, G), "factors" (B, L, K), "u" (B, L, U)."""

    log_rates: Tensor
    kl: Tensor
    latents: dict[str, Tensor]
    kl_terms: dict[str, Tensor] = field(default_factory=dict)


class LFADS(RateNetwork):
    """The model of the module docstring; `cfg` is validated on construction."""

    def __init__(self, cfg: LfadsConfig, n_heldin: int, n_heldout: int, n_forward: int) -> None:
        super().__init__(cfg, n_heldin, n_heldout, n_forward)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ic_encoder = nn.GRU(n_heldin, cfg.encoder, batch_first=True, bidirectional=True)
        self.ic_head = nn.Linear(2 * cfg.encoder, 2 * cfg.hidden)
        # The posterior starts at the prior's variance, not 1: a unit-variance g_0 drowns the
        # generator's start in noise, and on small data training then sat at the mean rates
        # (co-bps ~0) for tens of epochs, or for good, depending on the seed.
        with torch.no_grad():
            self.ic_head.bias[cfg.hidden :].fill_(math.log(cfg.ic_prior_var))
        if cfg.controller:
            self.ci_encoder = nn.GRU(n_heldin, cfg.controller_encoder, batch_first=True, bidirectional=True)
            self.controller = nn.GRUCell(2 * cfg.controller_encoder + cfg.factors, cfg.controller_hidden)
            self.co_head = nn.Linear(cfg.controller_hidden, 2 * cfg.inputs)
            self.generator = nn.GRUCell(cfg.inputs, cfg.hidden)
        else:
            self.generator = nn.GRU(1, cfg.hidden, batch_first=True)  # fed zeros: u_t = 0
        self.factor_map = nn.Linear(cfg.hidden, cfg.factors, bias=False)
        self.readout = nn.Linear(cfg.factors, n_heldin + n_heldout)

    @torch.no_grad()
    def set_baseline_rates(self, mean_counts: Tensor) -> None:
        """Start the readout at log of each neuron's mean count per bin, (N,)."""
        self.readout.bias.copy_(mean_counts.clamp_min(1e-3).log())

    def forward(self, heldin: Tensor) -> LfadsOutput:
        """heldin (B, T, N_in) counts -> LfadsOutput with log_rates (B, T+F, N)."""
        self.check_heldin(heldin)
        cfg = self.cfg
        steps, pad = self.grid.group(heldin)  # (B, S_obs, N_in)
        x = self.dropout(steps)
        _, last = self.ic_encoder(x)  # (2, B, E)
        ic_mean, ic_logvar = self.ic_head(torch.cat([last[0], last[1]], dim=-1)).float().chunk(2, dim=-1)
        g0 = ic_mean + torch.randn_like(ic_mean) * (0.5 * ic_logvar).exp()  # (B, G)
        kl_terms = {"kl_initial": gaussian_kl_to_standard(ic_mean, ic_logvar, cfg.ic_prior_var)}
        length = sum(self.n_steps(heldin.shape[1]))
        if cfg.controller:
            g, u, kl_inputs = self._controlled(x, g0, length)
            kl_terms["kl_inputs"] = kl_inputs
        else:
            zeros = g0.new_zeros(steps.shape[0], length, 1)
            g = self.generator(zeros.to(x.dtype), g0[None].to(x.dtype))[0]  # (B, L, G)
            u = zeros
        factors = self.factor_map(self.dropout(g))  # (B, L, K)
        log_rates = self.grid.unfold(self.readout(factors).float(), pad, heldin.shape[1])
        kl = sum(kl_terms.values(), log_rates.new_zeros(()))
        return LfadsOutput(log_rates, kl, {"g": g, "factors": factors, "u": u}, kl_terms)

    def _controlled(self, x: Tensor, g0: Tensor, length: int) -> tuple[Tensor, Tensor, Tensor]:
        """Generator states (B, L, G) and inputs (B, L, U) stepped with the controller, and the
        inputs' KL summed over bins (mean per trial)."""
        cfg = self.cfg
        a = self.ci_encoder(x)[0]  # (B, T, 2 Ec)
        a = torch.cat([a, a.new_zeros(a.shape[0], length - a.shape[1], a.shape[2])], dim=1)  # (B, L, 2 Ec)
        g = g0.to(a.dtype)
        c = a.new_zeros(a.shape[0], cfg.controller_hidden)
        f = self.factor_map(g)
        states, inputs, means, logvars = [], [], [], []
        for t in range(length):
            c = self.controller(torch.cat([a[:, t], f.to(a.dtype)], dim=-1), c)
            mean, logvar = self.co_head(c).float().chunk(2, dim=-1)
            u = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
            g = self.generator(u.to(a.dtype), g)
            f = self.factor_map(self.dropout(g))
            states.append(g)
            inputs.append(u)
            means.append(mean)
            logvars.append(logvar)
        b = x.shape[0]
        mean, logvar = torch.stack(means, 1).reshape(b, -1), torch.stack(logvars, 1).reshape(b, -1)
        kl = gaussian_kl_to_standard(mean, logvar, cfg.co_prior_var)
        return torch.stack(states, dim=1), torch.stack(inputs, dim=1), kl

    def loss(self, heldin: Tensor, target: Tensor, kl_weight: float) -> tuple[Tensor, dict[str, float]]:
        """Mean Poisson NLL + kl_weight * KL, and its parts as floats; heldin (B, T, N_in), target
        (B, T+F, N). In training mode with coordinated dropout on, the kept observed held-in
        entries pass no gradient."""
        return self.latent_variable_loss(heldin, target, kl_weight)

    @torch.no_grad()
    def predict_rates(self, heldin: Tensor, n_samples: int | None = None, max_rows: int = 1024) -> Tensor:
        """Rates per bin (B, T+F, N): exp of the mean log-rate over n_samples posterior samples."""
        n = n_samples or self.cfg.prediction_samples
        return mean_log_rate_prediction(self, lambda x: self(x).log_rates, heldin, n, max_rows)


def build(cfg, n_heldin: int, n_heldout: int, n_forward: int) -> LFADS:
    """The registry's builder: LFADS from a RunConfig's `lfads` section."""
    return LFADS(cfg.lfads, n_heldin, n_heldout, n_forward)
