"""Set-up of the distributed traces (``gpuplan.verify.distributed``): a fake process group acting as one rank of
``world_size``, the patches the trace needs, the transformers model on fake tensors, and input checks.

- DTensor's sharding propagation computes output shapes by running each op on fake tensors in whatever fake mode
  is active (``torch.distributed.tensor._sharding_prop.detect_fake_mode``): inside our fake mode it finds ours,
  and the tracker, which skips only ops run under a *different* fake mode, counts those shape-only tensors. The
  propagation is given its own private fake mode for the duration of the trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from gpuplan.errors import InputError, require_positive_int
from gpuplan.verify.build import TORCH_DTYPES


def _dtype_name(field: str, value: str | None, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if value not in TORCH_DTYPES:
        raise InputError(field, value, f"must be one of {', '.join(TORCH_DTYPES)}")
    return value


def _torch_dtype(name: str | None):
    import torch

    return None if name is None else getattr(torch, TORCH_DTYPES[name])


@contextlib.contextmanager
def _distributed_patches() -> Iterator[None]:
    """``gpuplan.verify.patches.trace_patches`` plus the DTensor one: sharding propagation gets a private fake
    mode (module docstring); undone on exit."""
    import torch.distributed.tensor._sharding_prop as sharding_prop

    from gpuplan.verify.patches import quiet_transformers, trace_patches

    quiet_transformers()
    saved = sharding_prop.detect_fake_mode

    def detect_fake_mode(*args, **kwargs):  # noqa: ARG001 - same signature as torch._guards.detect_fake_mode
        return None

    sharding_prop.detect_fake_mode = detect_fake_mode
    try:
        with trace_patches():
            yield
    finally:
        sharding_prop.detect_fake_mode = saved


HSDP_MESH_DIMS = ("dp_replicate", "dp_shard")  # torchtitan's names; FSDP2 replicates over dim 0, shards over dim 1


@contextlib.contextmanager
def _fake_process_group(world_size: int, rank: int, replicate: int = 1) -> Iterator[Any]:
    """Initialise the default process group as rank ``rank`` of a fake group and yield a cpu mesh: 1-D, or with
    ``replicate`` > 1 the 2-D (replicate × shard) mesh of hybrid sharding, dims named ``HSDP_MESH_DIMS``
    (``fully_shard`` needs names on a 2-D mesh: torch/distributed/fsdp/_fully_shard/_fsdp_init.py). The fake
    backend builds the sub-groups of each mesh dimension too."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RuntimeError("a process group is already initialised in this process")
    dist.init_process_group("fake", rank=rank, world_size=world_size, store=FakeStore())
    try:
        if replicate > 1:
            yield init_device_mesh("cpu", (replicate, world_size // replicate), mesh_dim_names=HSDP_MESH_DIMS)
        else:
            yield init_device_mesh("cpu", (world_size,))
    finally:
        dist.destroy_process_group()


def _training_model(config: Mapping[str, Any], dtype: str, recompute: bool, batch: int, seq: int,
                    lora_rank: int = 0, lora_targets: tuple[str, ...] = ()):
    """The transformers causal LM in training mode (call inside ``FakeTensorMode``), its input ids and labels.

    ``lora_rank`` > 0 adds PEFT LoRA adapters on ``lora_targets`` (base frozen) in the model's dtype, as stacks that
    build the adapters with the model do (torchtune, litgpt; ``--lora-dtype model``): FSDP2 all-gathers a group's
    parameters in one dtype, so PEFT's fp32 upcast of half adapters cannot share a group with a bf16 base."""
    import torch

    from gpuplan.verify.build import build_model, prepare_for_training
    from gpuplan.verify.setup import TrainSetup

    model = build_model(dict(config), dtype=dtype, attention="sdpa")
    lora = dict(method="lora", lora_rank=lora_rank, lora_alpha=2 * lora_rank, lora_targets=lora_targets) \
        if lora_rank else {}
    model = prepare_for_training(model, TrainSetup(batch=batch, seq=seq, recompute="full" if recompute else "none",
                                                   **lora))
    if lora_rank:
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.data = p.data.to(_torch_dtype(dtype))
        model = model.get_base_model()
    ids = torch.randint(0, model.config.get_text_config().vocab_size, (batch, seq))
    return model, ids, ids.clone()


def _decoder_layers(model) -> list:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise InputError("config", type(model).__name__, "needs a decoder stack at model.model.layers")
    return list(layers)


def _common_inputs(config: object, world_size: int, rank: int, batch: int, seq: int) -> None:
    if not isinstance(config, Mapping) or not config.get("model_type"):
        raise InputError("config", type(config).__name__, "must be a config.json dict with a model_type")
    require_positive_int("world_size", world_size)
    require_positive_int("batch", batch)
    require_positive_int("seq", seq)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise InputError("rank", rank, f"must be an integer in [0, {world_size})")


def _replicate_degree(replicate: object, world_size: int) -> int:
    """The replicate degree of a hybrid-sharded trace: an integer >= 1 that divides ``world_size``."""
    require_positive_int("replicate", replicate)
    if world_size % replicate:
        divisors = ", ".join(str(d) for d in range(1, world_size + 1) if world_size % d == 0)
        raise InputError("replicate", replicate, f"must divide world_size {world_size} (one of {divisors})")
    return replicate
