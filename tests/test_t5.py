"""T5 and mT5 encoder-decoders: tensors by rule (exact against transformers as a checkpoint loads them), configs as
transformers 5 saves them, memory through the traced path, and a clear refusal from the rule-based estimates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gpuplan import api
from gpuplan.cli.main import main
from gpuplan.errors import InputError
from gpuplan.model.hf_config import spec_from_config
from gpuplan.model.hf_families import t5_head_tied
from gpuplan.model.params import count_params
from gpuplan.model.presets import find_preset
from gpuplan.model.tensors import tensor_table
from gpuplan.train.config import TrainConfig
from gpuplan.train.engine import estimate_training

T5_TINY = Path(__file__).parent / "data" / "families" / "t5-tiny.json"


def _tiny(**changes) -> dict:
    return {**json.loads(T5_TINY.read_text()), **changes}


def test_counts_by_hand():
    """t5-small (Raffel et al. 2019: d_model 512, d_ff 2048, 8 heads of 64, 6 + 6 layers, tied head): the shared
    embedding, 6 encoder blocks (4·h·h attention, 2·h·f ReLU MLP, 2 norms), 6 decoder blocks (8·h·h with the
    cross-attention, 2·h·f, 3 norms), a 32 x 8 relative-position table per stack and two final norms."""
    h, f, v = 512, 2048, 32128
    enc = 4 * h * h + 2 * h * f + 2 * h
    dec = 8 * h * h + 2 * h * f + 3 * h
    expected = v * h + 6 * enc + 6 * dec + 2 * 32 * 8 + 2 * h
    assert count_params(find_preset("t5-small").spec()).total == expected == 60_506_624
    # Flan-T5 (T5 v1.1): gated-GELU MLP (wi_0, wi_1, wo) and a head of its own
    flan = find_preset("flan-t5-xl").spec()
    assert flan.gated_mlp and flan.activation == "gelu_new" and not flan.tie_embeddings
    assert count_params(flan).lm_head == 32128 * 2048


def test_decoder_layers_follow_the_encoders_in_the_table():
    spec = spec_from_config(_tiny(num_decoder_layers=3))
    table = tensor_table(spec)
    assert {t.layer for t in table if t.name.startswith("decoder.block.0.")} == {5}
    assert max(t.layer for t in table if t.layer is not None) == 5 + 3 - 1
    rel = [t for t in table if "relative_attention_bias" in t.name]
    assert [t.name for t in rel] == ["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                     "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    assert all(t.shape == (32, 4) for t in rel)


def test_attribute_map_names_and_bad_values():
    """T5Config's attribute_map names (hidden_size, num_attention_heads, num_hidden_layers) read like its own keys;
    a feed_forward_proj transformers rejects is an InputError naming it."""
    own = _tiny()
    mapped = {k: v for k, v in own.items() if k not in ("d_model", "num_heads", "num_layers")}
    mapped.update(hidden_size=own["d_model"], num_attention_heads=own["num_heads"], num_hidden_layers=own["num_layers"])
    assert spec_from_config(mapped) == spec_from_config(own)
    with pytest.raises(InputError, match="feed_forward_proj"):
        spec_from_config(_tiny(feed_forward_proj="swish-gated-gelu"))
    with pytest.raises(InputError, match="num_decoder_layers"):
        spec_from_config(_tiny(num_decoder_layers=0))


def test_head_tying_as_the_file_says():
    assert t5_head_tied({"model_type": "t5"})  # T5Config's default
    assert not t5_head_tied({"model_type": "t5", "tie_word_embeddings": False})
    # transformers 5 writes tie_word_embeddings true for every T5 config and keeps the file's setting here
    assert not t5_head_tied({"model_type": "t5", "tie_word_embeddings": True, "scale_decoder_outputs": False})
    assert t5_head_tied({"model_type": "t5", "tie_word_embeddings": True, "scale_decoder_outputs": True})
    assert not t5_head_tied({"model_type": "mt5", "tie_word_embeddings": True})


@pytest.mark.parametrize("model_type,tie", [("t5", True), ("t5", False), ("mt5", False)])
def test_saved_configs_load_and_count_as_the_checkpoint(tmp_path, model_type, tie):
    """A config saved by the installed transformers (its keys, its forced tie_word_embeddings) gives the tensors
    of the model that from_pretrained loads: transformers' own from_config model, plus a head of its own where
    the checkpoint stores one."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import torch

    cls = transformers.MT5Config if model_type == "mt5" else transformers.T5Config
    keys = {k: v for k, v in _tiny().items() if k not in ("model_type", "architectures")}
    cls(**{**keys, "tie_word_embeddings": tie}).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["tie_word_embeddings"] is True  # whatever the file said
    spec = spec_from_config(saved)
    assert spec.family == model_type and spec.tie_embeddings is tie
    with torch.device("meta"):
        model = transformers.AutoModelForSeq2SeqLM.from_config(cls(**{**keys, "tie_word_embeddings": tie}))
    theirs = {n: tuple(p.shape) for n, p in model.named_parameters()}
    ours = {t.name: t.shape for t in tensor_table(spec)}
    assert ours == theirs | ({} if tie else {"lm_head.weight": (keys["vocab_size"], keys["d_model"])})
    assert count_params(spec).total == sum(math.prod(s) for s in ours.values())


def test_the_traced_model_holds_the_head_the_checkpoint_stores():
    """gpuplan.verify.build gives the traced path the loaded model: Flan-T5's head apart from the embedding."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import torch

    from gpuplan.verify.build import build_model

    config = dict(find_preset("flan-t5-small").config)
    with torch.device("meta"):
        model = build_model(config, dtype="bf16", attention="eager")
    assert model.lm_head.weight is not model.shared.weight
    assert sum(p.numel() for p in model.parameters()) == count_params(find_preset("flan-t5-small").spec()).total
    with torch.device("meta"):
        tied = build_model(dict(find_preset("t5-small").config), dtype="bf16", attention="eager")
    assert tied.lm_head.weight is tied.shared.weight


def test_rule_estimates_refuse_and_the_traced_path_answers(capsys):
    """plan exits 2 naming what gpuplan does with an encoder-decoder; estimate_training refuses the spec;
    train traces the preset (its weights: every parameter, the head included)."""
    with pytest.raises(InputError, match="encoder-decoder"):
        estimate_training(find_preset("flan-t5-small").spec(), TrainConfig())
    assert main(["plan", "flan-t5-small", "--tokens", "1B", "--gpu", "h100-sxm", "--days", "1"]) == 2
    assert "is an encoder-decoder (t5)" in capsys.readouterr().err
    assert main(["params", "flan-t5-small", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 76_961_152
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = api.train("flan-t5-small", seq=64, batch=1)
    # every tensor of bf16 weights, the allocator's 512-byte rounding aside: the head (32128 x 512) is in them
    spec = find_preset("flan-t5-small").spec()
    assert 0 <= out["memory"]["weights_bytes"] - 2 * 76_961_152 < 512 * len(tensor_table(spec))
    assert any(w.startswith("traced: t5 (encoder-decoder, no memory rules)") for w in out["warnings"])


def test_target_length_sets_the_decoders_share(capsys):
    """--target-seq: the labels the decoder reads are that long, so the logits (batch x target x vocab) scale with
    it while the encoder's input stays --seq; a decoder-only model refuses the option (exit 2, naming it)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tiny = str(T5_TINY)
    full = api.train(tiny, seq=128, batch=2)
    short = api.train(tiny, seq=128, target_seq=32, batch=2)
    assert short["memory"]["logits_bytes"] / full["memory"]["logits_bytes"] == pytest.approx(32 / 128, rel=0.01)
    assert short["memory"]["activations_bytes"] < full["memory"]["activations_bytes"]
    assert any("the encoder reads 128 tokens per sequence, the decoder 32" in a
               for a in short["assumptions"])
    assert main(["train", "llama-3.1-8b", "--target-seq", "64"]) == 2
    assert "--target-seq=64: applies to encoder-decoders (T5) only" in capsys.readouterr().err
    assert main(["train", tiny, "--target-seq", "0"]) == 2
    assert "--target-seq='0': must be >= 1" in capsys.readouterr().err


def test_flops_equal_the_counted_forward():
    """FLOPs per input token (gpuplan.compute.flops) against FlopCounterMode over transformers' forward of
    t5-tiny with 64 input and 16 target tokens: the weights by the stack each reads, the encoder's S x S, the
    decoder's T x T (eager attention computes the whole square: the full convention) and T x S attention."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    from gpuplan.compute.flops import seq2seq_attention_forward_flop_per_token, seq2seq_weight_flop_params
    from gpuplan.verify.build import build_model

    config, batch, s, t = _tiny(), 2, 64, 16
    spec = spec_from_config(config)
    model = build_model(config, dtype="fp32", attention="eager")
    ids, labels = torch.randint(0, 512, (batch, s)), torch.randint(0, 512, (batch, t))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=labels)
    per_token = 2 * seq2seq_weight_flop_params(spec, s, t) + seq2seq_attention_forward_flop_per_token(spec, s, t,
                                                                                                      "full")
    assert batch * s * per_token == pytest.approx(counter.get_total_flops(), rel=1e-12)


def test_time_counts_input_tokens(capsys):
    """gpuplan time for an encoder-decoder: 6·P_eff + attention per input token; a shorter target costs less;
    a decoder-only model refuses --target-seq."""
    long = api.time("flan-t5-xl", tokens="10B", gpu="h100-sxm", gpus=8, seq=512)
    short = api.time("flan-t5-xl", tokens="10B", gpu="h100-sxm", gpus=8, seq=512, target_seq=64)
    assert short["days"] < long["days"]
    assert any("each sequence of 512 input tokens training 64 target tokens" in a for a in short["assumptions"])
    assert main(["time", "llama-3.1-8b", "--tokens", "1B", "--gpu", "h100-sxm", "--gpus", "8",
                 "--target-seq", "64"]) == 2
    assert "--target-seq=64: applies to encoder-decoders (T5) only" in capsys.readouterr().err


def test_the_weighted_count_in_families_md():
    """docs/families.md: Flan-T5-XXL at S = 512, T = 128 multiplies 6.83 B weights per input token, about half of
    what 6·P·D with D = input + target tokens assumes."""
    out = api.time("flan-t5-xxl", tokens="1B", gpu="h100-sxm", gpus=8, seq=512, target_seq=128)
    assert round(out["weight_params"] / 1e9, 2) == 6.83
    naive = count_params(find_preset("flan-t5-xxl").spec()).total * (512 + 128) / 512
    assert 1.9 < naive / out["weight_params"] < 2.2


def test_serving_a_longer_output_grows_the_decoders_cache(capsys):
    """infer --target-seq T: the decode step traced is the last of a T-token output, so the KV cache is the
    cross-attention keys and values over the prompt plus T tokens of self-attention, and the extrapolated peak
    equals a trace of the whole model; a decoder-only model refuses the option."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gpuplan.verify.generic import trace_prefill, traced_model
    from gpuplan.verify.setup import PrefillSetup
    from gpuplan.verify.trace import measure_seq2seq_prefill

    config, batch, prompt, target = _tiny(), 2, 128, 48
    setup = PrefillSetup(batch=batch, context=prompt, dtype="bf16", target=target)
    traced = trace_prefill(config, traced_model(config, "tiny"), setup)
    full = measure_seq2seq_prefill(config, setup)
    per_token = config["num_decoder_layers"] * batch * 2 * config["num_heads"] * config["d_kv"] * 2
    assert full.components["kv_cache_bytes"] == per_token * (prompt + target)
    assert traced.values["kv_cache_bytes"] == full.components["kv_cache_bytes"]
    assert traced.peak()[1] == pytest.approx(full.allocated_peak_bytes, rel=0.005)
    out = api.infer(str(T5_TINY), context=prompt, batch=batch, target_seq=target)
    assert out["target_seq"] == target and out["memory"]["kv_cache_bytes"] == per_token * (prompt + target)
    assert main(["infer", "llama-3.1-8b", "--target-seq", "8"]) == 2
    assert "--target-seq=8: applies to encoder-decoders (T5) only" in capsys.readouterr().err
    with pytest.raises(InputError, match="must be an integer >= 2"):
        PrefillSetup(target=1)


def test_the_cache_figures_in_families_md():
    """docs/families.md: flan-t5-base serving 4 x 512 input tokens holds 75.8 MB of KV cache at T = 2 and
    151.0 MB at T = 512 (every decoder layer's cross-attention over the input plus T tokens of self-attention,
    bf16; the formula the test above checks against the trace)."""
    config = find_preset("flan-t5-base").config
    per_token = config["num_decoder_layers"] * 4 * 2 * config["num_heads"] * config["d_kv"] * 2
    assert [round(per_token * (512 + t) / 1e6, 1) for t in (2, 512)] == [75.8, 151.0]
