"""Generated datasets in the exact NLB layout: latents, session layouts, NWB writing and the oracle
rates that score a model against the truth."""
