"""The potential of locally coupled oscillators and the underdamped Langevin step.

Notation: z, v (B, H) positions and velocities; H = C channels x S sites, a vector viewed as
`z.view(B, C, S)` (flat index c * S + i). Sites form an open 1-D chain.

Potential (zero padding at both ends of the chain):

    U(z) = sum_i [ sum_c (W * z)_c[i] ] * [ sum_c' z_c'[i] ]

with W (C, C, K) a bank of K-tap kernels, `*` the cross-correlation of `torch.conv1d`. U is a
quadratic form, U(z) = z Q z^T with Q = A P^T where A (H, S) maps z to u = sum_c (W * z)_c and
P (H, S) maps z to s = sum_c z_c. Its gradient is therefore linear,

    grad U(z) = z G,   G = Q + Q^T   (H, H), symmetric,

which this module builds once per forward pass instead of differentiating U at every step.
The test suite checks G against autograd on the literal U.

Langevin step (step h, damping gamma, mass m, temperature T, eps ~ N(0, I)):

    Euler (the paper's Algorithm 1 and the released code):
        z_{t+1} = z_t + h v_t
        v'      = v_t - (h / m) grad U(z_t)
    symplectic (velocity Verlet, one force evaluation per step thanks to caching):
        v_half  = v_t - (h / 2m) grad U(z_t)
        z_{t+1} = z_t + h v_half
        v'      = v_half - (h / 2m) grad U(z_{t+1})
    then, in both cases, friction and the stochastic force:
        v_{t+1} = (1 - gamma) v' + sigma eps + delta_t,   sigma = sqrt(2 gamma T / m)

delta_t is an optional inferred impulse (the posterior's mean of the stochastic force).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

KERNEL_MODES = ("gain", "unit", "off")


class CoupledOscillatorPotential(nn.Module):
    """U(z) for C channels x S sites on an open chain, coupled by a learned (C, C, K) kernel bank.

    Each kernel W[c, c', :] is L2-normalised over its K taps. `kernel_mode` says how:

    - "unit": W = V / |V| with V learned and randomly initialised, so every kernel has unit norm.
      The released model zero-initialises V and normalises with an epsilon: at step 0 the kernel is
      0, its gradient is scaled by 1/epsilon, and the first optimiser step already sets every kernel
      to unit norm. "unit" starts there directly, without the 0/0 and its huge first gradient
      (which would also defeat gradient clipping).
    - "gain": W = g * V / |V| with a learned gain g (C, C), zero-initialised: the chain starts
      uncoupled, as zero initialisation intends, the direction V / |V| is always well defined,
      and the coupling strength |W[c, c', :]| = |g[c, c']| is learned instead of fixed at 1.
    - "off": W = 0 (no parameters), so U = 0 and the particles move freely.
    """

    def __init__(self, hidden: int, channels: int, taps: int, kernel_mode: str = "gain") -> None:
        super().__init__()
        if kernel_mode not in KERNEL_MODES:
            raise ValueError(f"kernel_mode must be one of {KERNEL_MODES}, got {kernel_mode!r}")
        if hidden % channels:
            raise ValueError(f"hidden size {hidden} is not divisible by {channels} channels")
        if taps % 2 == 0:
            raise ValueError(f"kernel taps must be odd to centre the kernel, got {taps}")
        self.hidden, self.channels, self.taps = hidden, channels, taps
        self.sites = hidden // channels
        self.kernel_mode = kernel_mode
        if kernel_mode != "off":
            # Uniform init: every direction of the unit sphere is equally likely after normalising.
            self.direction = nn.Parameter(torch.empty(channels, channels, taps).uniform_(-1.0, 1.0))
        if kernel_mode == "gain":
            self.gain = nn.Parameter(torch.zeros(channels, channels))
        # s = z P: the sum over channels at each site (flat index c * S + i -> i).
        self.register_buffer("site_sum", torch.eye(self.sites).repeat(channels, 1), persistent=False)

    def kernel(self) -> Tensor:
        """W (C, C, K): the coupling kernels, each L2-normalised over its taps (times its gain)."""
        if self.kernel_mode == "off":
            return self.site_sum.new_zeros(self.channels, self.channels, self.taps)
        w = F.normalize(self.direction, p=2.0, dim=2)
        if self.kernel_mode == "gain":
            w = w * self.gain.unsqueeze(-1)
        return w

    def energy(self, z: Tensor) -> Tensor:
        """U(z) per row, (B, H) -> (B,), computed literally with a convolution."""
        zc = z.reshape(z.shape[0], self.channels, self.sites)
        u = F.conv1d(zc, self.kernel(), padding=self.taps // 2).sum(dim=1)  # (B, S)
        return (u * zc.sum(dim=1)).sum(dim=1)

    def gradient_matrix(self) -> Tensor:
        """G (H, H) symmetric with grad U(z) = z G, differentiable in the kernel parameters."""
        basis = torch.eye(self.hidden, device=self.site_sum.device, dtype=self.site_sum.dtype)
        basis = basis.view(self.hidden, self.channels, self.sites)
        a = F.conv1d(basis, self.kernel(), padding=self.taps // 2).sum(dim=1)  # (H, S): z -> u
        q = a @ self.site_sum.T  # U(z) = z q z^T
        return q + q.T


@dataclass
class StepCoefficients:
    """The scalars of one Langevin step; tensors when learned, floats when fixed."""

    step: Tensor | float  # h
    damping: Tensor | float  # gamma, in [0, 1)
    mass: float = 1.0
    temperature: float = 1.0

    @property
    def noise_scale(self) -> Tensor | float:
        """sigma = sqrt(2 gamma T / m): the standard deviation of the stochastic velocity kick."""
        scale = 2.0 * self.damping * self.temperature / self.mass
        return scale.sqrt() if isinstance(scale, Tensor) else math.sqrt(scale)


def langevin_step(
    z: Tensor,
    v: Tensor,
    grad_z: Tensor,
    grad_fn: Callable[[Tensor], Tensor],
    coef: StepCoefficients,
    *,
    symplectic: bool = False,
    eps: Tensor | None = None,
    impulse: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One step (z_t, v_t) -> (z_{t+1}, v_{t+1}) as in the module docstring, all (B, H).

    `grad_z` is grad U(z_t); the third result is grad U(z_{t+1}), to pass to the next step, so each
    step evaluates the force once. `eps` None means no stochastic force; `impulse` None means none.
    """
    h, m = coef.step, coef.mass
    if symplectic:
        v_half = v - (0.5 * h / m) * grad_z
        z_next = z + h * v_half
        grad_next = grad_fn(z_next)
        v_pre = v_half - (0.5 * h / m) * grad_next
    else:
        z_next = z + h * v
        v_pre = v - (h / m) * grad_z
        grad_next = grad_fn(z_next)
    v_next = (1.0 - coef.damping) * v_pre
    if eps is not None:
        v_next = v_next + coef.noise_scale * eps
    if impulse is not None:
        v_next = v_next + impulse
    return z_next, v_next, grad_next


def hamiltonian(z: Tensor, v: Tensor, potential: CoupledOscillatorPotential, mass: float = 1.0) -> Tensor:
    """E(z, v) = m |v|^2 / 2 + U(z) per row, (B,)."""
    return 0.5 * mass * (v * v).sum(dim=1) + potential.energy(z)
