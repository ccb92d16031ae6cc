"""Activations saved for backward, per decoder layer, as Hugging Face transformers 5 / PyTorch 2.x save them.

Each block below lists the tensors autograd keeps from the forward to the backward pass, derived from the
modelling code (transformers ``models/llama/modeling_llama.py``, ``integrations/sdpa_attention.py``,
``integrations/moe.py``) and the saved-variable rules of ``torch/csrc/autograd/FunctionsManual.cpp`` /
``tools/autograd/derivatives.yaml``: ``linear`` keeps its input only when its weight needs a gradient, ``mul`` keeps
each operand the other one's gradient needs, ``silu``/``gelu`` keep their input, softmax its output, and
``_scaled_dot_product_flash_attention`` keeps q, k, v, the output and an fp32 logsumexp. A tensor shared by several
consumers (the norm output read by q, k and v) is counted once. Everything is checked against CPU fake-tensor
traces of the real models (``gpuplan verify``); for a Llama-style layer in bf16 with SDPA this gives
``s·b·(20h + 4·kv_dim + 8·ffn + 8) + 4·b·heads·s`` bytes.

Sizes are ``Act(tok, sq, fixed, seq_sq)``: bytes = tok·(b·s) + sq·(b·s²) + fixed (weight-sized tensors such as the
half copies autocast caches) + seq_sq·s² (a mask built once and expanded over the batch). What is ignored: tensors below one element per token (index scalars), CUDA-specific
padding of the flash/efficient-attention logsumexp (rounded to 32/128 positions), and kernels' own scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuplan.model.spec import ModelSpec
from gpuplan.train.compiled import compiled_drops, compiled_norm
from gpuplan.train.peft import peft_fused_moe


@dataclass(frozen=True)
class Act:
    """bytes = tok·tokens + sq·(batch·seq²) + fixed + seq_sq·seq² (one [1, 1, s, s] tensor expanded over the
    batch, as transformers' boolean masks are)."""

    tok: float = 0.0
    sq: float = 0.0
    fixed: int = 0
    seq_sq: float = 0.0

    def __add__(self, other: "Act") -> "Act":
        return Act(self.tok + other.tok, self.sq + other.sq, self.fixed + other.fixed, self.seq_sq + other.seq_sq)

    def scale(self, k: float) -> "Act":
        return Act(self.tok * k, self.sq * k, int(self.fixed * k), self.seq_sq * k)

    def bytes(self, batch: int, seq: int) -> int:
        return int(self.tok * batch * seq + self.sq * batch * seq * seq + self.fixed + self.seq_sq * seq * seq)


@dataclass(frozen=True)
class ActContext:
    """Element sizes and switches the saved set depends on."""

    e: int  # compute dtype bytes (linear / attention outputs)
    r: int  # parameter / residual-stream dtype bytes (fp32 under autocast)
    amp: bool = False
    fp8: bool = False
    attention: str = "sdpa"
    dropout: float = 0.0
    lora_rank: int = 16
    lora_bytes: int = 4  # PEFT's autocast_adapter_dtype=True keeps adapters in fp32
    lora_dropout: bool = False
    selective: bool = False  # attention core recomputed (Megatron selective recompute)
    batched: bool = False  # more than one sequence per micro-batch (broadcast matmuls copy instead of viewing)
    window_mask: bool = False  # the sequence is longer than the sliding window: SDPA gets an explicit mask
    full_mask: bool = False  # every layer passes SDPA a materialised causal mask (Falcon builds it itself)
    mqa_math: bool = False  # Falcon's own SDPA call with one K/V head (gpuplan.versions.FALCON_SDPA_MATH)
    softmax_keeps_input: bool = False  # PyTorch < 1.11 (gpuplan.versions.TORCH_SOFTMAX_KEEPS_INPUT)
    # QLoRA over a GPTQ base: each quantized linear's matmul keeps its dequantized fp16 weight
    # (gpuplan.train.quantbase)
    dequant_kept: bool = False
    # QLoRA under bitsandbytes < 0.43.2: each 4-bit matmul keeps its input for backward
    # (gpuplan.versions.BNB_MATMUL4BIT_KEEPS_INPUT)
    bnb_input_kept: bool = False
    bnb_head_kept: bool = False  # the output head is one of those 4-bit matmuls (--qlora-head on)
    # Megatron's fused bias-GELU (megatron/core/fusions/fused_bias_gelu.py ``GeLUFunction``: save_for_backward(input,
    # bias)) keeps only the fc output, not the tanh formula's temporaries of the Hugging Face GPT-2 code
    fused_gelu: bool = False
    # whose modelling code the layers run: hf (transformers, gpuplan.train.layers), litgpt (its own GPT module,
    # gpuplan.train.litgpt_acts) or torchtitan (its Llama module: K/V repeated before SDPA, sdpa_repeats_kv);
    # TrainConfig.model_impl
    model_impl: str = "hf"
    # torchtitan's repeat_kv copies K and V (more than one K/V head per tensor-parallel rank; sdpa_repeats_kv)
    repeat_kv: bool = False
    # the decoder layer runs under torch.compile: AOTAutograd's partitioner decides the saved set
    # (gpuplan.train.compiled)
    compiled: bool = False


@dataclass
class _Saved:
    """Saved tensors of one block, keyed by tensor identity so shared tensors count once."""

    items: dict[str, Act] = field(default_factory=dict)

    def save(self, key: str, act: Act) -> None:
        self.items.setdefault(key, act)

    def total(self) -> Act:
        out = Act()
        for a in self.items.values():
            out = out + a
        return out


def linear(sv: _Saved, c: ActContext, name: str, x_key: str, x_bytes_tok: float, x_rg: bool, in_f: int,
           out_f: int, w_rg: bool, lora: bool) -> bool:
    """``F.linear``: grad_weight needs the input (saved when the weight trains); grad_input needs only the weight,
    except in bitsandbytes' 4-bit matmul before 0.43.2, which keeps the input anyway (``bnb_input_kept``).
    Under autocast the input is cast to half per call (a new tensor each time) and the weight's half copy is
    kept while the input needs a gradient, as is a GPTQ base's dequantized fp16 weight
    (``gpuplan.train.quantbase``). A LoRA adapter (PEFT ``lora.Linear``) casts the input to its fp32
    dtype and keeps it, plus its rank-r intermediate. Returns whether the output requires grad."""
    if w_rg:
        if c.amp and x_bytes_tok != 2 * in_f:  # autocast casts fp32 inputs; half inputs pass through
            sv.save(f"{name}.in_half", Act(tok=2 * in_f))
        elif c.fp8:
            sv.save(f"{name}.in_fp8", Act(tok=in_f))
        else:
            sv.save(x_key, Act(tok=x_bytes_tok))
    if c.amp and x_rg:
        sv.save(f"{name}.w_half", Act(fixed=2 * in_f * out_f))
    if c.bnb_input_kept and x_rg and not w_rg and (name not in ("router", "lm_head")
                                                   or (name == "lm_head" and c.bnb_head_kept)):
        sv.save(x_key, Act(tok=x_bytes_tok))  # old MatMul4Bit's ctx.tensors = (A, B)
    if c.dequant_kept and x_rg and name not in ("router", "lm_head"):  # both stay unquantized
        # GPTQ's torch.matmul(x, dequantized weight): the fp16 weight is saved for the input's gradient
        sv.save(f"{name}.w_dequant", Act(fixed=2 * in_f * out_f))
    if lora:
        ab = 2 if c.amp else c.lora_bytes
        if c.lora_dropout:
            sv.save(f"{name}.lora_mask", Act(tok=in_f))
            sv.save(f"{name}.lora_in", Act(tok=ab * in_f))
        elif c.compiled:  # the cast to the adapters' dtype is recomputed from the input (gpuplan.train.compiled)
            sv.save(x_key, Act(tok=x_bytes_tok))
        elif ab != x_bytes_tok / in_f or c.amp:
            sv.save(f"{name}.lora_in", Act(tok=ab * in_f))
        else:
            sv.save(x_key, Act(tok=x_bytes_tok))
        sv.save(f"{name}.lora_mid", Act(tok=ab * c.lora_rank))
    return x_rg or w_rg or lora


def rmsnorm(sv: _Saved, c: ActContext, name: str, x_key: str, in_bytes: int, x_rg: bool, width: int, rows: int,
            w_rg: bool, normed_bytes: int | None = None) -> tuple[str, int, bool]:
    """Hugging Face RMSNorm: ``x32 = x.float(); x32 * rsqrt(x32.pow(2).mean(-1) + eps)`` then ``weight * normed``.
    Keeps the fp32 upcast (the input itself when already fp32) and rsqrt when the input needs a gradient, and the
    normalised tensor when the weight trains: cast back to the input dtype first (Llama), or in fp32 where the
    weight multiplies before the cast (``normed_bytes`` 4: Gemma's ``(x·(1 + w)).type_as(x)``, OLMo-2's
    ``(w·x).to(dtype)``). Returns (output key, output bytes per element, requires grad)."""
    if x_rg:
        sv.save(x_key if in_bytes == 4 else f"{name}.x32", Act(tok=4 * width))
        sv.save(f"{name}.rstd", Act(tok=4 * rows))
    if w_rg:
        sv.save(f"{name}.normed", Act(tok=(normed_bytes or in_bytes) * width))
    return f"{name}.out", max(c.r, in_bytes), x_rg or w_rg


def layernorm(sv: _Saved, c: ActContext, name: str, x_key: str, in_bytes: int, x_rg: bool, width: int,
              w_rg: bool) -> tuple[str, int, bool]:
    """``aten.native_layer_norm`` keeps its input, mean and rstd (fp32) for either gradient."""
    if x_rg or w_rg:
        sv.save(x_key, Act(tok=in_bytes * width))
        sv.save(f"{name}.stats", Act(tok=8))
    return f"{name}.out", in_bytes, x_rg or w_rg


def norm(sv: _Saved, c: ActContext, spec: ModelSpec, name: str, x_key: str, in_bytes: int, x_rg: bool, width: int,
         w_rg: bool, rows: int = 1) -> tuple[str, int, bool]:
    if spec.norm == "layernorm":
        return layernorm(sv, c, name, x_key, in_bytes, x_rg, width, w_rg)
    if c.compiled:
        for key, tok in compiled_norm(name, x_key, in_bytes, x_rg, w_rg, width, rows):
            sv.save(key, Act(tok=tok))
        return f"{name}.out", max(c.r, in_bytes), x_rg or w_rg
    normed = 4 if spec.layout in ("gemma", "olmo2", "qwen3_next") else None  # fp32 normed copy kept
    return rmsnorm(sv, c, name, x_key, in_bytes, x_rg, width, rows, w_rg, normed)


def attention_core(sv: _Saved, c: ActContext, spec: ModelSpec, q_rg: bool, kv_rg: bool, window: int | None,
                   ) -> None:
    """Attention core after the projections and rotary embedding.

    SDPA / flash (``_scaled_dot_product_flash_attention``; GQA handled by the kernel, no ``repeat_kv`` when no mask
    is passed): keeps q, k, v, the output (which o_proj reads, same storage) and the fp32 logsumexp (b·heads·s).
    Eager (``eager_attention_forward``): ``repeat_kv`` copies of k and v, the fp32 softmax output and its half copy
    (b·heads·s² each), the probabilities' dropout mask when dropout is on, and a contiguous copy of the output.
    Selective recompute drops the s² terms (Korthikanti et al. 2022, section 5)."""
    if not (q_rg or kv_rg):
        return
    e, qd, kvd, heads = c.e, spec.q_dim, spec.kv_dim, spec.num_heads
    vd = spec.num_heads * spec.mla.v_head_dim if spec.mla else spec.kv_dim
    if sdpa_math(spec, c):
        # PyTorch's math SDPA (aten ``_scaled_dot_product_attention_math``) upcasts half inputs to fp32 and keeps
        # the scaled q, k, v and the fp32 probabilities; the output copy o_proj reads is in the compute dtype
        # one K/V head broadcast over the query heads: a view for one sequence, a copy per head for several
        kv_sz = qd if c.batched else kvd
        sv.save("attn.q", Act(tok=4 * qd))
        sv.save("attn.k", Act(tok=4 * kv_sz))
        sv.save("attn.v", Act(tok=4 * kv_sz))
        sv.save("attn.probs", Act(sq=4.0 * heads))
        sv.save("attn.out", Act(tok=e * qd))
        return
    if c.attention in ("sdpa", "flash") or c.selective:
        if spec.mla:
            kvd = qd  # MLA expands k per head; v has v_head_dim per head
        elif sdpa_repeats_kv(spec, c, window):
            kvd = vd = qd
        sv.save("attn.q", Act(tok=e * qd))
        sv.save("attn.k", Act(tok=e * kvd))
        sv.save("attn.v", Act(tok=e * vd))
        sv.save("attn.out", Act(tok=e * (vd if spec.mla else qd)))
        sv.save("attn.lse", Act(tok=4 * heads))
        if explicit_mask(c, window) and not c.selective:
            # transformers materialises the (sliding-window) mask; SDPA converts it to the query dtype per call and
            # the memory-efficient kernel keeps it (``attn_bias``) for backward: [b, 1, s, s]
            sv.save("attn.mask", Act(sq=float(e)))
        elif rotary_cat(spec) and not c.selective:
            sv.save("attn.out_kernel", Act(tok=e * qd))
        return
    rep = spec.num_heads // spec.num_kv_heads
    sv.save("attn.q", Act(tok=e * qd))
    sv.save("attn.k_rep", Act(tok=e * (qd if rep > 1 or spec.mla else kvd)))
    sv.save("attn.v_rep", Act(tok=e * (vd if spec.mla else (qd if rep > 1 else kvd))))
    # the fp32 softmax output; in half precision also its copy cast back to the query dtype (kept by the second
    # matmul); with dropout on, the dropout's boolean mask and its output (which the second matmul keeps instead
    # of the cast copy, a new tensor in fp32 too: traced, BERT in fp32). A sliding window only masks the full
    # s x s scores.
    # BERT / RoBERTa's eager attention takes the softmax in the compute dtype (transformers models/bert
    # ``eager_attention_forward``: ``softmax(attn_weights, dim=-1)``, no fp32 upcast; traced)
    # (under autocast softmax runs in fp32 all the same: it is on autocast's fp32 list)
    soft = float(e) if spec.layout == "bert" and not c.amp else 4.0
    sq = soft * heads + (e * heads if (e < soft) or c.dropout > 0 else 0.0) + (1.0 * heads if c.dropout > 0 else 0.0)
    if spec.attention_sinks:
        # gpt-oss (transformers models/gpt_oss ``eager_attention_forward``): the softmax over the scores joined with
        # the sink column runs in the model dtype and keeps its output, which the second matmul also reads (its
        # sliced [..., :-1] view reshapes without a copy); the max's indices (int64, one per query row) are kept
        sq = e * heads + (1.0 * heads if c.dropout > 0 else 0.0)
        sv.save("attn.max_idx", Act(tok=8.0 * heads))
    sv.save("attn.probs", Act(sq=sq))
    if c.softmax_keeps_input and not spec.attention_sinks:
        # PyTorch < 1.11 also keeps the softmax's input: the scores in the dtype the softmax reads (autocast's and
        # the explicit upcast's fp32 copy, or BERT's compute dtype)
        sv.save("attn.scores", Act(sq=soft * heads))
    if spec.attn_softcap:
        # Gemma 2 soft-capping ``tanh(scores / cap) * cap`` on the scores (in the compute dtype): tanh keeps its
        # output (transformers models/gemma2 ``eager_attention_forward``; traced)
        sv.save("attn.softcap_tanh", Act(sq=float(e * heads)))
    sv.save("attn.out_c", Act(tok=e * (vd if spec.mla else qd)))


def rotary_cat(spec: ModelSpec) -> bool:
    """Whether the rotary embedding ends in ``torch.cat``, which costs SDPA / flash attention a copy of its output:
    ``attn.out_kernel``, e·q_dim bytes per token per layer.

    The cat leaves q contiguous as [b, heads, s, head_dim]; the kernel's output takes q's layout, so
    ``transpose(1, 2).contiguous()`` (transformers ``integrations/sdpa_attention.py``) copies it, and o_proj
    keeps the copy while the kernel keeps its own output. Llama-style rotary (``q * cos + rotate_half(q) * sin``)
    keeps q in the projection's [b, s, heads, head_dim] layout and the output is a view. Partial rotary: GPT-NeoX
    (``rotary_pct``) and Phi-3 (``partial_rotary_factor``) join the rotated and pass-through parts with ``cat``;
    GLM-4.5 (transformers models/glm4_moe ``apply_rotary_pos_emb``) always does, even at
    ``partial_rotary_factor`` 1.0 (an empty pass-through part). Traced on transformers 5.23 (GLM: the
    ``glm4-moe-sigmoid-router`` probe, batch 1-4, seq 128-512, head_dim 32-128, rotary fraction 0.25-1.0, with
    and without q/k norm)."""
    return spec.layout in ("gpt_neox", "phi3") or spec.family == "glm4_moe"


def sdpa_repeats_kv(spec: ModelSpec, c: ActContext, window: int | None) -> bool:
    """Whether SDPA gets K and V repeated to every query head, as copies the kernel keeps for backward: k and v
    saved as [b, heads, s, head_dim] (e·q_dim bytes per token each) instead of the KV-head width (e·kv_dim).

    transformers ``integrations/sdpa_attention.py`` ``sdpa_attention_forward`` passes ``enable_gqa=True`` only
    without a mask (``use_gqa_in_sdpa``: ``attention_mask is None``); with one, here the sliding-window mask of a
    layer whose window is shorter than the sequence (``ActContext.window_mask``), it calls ``repeat_kv``:
    ``x[:, :, None].expand(b, kv, rep, s, d).reshape(b, kv·rep, s, d)``. With several KV heads that reshape
    copies; with one KV head (Gemma 3, ``num_key_value_heads`` 1) the merged dimension has size 1 and the reshape
    is a stride-0 view of k, so nothing new is kept (both traced: Mistral-7B and Gemma-3-1B shapes at seq 4096,
    window 1024 / 512). Without GQA (kv = heads) ``repeat_kv`` returns its input. Selective recompute does not
    keep the attention core.

    torchtitan's own Llama module (``--model-impl torchtitan``: ``models/llama/model.py`` ``Attention.forward``,
    commit 004b3148; ``models/llama3/model/model.py`` in 0.1.0) always calls its ``repeat_kv`` (the same
    ``unsqueeze``/``expand``/``reshape``) before ``F.scaled_dot_product_attention``: copies under grouped-query
    attention, a view with one K/V head (traced, ``benchmarks/trace_torchtitan.py``) -- per tensor-parallel rank,
    whose ``wk``/``wv`` shards hold kv_heads/tp heads (``ActContext.repeat_kv``)."""
    return ((explicit_mask(c, window) or c.repeat_kv) and not c.selective
            and c.attention in ("sdpa", "flash") and 1 < spec.num_kv_heads < spec.num_heads)


def explicit_mask(c: ActContext, window: int | None) -> bool:
    """SDPA receives a materialised mask: a sliding-window layer shorter than the sequence, or a model whose
    modelling code always materialises its causal mask (Falcon from transformers 5.25)."""
    return c.full_mask or (window is not None and c.window_mask)


def sdpa_math(spec: ModelSpec, c: ActContext) -> bool:
    """SDPA falls back to the math kernel on CUDA too: up to transformers 5.24 Falcon's multi-query layers call SDPA
    themselves with one K/V head against many query heads, without ``enable_gqa`` and with an explicit mask,
    which flash, memory-efficient and cuDNN attention all reject (``sdp_utils.cpp``
    ``check_batch_size_and_num_heads_dense``). ``gpuplan.versions.FALCON_SDPA_MATH``."""
    return (c.mqa_math and c.attention in ("sdpa", "flash") and not c.selective and spec.layout == "falcon"
            and spec.num_kv_heads == 1 < spec.num_heads)


def gated_mlp(sv: _Saved, c: ActContext, prefix: str, y_key: str, y_bytes: int, y_rg: bool, h: int, f: int,
              flags: dict[str, tuple[bool, bool]], names: tuple[str, str, str]) -> bool:
    """``down(act(gate(y)) * up(y))``: act keeps its input (gate's output); the product keeps up's output when the
    activation needs a gradient and the activation's output when up's output does; down keeps the product when
    its weight trains; plus the linear inputs."""
    g, u, d = names
    gw, gl = flags.get(g, (True, False))
    uw, ul = flags.get(u, (True, False))
    dw, dl = flags.get(d, (True, False))
    g_rg = linear(sv, c, f"{prefix}.{g}", y_key, y_bytes * h, y_rg, h, f, gw, gl)
    u_rg = linear(sv, c, f"{prefix}.{u}", y_key, y_bytes * h, y_rg, h, f, uw, ul)
    e = c.e
    if g_rg:
        sv.save(f"{prefix}.gate_out", Act(tok=e * f))
        sv.save(f"{prefix}.up_out", Act(tok=e * f))
    if u_rg and not (c.compiled and compiled_drops(f"{prefix}.act_out")):
        sv.save(f"{prefix}.act_out", Act(tok=e * f))
    return linear(sv, c, f"{prefix}.{d}", f"{prefix}.prod", e * f, g_rg or u_rg, f, h, dw, dl)


def plain_mlp(sv: _Saved, c: ActContext, spec: ModelSpec, prefix: str, y_key: str, y_bytes: int, y_rg: bool,
              names: tuple[str, str], flags: dict[str, tuple[bool, bool]]) -> bool:
    """``proj(act(fc(y)))`` (GPT-2, GPT-NeoX, Falcon). GELU keeps its input; the Python tanh formulas of
    transformers ``activations.py`` keep more ffn-sized tensors (traced): ``gelu_new`` (NewGELUActivation) its
    input, the tanh output and both factors of the last product (4); ``gelu_fast`` (FastGELUActivation) also the
    three operands of its inner products (7)."""
    fc, proj = names
    h, f, e = spec.hidden_size, spec.ffn_size, c.e
    fw, fl = flags.get(fc, (True, False))
    pw, pl = flags.get(proj, (True, False))
    fc_rg = linear(sv, c, f"{prefix}.{fc}", y_key, y_bytes * h, y_rg, h, f, fw, fl)
    if fc_rg:
        sv.save(f"{prefix}.fc_out", Act(tok=e * f))
        if c.fused_gelu:
            pass  # the fused kernel recomputes the tanh formula from its saved input in backward
        elif spec.activation == "gelu_new":
            # pow(x, 3) is on CUDA autocast's fp32 list: under autocast the tanh formula's parts are fp32
            sv.save(f"{prefix}.gelu_parts", Act(tok=3 * (4 if c.amp else e) * f))
        elif spec.activation == "gelu_fast":
            sv.save(f"{prefix}.gelu_parts", Act(tok=6 * e * f))
    return linear(sv, c, f"{prefix}.{proj}", f"{prefix}.act_out", e * f, fc_rg, f, h, pw, pl)


def peft_expert_weights(spec: ModelSpec, c: ActContext, flags: dict[str, tuple[bool, bool]]) -> Act:
    """PEFT's ``ParamWrapper`` on fused 3-D experts (peft/tuners/lora/layer.py, ``_activate_lora`` with
    ``torch.nn.utils.parametrize``): every forward builds W + ΔW of the whole expert stack with ``baddbmm`` from the
    two factors cast to the weights' dtype, and ``grouped_mm`` keeps that full tensor for the input gradient:
    E·(2f·h + f·h) weight-sized bytes per layer, independent of batch and sequence, plus the cast factors
    (rank 2r over the fused gate_up, r over down). Traced with PEFT 0.21 / transformers 5 (Mixtral)."""
    m = spec.moe
    assert m is not None
    h, f, E, r, p = spec.hidden_size, m.expert_ffn_size, m.num_experts, c.lora_rank, c.r
    fused = peft_fused_moe(spec) or {}
    kinds = {fused.get(key.removeprefix("experts.")) for key, v in flags.items() if key.startswith("experts.") and v[1]}
    out = 0
    if "gate_up" in kinds:
        out += p * E * (2 * f * h + 2 * r * (2 * f + h))
    if "down" in kinds:
        out += p * E * (f * h + r * (f + h))
    return Act(fixed=out)


def moe_block(sv: _Saved, c: ActContext, spec: ModelSpec, y_key: str, y_bytes: int, y_rg: bool,
              flags: dict[str, tuple[bool, bool]]) -> bool:
    """transformers 5 MoE: top-k router with fp32 softmax, then ``grouped_mm`` experts over the S = tokens·k routed
    rows (integrations/moe.py ``grouped_mm_experts_forward``): keeps the gathered inputs, the gate_up output, the
    activation, the product, the routing weights and the down output (for the weighting), and three int64 index
    vectors of length S. Shared experts run on every token."""
    m = spec.moe
    assert m is not None
    h, e, k, E = spec.hidden_size, c.e, m.top_k, m.num_experts
    rw, rl = flags.get("gate", (True, False))
    fused = peft_fused_moe(spec)
    if fused is not None and rl:
        # PEFT's ParamWrapper on the router weight: W + ΔW is formed each forward and trains like a weight
        sv.save("router.peft_weight", Act(fixed=c.r * h * E))
        rw, rl = True, False
    if spec.layout == "deepseek" and rw and c.r < 4:
        # DeepSeek's gate computes ``F.linear(x.float(), weight.float())``: it keeps fp32 copies of its input and
        # of its weight (transformers models/deepseek_v2 ``DeepseekV2Moe.route``; traced)
        sv.save("router.in32", Act(tok=4 * h, fixed=4 * h * E))
    r_rg = linear(sv, c, "router", y_key, y_bytes * h, y_rg, h, E, rw, rl)
    if r_rg:
        sv.save("router.probs", Act(tok=4 * E))
        sv.save("router.topk", Act(tok=12 * k + 4))
    exp_w = any(v[0] for key, v in flags.items() if key.startswith("experts."))
    exp_l = any(v[1] for key, v in flags.items() if key.startswith("experts."))
    f = m.expert_ffn_size
    if fused is not None and exp_l:
        sv.save("moe.peft_weights", peft_expert_weights(spec, c, flags))
        exp_w, exp_l = True, False  # the experts then run and save as with trainable weights
    sv.save("moe.index", Act(tok=24 * k))
    if exp_w or exp_l:
        sv.save("moe.gathered", Act(tok=(c.r if c.amp else e) * h * k))
    if exp_l:
        sv.save("moe.lora_mid", Act(tok=3 * c.lora_bytes * c.lora_rank * k))
    x_rg = y_rg or exp_w or exp_l
    ex = c.r if c.amp else e  # grouped_mm is not autocast: under autocast the experts run in fp32
    if x_rg:
        sv.save("moe.gate_up", Act(tok=2 * ex * f * k))
        sv.save("moe.act", Act(tok=ex * f * k))
        if exp_w or exp_l:
            sv.save("moe.prod", Act(tok=ex * f * k))
        if spec.family == "gpt_oss":
            # gpt-oss's clamped GLU (transformers models/gpt_oss ``GptOssExperts._apply_gate``:
            # ``gate.clamp(max=limit)``, ``glu = gate * sigmoid(gate * alpha)``, ``(up.clamp(-limit, limit) + 1) *
            # glu``) keeps the clamped gate, the sigmoid, up + 1 and glu: three f-wide tensors per routed row beyond
            # a SwiGLU's activation (traced on transformers 5.23: 7 f per row with the gate_up output and down's input)
            sv.save("moe.clamped_glu", Act(tok=3 * ex * f * k))
    if r_rg:
        sv.save("moe.down_out", Act(tok=ex * h * k))
    if x_rg:
        sv.save("moe.weights", Act(tok=4 * k))
    out_rg = x_rg or r_rg
    if m.shared_expert_ffn_size:
        shared = "shared_experts" if spec.layout == "deepseek" else "shared_expert"
        sflags = {n.removeprefix(f"{shared}."): v for n, v in flags.items()}
        s_rg = gated_mlp(sv, c, shared, y_key, y_bytes, y_rg, h, m.shared_expert_ffn_size, sflags,
                         ("gate_proj", "up_proj", "down_proj"))
        if m.shared_expert_gate:
            gw, gl = flags.get("shared_expert_gate", (True, False))
            linear(sv, c, "shared_gate", y_key, y_bytes * h, y_rg, h, 1, gw, gl)
            sv.save("shared.gated", Act(tok=e * h + e))
        out_rg = out_rg or s_rg
    return out_rg
