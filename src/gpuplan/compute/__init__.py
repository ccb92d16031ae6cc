"""Compute, time and cost of training: FLOPs per token, MFU defaults, days / GPUs / GPU-hours / cost / energy,
and a transparent step-time model (compute, tensor/pipeline/data/expert parallel communication).

Everything here is pure Python (no torch, no numpy) and works in base units: FLOP, seconds, bytes, watts, dollars.
"""
