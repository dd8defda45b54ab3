"""Figures of a run: what a report reads (`data`), the figures (`figures`), and drawing them all
into PNG files (`make`)."""
