"""Training-memory engine: per-GPU memory of one steady-state training or fine-tuning step.

Entry point: :func:`gpuplan.train.engine.estimate_training` with a :class:`gpuplan.train.config.TrainConfig`.
Modules: ``config`` (options), ``precision`` (bytes per parameter per recipe), ``optimizer`` (states and step
temporaries), ``activations`` / ``layers`` / ``model_acts`` (what autograd saves), ``korthikanti`` (the paper's
model), ``logits`` (loss region), ``peft`` (freezing, LoRA, QLoRA), ``states`` (model states), ``overheads``
(CUDA context, workspaces, allocator reserve), ``peak`` (phase-aware peak), ``distributed`` (parallel layouts per
rank), ``search`` (largest batch or sequence that fits), ``explain`` (terms, assumptions, warnings).
"""
