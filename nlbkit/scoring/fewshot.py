"""Few-shot co-smoothing (few-shot co-bps) of Dabholkar & Barak, "When predict can also explain:
few-shot prediction to select better neural latents" (arXiv 2405.14425; PLOS Comput Biol 2025,
doi:10.1371/journal.pcbi.1013789).

Definition (the paper's abstract and the authors' code; docs/evaluation.md says which part comes
from where): freeze a model's latents; fit a *new* Poisson GLM readout, log rate = latents @ w + b,
from the latents to the held-out neurons' spike counts using only k training trials (every time bin
of those trials is one sample); predict the held-out rates of the evaluation trials from their
latents and score them with co-smoothing bits per spike. The k-trial subset is redrawn `repeats`
times; the score is the mean over subsets.

nlbkit's choices (where the authors' releases differ among themselves; docs/evaluation.md lists them):
subsets drawn without replacement by numpy ``Generator(seed)``, independently per repeat;
readout = sklearn ``PoissonRegressor`` objective (mean Poisson half-deviance + alpha/2 ||w||^2,
intercept unpenalised, no feature scaling), solved here by vectorised damped Newton; sd is ddof=1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlbkit.scoring.metrics import bits_per_spike


def column_names(k: int) -> tuple[str, str]:
    """The score-table columns of k-shot co-bps: its mean and its sd over repeats."""
    return f"fewshot co-bps (k={k})", f"fewshot co-bps sd (k={k})"


@dataclass(frozen=True)
class FewShotScore:
    """mean/sd (bits per spike) over `repeats` k-trial subsets; scores: (repeats,) per-subset co-bps;
    subsets: (repeats, k) int indices into the train trials used for each fit."""

    mean: float
    sd: float
    k: int
    repeats: int
    scores: np.ndarray
    subsets: np.ndarray


def fit_poisson_glm(
    x: np.ndarray, y: np.ndarray, alpha: float = 0.1, max_iter: int = 100, tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one Poisson GLM per output column, minimising (like sklearn ``PoissonRegressor``)
    mean_i(exp(eta_i) - y_i eta_i) + alpha/2 ||w||^2, eta = x @ w + b, over the rows where y is not NaN.

    x: (samples, features) finite; y: (samples, neurons) counts, NaN = unobserved.
    Returns w: (features, neurons), b: (neurons,). Stops when max |gradient| < tol (a neuron with no
    spikes in its samples thus ends with a tiny rate, ~tol per bin, as sklearn's lbfgs would).
    """
    n, d = x.shape
    obs = ~np.isnan(y)
    y0, n_obs = np.where(obs, y, 0.0), np.maximum(obs.sum(0), 1)
    xa = np.hstack([x, np.ones((n, 1))])
    pen = np.r_[np.full(d, alpha), 0.0][:, None]
    theta = np.zeros((d + 1, y.shape[1]))
    theta[-1] = np.log(np.maximum(y0.sum(0) / n_obs, 1e-6))

    def objective(th: np.ndarray, cols: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            eta = xa @ th
            loss = (obs[:, cols] * (np.exp(eta) - y0[:, cols] * eta)).sum(0) / n_obs[cols]
        return loss + 0.5 * (pen * th**2).sum(0)

    for _ in range(max_iter):
        mu = np.exp(xa @ theta)
        grad = xa.T @ (obs * (mu - y0) / n_obs) + pen * theta
        cols = np.flatnonzero(np.abs(grad).max(0) > tol)
        if cols.size == 0:
            break
        wts = obs[:, cols] * mu[:, cols] / n_obs[cols]
        hess = np.stack([(xa * wts[:, [j]]).T @ xa for j in range(cols.size)])
        hess += np.diag(pen[:, 0] + 1e-12)
        step = np.linalg.solve(hess, grad[:, cols].T[..., None])[..., 0].T
        th0, f0 = theta[:, cols], objective(theta[:, cols], cols)
        slope = (grad[:, cols] * step).sum(0)  # Newton decrement^2 >= 0
        t = np.ones(cols.size)
        for _ in range(40):  # backtracking (Armijo) line search, per neuron
            f1 = objective(th0 - t * step, cols)
            bad = ~(f1 <= f0 - 1e-4 * t * slope + 1e-13 * np.abs(f0))  # slack: rounding
            if not bad.any():
                break
            t[bad] *= 0.5
        theta[:, cols] = th0 - t * step
    return theta[:-1], theta[-1]


def fewshot_co_bps(
    train_latents: np.ndarray,
    train_heldout: np.ndarray,
    eval_latents: np.ndarray,
    eval_heldout: np.ndarray,
    k: int = 16,
    repeats: int = 20,
    seed: int = 0,
    alpha: float = 0.1,
) -> FewShotScore:
    """k-shot co-bps of a model's latents.

    train_latents: (n_train, time, latent_dim) latents of the trials the k shots are drawn from;
    train_heldout: (n_train, time, n_heldout) held-out spike counts of those trials (NaN bins skipped);
    eval_latents: (n_eval, time', latent_dim); eval_heldout: (n_eval, time', n_heldout) counts, the
    bins scored (NaN bins skipped). Latents must be finite wherever spikes are observed.
    k: trials per fit (1 <= k <= n_train); repeats: number of subsets; seed: for
    ``np.random.default_rng``, the same seed giving the same subsets; alpha: L2 weight of the readout.
    Each repeat fits `fit_poisson_glm` on the k trials' (time bins x latents) and scores the eval
    predictions with `bits_per_spike` (bits/spike over the per-neuron mean-rate null model).
    """
    train_latents, eval_latents = np.asarray(train_latents, float), np.asarray(eval_latents, float)
    train_heldout, eval_heldout = np.asarray(train_heldout, float), np.asarray(eval_heldout, float)
    if train_latents.shape[:2] != train_heldout.shape[:2] or eval_latents.shape[:2] != eval_heldout.shape[:2]:
        raise ValueError("latents and held-out spikes must agree in (trials, time)")
    if train_latents.shape[2] != eval_latents.shape[2] or train_heldout.shape[2] != eval_heldout.shape[2]:
        raise ValueError("train and eval must have the same latent_dim and n_heldout")
    n_train, n_out = train_latents.shape[0], train_heldout.shape[2]
    if not 1 <= k <= n_train or repeats < 1:
        raise ValueError(f"need 1 <= k <= n_train ({n_train}) and repeats >= 1; got k={k}, repeats={repeats}")
    rng = np.random.default_rng(seed)
    subsets = np.stack([rng.choice(n_train, size=k, replace=False) for _ in range(repeats)])
    eval_x = eval_latents.reshape(-1, eval_latents.shape[2])
    eval_keep = ~np.isnan(eval_heldout).all(-1).reshape(-1)  # bins with nothing to score
    scores = np.empty(repeats)
    for r, idx in enumerate(subsets):
        x = train_latents[idx].reshape(-1, train_latents.shape[2])
        y = train_heldout[idx].reshape(-1, n_out)
        used = ~np.isnan(y).all(1)  # drop bins with no observed spikes (e.g. padding)
        if not np.isfinite(x[used]).all():
            raise ValueError("non-finite train latents where held-out spikes are observed")
        x, y = x[used], y[used]
        w, b = fit_poisson_glm(x, y, alpha=alpha)
        rates = np.full((eval_x.shape[0], n_out), np.nan)
        rates[eval_keep] = np.exp(eval_x[eval_keep] @ w + b)
        scores[r] = bits_per_spike(rates.reshape(eval_heldout.shape), eval_heldout)
    sd = float(np.std(scores, ddof=1)) if repeats > 1 else 0.0
    return FewShotScore(float(np.mean(scores)), sd, k, repeats, scores, subsets)
