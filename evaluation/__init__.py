"""Evaluation tools: classical-codec baselines and rate-distortion benchmarking."""
