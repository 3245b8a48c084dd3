"""Benchmarks: each suite yields rows (dicts); `experiments.benchmark` prints and saves them."""
