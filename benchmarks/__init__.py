"""Measurements of dpl against baselines, each run from the checkout's root as a module:
``python -m benchmarks.NAME --help``. What they share is in ``benchmarks.common``; the tests use
it too. Results are written to ``benchmarks/results/``."""
