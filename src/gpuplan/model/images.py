"""Images as an input of a vision-language model: tokens added to the text sequence, and the vision tower's own
memory and FLOP terms added to a training or serving estimate of the text model.

The text model sees each image as ``image_tokens`` positions of its sequence
(``gpuplan.model.image_processing``), so the text estimate runs at the sequence length with them; the tower adds its weights (and, when trained, gradients and
optimizer states), its activations and its FLOPs, each reported as its own term.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpuplan.errors import InputError
from gpuplan.model.image_processing import image_patches, image_tokens, resized
from gpuplan.model.spec import ModelSpec
from gpuplan.model.vision import (
    vision_activation_bytes,
    vision_forward_flop,
    vision_params,
    vision_tensor_table,
)
from gpuplan.report import MemoryReport, Term

MAX_IMAGE_SIDE = 1 << 16  # pixels per side accepted by --image-size (65,536)
DEFAULT_IMAGE_SIZE = "1024x1024"

# The keys of the vision rows of a memory breakdown (present only when images are given)
VISION_MEMORY_KEYS = ("vision_weights_bytes", "vision_states_bytes", "vision_activations_bytes")


def parse_image_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (height x width in pixels) -> (height, width); InputError naming the value otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m:
        raise InputError("--image-size", text, "must be HEIGHTxWIDTH in pixels, e.g. 1024x768")
    h, w = int(m.group(1)), int(m.group(2))
    for side in (h, w):
        if not 1 <= side <= MAX_IMAGE_SIDE:
            raise InputError("--image-size", text, f"each side must be between 1 and {MAX_IMAGE_SIDE:,} pixels")
    return h, w


@dataclass(frozen=True)
class VisionLoad:
    """The images of one sequence: how many, their size as given and as the processor resizes them, the
    patches the tower runs over and the positions they take in the text sequence."""

    images: int
    height: int
    width: int
    resized_height: int
    resized_width: int
    patches_per_image: int
    tokens_per_image: int
    forward_flop_per_image: int
    params: int

    @property
    def tokens(self) -> int:
        """Text-sequence positions the images of one sequence take."""
        return self.images * self.tokens_per_image

    def as_dict(self) -> dict[str, object]:
        return {"images_per_sequence": self.images, "image_size": [self.height, self.width],
                "resized": [self.resized_height, self.resized_width], "patches_per_image": self.patches_per_image,
                "tokens_per_image": self.tokens_per_image, "image_tokens_per_sequence": self.tokens,
                "forward_flop_per_image": self.forward_flop_per_image, "params": self.params}


def vision_load(spec: ModelSpec, images: int, image_size: str | None) -> VisionLoad:
    """The load of ``images`` images of ``image_size`` (default 1024x1024) per sequence; InputError when the
    model has no modelled vision tower."""
    if spec.vision is None:
        raise InputError("--images", images, f"needs a vision-language model with a vision tower gpuplan models "
                         f"(config model_type qwen2_5_vl, qwen3_vl, qwen3_vl_moe, gemma3, mistral3 or llama4); "
                         f"{spec.name} ({spec.family}) has none")
    h, w = parse_image_size(image_size or DEFAULT_IMAGE_SIZE)
    v = spec.vision
    rh, rw = resized(v, h, w)
    return VisionLoad(images=images, height=h, width=w, resized_height=rh, resized_width=rw,
                      patches_per_image=image_patches(v, h, w), tokens_per_image=image_tokens(v, h, w),
                      forward_flop_per_image=vision_forward_flop(spec, h, w), params=vision_params(spec))


def sharded_vision_params(spec: ModelSpec, tp: int) -> int:
    """Tower parameters on one tensor-parallel rank: column- and row-parallel weights split over ``tp`` (vLLM and
    Megatron shard the Qwen, SigLIP and Pixtral towers' Linears), the rest replicated."""
    assert spec.vision is not None
    return sum(t.numel // tp if t.tp in ("column", "row") else t.numel for t in vision_tensor_table(spec.vision))


def window_note(spec: ModelSpec) -> list[str]:
    """What the FLOPs assume for Qwen2.5-VL's window attention (empty for other towers)."""
    v = spec.vision
    if v is None or v.kind != "qwen2_5_vl":
        return []
    side = max(1, v.window_size // v.patch_size)
    return [f"vision tower: window attention over window_size={v.window_size} px ({side}x{side} patches) on every "
            f"block but fullatt_block_indexes={list(v.full_attention_layers)}, which attend the whole image "
            "(vision_config keys; transformers Qwen2_5_VisionTransformerPretrainedModel.get_window_index)"]


def activation_warning(spec: ModelSpec) -> str:
    assert spec.vision is not None
    return (f"vision tower activations ({spec.vision.kind}): the training saved set is within 0.3 % of CPU traces of "
            "transformers 5's towers at real width (4 % at small sizes); the serving transients within 0.4 % of "
            "the tensors a real tower's forward creates (3 % at small sizes); the full-recompute transients are "
            "written from one block's saved set, not traced")


def add_training_vision(memory: MemoryReport, spec: ModelSpec, load: VisionLoad, *, text_params: int, batch: int,
                        precision: str, recompute: str, tower_trained: bool,
                        phases: list[tuple[str, int]], reserve_fraction: float) -> dict[str, object]:
    """Add the tower to a training breakdown of the text model (most loaded rank), in place; returns the JSON of
    the vision terms.

    Weights, gradients, optimizer states and master weights of the tower are counted at the text model's bytes
    per parameter on this GPU (the same precision, sharding and trainability); activations for the micro-batch's
    ``batch · images`` images (``vision_activation_bytes``; under full recompute each block keeps only its input,
    h per patch, plus one block's set during its backward; a frozen tower, the model's first module, saves
    nothing for backward and holds one forward's transients). The tower runs before the text model and its
    backward last, so its activations are live in every forward and backward phase of the text model, and freed
    before the optimizer step; the tower's weights and states are counted at every phase. ``phases`` are the text
    model's (name, allocated bytes); the device total grows with the peak and its allocator reserve."""
    ratio = load.params / text_params if text_params else 0.0
    weights = round(memory.weights_bytes * ratio)
    states = round((memory.gradients_bytes + memory.optimizer_bytes + memory.master_weights_bytes) * ratio)
    if not tower_trained:
        states = 0
    patches = batch * load.images * load.patches_per_image
    dtype_bytes = 4 if precision == "fp32" else 2
    v = spec.vision
    assert v is not None
    if not tower_trained:  # a frozen first module saves nothing for backward: one forward's transients
        acts = vision_activation_bytes(spec, patches, dtype_bytes, train=False)
    elif recompute == "full":
        from gpuplan.model.vision import block_activation_bytes

        one = block_activation_bytes(v, dtype_bytes) * patches
        acts = v.num_layers * v.hidden_size * patches * dtype_bytes + one
    else:
        acts = vision_activation_bytes(spec, patches, dtype_bytes, train=True)
    steady = weights + states
    def live(name: str) -> bool:  # a frozen tower's transients only while it runs, before the text forward
        return name == "forward" if not tower_trained else not name.startswith("optimizer")

    grown = [(b + steady + (acts if live(name) else 0), name) for name, b in phases] or [
        (memory.allocated_peak_bytes + steady + acts, memory.peak_phase)]
    peak, phase = max(grown)
    old = memory.allocated_peak_bytes
    if peak > old:
        memory.total_bytes += peak - old + int(peak * reserve_fraction) - int(old * reserve_fraction)
        memory.allocated_peak_bytes, memory.peak_phase = peak, phase
    memory.assumptions = [*memory.assumptions, *window_note(spec),
                          f"vision: {load.images} image(s) of {load.height}x{load.width} per sequence, resized to "
                          f"{load.resized_height}x{load.resized_width}: {load.patches_per_image:,} patches and "
                          f"{load.tokens_per_image:,} text positions each; the text model runs at "
                          f"--seq + {load.tokens:,} image positions",
                          "vision: the tower's weights" + (", gradients and optimizer states" if tower_trained else "")
                          + " at the text model's bytes per parameter on this GPU (same precision and sharding; "
                          "with --pp the tower sits on the first stage)" + ("" if tower_trained else
                                                                          "; the tower is frozen")]
    memory.warnings = [w for w in memory.warnings if "--images adds them" not in w] + [activation_warning(spec)]
    flop_step = load.forward_flop_per_image * batch * load.images * (3 if tower_trained else 1)
    src = "gpuplan.model.images.add_training_vision"
    memory.terms = [*memory.terms,
                    Term("vision_weights_bytes", weights, "weights_bytes × vision_params / text_params", src,
                         {"vision_params": load.params, "text_params": text_params}),
                    Term("vision_states_bytes", states, "(gradients_bytes + optimizer_bytes + master_weights_bytes) × "
                         "vision_params / text_params" if tower_trained else "0", src,
                         {"vision_params": load.params, "text_params": text_params}),
                    Term("vision_activations_bytes", acts, "patches × (layers × block_bytes + edge_bytes)"
                         if tower_trained and recompute != "full" else "patches × saved_bytes", "gpuplan.model.vision "
                         "(saved sets read off CPU traces of transformers 5's towers)",
                         {"patches": patches, "layers": v.num_layers, "dtype_bytes": dtype_bytes}),
                    _flop_term(load)]
    return {**load.as_dict(), "weights_bytes": weights, "states_bytes": states, "activations_bytes": acts,
            "flop_per_micro_batch": flop_step}


def add_serving_vision(memory: MemoryReport, spec: ModelSpec, load: VisionLoad, *, batch: int, tp: int,
                       dtype_bytes: int) -> dict[str, object]:
    """Add the tower to a serving breakdown of the text model, in place: its weights in the model dtype (towers
    are left unquantized), split over ``tp`` (``sharded_vision_params``), and one forward's transients for the
    ``batch · images`` images of a prefill; returns the JSON of the vision terms."""
    weights = sharded_vision_params(spec, tp) * dtype_bytes
    patches = batch * load.images * load.patches_per_image
    acts = vision_activation_bytes(spec, patches, dtype_bytes, train=False)
    # the tower runs before the text model's prefill and its transients are freed before the prefill's own
    # activations and logits appear: only what exceeds them raises the peak
    added = weights + max(0, acts - memory.activations_bytes - memory.logits_bytes)
    memory.allocated_peak_bytes += added
    memory.total_bytes += added
    memory.assumptions = [*memory.assumptions, *window_note(spec),
                          f"vision: {load.images} image(s) of {load.height}x{load.width} per sequence, resized to "
                          f"{load.resized_height}x{load.resized_width}: {load.patches_per_image:,} patches and "
                          f"{load.tokens_per_image:,} context positions each, added to --context and --prompt",
                          "vision: the tower's weights unquantized in the model dtype, its Linears split over --tp; "
                          "one forward over the prefill's images at a time"]
    memory.warnings = [w for w in memory.warnings if "--images adds them" not in w] + [activation_warning(spec)]
    src = "gpuplan.model.images.add_serving_vision"
    memory.terms = [*memory.terms,
                    Term("vision_weights_bytes", weights, "Σ numel / tp(column, row) × dtype_bytes", src, {"tp": tp, "dtype_bytes": dtype_bytes}),
                    Term("vision_activations_bytes", acts, "patches × (held + max(attention, mlp)) per block "
                         "(+ Pixtral's patches² mask)", "gpuplan.model.vision.serving_transient_bytes",
                         {"patches": patches, "h": spec.vision.hidden_size, "f": spec.vision.ffn_size}),
                    _flop_term(load)]
    return {**load.as_dict(), "weights_bytes": weights, "activations_bytes": acts,
            "prefill_flop": load.forward_flop_per_image * batch * load.images}


def _flop_term(load: VisionLoad) -> Term:
    return Term("vision_forward_flop_per_image", load.forward_flop_per_image,
                "2 × tower_params × patches + 2 × projector_params × tokens + Σ_layers 4 × h × Σ_blocks n²",
                "gpuplan.model.vision.vision_forward_flop", {"patches": load.patches_per_image,
                                                             "tokens": load.tokens_per_image})
