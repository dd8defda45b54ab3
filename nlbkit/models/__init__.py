"""The model registry: each model a name, what it is, and how to build it (imported only when built).

Importing this package never imports torch, so commands that only list or check model names stay
fast. Adding a model is one module in this folder plus one `ModelEntry` line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nlbkit.errors import NlbkitError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    config_section: str  # the RunConfig section holding its settings
    builder: str | None  # "module:function" building a torch module, None for closed-form models
    uses_torch: bool

    def build(self, cfg: Any, n_heldin: int, n_heldout: int, n_forward: int) -> Any:
        """The untrained network: builder(cfg, n_heldin, n_heldout, n_forward)."""
        if self.builder is None:
            raise NlbkitError(f"model '{self.name}' is fitted in closed form and has no network")
        module, _, function = self.builder.partition(":")
        build: Callable = getattr(importlib.import_module(module), function)
        return build(cfg, n_heldin, n_heldout, n_forward)

    def settings(self, cfg: Any) -> Any:
        """Its section of a RunConfig (e.g. `cfg.ndt`)."""
        return getattr(cfg, self.config_section)


REGISTRY: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry("langevin", "LangevinFlow: a sequential VAE with underdamped Langevin latents",
                   "model", "nlbkit.models.langevin:build", uses_torch=True),
        ModelEntry("smoothing", "the NLB smoothing baseline: Gaussian-smoothed spikes, Poisson GLM",
                   "smoothing", None, uses_torch=False),
        ModelEntry("ndt", "NDT: a Transformer trained by masked modelling of binned spikes",
                   "ndt", "nlbkit.models.ndt:build", uses_torch=True),
        ModelEntry("lfads", "LFADS: a sequential VAE, a GRU generator from an inferred initial state",
                   "lfads", "nlbkit.models.lfads:build", uses_torch=True),
        ModelEntry("gpfa", "a GPFA baseline: elephant's GPFA on held-in spikes, Poisson GLMs from latents",
                   "gpfa", None, uses_torch=False),
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(REGISTRY)


def get_model(name: str) -> ModelEntry:
    """The registered model `name`; an unknown name is an error listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise NlbkitError(f"unknown model '{name}': use one of {', '.join(MODEL_NAMES)}") from None
