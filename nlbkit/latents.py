"""Inferred latent trajectories of a trained LangevinFlow run, read from its checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nlbkit.errors import NlbkitError
from nlbkit.runs import RunDir
from nlbkit.training import resolve_device, seed_everything


def load_network(run: RunDir, device: str = "cpu") -> torch.nn.Module:
    """The run's model with the weights of its best checkpoint (its last when there is no best)."""
    from nlbkit.workflow import build_langevin

    info, cfg = run.info(), run.config()
    if info.get("model") != "langevin":
        raise NlbkitError(f"{run.path}: a {info.get('model')} run has no latent states")
    path = run.best_ckpt if run.best_ckpt.exists() else run.last_ckpt
    if not path.exists():
        raise NlbkitError(f"{run.path}: no checkpoint (checkpoints/best.pt or last.pt)")
    torch_device = resolve_device(device)
    net = build_langevin(cfg, info["n_heldin"], info["n_heldout"], info["n_forward"]).to(torch_device)
    net.load_state_dict(torch.load(path, map_location=torch_device, weights_only=False)["model"])
    return net.eval()


@torch.no_grad()
def run_latents(
    run_dir: str | Path,
    heldin: np.ndarray,
    n_samples: int = 10,
    which: str = "z",
    device: str = "cpu",
    batch_size: int = 256,
) -> np.ndarray:
    """Mean latent trajectory over `n_samples` stochastic passes, (trials, T+F, H).

    heldin: (trials, T, N_in) held-in spike counts. which: 'z' (positions), 'v' (velocities) or
    'h' (encoder states). Seeded by the run's seed, so repeated calls agree.
    """
    run = RunDir(Path(run_dir))
    net = load_network(run, device)
    seed_everything(run.config().train.seed)
    x = torch.as_tensor(np.nan_to_num(np.asarray(heldin, dtype=np.float32)))
    parts = []
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size].to(next(net.parameters()).device)
        total = None
        for _ in range(n_samples):
            latents = net(batch).latents
            if which not in latents:
                raise NlbkitError(f"{run.path}: the model has no '{which}' latents (has {sorted(latents)})")
            total = latents[which] if total is None else total + latents[which]
        parts.append((total / n_samples).float().cpu().numpy())
    return np.concatenate(parts, axis=0)


def principal_components(latents: np.ndarray, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(trials, bins, H) -> (projections (trials, bins, n), explained variance ratios (n,))."""
    flat = latents.reshape(-1, latents.shape[-1]).astype(np.float64)
    flat = flat - flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(flat, full_matrices=False)
    n = min(n, vt.shape[0])
    ratios = singular**2 / max(float((singular**2).sum()), 1e-12)
    return (flat @ vt[:n].T).reshape(*latents.shape[:2], n), ratios[:n]
