"""Parallel layouts: degree validation (``layout``), which tensors each rank holds under tensor, pipeline and
expert parallelism (``shard``), and the model states of a rank under DDP, ZeRO, FSDP2 and Megatron's distributed
optimizer (``dataparallel``). Used by :mod:`gpuplan.train.distributed`."""
