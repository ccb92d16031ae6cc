"""Measure what PyTorch really allocates for a workload, to check gpuplan's estimates.

The only part of gpuplan that imports PyTorch and transformers (extra ``[verify]``), and only inside functions:
importing this package costs nothing. Back ends: ``trace`` (CPU, fake tensors, default) and ``cuda`` (a real
step on a GPU). ``compare`` puts an estimate next to a measurement.
"""

from gpuplan.verify.setup import PrefillSetup, TrainSetup

__all__ = ["PrefillSetup", "TrainSetup", "measure_prefill", "measure_training"]


def measure_training(config, setup):
    """See ``gpuplan.verify.trace.measure_training``."""
    from gpuplan.verify.trace import measure_training as run

    return run(config, setup)


def measure_prefill(config, setup):
    """See ``gpuplan.verify.trace.measure_prefill``."""
    from gpuplan.verify.trace import measure_prefill as run

    return run(config, setup)
