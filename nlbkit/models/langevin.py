"""LangevinFlow: a sequential VAE whose latents follow the underdamped Langevin equation.

Song, Keller, Yue, Perona, Welling, "Langevin Flows for Modeling Neural Latent Dynamics" (2025).
Shapes: B trials, T observed bins, F forward bins, N = N_in + N_out neurons, H hidden size.
One model step spans k = `bins_per_step` bins (1: one step per bin, as released): x_t (B, N_in)
is the held-in counts summed over step t's k bins, and the readout gives each step's log-rate per
bin, interpolated linearly between step centres to every bin. The observed bins are left-padded
with zeros to a multiple of k (no step straddles the end of the observation); in forward steps
(t >= S_obs) x_t := x_{S_obs-1}, the last observed step. (A readout of k separate bins per step
was tried: on mc_maze_small at 5 ms it learned far slower than this shared, interpolated one.)

    encoder   h_t = dropout(GRUCell(x_t, h_{t-1})),  h_{-1} = 0            (current bin, Algorithm 1)
    initial   q(z_0) = N(mu_z(h_0), diag exp lv_z(h_0)),  q(v_0) likewise   (linear heads)
              (initial_encoder "bidirectional": the heads read [h_0, b], b the final state of a
              GRU over the observed steps in reverse, with the same state dropout)
    dynamics  (z_t, v_t) -> (z_{t+1}, v_{t+1}): the Langevin step of `potential.langevin_step`
              in the coupled-oscillator potential U, sigma = sqrt(2 gamma T / m)
    decoder   log r = Linear(TransformerLayer([z_t, v_t, h_t] for every step))  (B, S, N)
              -> (B, T+F, N) interpolated to the bins, the padding dropped
    loss      mean Poisson NLL(log r, counts) + kl_weight * KL

KL per trial = KL(q(z_0) | N(0, I)) + KL(q(v_0) | N(0, I)) + a transition term:
  variant "nlbkit": sum_t KL(q(v_{t+1} | .) | p(v_{t+1} | z_t, v_t)). The posterior transition is
      the prior's plus an inferred impulse delta_t (controller), with the same variance sigma^2,
      so the term is sum_t |delta_t|^2 / (2 sigma^2), and exactly 0 without a controller.
  variant "released": the released code's per-step "KL" passes the sample v_t as a mean, which makes
      it a velocity penalty sum_{t>=1} |v_t|^2 / (2 velocity_prior_var); kept, under that name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nlbkit.models.config import LangevinConfig
from nlbkit.models.parts import (
    RateNetwork,
    coordinated_dropout,
    gaussian_kl_to_standard,
    masked_poisson_nll,
    mean_log_rate_prediction,
)
from nlbkit.models.potential import CoupledOscillatorPotential, StepCoefficients, langevin_step

__all__ = ["LangevinConfig", "LangevinFlow", "LangevinOutput", "coordinated_dropout", "masked_poisson_nll"]


@dataclass
class LangevinOutput:
    """log_rates (B, T+F, N) log spikes per bin; kl scalar, mean per trial; latents name -> (B, S, H),
    S the number of model steps (T + F when bins_per_step is 1).

    latents holds "h" always, "z" and "v" when the model has latent dynamics.
    kl_terms splits kl into "kl_initial" and "kl_transition" (nlbkit) or "velocity_penalty" (released).
    """

    log_rates: Tensor
    kl: Tensor
    latents: dict[str, Tensor]
    kl_terms: dict[str, Tensor] = field(default_factory=dict)


class TransformerDecoder(nn.Module):
    """One post-norm Transformer encoder layer, no positional encoding and no mask, then a readout."""

    def __init__(self, width: int, n_out: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=ff_dim, dropout=dropout, batch_first=True, norm_first=False
        )
        # T-Fixup-style down-scaling of the residual branches, as the released model does
        # (its value-projection scaling names a parameter PyTorch does not have, so it never applies).
        with torch.no_grad():
            for lin in (self.layer.linear1, self.layer.linear2, self.layer.self_attn.out_proj):
                lin.weight.mul_(0.67 * 3.0**-0.25)
        self.readout = nn.Linear(width, n_out)

    def forward(self, features: Tensor) -> Tensor:
        """(B, L, width) -> (B, L, n_out) log-rates."""
        return self.readout(self.layer(features))


class GRUDecoder(nn.Module):
    """Ablation of the Transformer: a bidirectional GRU (the same whole-trial context), then a readout."""

    def __init__(self, width: int, hidden: int, n_out: int, dropout: float) -> None:
        super().__init__()
        self.gru = nn.GRU(width, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(2 * hidden, n_out)

    def forward(self, features: Tensor) -> Tensor:
        """(B, L, width) -> (B, L, n_out) log-rates."""
        return self.readout(self.dropout(self.gru(features)[0]))


class LangevinFlow(RateNetwork):
    """The model of the module docstring; `cfg` is validated on construction."""

    def __init__(self, cfg: LangevinConfig, n_heldin: int, n_heldout: int, n_forward: int) -> None:
        super().__init__(cfg, n_heldin, n_heldout, n_forward)
        hid = cfg.hidden
        self.encoder = nn.GRUCell(n_heldin, hid)
        self.state_dropout = nn.Dropout(cfg.dropout)
        if cfg.dynamics:
            init_width = hid
            if cfg.initial_encoder == "bidirectional":
                self.backward_encoder = nn.GRU(n_heldin, hid, batch_first=True)
                init_width = 2 * hid
            self.z0_head = nn.Linear(init_width, 2 * hid)
            self.v0_head = nn.Linear(init_width, 2 * hid)
            mode = "off" if not cfg.coupling else ("unit" if cfg.variant == "released" else "gain")
            self.potential = CoupledOscillatorPotential(hid, cfg.channels, cfg.kernel_taps, mode)
            damping = cfg.damping if cfg.noise_and_damping else 0.0
            self.log_step = nn.Parameter(torch.tensor(math.log(cfg.step_size)), cfg.learn_step_size)
            self.damping_logit = nn.Parameter(torch.tensor(_logit(damping)), cfg.learn_damping)
            if cfg.controller:
                # Zero init: training starts from the uncontrolled prior, with a zero transition KL.
                self.controller = nn.Linear(hid, hid)
                nn.init.zeros_(self.controller.weight)
                nn.init.zeros_(self.controller.bias)
        width = 3 * hid if cfg.dynamics else hid
        n_out = n_heldin + n_heldout
        if cfg.decoder == "transformer":
            self.decoder = TransformerDecoder(width, n_out, cfg.heads, cfg.ff_dim, cfg.dropout)
        else:
            self.decoder = GRUDecoder(width, hid, n_out, cfg.dropout)

    def coefficients(self) -> StepCoefficients:
        """h, gamma, m, T of the Langevin step (h and gamma tensors, learned or fixed)."""
        damping = torch.sigmoid(self.damping_logit) if self.cfg.noise_and_damping else 0.0
        return StepCoefficients(self.log_step.exp(), damping, self.cfg.mass, self.cfg.temperature)

    @torch.no_grad()
    def set_baseline_rates(self, mean_counts: Tensor) -> None:
        """Start the readout at log of each neuron's mean count per bin, (N,) (a faster start)."""
        self.decoder.readout.bias.copy_(mean_counts.clamp_min(1e-3).log())

    def forward(self, heldin: Tensor) -> LangevinOutput:
        """heldin (B, T, N_in) spike counts -> LangevinOutput with log_rates (B, T+F, N)."""
        self.check_heldin(heldin)
        inputs, pad = self._group_bins(heldin)  # (B, S_obs, N_in)
        states = self._encode(inputs)  # (S, B, H)
        h = states.transpose(0, 1)
        if not self.cfg.dynamics:
            log_rates = self._unfold_bins(self.decoder(h).float(), pad, heldin.shape[1])
            return LangevinOutput(log_rates, h.new_zeros(()), {"h": h})
        z, v, kl_terms = self._integrate(states, self._initial_features(inputs, states))
        step_log_rates = self.decoder(torch.cat([z, v, h.float()], dim=-1)).float()
        log_rates = self._unfold_bins(step_log_rates, pad, heldin.shape[1])
        kl = sum(kl_terms.values(), h.new_zeros(()))
        return LangevinOutput(log_rates, kl, {"z": z, "v": v, "h": h}, kl_terms)

    def _group_bins(self, heldin: Tensor) -> tuple[Tensor, int]:
        """(B, T, N_in) -> ((B, S_obs, N_in) counts summed over each step's k bins, left padding)."""
        return self.grid.group(heldin)

    def _unfold_bins(self, step_log_rates: Tensor, pad: int, n_bins: int) -> Tensor:
        """(B, S, N) log-rates per bin at the step centres -> (B, T+F, N) at every bin."""
        return self.grid.unfold(step_log_rates, pad, n_bins)

    def _encode(self, x: Tensor) -> Tensor:
        """GRU states h_t (S, B, H) over the observed steps x_0..x_{S_obs-1} (B, S_obs, N_in),
        then x_{S_obs-1} again for each forward step."""
        steps = x.shape[1] + self.n_steps(0)[1]
        h = x.new_zeros(x.shape[0], self.cfg.hidden)
        x = x.transpose(0, 1)
        # Dropout on the recurrent state, with every step's mask drawn in one call (cheaper on CPU).
        masks = self.state_dropout(h.new_ones(steps, *h.shape)) if self.training else None
        states = []
        for t in range(steps):
            h = self.encoder(x[min(t, x.shape[0] - 1)], h)
            if masks is not None:
                h = h * masks[t]
            states.append(h)
        return torch.stack(states)

    def _initial_features(self, inputs: Tensor, states: Tensor) -> Tensor:
        """What the initial-state heads read: h_0, or [h_0, backward GRU's final state] (B, 2H)."""
        if self.cfg.initial_encoder != "bidirectional":
            return states[0]
        _, last = self.backward_encoder(inputs.flip(1))
        return torch.cat([states[0], self.state_dropout(last[0].to(states.dtype))], dim=-1)

    def _integrate(self, states: Tensor, initial: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Sample (z_0, v_0) from h_0 and run the Langevin steps: z, v (B, T+F, H) and KL terms.

        Always in float32, also under autocast: in bfloat16 the update z + h v (h = 0.01) rounds
        to z itself for a sizeable share of entries, so a model trained under autocast would not
        be the one that predicts in float32. The initial-state heads, the potential and the steps
        run outside autocast on float32 states; the encoder and decoder may use reduced precision.
        """
        with torch.autocast(device_type=states.device.type, enabled=False):
            return self._integrate_fp32(states.float(), initial.float())

    def _integrate_fp32(self, states: Tensor, initial: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        cfg = self.cfg
        z_mean, z_logvar = self.z0_head(initial).chunk(2, dim=-1)
        v_mean, v_logvar = self.v0_head(initial).chunk(2, dim=-1)
        z = z_mean + torch.randn_like(z_mean) * (0.5 * z_logvar).exp()
        v = v_mean + torch.randn_like(v_mean) * (0.5 * v_logvar).exp()
        kl_terms = {"kl_initial": gaussian_kl_to_standard(z_mean, z_logvar)
                    + gaussian_kl_to_standard(v_mean, v_logvar)}
        coef = self.coefficients()
        noisy = cfg.noise_and_damping and cfg.damping > 0
        grad_matrix = self.potential.gradient_matrix()

        def grad_fn(position: Tensor) -> Tensor:
            return position @ grad_matrix  # grad U(z) = z G, U being quadratic

        grad = grad_fn(z)
        zs, vs, impulses = [z], [v], []
        for t in range(1, states.shape[0]):
            impulse = self.controller(states[t]) if cfg.controller else None
            eps = torch.randn_like(v) if noisy else None
            z, v, grad = langevin_step(
                z, v, grad, grad_fn, coef, symplectic=cfg.symplectic, eps=eps, impulse=impulse
            )
            zs.append(z)
            vs.append(v)
            if impulse is not None:
                impulses.append(impulse)
        z_seq, v_seq = torch.stack(zs, dim=1), torch.stack(vs, dim=1)
        if cfg.variant == "released":
            penalty = v_seq[:, 1:].pow(2).sum(dim=(1, 2)).mean() / (2.0 * cfg.velocity_prior_var)
            kl_terms["velocity_penalty"] = penalty
        else:
            kl_terms["kl_transition"] = self._transition_kl(impulses, coef, z_seq)
        return z_seq, v_seq, kl_terms

    @staticmethod
    def _transition_kl(impulses: list[Tensor], coef: StepCoefficients, like: Tensor) -> Tensor:
        """sum_t |delta_t|^2 / (2 sigma^2), mean over trials: KL of two Gaussians differing in mean."""
        if not impulses:
            return like.new_zeros(())
        delta = torch.stack(impulses, dim=1)
        return delta.pow(2).sum(dim=(1, 2)).mean() / (2.0 * coef.noise_scale**2)

    def loss(self, heldin: Tensor, target: Tensor, kl_weight: float) -> tuple[Tensor, dict[str, float]]:
        """Training objective: mean Poisson NLL + kl_weight * KL, and its parts as floats.

        heldin (B, T, N_in) counts; target (B, T+F, N_in + N_out) counts, [held-in | held-out] along
        neurons, [observed | forward] along time. In training mode with coordinated dropout on,
        inputs are dropped (see `coordinated_dropout`) and the kept observed held-in entries are
        blocked from the gradient; held-out neurons and forward bins always count.
        """
        return self.latent_variable_loss(heldin, target, kl_weight)

    @torch.no_grad()
    def predict_rates(self, heldin: Tensor, n_samples: int | None = None, max_rows: int = 1024) -> Tensor:
        """Rates per bin (B, T+F, N): exp of the mean log-rate over n_samples stochastic passes.

        Runs in eval mode (no dropout; latents still sampled) and restores the previous mode. Samples
        are batched, at most `max_rows` trial copies per pass. Uses torch's global random generator:
        seed it for repeatable predictions.
        """
        n = n_samples or self.cfg.prediction_samples
        return mean_log_rate_prediction(self, lambda x: self(x).log_rates, heldin, n, max_rows)


def _logit(p: float) -> float:
    """log(p / (1 - p)), with p = 0 mapped to a large negative number (sigmoid -> 0 to float precision)."""
    return math.log(p / (1.0 - p)) if p > 0 else -30.0


def build(cfg, n_heldin: int, n_heldout: int, n_forward: int) -> LangevinFlow:
    """The registry's builder: LangevinFlow from a RunConfig's `model` section."""
    return LangevinFlow(cfg.model, n_heldin, n_heldout, n_forward)
