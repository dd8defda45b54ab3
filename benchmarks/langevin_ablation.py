"""Ablation of LangevinFlow's switches on real mc_maze_small, rebinned from 5 ms to 20 ms.

Usage: python benchmarks/langevin_ablation.py NAME '{"dynamics": false}' [EPOCHS] [REBIN] [SEED]

Trains on 60 of the 75 trials of `mc_maze_small_train_5ms.h5` (seeded split), scores co-bps and
fp-bps on the other 15 every 25 epochs (10 prediction samples) and prints one JSON line. A quick
look, not a benchmark of record: one seed, no early stopping, hidden 64, Adam 3e-3, batch 16,
KL weight ramped to 0.1 over the first quarter of the epochs, gradient norm clipped at 200.
"""

import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from nlbkit.models.config import LangevinConfig
from nlbkit.models.langevin import LangevinFlow
from nlbkit.scoring.metrics import bits_per_spike

DATA = Path(__file__).resolve().parents[1] / "tests/fixtures/mc_maze_small/mc_maze_small_train_5ms.h5"
KEYS = (
    "train_spikes_heldin",
    "train_spikes_heldout",
    "train_spikes_heldin_forward",
    "train_spikes_heldout_forward",
)


def main() -> None:
    torch.set_num_threads(1)
    name, overrides = sys.argv[1], json.loads(sys.argv[2])
    epochs, rebin, seed = (int(a) for a in (sys.argv[3:] + ["300", "4", "0"][len(sys.argv[3:]):]))
    with h5py.File(DATA) as f:
        arrays = [f[k][()].astype(np.float32) for k in KEYS]
    hi, ho, hif, hof = (a.reshape(a.shape[0], -1, rebin, a.shape[2]).sum(2) for a in arrays)
    perm = np.random.default_rng(0).permutation(len(hi))
    ev, tr = perm[:15], perm[15:]
    target = np.concatenate([np.concatenate([hi, ho], 2), np.concatenate([hif, hof], 2)], 1)
    n_obs = hi.shape[1]
    torch.manual_seed(seed)
    cfg = LangevinConfig(**{"hidden": 64, **overrides})
    model = LangevinFlow(cfg, hi.shape[2], ho.shape[2], hif.shape[1])
    xt, yt = torch.tensor(hi[tr]), torch.tensor(target[tr])
    model.set_baseline_rates(yt.mean((0, 1)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def score() -> tuple[float, float]:
        r = model.predict_rates(torch.tensor(hi[ev]), n_samples=10).numpy().astype(np.float64)
        co = bits_per_spike(r[:, :n_obs, hi.shape[2]:], ho[ev].astype(np.float64))
        fp = bits_per_spike(r[:, n_obs:], np.concatenate([hif, hof], 2)[ev].astype(np.float64))
        return round(co, 4), round(fp, 4)

    start, hist = time.time(), []
    for ep in range(epochs):
        model.train()
        order = torch.randperm(len(tr))
        kl_weight = 0.1 * min(ep / (epochs / 4), 1.0)
        for b in range(0, len(tr), 16):
            i = order[b : b + 16]
            opt.zero_grad()
            loss, _ = model.loss(xt[i], yt[i], kl_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 200.0)
            opt.step()
        if (ep + 1) % 25 == 0:
            hist.append((ep + 1, *score()))
    extra = {}
    if cfg.dynamics:
        coef = model.coefficients()
        extra = {"h": float(coef.step), "gamma": float(coef.damping)}
    print(json.dumps({"name": name, "seed": seed, "epochs": epochs,
                      "s_per_epoch": round((time.time() - start) / epochs, 3),
                      "best_co": max(h[1] for h in hist), "final_co": hist[-1][1], "final_fp": hist[-1][2],
                      "hist": hist, **extra}), flush=True)


if __name__ == "__main__":
    main()
