"""A decoder layer's RMSNorm backward (``gpuplan.train.layers.norm_bwd_temporaries``) against one-GPU CPU traces.

A checkpointed Llama stack with a narrow MLP and a tiny vocabulary, so that the step's peak is a layer's norm
backward: the saved fp32 upcast x32 beside five fp32 h-sized temporaries for a half input (the upcast copy's first
gradient waits in its own fp32 buffer), four for an fp32 one (summed in place into the residual gradient), the
saved normed copy released. Without the fifth temporary the bf16 estimate is 2·h bytes a token short (-3 %).
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.model.hf_config import spec_from_config  # noqa: E402
from gpuplan.train.activations import Act, ActContext  # noqa: E402
from gpuplan.train.layers import norm_bwd_temporaries  # noqa: E402
from gpuplan.verify import TrainSetup, measure_training  # noqa: E402
from gpuplan.verify.compare import error_pct  # noqa: E402
from gpuplan.train.engine import estimate_training  # noqa: E402
from gpuplan.verify.estimate import train_config  # noqa: E402

CONFIG = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 128, "max_position_embeddings": 2048}
TOLERANCE_PCT = 1.0


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_checkpointed_layer_norm_backward_peak(precision):
    setup = TrainSetup(batch=2, seq=1024, precision=precision, recompute="full")
    m = measure_training(CONFIG, setup)
    rep = estimate_training(spec_from_config(CONFIG),
                            train_config(TrainSetup(**{**setup.__dict__, "attention": m.extra["attention"]})))
    est = rep.memory.allocated_peak_bytes
    assert m.peak_phase == "backward" and rep.memory.peak_phase.startswith("layer")
    err = error_pct(est, m.allocated_peak_bytes)
    assert err is not None and abs(err) <= TOLERANCE_PCT, \
        f"estimate {est:,} vs measured {m.allocated_peak_bytes:,} B ({err:+.2f} %)"


def test_norm_backward_temporaries_formula():
    spec = spec_from_config(CONFIG)
    h = spec.hidden_size
    half, fp32 = ActContext(e=2, r=2), ActContext(e=4, r=4)
    assert norm_bwd_temporaries(spec, half, Act(tok=2.0 * h)).tok == 18 * h  # five fp32 less the bf16 normed
    assert norm_bwd_temporaries(spec, fp32, Act(tok=4.0 * h)).tok == 12 * h  # four fp32 less the fp32 normed
    assert norm_bwd_temporaries(spec, half, Act()).tok == 20 * h  # frozen weight: nothing saved to release
