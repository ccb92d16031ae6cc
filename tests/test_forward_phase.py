"""The forward phase's peak (``gpuplan.train.peak.forward_peak``) against traces.

With a small vocabulary the forward pass peaks before the loss: inside the top decoder layer (what its forward still
references beyond its saved set, ``gpuplan.train.layers.forward_end``; under checkpointing the MLP's working set,
``checkpointed_forward``), at its pre-forward (FSDP2: two all-gather buffers), or, without FSDP2 resharding, at the
loss with the last all-gather result still held. Each number below drops by 3-6 % without the rule it pins.
"""

from __future__ import annotations

import pytest

from gpuplan.model.hf_config import spec_from_config
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.train.peak import PhaseInputs, forward_peak

LLAMA_V2048 = dict(model_type="llama", hidden_size=2048, intermediate_size=5632, num_hidden_layers=4,
                   num_attention_heads=32, num_key_value_heads=4, vocab_size=2048, max_position_embeddings=4096,
                   tie_word_embeddings=False)
QWEN2_V4096_TIED = dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=4,
                        num_attention_heads=12, num_key_value_heads=2, vocab_size=4096, max_position_embeddings=4096,
                        tie_word_embeddings=True)


def _forward(config: dict, **cfg) -> int:
    report = estimate_training(spec_from_config(dict(config)), TrainConfig(batch=2, seq=1024, framework="torch", **cfg))
    return next(p.bytes for p in report.phases if p.name == "forward")


# Forward-phase peaks of rank 0 traced with gpuplan.verify.distributed (torch 2.13.0+cpu, transformers 5.23.0;
# benchmarks/results/parallel_measured.json, `python benchmarks/parallel_accuracy.py --alive '<case>'` lists what is
# alive at each). Comment: where the trace peaks and the rule that covers it.
FSDP2_FORWARD = [
    # the loss, with every layer unsharded and layer 3's all-gather result kept until the root's post-forward
    ("llama bf16 no reshard", LLAMA_V2048, dict(precision="bf16", reshard_after_forward=False), 1_524_057_600),
    # the end of layer 3: its input, h1, the MLP output and the new output beside its saved set, + embeddings
    ("llama bf16", LLAMA_V2048, dict(precision="bf16"), 1_226_203_136),
    # fp32 stream: the first norm keeps x, the second h1; the MLP output and the new output remain
    ("llama fp32", LLAMA_V2048, dict(precision="fp32"), 2_266_700_800),
    # checkpointing: layer 3's pre-forward (its input kept, two all-gather buffers + its unsharded parameters)
    ("llama bf16 AC", LLAMA_V2048, dict(precision="bf16", recompute="full"), 591_757_312),
    # checkpointing: inside layer 3's MLP (h1, the MLP input, act(gate), up, their product)
    ("qwen2 tied bf16 AC", QWEN2_V4096_TIED, dict(precision="bf16", recompute="full"), 638_438_400),
]


@pytest.mark.parametrize("name,config,cfg,measured", FSDP2_FORWARD, ids=[c[0] for c in FSDP2_FORWARD])
def test_fsdp2_forward_phase_matches_stored_trace(name, config, cfg, measured):
    got = _forward(config, dp=4, zero=3, **cfg)
    assert abs(got - measured) / measured < 0.0025, (name, got, measured)


def test_forward_peak_moments():
    """Each moment wins where its own terms are largest; the embedding output is not held at the loss."""
    base = dict(static_bytes=100, kept_bytes=(10, 10), rebuilt_extra_bytes=(0, 0), full_bytes=(10, 10),
                bwd_extra_bytes=(0, 0), layer_grad_bytes=(0, 0), shared_bytes=0, head_bytes=5, head_norm_bytes=3,
                head_grad_bytes=0, embed_grad_bytes=0, tied_extra_bytes=0, loss_forward_bytes=20,
                loss_backward_bytes=0, residual_grad_bytes=0, norm_bwd_bytes=0, step_temp_bytes=0,
                recompute_full=False)
    s = 120  # static + kept
    assert forward_peak(PhaseInputs(**base), s) == s + 5 + 20  # the loss
    assert forward_peak(PhaseInputs(**base, fwd_high_bytes=30, stack_held_bytes=4), s) == s + 34
    assert forward_peak(PhaseInputs(**base, fwd_in_bytes=2, fwd_pre_buf_bytes=50), s) == s - 10 + 52
    assert forward_peak(PhaseInputs(**base, tail_buf_bytes=7), s) == s + 5 + 20 + 7
    assert forward_peak(PhaseInputs(**base, head_fwd_bytes=30, stack_held_bytes=1), s) == s + 5 + 31
    assert forward_peak(PhaseInputs(**{**base, "has_head": False}), s) == s


# --- one GPU: small vocabularies put the forward peak in the top layer or the final norm (live traces) ---


def _small(model_type: str, **kw) -> dict:
    return dict(model_type=model_type, hidden_size=256, intermediate_size=704, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, vocab_size=64, max_position_embeddings=1024, **kw)


ONE_GPU = [
    ("llama bf16 (final norm)", _small("llama"), {}),
    ("llama bf16 AC (MLP working set)", _small("llama"), dict(recompute="full")),
    ("gpt2 bf16 AC (gelu_new temporaries, attention output)",
     dict(model_type="gpt2", n_embd=256, n_layer=3, n_head=4, vocab_size=64, n_positions=1024), dict(recompute="full")),
    ("gemma2 eager (masks held)", dict(_small("gemma2"), head_dim=64), dict(attention="eager")),
    ("mixtral (expert outputs before the sum)", _small("mixtral", num_local_experts=4, num_experts_per_tok=2), {}),
]


@pytest.mark.parametrize("name,config,kw", ONE_GPU, ids=[c[0] for c in ONE_GPU])
def test_one_gpu_forward_phase_matches_trace(name, config, kw):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from dataclasses import replace

    from gpuplan.verify import TrainSetup, measure_training
    from gpuplan.verify.estimate import train_config

    setup = TrainSetup(batch=2, seq=256, **kw)
    m = measure_training(dict(config), setup)
    setup = replace(setup, attention=m.extra.get("attention") or setup.attention)
    report = estimate_training(spec_from_config(dict(config)), train_config(setup))
    got = next(p.bytes for p in report.phases if p.name == "forward")
    want = m.phases["forward_peak"].total_bytes
    assert -0.01 < (got - want) / want < 0.015, (name, got, want)
