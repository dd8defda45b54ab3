"""Fitting a model: the loop (`loop`, `checkpoint`, `progress`), one run from tensors to a run
directory (`run`), ensembles trained in one command (`members`), many runs on Ray (`parallel`),
cross-validation (`cv`), latents (`latents`) and a run's few-shot co-bps on them (`fewshot`)."""
