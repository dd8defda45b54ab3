"""Hyper-parameter search on Ray Tune: the search space (`space`, `spaces/*.json`), the sweep
(`run`) and its results table (`results`)."""
