"""nlbkit: from DANDI to a Neural Latents Benchmark submission."""

__version__ = "0.1.0"
