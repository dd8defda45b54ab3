"""The generative model behind `nlbkit synth`: Lorenz latents, log-linear rates, Poisson spikes.

Time runs on a 1 ms grid. The latent state is defined piecewise: a set of non-overlapping
*epochs* (start ms, length ms), each a Lorenz trajectory from its own initial state; outside the
epochs the latent is zero and every unit fires at its baseline rate exp(b). Rates are
`exp(z @ C.T + b)` in Hz, constant within each millisecond, so the expected spike count of a
millisecond is rate / 1000.
"""

from __future__ import annotations

import numpy as np

LATENT_DIM = 3
MAX_RATE_HZ = 400.0  # rates saturate here, as real neurons do
TICKS_PER_MS = 30  # spike times sit on a 30 kHz clock, as the recorded NLB data do
# Lorenz time units per millisecond: one loop of the attractor takes roughly half a second.
LORENZ_DT_PER_MS = 0.0015
_SIGMA, _RHO, _BETA = 10.0, 28.0, 8.0 / 3.0
# Centre and spread of the attractor, to map its states to roughly unit scale.
_CENTRE = np.array([0.0, 0.0, 23.5])
_SPREAD = np.array([7.9, 9.0, 8.6])


def _lorenz(x: np.ndarray) -> np.ndarray:
    dx = np.empty_like(x)
    dx[..., 0] = _SIGMA * (x[..., 1] - x[..., 0])
    dx[..., 1] = x[..., 0] * (_RHO - x[..., 2]) - x[..., 1]
    dx[..., 2] = x[..., 0] * x[..., 1] - _BETA * x[..., 2]
    return dx


def _rk4_step(x: np.ndarray, h: float) -> np.ndarray:
    k1 = _lorenz(x)
    k2 = _lorenz(x + 0.5 * h * k1)
    k3 = _lorenz(x + 0.5 * h * k2)
    k4 = _lorenz(x + h * k3)
    return x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


def attractor_points(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` raw Lorenz states on the attractor, shape (n, 3), from random starts after a burn-in."""
    x = rng.normal(0.0, 5.0, size=(n, LATENT_DIM)) + _CENTRE
    for _ in range(1500):
        x = _rk4_step(x, 0.01)
    return x


def integrate(init: np.ndarray, n_steps: int, dt: float = LORENZ_DT_PER_MS) -> np.ndarray:
    """Lorenz trajectories of many epochs at once.

    init: raw states (epochs, 3). Returns normalised latents (epochs, n_steps, 3), float32, one
    row per millisecond, the first row being the initial state.
    """
    out = np.empty((init.shape[0], n_steps, LATENT_DIM), dtype=np.float32)
    x = init.astype(np.float64, copy=True)
    for step in range(n_steps):
        out[:, step] = (x - _CENTRE) / _SPREAD
        x = _rk4_step(x, dt)
    return out


def taper(latents: np.ndarray, lengths: np.ndarray, ramp_ms: int) -> np.ndarray:
    """Fade each epoch's latents in and out over `ramp_ms` (raised cosine), in place.

    latents: (epochs, steps, 3); lengths: (epochs,). Rates then leave and return to baseline
    smoothly instead of jumping at the epoch edges.
    """
    if ramp_ms <= 0:
        return latents
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_ms) + 0.5) / ramp_ms)).astype(np.float32)
    latents[:, :ramp_ms] *= ramp[None, :, None]
    for length in np.unique(lengths):
        rows = lengths == length
        latents[rows, length - ramp_ms : length] *= ramp[::-1][None, :, None]
    return latents


def lorenz_path(init: np.ndarray, n_steps: int, every: int, dt: float = LORENZ_DT_PER_MS) -> np.ndarray:
    """Raw states of one long trajectory every `every` ms, shape (ceil(n_steps/every), 3).

    Integrated with a coarse step (a few ms) so that a session of minutes costs little; used to
    start consecutive epochs where the previous one ends, for continuous behaviour (mc_rtt).
    """
    n_out = -(-n_steps // every)
    coarse = 5
    h = dt * coarse
    x = init.astype(np.float64, copy=True)
    out = np.empty((n_out, LATENT_DIM))
    for k in range(n_out):
        out[k] = x
        for _ in range(every // coarse):
            x = _rk4_step(x, h)
    return out


class LatentTimeline:
    """Latents on the session's 1 ms grid, stored per epoch (all epochs concatenated).

    starts: (E,) epoch start, ms; lengths: (E,) ms; latents: (sum(lengths), 3) float32.
    """

    def __init__(self, starts: np.ndarray, lengths: np.ndarray, latents: np.ndarray) -> None:
        order = np.argsort(starts, kind="stable")
        if not np.array_equal(order, np.arange(len(starts))):
            raise ValueError("epochs must be given in time order")
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.latents = latents
        if np.any(self.starts[1:] < self.starts[:-1] + self.lengths[:-1]):
            raise ValueError("epochs overlap")

    def at(self, ms: np.ndarray) -> np.ndarray:
        """Latents at integer ms times (any shape); zero outside every epoch. Shape ms.shape + (3,)."""
        flat = np.asarray(ms, dtype=np.int64).ravel()
        idx = np.searchsorted(self.starts, flat, side="right") - 1
        safe = np.clip(idx, 0, None)
        inside = (idx >= 0) & (flat - self.starts[safe] < self.lengths[safe])
        out = np.zeros((flat.size, LATENT_DIM), dtype=np.float32)
        rows = self.offsets[safe[inside]] + (flat[inside] - self.starts[safe[inside]])
        out[inside] = self.latents[rows]
        return out.reshape(*np.shape(ms), LATENT_DIM)

    def dense(self, lo: int, hi: int) -> np.ndarray:
        """Latents of every millisecond in [lo, hi), shape (hi - lo, 3), float32."""
        out = np.zeros((hi - lo, LATENT_DIM), dtype=np.float32)
        for start, length, offset in zip(self.starts, self.lengths, self.offsets[:-1], strict=True):
            a, b = max(start, lo), min(start + length, hi)
            if a < b:
                out[a - lo : b - lo] = self.latents[offset + a - start : offset + b - start]
        return out


def rates_hz(latents: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Firing rates in Hz, shape latents.shape[:-1] + (units,): min(exp(z @ C.T + b), MAX_RATE_HZ)."""
    out = latents @ weights.T.astype(np.float32)
    out += bias.astype(np.float32)
    np.minimum(out, np.float32(np.log(MAX_RATE_HZ)), out=out)
    return np.exp(out, out=out)


def poisson_events(expected: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Poisson draws for an array of small expected counts, returned sparse.

    Returns (flat indices of the entries with at least one event, their counts). Exact Poisson:
    an entry has an event iff an Exp(1) draw falls below its expected count (one float32 pass;
    a few percent pass it); the counts of those are drawn from the CDF conditioned on at least
    one event, by inversion in float64 on a shrinking remainder. Far cheaper here than
    `rng.poisson` on the dense array.
    """
    lam = np.asarray(expected, dtype=np.float32).ravel()
    hit = np.flatnonzero(rng.standard_exponential(lam.shape, dtype=np.float32) < lam)
    lam_h = lam[hit].astype(np.float64)
    p = np.exp(-lam_h)
    u_h = p + rng.random(hit.size) * (1.0 - p)  # uniform above P(N = 0)
    cdf = p.copy()
    counts = np.zeros(hit.size, dtype=np.int64)
    # Large expected counts would underflow the CDF recursion; draw those directly.
    big = lam_h > 20.0
    counts[big] = np.maximum(rng.poisson(lam_h[big]), 1)
    active = np.flatnonzero(~big)
    k = 0
    while active.size:
        k += 1
        p[active] *= lam_h[active] / k
        cdf[active] += p[active]
        counts[active] += 1
        active = active[u_h[active] > cdf[active]]
    return hit, counts


def spike_ticks(ms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Place spikes of the given milliseconds on the 30 kHz clock (int64 ticks).

    A thirtieth of them fall exactly on a millisecond edge, as in recorded data.
    """
    return ms.astype(np.int64) * TICKS_PER_MS + rng.integers(0, TICKS_PER_MS, size=ms.shape)


def ticks_to_seconds(ticks: np.ndarray) -> np.ndarray:
    """30 kHz ticks to seconds, rounded to the microsecond like the NLB files."""
    return np.round(ticks / (1000.0 * TICKS_PER_MS), 6)


def session_spikes(
    timeline: LatentTimeline,
    weights: np.ndarray,
    bias: np.ndarray,
    session_ms: int,
    rng: np.random.Generator,
    chunk_ms: int = 150_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Spikes of every unit over [0, session_ms).

    Returns (unit index, tick) int arrays sorted by unit then time. Inside epochs counts are
    drawn per millisecond; outside, at the constant baseline rate (a homogeneous Poisson process
    whose points falling inside epochs are discarded: thinning by region keeps it exact).
    """
    n_units = len(bias)
    if timeline.starts[0] < 0 or timeline.starts[-1] + timeline.lengths[-1] > session_ms:
        raise ValueError("epochs reach outside the session")
    units_out: list[np.ndarray] = []
    ticks_out: list[np.ndarray] = []
    # Epoch milliseconds, in chunks of about chunk_ms x units draws.
    epoch_ms = np.arange(timeline.offsets[-1]) - np.repeat(timeline.offsets[:-1], timeline.lengths)
    epoch_ms += np.repeat(timeline.starts, timeline.lengths)
    for lo in range(0, len(epoch_ms), chunk_ms):
        ms = epoch_ms[lo : lo + chunk_ms]
        lam = rates_hz(timeline.latents[lo : lo + chunk_ms], weights, bias)
        lam *= np.float32(1e-3)
        flat, reps = poisson_events(lam, rng)
        row, unit = np.divmod(flat, n_units)
        units_out.append(np.repeat(unit, reps))
        ticks_out.append(spike_ticks(np.repeat(ms[row], reps), rng))
    # Baseline outside epochs.
    base_rate = np.exp(bias)
    n_base = rng.poisson(base_rate * session_ms / 1000.0)
    unit = np.repeat(np.arange(n_units), n_base)
    ticks = rng.integers(0, session_ms * TICKS_PER_MS, size=unit.size)
    ms = ticks // TICKS_PER_MS
    idx = np.searchsorted(timeline.starts, ms, side="right") - 1
    safe = np.clip(idx, 0, None)
    outside = (idx < 0) | (ms - timeline.starts[safe] >= timeline.lengths[safe])
    units_out.append(unit[outside])
    ticks_out.append(ticks[outside])
    # One int64 key orders by unit, then time (cheaper than a lexsort).
    span = np.int64(session_ms * TICKS_PER_MS)
    key = np.concatenate(units_out).astype(np.int64) * span + np.concatenate(ticks_out)
    key.sort()
    return np.divmod(key, span)
