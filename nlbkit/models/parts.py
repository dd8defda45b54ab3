"""Pieces the network models share: the masked Poisson loss, coordinated dropout, the Gaussian KL
and sampled predictions. Shapes: B trials, T observed bins, F forward bins, N neurons."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from nlbkit.errors import NlbkitError


def gaussian_kl_to_standard(mean: Tensor, logvar: Tensor, prior_var: float = 1.0) -> Tensor:
    """KL(N(mean, diag exp logvar) | N(0, prior_var I)) summed over the last dim, averaged over rows."""
    log_ratio = logvar - math.log(prior_var)  # exactly logvar for the standard prior
    return 0.5 * (mean.pow(2) / prior_var + log_ratio.exp() - 1.0 - log_ratio).sum(dim=-1).mean()


def coordinated_dropout(heldin: Tensor, keep_rate: float, pass_rate: float) -> tuple[Tensor, Tensor]:
    """Coordinated dropout of held-in counts (B, T, N_in).

    Returns (inputs, blocked): inputs keep each entry with probability keep_rate, rescaled by
    1 / keep_rate so sums are unbiased; blocked (bool, same shape) marks the kept entries whose loss
    must not train the model (it could copy them), except a random share pass_rate let through.
    """
    kept = torch.rand_like(heldin) < keep_rate
    passed = torch.rand_like(heldin) < pass_rate
    return heldin * kept / keep_rate, kept & ~passed


def masked_poisson_nll(log_rates: Tensor, target: Tensor, blocked: Tensor | None) -> Tensor:
    """Mean Poisson NLL exp(log r) - y log r over the observed entries of target (B, T+F, N).

    NaN targets (bins a trial did not observe) are left out of the value and the gradient, not
    read as zero spikes. Entries of `blocked` (B, T, N_in), the observed held-in corner, count in
    the value but pass no gradient.
    """
    observed = ~torch.isnan(target)
    nll = F.poisson_nll_loss(
        log_rates, torch.where(observed, target, 0.0), log_input=True, full=False, reduction="none"
    )
    if blocked is not None:
        corner = torch.zeros_like(nll, dtype=torch.bool)
        corner[:, : blocked.shape[1], : blocked.shape[2]] = blocked
        nll = torch.where(corner, nll.detach(), nll)
    return torch.where(observed, nll, 0.0).sum() / observed.sum().clamp_min(1)


@torch.no_grad()
def mean_log_rate_prediction(
    model: torch.nn.Module, log_rates_of: Callable[[Tensor], Tensor], heldin: Tensor, n_samples: int,
    max_rows: int = 1024,
) -> Tensor:
    """Rates per bin (B, T+F, N): exp of the mean of `log_rates_of` over n_samples stochastic
    passes, in eval mode (no dropout; latents still sampled), the previous mode restored after.
    Passes are batched, at most `max_rows` trial copies at a time."""
    was_training = model.training
    model.eval()
    try:
        total = None
        per_pass = max(1, max_rows // max(1, heldin.shape[0]))
        done = 0
        while done < n_samples:
            k = min(per_pass, n_samples - done)
            log_rates = log_rates_of(heldin.repeat(k, 1, 1))
            chunk = log_rates.view(k, heldin.shape[0], *log_rates.shape[1:]).sum(dim=0)
            total = chunk if total is None else total + chunk
            done += k
    finally:
        model.train(was_training)
    return (total / n_samples).exp()


class StepGrid:
    """Model steps of k bins over T observed and F forward bins, as LangevinFlow, NDT and LFADS
    step: the observed bins are left-padded with zeros to a multiple of k (no step straddles the
    end of the observation), a step's input is its bins' counts summed, and per-step log-rates
    are interpolated linearly between step centres to every bin (held constant beyond the first
    and last centres)."""

    def __init__(self, bins_per_step: int, n_forward: int) -> None:
        self.k = max(1, bins_per_step)
        self.n_forward = n_forward

    def n_steps(self, n_bins: int) -> tuple[int, int]:
        """(observed steps, forward steps) for n_bins observed bins: ceil(T / k), ceil(F / k)."""
        return -(-n_bins // self.k), -(-self.n_forward // self.k)

    def group(self, heldin: Tensor) -> tuple[Tensor, int]:
        """(B, T, N_in) -> ((B, S_obs, N_in) counts summed over each step's k bins, left padding)."""
        k = self.k
        pad = self.n_steps(heldin.shape[1])[0] * k - heldin.shape[1]
        if pad:
            heldin = F.pad(heldin, (0, 0, pad, 0))
        if k == 1:
            return heldin, 0
        b, t, n = heldin.shape
        return heldin.reshape(b, t // k, k, n).sum(dim=2), pad

    def unfold(self, step_log_rates: Tensor, pad: int, n_bins: int) -> Tensor:
        """(B, S, N) log-rates per bin at the step centres -> (B, T+F, N) at every bin, without
        the padding."""
        k = self.k
        if k == 1:
            return step_log_rates
        per_bin = F.interpolate(step_log_rates.transpose(1, 2), scale_factor=k, mode="linear")
        return per_bin.transpose(1, 2)[:, pad : pad + n_bins + self.n_forward]

    def bins_of(self, per_step: Tensor, pad: int, n_bins: int) -> Tensor:
        """(B, S_obs, ...) per observed step -> (B, T, ...) per observed bin (each step's value
        repeated over its bins, the padding dropped)."""
        return per_step.repeat_interleave(self.k, dim=1)[:, pad : pad + n_bins]


class RateNetwork(torch.nn.Module):
    """What LangevinFlow, NDT and LFADS share: their sizes, validated config and step grid, the
    shape checks of their inputs and targets, and (for the latent-variable ones) the loss
    mean Poisson NLL + kl_weight * KL with coordinated dropout.

    A subclass's forward returns an output with `log_rates` (B, T+F, N), `kl` and `kl_terms`
    wherever it uses `latent_variable_loss`."""

    def __init__(self, cfg, n_heldin: int, n_heldout: int, n_forward: int) -> None:
        super().__init__()
        cfg.validate()
        if n_heldin < 1 or n_heldout < 0 or n_forward < 0:
            raise NlbkitError(f"bad model sizes: {n_heldin} held-in, {n_heldout} held-out, {n_forward} fwd")
        self.cfg = cfg
        self.n_heldin, self.n_heldout, self.n_forward = n_heldin, n_heldout, n_forward
        self.bins_per_step = cfg.bins_per_step or 1
        self.grid = StepGrid(self.bins_per_step, n_forward)

    def n_steps(self, n_bins: int) -> tuple[int, int]:
        """(observed steps, forward steps) for n_bins observed bins: ceil(T / k), ceil(F / k)."""
        return self.grid.n_steps(n_bins)

    def check_heldin(self, heldin: Tensor) -> None:
        if heldin.ndim != 3 or heldin.shape[2] != self.n_heldin:
            shape = tuple(heldin.shape)
            raise NlbkitError(f"held-in input has shape {shape}; expected (B, T, {self.n_heldin})")

    def check_target(self, heldin: Tensor, target: Tensor) -> None:
        b, t, _ = heldin.shape
        expected = (b, t + self.n_forward, self.n_heldin + self.n_heldout)
        if tuple(target.shape) != expected:
            raise NlbkitError(f"target has shape {tuple(target.shape)}; expected {expected}")

    def latent_variable_loss(
        self, heldin: Tensor, target: Tensor, kl_weight: float
    ) -> tuple[Tensor, dict[str, float]]:
        """Mean Poisson NLL + kl_weight * KL, and its parts as floats. heldin (B, T, N_in);
        target (B, T+F, N_in + N_out). In training mode with coordinated dropout on
        (`cfg.cd_active`), inputs are dropped (`coordinated_dropout`) and the kept observed
        held-in entries are blocked from the gradient; held-out neurons and forward bins count."""
        self.check_target(heldin, target)
        blocked = None
        if self.training and self.cfg.cd_active:
            heldin, blocked = coordinated_dropout(heldin, self.cfg.cd_rate, self.cfg.cd_pass_rate)
        out = self(heldin)
        nll = masked_poisson_nll(out.log_rates, target, blocked)
        total = nll + kl_weight * out.kl
        parts = {"nll": nll.item(), "kl": out.kl.item(), "loss": total.item()}
        parts.update({name: value.item() for name, value in out.kl_terms.items()})
        return total, parts
