"""``estimate_inference(spec, cfg) -> InferReport``: memory per GPU for serving, KV capacity, fit, speed.

Components are computed per pipeline stage for one GPU of that stage; the report is for the most loaded GPU.
``--engine hf`` predicts ``torch.cuda.max_memory_allocated()`` of ``model.generate``: weights + KV cache + the
largest transient of the prefill or of a decode step (``allocated_peak_bytes``); ``total_bytes`` adds the CUDA
context and the allocator's reserve. ``--engine vllm`` reproduces vLLM's start-up arithmetic (``engines.py``): the
KV pool fills what ``gpu_memory_utilization`` leaves, and the question becomes how many sequences it holds.
"""

from __future__ import annotations

from typing import Any

from gpuplan.errors import InputError
from gpuplan.infer import activations as act
from gpuplan.infer import kv
from gpuplan.infer.engine_profiles import load_engine_profile
from gpuplan.infer.llamacpp import compute_buffer_bytes as llamacpp_compute_buffer
from gpuplan.infer.llamacpp import split_bytes as llamacpp_split
from gpuplan.infer.engines import (blocks_per_request, check_engine, legacy_allreduce_held_bytes,
                                   legacy_gather_held_bytes, paged_non_torch_bytes, pool_block_tokens, sglang_available_kv_bytes,
                                   sglang_chunked_prefill_size,
                                   sglang_mem_fraction_static, trtllm_available_kv_bytes, vllm_available_kv_bytes,
                                   vllm_num_blocks)
from gpuplan.infer.config import EstimateContext, InferConfig, InferReport
from gpuplan.infer.explain import explain
from gpuplan.infer.parallel import stage_layers, stage_weight_bytes, validate_layout
from gpuplan.infer.quant import DTYPE_BYTES, WeightFormat, weight_bytes
from gpuplan.infer.speed import SpeedInputs, compute_bound_batch, decode_step_s, prefill_s
from gpuplan.model.params import count_params
from gpuplan.model.spec import ModelSpec, require_memory_rules
from gpuplan.model.tensors import tensor_table
from gpuplan.report import MemoryReport, fits


def _prepare(spec: ModelSpec, cfg: InferConfig) -> EstimateContext:
    require_memory_rules(spec)
    profile = check_engine(cfg.engine)
    # paged engines share vLLM's KV layout and weight loading; llama.cpp preallocates its cache like them
    engine = {"hf": "hf", "llamacpp": "llamacpp"}.get(profile, "vllm")
    validate_layout(spec, cfg.layout)
    kv.kv_elements_per_token_layer(spec, cfg.layout.tp)  # validates TP against the (KV) heads
    default_kv = "fp16" if engine == "llamacpp" else cfg.weights.dtype  # llama.cpp -ctk/-ctv f16
    kv_dtype = kv.check_kv_dtype(cfg.kv_dtype or default_kv, "hf" if engine == "hf" else "vllm")
    if engine == "vllm":
        cfg.vllm.validate()
    fmt = cfg.weights
    if engine == "hf" and fmt.family == "gguf":
        # transformers dequantizes GGUF checkpoints to the torch dtype when loading them.
        fmt = WeightFormat(fmt.dtype, "float", dtype=fmt.dtype)
    wb = weight_bytes(spec, fmt, engine="hf" if engine == "hf" else "vllm")
    capacity = cfg.gpu_memory_bytes if cfg.gpu_memory_bytes else (cfg.gpu.memory_usable_bytes if cfg.gpu else None)
    return EstimateContext(spec, cfg, engine, kv_dtype, DTYPE_BYTES[cfg.weights.dtype], wb,
                stage_weight_bytes(spec, wb.per_tensor, cfg.layout), stage_layers(spec.num_layers, cfg.layout.pp),
                capacity, profile)


def prepare(spec: ModelSpec, cfg: InferConfig) -> EstimateContext:
    """The per-question context (weights per stage, capacity) that the speed model and searches share."""
    return _prepare(spec, cfg)


def _check_context(spec: ModelSpec, cfg: InferConfig, context: int, prompt: int) -> None:
    limit = cfg.max_context or spec.max_position
    if context > limit:
        src = cfg.max_context_source or f"max_position_embeddings={spec.max_position}, no rope_scaling"
        raise InputError("--context", context, f"exceeds the longest context the model serves ({limit}: {src})",
                         hint="pass --rope-scaling FACTOR if you serve it with RoPE scaling (e.g. YaRN)")
    if prompt > context:
        raise InputError("--prompt", prompt, f"must be <= --context ({context})")


def _hf_stage(c: EstimateContext, s: int, batch: int, context: int, prompt: int) -> dict[str, Any]:
    spec, cfg, b = c.spec, c.cfg, c.dtype_bytes
    layers, last = c.stages[s], s == len(c.stages) - 1
    tp = cfg.layout.tp
    kw = dict(kv_dtype=c.kv_dtype, engine="hf", tp=tp, layers=layers, unquantized_dtype=cfg.weights.dtype)
    kv_pre = kv.kv_cache_bytes(spec, batch=batch, context=context, prompt=prompt, phase="prefill", **kw)
    kv_dec = kv.kv_cache_bytes(spec, batch=batch, context=context, prompt=prompt, phase="decode", **kw)
    trans, where = act.hf_prefill_transient_bytes(spec, batch=batch, prompt=prompt, dtype_bytes=b, layers=layers,
                                                  last_stage=last, tp=tp, dtype=cfg.weights.dtype)
    logits = act.hf_logits_bytes(spec, batch=batch, dtype_bytes=b, fp32_copies=cfg.hf.logits_fp32_copies) if last else 0
    dec = act.hf_decode_transient_bytes(spec, batch=batch, context=context,
                                        kv_elements_layer=kv.kv_elements_per_token_layer(spec, tp),
                                        kv_element_bytes=kv.element_bytes(c.kv_dtype, "hf"), dtype_bytes=b,
                                        quantized_cache=c.kv_dtype in ("int8", "int4"))
    w = c.stage_weights[s]
    prefill_peak = w + kv_pre + max(trans, logits)
    decode_peak = w + kv_dec + dec + logits
    peak, phase = (prefill_peak, f"prefill ({where})") if prefill_peak >= decode_peak else (decode_peak, "decode")
    reserve = int(cfg.hf.allocator_reserve_fraction * (peak - w))  # weights sit in exact-size segments
    return dict(weights=w, kv=max(kv_pre, kv_dec), kv_prefill=kv_pre, kv_decode=kv_dec, activations=trans,
                logits=logits, decode_transient=dec, peak=peak, phase=phase, reserve=reserve,
                buffers=cfg.hf.cuda_context_bytes + reserve, total=peak + cfg.hf.cuda_context_bytes + reserve)


def _vllm_request_bytes(c: EstimateContext, layers: range, context: int) -> int:
    """KV bytes one request of ``context`` tokens pins on this GPU, in whole blocks (windows applied)."""
    spec, bs = c.spec, pool_block_tokens(c.profile, c.cfg.vllm.block_size)
    per_layer = kv.kv_elements_per_token_layer(spec, c.cfg.layout.tp) * kv.element_bytes(c.kv_dtype, "vllm")
    total = 0.0
    for i in layers:
        if spec.is_linear_layer(i):  # a linear-attention layer's constant state (model dtype)
            total += kv.linear_state_bytes(spec, engine="vllm", tp=c.cfg.layout.tp, state_dtype=c.cfg.weights.dtype)
            continue
        held = kv.tokens_held(spec, i, context=context, prompt=context, engine="vllm", phase="decode", block_size=bs)
        total += per_layer * blocks_per_request(held, bs) * bs
    return int(total)


def _vllm_stage(c: EstimateContext, s: int, batch: int, context: int) -> dict[str, Any]:
    spec, cfg, p = c.spec, c.cfg, c.cfg.vllm
    if c.capacity is None:
        raise InputError("--gpu", None, f"--engine {c.profile} sizes its KV pool from the GPU's memory",
                         hint="give --gpu ID or --gpu-memory-gib")
    layers, last, tp = c.stages[s], s == len(c.stages) - 1, cfg.layout.tp
    # SGLang sizes its defaults by nvidia-smi's memory.total (sglang/srt/utils get_nvgpu_memory_capacity)
    smi = cfg.gpu.memory_nvidia_smi_bytes if cfg.gpu is not None and not cfg.gpu_memory_bytes else None
    rule_bytes = smi or c.capacity
    if c.profile == "sglang":
        tokens = sglang_chunked_prefill_size(rule_bytes, tp)
    elif c.profile == "trtllm":
        tokens = int(load_engine_profile("trtllm").value("max_num_tokens"))
    else:
        tokens = p.max_num_batched_tokens
    layer_act, sampler = act.vllm_profile_activation_bytes(
        spec, max_num_batched_tokens=tokens, max_num_seqs=p.max_num_seqs,
        dtype_bytes=c.dtype_bytes, sampler_bytes_per_logit=p.sampler_bytes_per_logit, tp=tp, layers=layers,
        last_stage=last)
    held = 0
    if p.legacy_allreduce_hold and c.profile == "vllm":
        held = legacy_allreduce_held_bytes(layers=len(layers), tokens=tokens, hidden=spec.hidden_size,
                                           dtype_bytes=c.dtype_bytes, tp=tp)
        if last:
            held += legacy_gather_held_bytes(rows=min(p.max_num_seqs, tokens), vocab=spec.vocab_size,
                                             dtype_bytes=c.dtype_bytes, tp=tp)
    # held blocks stay unusable until the profile's closing synchronize, so the sampler runs on top of them
    act_peak = held + max(layer_act, sampler)
    w = c.stage_weights[s]
    fraction = None
    if c.profile == "sglang":
        non_torch = p.non_torch_bytes if p.non_torch_bytes is not None else paged_non_torch_bytes("sglang", tp)
        fraction = (p.memory_fraction if p.memory_fraction is not None else
                    sglang_mem_fraction_static(rule_bytes, tp, cfg.layout.pp))
        available = sglang_available_kv_bytes(free_before_weights_bytes=c.capacity - non_torch, fraction=fraction,
                                              weights_bytes=w)
    elif c.profile == "trtllm":
        non_torch = p.non_torch_bytes if p.non_torch_bytes is not None else paged_non_torch_bytes("trtllm", tp)
        fraction = (p.memory_fraction if p.memory_fraction is not None else
                    float(load_engine_profile("trtllm").value("free_gpu_memory_fraction")))
        available = trtllm_available_kv_bytes(total_gpu_bytes=c.capacity, non_torch_bytes=non_torch, weights_bytes=w,
                                              activation_peak_bytes=act_peak, fraction=fraction)
    else:
        non_torch = p.non_torch_for(tp)
        available = vllm_available_kv_bytes(total_gpu_bytes=c.capacity, utilization=p.gpu_memory_utilization,
                                            weights_bytes=w, non_torch_bytes=non_torch, activation_peak_bytes=act_peak)
    per_token = kv.kv_bytes_per_token(spec, kv_dtype=c.kv_dtype, tp=tp, layers=layers, engine="vllm")
    bs = pool_block_tokens(c.profile, p.block_size)
    block_bytes = bs * per_token
    blocks = vllm_num_blocks(available, block_bytes)
    pool = int(blocks * block_bytes)
    per_request = _vllm_request_bytes(c, layers, context)
    concurrency = min(p.max_num_seqs, pool // per_request) if per_request else p.max_num_seqs
    graphs = 0 if p.enforce_eager else p.cuda_graph_bytes
    peak = w + pool + act_peak
    return dict(weights=w, kv=pool, activations=layer_act, logits=sampler, peak=peak, phase="steady state",
                buffers=non_torch + graphs, total=peak + non_torch + graphs, available=available, blocks=blocks,
                block_bytes=block_bytes, per_request=per_request, concurrency=concurrency,
                non_torch=non_torch, graphs=graphs, act_peak=act_peak, held=held, block_size=bs, fraction=fraction)


def _stage(c: EstimateContext, s: int, batch: int, context: int, prompt: int) -> dict[str, Any]:
    if c.engine == "llamacpp":
        return _llamacpp_stage(c, batch, context)
    return _vllm_stage(c, s, batch, context) if c.engine == "vllm" else _hf_stage(c, s, batch, context, prompt)


def _llamacpp_stage(c: EstimateContext, batch: int, context: int) -> dict[str, Any]:
    """llama.cpp: the GPU holds its layers' weights and KV, the output layer when all layers are offloaded, a compute
    buffer and the CUDA context; the host holds the rest (``gpuplan.infer.llamacpp``)."""
    spec, cfg, lp = c.spec, c.cfg, c.cfg.llamacpp
    if cfg.layout.gpus > 1:
        raise InputError("--tp", cfg.layout.tp, "--engine llamacpp is modelled on one GPU (its layer split over "
                         "several GPUs is not)")
    per_layer = kv.kv_elements_per_token_layer(spec, 1) * kv.element_bytes(c.kv_dtype, "vllm")
    sp = llamacpp_split(spec, c.wb.per_tensor, lp, kv_bytes_per_token_layer=per_layer, kv_tokens=batch * context)
    buf = llamacpp_compute_buffer(spec, lp.n_ubatch) if sp.gpu_layers or sp.output_on_gpu else 0
    context_bytes = cfg.hf.cuda_context_bytes
    peak = sp.gpu_weight_bytes + sp.gpu_kv_bytes + buf
    return {"weights": sp.gpu_weight_bytes, "kv": sp.gpu_kv_bytes, "activations": buf, "logits": 0, "peak": peak,
            "phase": "steady state", "buffers": context_bytes, "total": peak + context_bytes, "split": sp}


def _worst(c: EstimateContext, batch: int, context: int, prompt: int) -> tuple[int, dict[str, Any]]:
    rows = [_stage(c, s, batch, context, prompt) for s in range(len(c.stages))]
    if c.engine == "vllm":
        s = min(range(len(rows)), key=lambda i: (rows[i]["concurrency"], -rows[i]["total"]))
    else:
        s = max(range(len(rows)), key=lambda i: rows[i]["total"])
    return s, rows[s]


def _fits(c: EstimateContext, row: dict[str, Any], batch: int) -> bool | None:
    if c.capacity is None:
        return None
    if c.engine == "vllm":
        return bool(row["total"] <= c.capacity and row["available"] > 0 and batch <= row["concurrency"])
    return fits(row["total"], c.capacity)


def _search(c: EstimateContext, hi: int, ok) -> int:
    """Largest n in [1, hi] with ok(n) (monotone), 0 when none."""
    if not ok(1):
        return 0
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def estimate_inference(spec: ModelSpec, cfg: InferConfig, *, prepared: EstimateContext | None = None) -> InferReport:
    """Per-GPU serving memory of ``spec`` under ``cfg``; see the module docstring. ``prepared``: the context
    ``prepare(spec, cfg)`` already returned (searches reuse it for the speed inputs)."""
    c = prepared if prepared is not None else _prepare(spec, cfg)
    prompt = cfg.prompt or cfg.context
    _check_context(spec, cfg, cfg.context, prompt)
    s, row = _worst(c, cfg.batch, cfg.context, prompt)
    mem = MemoryReport(weights_bytes=row["weights"], kv_cache_bytes=row["kv"], activations_bytes=row["activations"],
                       logits_bytes=row["logits"], buffers_bytes=row["buffers"], allocated_peak_bytes=row["peak"],
                       total_bytes=row["total"], peak_phase=row["phase"])
    tp = cfg.layout.tp
    per_token = int(round(kv.kv_bytes_per_token(spec, kv_dtype=c.kv_dtype, tp=tp, layers=c.stages[s],
                                                engine=c.kv_engine)))
    per_seq = kv.kv_cache_bytes(spec, batch=1, context=cfg.context, kv_dtype=c.kv_dtype, engine=c.kv_engine, tp=tp,
                                layers=c.stages[s], unquantized_dtype=cfg.weights.dtype)
    ok = _fits(c, row, cfg.batch)
    report = InferReport(memory=mem, kv_cache_bytes_per_token=per_token, kv_cache_bytes_per_sequence=per_seq, fits=ok)
    counts = count_params(spec)
    report.params_total, report.params_active = counts.total, counts.active
    report.layout = {"tp": tp, "pp": cfg.layout.pp, "ep": cfg.layout.ep, "dp": cfg.layout.dp,
                     "gpus": cfg.layout.gpus, "stage": s}
    report.weights = _weights_info(c)
    explain(c, report, row, s, prompt)
    mem.warnings[:0] = spec.notes  # what the model spec leaves out (a multimodal model's vision tower)
    if c.engine == "vllm":
        report.engine = {"name": c.profile, "num_gpu_blocks": row["blocks"], "block_size": row["block_size"],
                         "kv_cache_tokens": row["blocks"] * row["block_size"],
                         "available_kv_bytes": max(0, row["available"]),  # a pool cannot be negative
                         "kv_shortfall_bytes": max(0, -row["available"]),
                         "activation_peak_bytes": row["act_peak"], "non_torch_bytes": row["non_torch"],
                         "cuda_graph_bytes": row["graphs"], "max_concurrency": row["concurrency"],
                         "legacy_allreduce_held_bytes": row["held"],
                         "max_concurrency_exact": (row["blocks"] * row["block_size"] / cfg.context),
                         "memory_fraction": row["fraction"],
                         "request_kv_bytes": row["per_request"]}
    elif c.engine == "llamacpp":
        sp = report.engine_split = row["split"]
        report.engine = {"name": "llamacpp", "n_gpu_layers": sp.gpu_layers, "output_on_gpu": sp.output_on_gpu,
                         "gpu_weights_bytes": sp.gpu_weight_bytes, "host_weights_bytes": sp.host_weight_bytes,
                         "gpu_kv_bytes": sp.gpu_kv_bytes, "host_kv_bytes": sp.host_kv_bytes,
                         "host_total_bytes": sp.host_weight_bytes + sp.host_kv_bytes,
                         "compute_buffer_bytes": row["activations"], "kv_tokens": cfg.batch * cfg.context}
    else:
        report.engine = {"name": "hf", "prefill_peak_phase": row["phase"], "kv_cache_prefill_bytes": row["kv_prefill"],
                         "kv_cache_decode_bytes": row["kv_decode"], "decode_transient_bytes": row["decode_transient"]}
    if c.capacity is not None and cfg.search:
        _capacity_search(c, report, prompt)
    if cfg.gpu is not None:
        report.speed = _speed(c, report, s, prompt)
    return report


def _capacity_search(c: EstimateContext, report: InferReport, prompt: int) -> None:
    cfg, limit = c.cfg, c.cfg.max_context or c.spec.max_position
    if c.engine == "vllm":
        row = _worst(c, cfg.batch, cfg.context, prompt)[1]
        report.max_batch = row["concurrency"] if row["available"] > 0 else 0

        def ok_ctx(n: int) -> bool:
            r = _worst(c, cfg.batch, n, n)[1]
            return r["available"] > 0 and cfg.batch <= min(cfg.vllm.max_num_seqs, r["kv"] // max(1, r["per_request"]))
    else:
        def ok_batch(n: int) -> bool:
            return bool(_fits(c, _worst(c, n, cfg.context, prompt)[1], n))

        hi = 1
        while hi < 1 << 22 and ok_batch(hi * 2):
            hi *= 2
        report.max_batch = _search(c, hi * 2, ok_batch)

        def ok_ctx(n: int) -> bool:
            p = min(cfg.prompt, n) if cfg.prompt else n
            return bool(_fits(c, _worst(c, cfg.batch, n, p)[1], cfg.batch))
    report.max_context = _search(c, limit, ok_ctx)


def _weights_info(c: EstimateContext) -> dict[str, Any]:
    fmt = c.cfg.weights
    info: dict[str, Any] = {"format": fmt.name, "dtype": fmt.dtype, "total_bytes": c.wb.total,
                            "by_component_bytes": dict(c.wb.by_component),
                            "quantized_params": c.wb.quantized_params, "unquantized_params": c.wb.unquantized_params}
    if c.wb.gguf_types:
        info["gguf_tensor_types"] = dict(sorted(c.wb.gguf_types.items()))
    if fmt.family in ("gptq", "awq"):
        info["group_size"] = fmt.group_size
    if fmt.source:
        info["source"] = fmt.source
    return info


def speed_inputs(c: EstimateContext) -> tuple[SpeedInputs, float, str, str] | None:
    """The roofline inputs of the estimate's layout (None when the GPU has no peak for the compute dtype), the
    peak, the compute dtype and where the all-reduce latency came from."""
    from gpuplan.compute.kernels import SM_COUNT
    from gpuplan.infer.speed import ALLREDUCE_LATENCY_S, allreduce_latency_default

    cfg, spec, gpu = c.cfg, c.spec, c.cfg.gpu
    assert gpu is not None
    dtype = cfg.weights.compute_dtype
    peak = gpu.peak_flop_per_s_for(dtype) or gpu.peak_flop_per_s_for("bf16") or gpu.peak_flop_per_s_for("fp16")
    if not peak:
        return None
    expert_b = sum(c.wb.per_tensor[t.name] for t in tensor_table(spec) if t.component == "experts")
    scale = 1 / cfg.layout.ep if cfg.layout.ep > 1 else 1 / cfg.layout.tp
    dense_b = sum(c.stage_weights) - expert_b * scale  # a token passes every stage: all of one GPU per stage
    kv_seq = kv.kv_cache_bytes(spec, batch=1, context=cfg.context, kv_dtype=c.kv_dtype, engine=c.kv_engine,
                               tp=cfg.layout.tp, unquantized_dtype=cfg.weights.dtype)
    if cfg.speed.allreduce_latency_s is not None:
        latency, latency_src = cfg.speed.allreduce_latency_s, "given"
    else:
        latency, latency_src = allreduce_latency_default(gpu.interconnect)
    inp = SpeedInputs(weights_read_bytes=dense_b, expert_bytes=expert_b * scale, kv_read_bytes_per_seq=kv_seq,
                      peak_flop_per_s=peak, bandwidth_bytes_per_s=gpu.hbm_bandwidth_bytes_per_s,
                      link_bytes_per_s=gpu.interconnect_bytes_per_s, tp=cfg.layout.tp, dtype_bytes=c.dtype_bytes,
                      allreduce_latency_s=latency, sms=SM_COUNT.get(gpu.id), ep=cfg.layout.ep,
                      gpus_per_node=gpu.gpus_per_node, inter_node_bytes_per_s=gpu.inter_node_bytes_per_s,
                      network_latency_s=ALLREDUCE_LATENCY_S["pcie"][0])
    return inp, peak, dtype, latency_src


def _continuous(c: EstimateContext, inp: SpeedInputs, prompt: int) -> dict[str, Any] | None:
    """TTFT, TPOT and output tokens/s of ``--batch`` requests of ``--prompt`` + (context - prompt) tokens kept in
    flight under continuous batching with chunked prefill (``gpuplan.serve.batching``, p50)."""
    from gpuplan.serve.batching import CHUNK_BUDGET_TOKENS, Traffic, replica_load

    cfg = c.cfg
    budget = cfg.vllm.max_num_batched_tokens if c.engine == "vllm" else CHUNK_BUDGET_TOKENS
    t = Traffic(prompt_tokens=prompt, output_tokens=cfg.context - prompt, concurrency=cfg.batch)
    got = replica_load(c.spec, inp, cfg.speed, t, concurrency=cfg.batch, pp=cfg.layout.pp, budget=budget,
                       hop_s=inp.allreduce_latency_s)
    if isinstance(got, str):
        return {"reason": got}
    return {"ttft_s": got.ttft_s, "tpot_s": got.tpot_s, "e2e_s": got.e2e_s,
            "output_tokens_per_s": got.output_tokens_per_s * cfg.layout.dp, "bound": got.bound,
            "step_budget_tokens": budget}


def _speed(c: EstimateContext, report: InferReport, s: int, prompt: int) -> dict[str, Any] | None:
    cfg, spec, gpu = c.cfg, c.spec, c.cfg.gpu
    assert gpu is not None
    got = speed_inputs(c)
    if got is None:
        dtype = cfg.weights.compute_dtype
        report.memory.warnings.append(f"{gpu.id} has no peak FLOP/s for {dtype} in the catalog: no speed estimate")
        return None
    inp, peak, dtype, latency_src = got
    a = cfg.speed
    host_dec = host_pre = 0.0
    if c.engine == "llamacpp":  # the GPU reads its share; the host's share is read at DRAM bandwidth, in turn
        from dataclasses import replace as _replace

        from gpuplan.infer.llamacpp import host_decode_s, host_prefill_s

        sp = report.engine_split
        share = sp.gpu_layers / spec.num_layers
        host_kv_seq = inp.kv_read_bytes_per_seq * (1 - share) if cfg.llamacpp.kv_offload else inp.kv_read_bytes_per_seq
        inp = _replace(inp, weights_read_bytes=sp.gpu_weight_bytes, expert_bytes=0.0,
                       kv_read_bytes_per_seq=inp.kv_read_bytes_per_seq - host_kv_seq)
        host_dec = host_decode_s(sp, cfg.llamacpp, batch=1, kv_seq_host_bytes=host_kv_seq)
        host_dec_b = host_decode_s(sp, cfg.llamacpp, batch=cfg.batch, kv_seq_host_bytes=host_kv_seq)
        host_pre = host_prefill_s(sp, cfg.llamacpp, prompt_tokens=prompt)
    step1 = dict(decode_step_s(spec, inp, a, batch=1, context=cfg.context))
    stepb = dict(decode_step_s(spec, inp, a, batch=cfg.batch, context=cfg.context))
    if host_dec:
        step1["step_s"] += host_dec
        stepb["step_s"] += host_dec_b
        stepb["bound"] = "host memory" if host_dec_b > stepb["memory_s"] else stepb["bound"]
    ttft = prefill_s(spec, inp, a, batch=1, prompt=prompt) + host_pre
    extra = {"host_decode_s": host_dec_b, "host_prefill_s": host_pre} if host_dec or host_pre else {}
    if prompt < cfg.context and not host_dec:  # a prompt and an output: the batch as continuous batching runs it
        extra["continuous_batching"] = _continuous(c, inp, prompt)
    return {
        **extra,
        "peak_flop_per_s": peak, "compute_dtype": dtype, "hbm_bandwidth_bytes_per_s": gpu.hbm_bandwidth_bytes_per_s,
        "prefill_s": prefill_s(spec, inp, a, batch=cfg.batch, prompt=prompt) + host_pre * cfg.batch, "ttft_s": ttft,
        "decode_step_s": stepb["step_s"], "decode_bound": stepb["bound"],
        "decode_tokens_per_s_per_seq": 1 / stepb["step_s"],
        "decode_tokens_per_s": cfg.batch * cfg.layout.dp / stepb["step_s"],
        "decode_tokens_per_s_batch1": 1 / step1["step_s"],
        "compute_bound_batch": compute_bound_batch(spec, inp, a, context=cfg.context),
        "decode_tp_comm_s": stepb["comm_s"] - stepb["ep_comm_s"], "tp_allreduces_per_step": stepb["allreduces"],
        "decode_ep_comm_s": stepb["ep_comm_s"],
        "allreduce_latency_s": inp.allreduce_latency_s if cfg.layout.tp > 1 else 0.0,
        "assumptions": {"compute_efficiency": a.compute_efficiency, "bandwidth_efficiency": a.bandwidth_efficiency,
                        "interconnect_efficiency": a.interconnect_efficiency,
                        "allreduce_latency_s": inp.allreduce_latency_s, "allreduce_latency_source": latency_src},
    }
