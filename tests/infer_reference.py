"""Run real transformers models (tiny, CPU, or on the meta device) and report what their KV caches and forward
passes allocate, for the inference tests."""

from __future__ import annotations

import warnings


def build(config: dict, *, meta: bool = False, dtype: str = "bfloat16"):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    kw = dict(config)
    model_type = kw.pop("model_type")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conf = AutoConfig.for_model(model_type, **kw)
        torch.manual_seed(0)
        if meta:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(conf, dtype=getattr(torch, dtype))
        else:
            model = AutoModelForCausalLM.from_config(conf, dtype=getattr(torch, dtype))
    model.eval()
    model.generation_config.pad_token_id = 0
    return model


def cache_storage_bytes(cache) -> int:
    """Bytes of the distinct storages behind a DynamicCache's tensors (a sliced view counts its whole storage)."""
    seen: dict[int, int] = {}
    for layer in cache.layers:
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is None or t.numel() == 0:
                continue
            s = t.untyped_storage()
            seen[id(s) if t.device.type == "meta" else s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def kv_after_prefill_and_decode(model, batch: int, prompt: int, *, meta: bool = False) -> tuple[int, int]:
    """(cache bytes after prefilling ``prompt`` tokens, after one more decode token)."""
    import torch
    from transformers import DynamicCache

    device = "meta" if meta else "cpu"
    vocab = model.config.get_text_config().vocab_size
    ids = torch.randint(1, vocab, (batch, prompt)) if not meta else torch.zeros(batch, prompt, dtype=torch.long,
                                                                                 device=device)
    with torch.no_grad():
        out = model(input_ids=ids, past_key_values=DynamicCache(config=model.config), use_cache=True,
                    logits_to_keep=1)
        after_prefill = cache_storage_bytes(out.past_key_values)
        out = model(input_ids=ids[:, :1], past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)
        after_decode = cache_storage_bytes(out.past_key_values)
    return after_prefill, after_decode
