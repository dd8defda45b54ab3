"""Fitting a model: the training loop (`loop`), a run from tensors to a run directory (`run`),
and latent trajectories of a trained LangevinFlow (`latents`)."""
