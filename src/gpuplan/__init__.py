"""gpuplan: memory, compute, time and cost planning for LLM training and serving.

The core (everything outside ``gpuplan.cli``, ``gpuplan.web`` and ``gpuplan.verify``) is pure Python:
it imports no torch, no numpy and no web framework.
"""

__version__ = "0.1.0"
