"""Serving estimates: ``estimate_inference(spec, InferConfig) -> InferReport`` (engine.py).

quant.py / gguf.py: weight formats and their real bytes; kv.py: KV cache per attention type and engine;
activations.py: prefill / decode / vLLM-profile transients; engines.py: hf and vllm profiles and vLLM's block
arithmetic; parallel.py: TP / PP / EP / DP layouts; speed.py: the roofline; source.py: what is read from config.json;
explain.py: the terms behind ``--explain``.
"""
