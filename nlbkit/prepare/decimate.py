"""FIR decimation giving the very numbers of `scipy.signal.decimate(x, q, n, ftype='fir')`.

nlb_tools resamples behaviour with SciPy's zero-phase FIR decimation. Importing `scipy.signal`
costs seconds per process, more than the rest of a small `prepare`, so the few steps it takes
are done here with NumPy in the same floating-point order:

- the filter is `firwin(n + 1, 1 / q, window='hamming')` (windowed sinc, scaled to unit DC gain);
- `resample_poly(x, 1, q, window=b)` zero-pads it in front to centre the output samples and runs
  `upfirdn`, which sums for every output sample `x[j] * h_flipped[i]` one product at a time in
  increasing `j`, starting from 0; products with the zero padding of `x` add nothing.

Here the same products are summed in the same order, one tap at a time over a block of outputs,
so every output is rounded exactly as SciPy rounds it.
"""

from __future__ import annotations

import numpy as np

_BLOCK = 1 << 15  # outputs per block: the accumulator and the product stay in cache


def hamming(m: int) -> np.ndarray:
    """SciPy's symmetric Hamming window of `m` points (general cosine, a = 0.54, 0.46)."""
    if m <= 1:
        return np.ones(m)
    fac = np.linspace(-np.pi, np.pi, m, dtype=np.float64)
    w = np.zeros(m, dtype=np.float64)
    for k, a in enumerate(np.array([0.54, 1.0 - 0.54])):
        w += a * np.cos(k * fac)
    return w


def fir_lowpass(numtaps: int, cutoff: float) -> np.ndarray:
    """`scipy.signal.firwin(numtaps, cutoff, window='hamming')`: low-pass, cutoff relative to Nyquist."""
    m = np.arange(0, numtaps, dtype=np.float64) - 0.5 * (numtaps - 1)
    right = np.float64(cutoff)
    h = right * np.sinc(right * m)
    h *= hamming(numtaps)
    h /= np.sum(h)  # scaled at frequency 0: SciPy sums h * cos(0) = h
    return h


def decimate_fir(x: np.ndarray, q: int, n: int = 500) -> np.ndarray:
    """`scipy.signal.decimate(x, q, n=n, ftype='fir')` of a 1-D signal: `ceil(len(x) / q)` samples.

    The output has the dtype of `x` if floating (float64 otherwise), as SciPy's.
    """
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.inexact) and x.dtype != np.float16 else np.float64
    x = x.astype(dtype, copy=False)
    b = fir_lowpass(n + 1, 1.0 / q).astype(dtype)
    n_in = len(x)
    n_out = n_in // q + bool(n_in % q)
    # resample_poly: pad the filter so the output samples sit at its centre
    half_len = (len(b) - 1) // 2
    n_pre_pad = q - half_len % q
    n_pre_remove = (half_len + n_pre_pad) // q
    n_post_pad = 0
    while _upfirdn_len(len(b) + n_pre_pad + n_post_pad, n_in, q) < n_out + n_pre_remove:
        n_post_pad += 1
    h = np.concatenate([np.zeros(n_pre_pad, dtype), b, np.zeros(n_post_pad, dtype)])
    return _upfirdn_down(h, x, q, n_pre_remove, n_out)


def _upfirdn_len(len_h: int, n_in: int, q: int) -> int:
    return ((n_in - 1) + len_h - 1) // q + 1


def _upfirdn_down(h: np.ndarray, x: np.ndarray, q: int, first: int, count: int) -> np.ndarray:
    """Outputs `first .. first + count - 1` of `upfirdn(h, x, up=1, down=q)` (zero padding).

    Output `y` sums `xp[y * q + i] * h[L - 1 - i]` for `i = 0 .. L - 1` in that order, where `xp`
    is `x` with `L - 1` zeros in front (and zeros after). Each phase `r` of `xp` (every `q`-th
    sample from `r`) is made contiguous once, so that tap `i` reads a plain slice of phase `i % q`.
    """
    taps = len(h)
    flipped = h[::-1].copy()
    last = first + count - 1
    total = last * q + taps  # samples of xp any wanted output reads
    xp = np.zeros(total + q, dtype=x.dtype)
    stop = min(len(x), total - (taps - 1))
    xp[taps - 1 : taps - 1 + stop] = x[:stop]
    phases = [np.ascontiguousarray(xp[r::q]) for r in range(q)]
    del xp
    out = np.empty(count, dtype=x.dtype)
    product = np.empty(min(_BLOCK, count), dtype=x.dtype)
    for start in range(0, count, _BLOCK):
        size = min(_BLOCK, count - start)
        acc = np.zeros(size, dtype=x.dtype)
        prod = product[:size]
        y0 = first + start
        for i in range(taps):
            lo = y0 + i // q
            np.multiply(phases[i % q][lo : lo + size], flipped[i], out=prod)
            acc += prod
        out[start : start + size] = acc
    return out
