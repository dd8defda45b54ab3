"""The NLB metrics, computed as nlb_tools' `evaluation.py` computes them.

Arrays are (trials, bins, neurons): rates and spike counts per bin.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from nlbkit.errors import NlbkitError


def neg_log_likelihood(rates: np.ndarray, spikes: np.ndarray) -> float:
    """Total Poisson NLL over the bins where `spikes` is not NaN; zero rates count as 1e-9."""
    if rates.shape != spikes.shape:
        raise NlbkitError(f"rates {rates.shape} and spikes {spikes.shape} differ in shape")
    keep = ~np.isnan(spikes)
    rates, spikes = rates[keep], spikes[keep]
    if np.isnan(rates).any():
        raise NlbkitError("NaN rate predictions found where spikes are observed")
    if (rates < 0).any():
        raise NlbkitError("negative rate predictions found")
    rates = np.where(rates == 0, 1e-9, rates)
    return float(np.sum(rates - spikes * np.log(rates) + gammaln(spikes + 1.0)))


def bits_per_spike(rates: np.ndarray, spikes: np.ndarray) -> float:
    """Bits per spike of `rates` over the null model that predicts each neuron's mean count."""
    null = np.broadcast_to(
        np.nanmean(spikes, axis=tuple(range(spikes.ndim - 1)), keepdims=True), spikes.shape
    )
    nll_model = neg_log_likelihood(rates, spikes)
    nll_null = neg_log_likelihood(np.array(null), spikes)
    return (nll_null - nll_model) / np.nansum(spikes) / np.log(2)
