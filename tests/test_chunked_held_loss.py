"""--loss chunked-held: litgpt's cross-entropy chunk by chunk in the logits' dtype over logits the loop holds
(litgpt 0.5.3 finetune/lora.py and utils.chunked_cross_entropy); the whole step is checked against a trace of
litgpt's own loop in tests/test_model_impl.py."""

from gpuplan.train.config import TrainConfig
from gpuplan.train.logits import loss_memory


def test_logits_and_log_probabilities_are_all_kept_and_one_chunk_adds_its_gradients():
    t, v, e, c = 1024, 32000, 2, 128
    m = loss_memory(t, v, e, impl="chunked-held", chunk_tokens=c)
    assert (m.forward_peak_bytes, m.saved_bytes, m.backward_peak_bytes) == (2 * e * t * v, 2 * e * t * v,
                                                                           2 * e * t * v + 2 * e * c * v)
    # against the chunked loss that frees each chunk (torchtune's), everything but one chunk is held
    freed = loss_memory(t, v, e, impl="chunked", chunk_tokens=c)
    assert freed.backward_peak_bytes < m.backward_peak_bytes


def test_the_litgpt_stack_runs_it():
    assert TrainConfig(stack="litgpt").loss_impl == "chunked-held"
    assert TrainConfig(stack="torch").loss_impl == "standard"
