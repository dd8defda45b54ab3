"""Inferred latent trajectories of a trained network run (LangevinFlow, NDT, LFADS), read from its
checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nlbkit.errors import NlbkitError
from nlbkit.models import REGISTRY
from nlbkit.runs import RunDir
from nlbkit.train.loop import resolve_device, seed_everything


def langevin_network(run: RunDir, device: str = "cpu") -> torch.nn.Module:
    """The run's model with the weights of its best checkpoint (its last when there is no best)."""
    from nlbkit.models import get_model
    from nlbkit.train import run as workflow

    info, cfg = run.info(), run.config()
    if info.model not in REGISTRY or not get_model(info.model).uses_torch:
        raise NlbkitError(f"{run.path}: {info.model} runs have no latent states")
    return workflow.load_network(run, info, cfg, resolve_device(device))


@dataclass
class Latents:
    """Latent trajectories at the model's steps: one step spans `bins_per_step` bins."""

    values: np.ndarray  # (trials, steps, H), observed steps then forward steps
    n_observed: int  # steps over the observed bins
    step_ms: float  # time between steps
    first_ms: float  # centre of the first step, relative to the start of the window (may be < 0)

    def times_ms(self) -> np.ndarray:
        return self.first_ms + self.step_ms * np.arange(self.values.shape[1])


@torch.no_grad()
def run_latents(
    run_dir: str | Path,
    heldin: np.ndarray,
    n_samples: int = 10,
    which: str = "z",
    device: str = "cpu",
    batch_size: int = 256,
) -> Latents:
    """Mean latent trajectory over `n_samples` stochastic passes.

    heldin: (trials, T, N_in) held-in spike counts. which: 'z' (positions), 'v' (velocities),
    'h' (encoder states) or 'state': [z, v, h] side by side, what the decoder reads (z alone
    moves little within a trial at small step sizes; the state is what the rates follow). NDT has
    'h' (its last layer's states); LFADS 'g' (generator), 'factors' and 'u' (inputs).
    Seeded by the run's seed, so repeated calls agree.
    """
    run = RunDir(Path(run_dir))
    net = langevin_network(run, device)
    seed_everything(run.config().train.seed)
    x = torch.as_tensor(np.nan_to_num(np.asarray(heldin, dtype=np.float32)))
    parts = []
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size].to(next(net.parameters()).device)
        total = None
        for _ in range(n_samples):
            latents = net(batch).latents
            names = [n for n in ("z", "v", "h") if n in latents] if which == "state" else [which]
            if not set(names) <= set(latents):
                raise NlbkitError(f"{run.path}: the model has no '{which}' latents (has {sorted(latents)})")
            value = torch.cat([latents[n] for n in names], dim=-1)
            total = value if total is None else total + value
        parts.append((total / n_samples).float().cpu().numpy())
    n_bins = x.shape[1]
    k = int(getattr(net, "bins_per_step", 1))
    n_observed = net.n_steps(n_bins)[0] if hasattr(net, "n_steps") else n_bins
    pad = n_observed * k - n_bins  # the observed bins are left-padded to whole steps
    bin_ms = float(run.info().bin_ms)
    return Latents(np.concatenate(parts, axis=0), n_observed, k * bin_ms, ((k - 1) / 2 - pad) * bin_ms)


def principal_components(latents: np.ndarray, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(trials, bins, H) -> (projections (trials, bins, n), explained variance ratios (n,))."""
    flat = latents.reshape(-1, latents.shape[-1]).astype(np.float64)
    flat = flat - flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(flat, full_matrices=False)
    n = min(n, vt.shape[0])
    ratios = singular**2 / max(float((singular**2).sum()), 1e-12)
    return (flat @ vt[:n].T).reshape(*latents.shape[:2], n), ratios[:n]
