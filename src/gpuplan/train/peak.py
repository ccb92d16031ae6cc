"""The steady-state peak of one training step: the maximum over its phases, not the sum of its components.

Steady state is the second and later steps: optimizer states exist from the start of the step, gradients are
``None`` until backward creates them (``zero_grad(set_to_none=True)``, the PyTorch default). The first step differs
only before ``optimizer.step()`` (no states yet), so its peak is never higher. Phases, with S = weights + master
weights + optimizer states (+ persistent buffers):

- ``forward``: S + every layer's saved activations + shared tensors + the loss region's forward high-water mark;
- ``loss backward``: the same with the loss region's backward high-water mark (``gpuplan.train.logits``);
- ``final norm backward``: the output head's gradient exists, the final RMSNorm's backward holds four fp32
  h-sized temporaries (traced);
- ``layer i backward`` (top to bottom): S + gradients of everything above layer i + saved activations of layers
  0..i (layer i rebuilt in full under recompute) + the incoming residual gradient + the MLP's backward
  high-water mark: the larger of (down's weight gradient + temporaries after ``mul`` backward) and (all MLP weight
  gradients + what is left once gate/up backward ran), from traces (``gpuplan.train.layers``);
- ``end of backward``: S + all gradients (+ a second output-head-sized gradient while tied embeddings sum theirs);
- ``optimizer step``: S + all gradients + the step's temporaries (``gpuplan.train.optimizer``).
"""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class Phase:
    name: str
    bytes: int


def phases(p: PhaseInputs) -> list[Phase]:
    kept = sum(p.kept_bytes)
    out = [Phase("forward", p.static_bytes + kept + p.shared_bytes + p.head_bytes + p.loss_forward_bytes),
           Phase("loss backward", p.static_bytes + kept + p.shared_bytes + p.head_bytes + p.loss_backward_bytes)]
    out.append(Phase("final norm backward", p.static_bytes + kept + p.shared_bytes + p.head_norm_bytes
                     + p.head_grad_bytes + p.residual_grad_bytes + p.norm_bwd_bytes))
    if p.recompute_full and p.full_bytes:
        out.append(Phase("forward (recomputed layer)", p.static_bytes + kept + p.shared_bytes + max(p.full_bytes)))
    grads_above = p.head_grad_bytes
    alive = kept
    best = Phase("layer backward", 0)
    for i in reversed(range(len(p.kept_bytes))):
        layer_alive = alive - p.kept_bytes[i] + p.full_bytes[i] + p.rebuilt_extra_bytes[i]
        at = (p.static_bytes + grads_above + layer_alive + p.shared_bytes + p.residual_grad_bytes
              + p.bwd_extra_bytes[i])
        if at > best.bytes:
            best = Phase(f"layer {i} backward", at)
        grads_above += p.layer_grad_bytes[i]
        alive -= p.kept_bytes[i]
    out.append(best)
    all_grads = grads_above + p.embed_grad_bytes
    out.append(Phase("end of backward", p.static_bytes + all_grads + p.tied_extra_bytes))
    out.append(Phase("optimizer step", p.static_bytes + all_grads + p.step_temp_bytes))
    return out


def peak(ps: list[Phase]) -> Phase:
    """The highest phase; ties go to the earliest."""
    best = ps[0]
    for ph in ps[1:]:
        if ph.bytes > best.bytes:
            best = ph
    return best
