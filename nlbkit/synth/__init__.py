"""Generated datasets in the exact NLB layout: latents, layouts, NWB writing, the generated test
targets and the oracle rates that score a model against the truth. The marker that keeps generated
data apart from real data is `nlbkit.nlb.marker`, since readers below this layer consult it."""
