"""The steady-state peak of one training step: the maximum over its phases, not the sum of its components.

Steady state is the second and later steps: optimizer states exist from the start of the step, gradients are
``None`` until backward creates them (``zero_grad(set_to_none=True)``, the PyTorch default). The first step differs
only before ``optimizer.step()`` (no states yet), so its peak is never higher. Phases, with S = weights + master
weights + optimizer states (+ persistent buffers):

- ``forward``: S + shared tensors + the highest of five moments (``forward_peak``): the first layer's
  pre-forward (FSDP2's root all-gather result still held), the top layer's pre-forward (the layers below it kept,
  its input), the top layer's forward high-water mark (every layer kept, plus what
  its forward still references: ``gpuplan.train.layers.forward_end``, or ``checkpointed_forward`` under full
  recompute), the final norm (head tensors plus its fp32 product and input) and the loss region's forward
  high-water mark; the embedding output (and eager attention's masks) are held through all but the last
  (``gpuplan.train.model_acts``);
- ``loss backward``: the same with the loss region's backward high-water mark (``gpuplan.train.logits``);
- ``final norm backward``: the output head's gradient exists, the final RMSNorm's backward holds four fp32
  h-sized temporaries (traced);
- ``layer i backward`` (top to bottom): S + gradients of everything above layer i + saved activations of layers
  0..i (layer i rebuilt in full under recompute) + the incoming residual gradient + the MLP's backward
  high-water mark: the larger of (down's weight gradient + temporaries after ``mul`` backward) and (all MLP weight
  gradients + what is left once gate/up backward ran), from traces (``gpuplan.train.layers``);
- ``end of backward``: S + all gradients + the larger of (a second output-head-sized gradient while tied
  embeddings sum theirs, plus the buffers at the end of backward: FSDP2's root reduce-scatter input) and, when an
  untied embedding trains, the incoming residual gradient (r·h per local token) that ``embedding_dense_backward``
  reads while it writes the embedding gradient (torch ``aten/src/ATen/native/Embedding.cpp``; traced: DTensor
  TP Llama-2-7B shape in fp32, 33,554,432 B at 4 × 512);
- ``optimizer step``: S + all gradients + the step's temporaries (``gpuplan.train.optimizer``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class PhaseInputs:
    static_bytes: int
    kept_bytes: tuple[int, ...]  # per layer, kept between forward and backward
    rebuilt_extra_bytes: tuple[int, ...]  # per layer, kept tensors still held beside the rebuilt saved set
    full_bytes: tuple[int, ...]  # per layer, its full saved set (rebuilt under recompute)
    bwd_extra_bytes: tuple[int, ...]  # per layer, its backward high-water mark above its saved set (own grads too)
    layer_grad_bytes: tuple[int, ...]  # per layer, its gradients
    shared_bytes: int
    head_bytes: int
    head_norm_bytes: int  # the final norm's saved tensors (the output head's input is released before)
    head_grad_bytes: int  # output head (+ final norm) gradients, created first in backward
    embed_grad_bytes: int
    tied_extra_bytes: int  # tied embeddings: the second gradient summed at the end of backward
    loss_forward_bytes: int
    loss_backward_bytes: int
    residual_grad_bytes: int
    norm_bwd_bytes: int  # the final norm's backward temporaries (RMSNorm: four fp32 h-sized tensors)
    step_temp_bytes: int
    recompute_full: bool
    # distributed runs (gpuplan.train.distributed); zero on one GPU
    held_bytes: int = 0  # activations of other in-flight micro-batches, gradients of earlier micro-steps
    act_extra_bytes: int = 0  # buffers live through forward and backward (FSDP root and all-gather, p2p, all-to-all)
    layer_extra_bytes: int = 0  # buffers live during a layer's backward (FSDP prefetch and reduce-scatter)
    end_extra_bytes: int = 0  # buffers at the end of backward (FSDP root reduce-scatter input)
    opt_grads_bytes: int | None = None  # gradients during the step when they differ from backward's (sharded)
    has_head: bool = True  # the rank computes the output head and loss (last pipeline stage)
    first_layer: int = 0  # model index of the first layer in ``kept_bytes`` (pipeline stages)
    # forward moments (``forward_peak``)
    fwd_in_bytes: int = 0  # the top layer's input, alive at its pre-forward (its saved set does not exist yet)
    fwd_high_bytes: int = 0  # the top layer's forward high-water mark beyond its kept set
    stack_held_bytes: int = 0  # embedding output, eager masks: referenced until the final norm has run
    head_fwd_bytes: int = 0  # the final norm's forward temporaries beyond head_bytes
    fwd_pre_buf_bytes: int = 0  # gather buffers at the top layer's pre-forward beyond act_extra_bytes
    fwd_high_buf_bytes: int = 0  # gather buffers through the top layer's forward beyond act_extra_bytes
    tail_buf_bytes: int = 0  # buffers from the top layer's end through the loss forward beyond act_extra_bytes
    loss_fwd_buf_bytes: int | None = None  # buffers through the loss forward, when they differ from tail_buf_bytes
    loss_bwd_buf_bytes: int = 0  # buffers through the loss backward beyond act_extra_bytes (FSDP2 head group)
    first_in_bytes: int = 0  # the first layer's input and what the model holds at its pre-forward (no kept set yet)
    first_pre_buf_bytes: int = 0  # gather buffers at the first layer's pre-forward beyond act_extra_bytes


@dataclass(frozen=True)
class Phase:
    name: str
    bytes: int


def phases(p: PhaseInputs) -> list[Phase]:
    kept = sum(p.kept_bytes)
    base = p.static_bytes + p.held_bytes + p.act_extra_bytes + kept + p.shared_bytes
    out = [Phase("forward", forward_peak(p, base))]
    if p.has_head:
        out += [Phase("loss backward", base + p.head_bytes + p.loss_backward_bytes + p.loss_bwd_buf_bytes),
                Phase("final norm backward", base + p.head_norm_bytes + p.head_grad_bytes + p.residual_grad_bytes
                      + p.norm_bwd_bytes)]
    if p.recompute_full and p.full_bytes:
        out.append(Phase("forward (recomputed layer)", base + max(p.full_bytes)))
    grads_above = p.head_grad_bytes
    alive = kept
    fixed = (p.static_bytes + p.held_bytes + p.act_extra_bytes + p.layer_extra_bytes + p.shared_bytes
             + p.residual_grad_bytes)
    best_i, best_bytes = None, 0
    kept_b, full_b, rebuilt_b, bwd_b, grad_b = (p.kept_bytes, p.full_bytes, p.rebuilt_extra_bytes,
                                               p.bwd_extra_bytes, p.layer_grad_bytes)
    for i in reversed(range(len(kept_b))):
        at = fixed + grads_above + alive - kept_b[i] + full_b[i] + rebuilt_b[i] + bwd_b[i]
        if at > best_bytes:
            best_i, best_bytes = i, at
        grads_above += grad_b[i]
        alive -= kept_b[i]
    out.append(Phase("layer backward" if best_i is None else f"layer {p.first_layer + best_i} backward", best_bytes))
    all_grads = grads_above + p.embed_grad_bytes
    end = p.tied_extra_bytes + p.end_extra_bytes
    if p.embed_grad_bytes:
        end = max(end, p.residual_grad_bytes)
    out.append(Phase("end of backward", p.static_bytes + p.held_bytes + all_grads + end))
    opt_grads = all_grads if p.opt_grads_bytes is None else p.opt_grads_bytes
    out.append(Phase("optimizer step", p.static_bytes + opt_grads + p.step_temp_bytes))
    return out


def optimizer_in_backward(p: PhaseInputs, largest_grad_bytes: int, opt: "object", all_grads_bytes: int
                          ) -> PhaseInputs:
    """Optimizer in backward: each parameter is stepped by its own optimizer from a post-accumulate-grad hook and
    its gradient freed at once (torchtune ``optimizer_in_bwd``: recipes/full_finetune_single_device.py registers
    ``torch.Tensor.register_post_accumulate_grad_hook`` with ``optimizer.step(); optimizer.zero_grad()`` per
    parameter; PyTorch tutorial "How to save memory by fusing the optimizer step into the backward pass").

    The full set of gradients never exists: at any moment at most one parameter's gradient G_max (the largest)
    and that step's temporaries (one tensor's share of the step temporaries: T·G_max/G_all) are alive. So every
    layer-backward point carries G_max instead of the gradients created so far, the end of backward holds G_max
    (the embedding's), and there is no separate optimizer-step phase above the static states. The caller passes
    ``p`` built with no gradients (``bwd_extra_bytes`` without the layer's own ones)."""
    step_temp = getattr(opt, "step_temp_bytes", 0)
    one_temp = step_temp * largest_grad_bytes // all_grads_bytes if all_grads_bytes else 0
    alive = largest_grad_bytes + one_temp
    return replace(p, layer_grad_bytes=(0,) * len(p.layer_grad_bytes), head_grad_bytes=0, embed_grad_bytes=0,
                   tied_extra_bytes=0, layer_extra_bytes=p.layer_extra_bytes + alive,
                   end_extra_bytes=p.end_extra_bytes + alive, step_temp_bytes=0, opt_grads_bytes=0)


def without_loss(p: PhaseInputs) -> PhaseInputs:
    """The same step with the loss region's tensors left out (the segment rule of ``gpuplan.train.overheads``)."""
    return replace(p, loss_forward_bytes=0, loss_backward_bytes=0)


def forward_peak(p: PhaseInputs, base: int) -> int:
    """The forward pass's high-water mark, ``base`` = S + held + buffers live through the step + every layer's
    kept activations + shared tensors. The highest of:

    - the first layer's pre-forward: no layer's kept set exists yet; its input, what the model's forward holds
      then (``first_in_bytes``) and the gather buffers of that moment (``first_pre_buf_bytes``; FSDP2: the
      root group's all-gather result, kept until the first layer's copy-out, beside the first layer's buffer and
      unsharded parameters, ``gpuplan.parallel.buffers``): base − Σkept + first_in + first_pre_buf;
    - the top layer's pre-forward: its kept set does not exist yet, its input does; gather buffers of its
      all-gather (FSDP2: the previous layer's kept all-gather result beside the new one);
    - the top layer's forward high-water mark: what its forward still references beyond its kept set, with its
      gathered parameters (FSDP2: torch/distributed/fsdp/_fully_shard/_fsdp_param_group.py ``wait_for_unshard``
      keeps each all-gather result in ``comm_ctx.all_gather_state`` until the next one's copy-out);
    - the final norm (head tensors + its forward temporaries) and the loss region (head tensors + the loss's
      forward high-water mark), each with the buffers held from the top layer's end through the loss: FSDP2
      frees the last all-gather result only in the root's post-forward, after the loss
      (torch/distributed/fsdp/_fully_shard/_fsdp_state.py ``_post_forward``).

    What the model's forward holds through the stack (``stack_held_bytes``: the embedding output, eager
    attention's masks) is referenced at every moment but the loss."""
    out = base
    if p.kept_bytes:
        top = p.kept_bytes[-1]
        out = max(out, base - sum(p.kept_bytes) + p.first_in_bytes + p.first_pre_buf_bytes,
                  base - top + p.fwd_in_bytes + p.stack_held_bytes + p.fwd_pre_buf_bytes,
                  base + p.fwd_high_bytes + p.stack_held_bytes + p.fwd_high_buf_bytes)
    if p.has_head:
        out = max(out, base + p.head_bytes + p.head_fwd_bytes + p.stack_held_bytes + p.tail_buf_bytes,
                  base + p.head_bytes + p.loss_forward_bytes
                  + (p.tail_buf_bytes if p.loss_fwd_buf_bytes is None else p.loss_fwd_buf_bytes))
    return out


def peak(ps: list[Phase]) -> Phase:
    """The highest phase; ties go to the earliest."""
    best = ps[0]
    for ph in ps[1:]:
        if ph.bytes > best.bytes:
            best = ph
    return best
