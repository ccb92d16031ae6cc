"""--torch-version: before PyTorch 1.11 autograd keeps softmax's input (pytorch/pytorch#64000), so eager attention
keeps its pre-softmax scores in every layer; nothing else moves, and a release without SDPA says so."""

from __future__ import annotations

import pytest

from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training
from gpuplan.versions import TORCH_SOFTMAX_KEEPS_INPUT, torch_release

BERT = dict(model_type="bert", architectures=["BertForSequenceClassification"], hidden_size=256,
            num_hidden_layers=3, num_attention_heads=4, intermediate_size=1024, vocab_size=1000,
            max_position_embeddings=256, type_vocab_size=2, num_labels=2, hidden_act="gelu",
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
LLAMA = dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=1000, max_position_embeddings=1024)


def _saved(config: dict, **kw) -> int:
    est = estimate_training(spec_from_config(dict(config)), TrainConfig(**kw))
    return est.memory.activations_bytes


@pytest.mark.parametrize("version, holds", [("1.10", True), ("1.10.2", True), ("1.9", True), ("1.11", False),
                                            ("2.0", False), ("2.13.0+cpu", False)])
def test_the_rule_ends_with_1_11(version, holds):
    assert TORCH_SOFTMAX_KEEPS_INPUT.holds(torch_release(version)) is holds


@pytest.mark.parametrize("precision, soft_bytes", [("fp32", 4), ("amp-fp16", 4)])
def test_eager_attention_keeps_its_scores_in_every_layer(precision, soft_bytes):
    # BERT's softmax reads the scores in the compute dtype (fp32), or autocast's fp32 copy of the half scores
    b, s = 2, 128
    common = dict(batch=b, seq=s, precision=precision, attention="eager")
    old = _saved(BERT, torch_version="1.10", **common)
    new = _saved(BERT, torch_version="1.11", **common)
    assert old - new == BERT["num_hidden_layers"] * b * BERT["num_attention_heads"] * s * s * soft_bytes
    assert new == _saved(BERT, **common)  # no release given: the traced behaviour


def test_nothing_moves_without_eager_attention_or_with_selective_recompute():
    for kw in (dict(attention="sdpa"), dict(attention="eager", recompute="selective")):
        assert _saved(LLAMA, batch=1, seq=256, torch_version="1.10", **kw) == _saved(LLAMA, batch=1, seq=256, **kw)


def test_the_assumptions_and_warnings_name_the_release():
    spec = spec_from_config(dict(LLAMA))
    est = estimate_training(spec, TrainConfig(batch=1, seq=256, attention="eager", torch_version="1.10"))
    assert any(w.startswith("PyTorch 1.10: autograd keeps softmax's input") for w in est.memory.warnings)
    assert any("code on PyTorch 1.10 " in a for a in est.memory.assumptions)
    est = estimate_training(spec, TrainConfig(batch=1, seq=256, attention="sdpa", torch_version="1.13"))
    assert any("has no scaled_dot_product_attention" in w for w in est.memory.warnings)


@pytest.mark.parametrize("bad", ["0.4", "one.ten", ""])
def test_bad_releases_are_refused(bad):
    with pytest.raises(InputError, match="--torch-version"):
        estimate_training(spec_from_config(dict(LLAMA)), TrainConfig(batch=1, seq=64, torch_version=bad))
