"""Generated datasets in the exact NLB layout: latents, layouts, NWB writing, the oracle rates that
score a model against the truth, and the marker that keeps generated data apart from real data."""
