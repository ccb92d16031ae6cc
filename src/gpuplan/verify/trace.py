"""CPU trace back end: run the real model on fake tensors and count every allocation.

Recipe (works with torch 2.13 + transformers 5):
- build the model inside ``torch._subclasses.fake_tensor.FakeTensorMode`` on a fake ``cpu`` device: shapes,
  dtypes and storages behave as on a GPU, no memory is used (an 8B model's step traces in about half a minute
  with ~0.4 GB of RAM);
- count with ``torch.distributed._tools.mem_tracker.MemTracker``, which classifies each storage as parameter,
  buffer, gradient, activation, temporary or optimizer state; run one step, ``reset_mod_stats()``, and measure
  the second (steady-state) step, whose optimizer states already exist;
- the optimizer uses the implementation PyTorch picks on CUDA (``foreach=True``) unless asked otherwise;
- the patches in ``gpuplan.verify.patches`` (packed-sequence mask, 512-byte allocator rounding).

The step is what Hugging Face ``Trainer`` does: ``loss = model(input_ids, labels).loss`` (the output and its
logits are dropped before backward unless ``keep_logits``), ``loss.backward()``, ``optimizer.step()``,
``optimizer.zero_grad()`` (gradients set to None). Input ids and labels are two ``[batch, seq]`` int64 tensors; no attention mask is passed
(as with an all-ones mask, which transformers drops for SDPA).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import Any

from gpuplan.verify.patches import (CUDA_MIN_BLOCK_BYTES, cuda_autocast_fp32, cuda_block_bytes, quiet_transformers,
                                    skip_frozen_grad_hooks, trace_patches)
from gpuplan.verify.result import Breakdown, Measurement
from gpuplan.verify.setup import PrefillSetup, TrainSetup

_CATEGORY_OF = {"Parameter": "parameters", "Buffer": "buffers", "Gradient": "gradients", "Optstate": "optimizer",
                "Activation": "activations", "Temp": "temporaries", "Other": "other"}


def _breakdown(snapshot: dict, minus_optimizer_bytes: int = 0) -> Breakdown:
    """A MemTracker snapshot (one fake cpu device) as a Breakdown."""
    values = {c: 0 for c in _CATEGORY_OF.values()}
    for dev_snap in snapshot.values():
        for key, n in dev_snap.items():
            name = getattr(key, "value", key)
            if name in _CATEGORY_OF:
                values[_CATEGORY_OF[name]] += int(n)
    values["optimizer"] = max(0, values["optimizer"] - minus_optimizer_bytes)
    return Breakdown(**{f"{k}_bytes": v for k, v in values.items()})


def _peak_tracker_class():
    """MemTracker that keeps only the global peak: the stock one also updates the peak of every active module on
    every operator, which makes a trace quadratic in the number of layers (the per-module peaks are not used)."""
    from copy import deepcopy

    from torch.distributed._tools.mem_tracker import MemTracker

    class PeakTracker(MemTracker):
        def _update_peak_stats(self, peak_state) -> None:  # noqa: ARG002 - same signature as MemTracker's
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap["Total"]:
                    self._peak_mem[dev] = snap["Total"]
                    self._peak_mem_snap[dev] = deepcopy(snap)

    return PeakTracker


def _PeakTracker():  # noqa: N802 - constructs the class lazily (torch is imported only when tracing)
    return _peak_tracker_class()()


class _Phases:
    """Breakdowns at named instants of one step. MemTracker keeps one running peak; it is reset at the start of
    each phase and at each mark, and the phase's peak is the largest of the pieces."""

    def __init__(self, tracker: Any, minus_optimizer_bytes: int = 0) -> None:
        self.mt, self.minus = tracker, minus_optimizer_bytes
        self.phases: dict[str, Breakdown] = {}
        self.marks: dict[str, tuple[Breakdown, Breakdown]] = {}  # name -> (now, peak since previous reset)
        self._best: Breakdown | None = None

    def now(self) -> Breakdown:
        return _breakdown(self.mt.get_tracker_snapshot("current"), self.minus)

    def _reset(self) -> None:
        current = self.mt.get_tracker_snapshot("current")
        self.mt._peak_mem = {dev: snap["Total"] for dev, snap in current.items()}
        self.mt._peak_mem_snap = current

    def _fold(self) -> Breakdown:
        snap = _breakdown(self.mt.get_tracker_snapshot("peak"), self.minus)
        if self._best is None or snap.total_bytes > self._best.total_bytes:
            self._best = snap
        return snap

    def start(self) -> None:
        self._best = None
        self._reset()

    def mark(self, name: str) -> None:
        """Record the breakdown now and the peak since the last start or mark (once per name)."""
        if name not in self.marks:
            self.marks[name] = (self.now(), self._fold())
            self._reset()

    def end(self, name: str) -> None:
        self._fold()
        self.phases[f"{name}_peak"] = self._best
        self.phases[f"{name}_end"] = self.now()

    def peak(self) -> tuple[str, Breakdown]:
        name, snap = max(((k, v) for k, v in self.phases.items() if k.endswith("_peak")),
                         key=lambda kv: kv[1].total_bytes)
        return name.removesuffix("_peak"), snap


def _optimizer(params: list, setup: TrainSetup):
    import torch

    impls = {"foreach": {"foreach": True}, "fused": {"fused": True}, "for-loop": {"foreach": False}}
    impl = impls[setup.optimizer_impl]
    if setup.optimizer in ("adamw", "adam"):
        cls = torch.optim.AdamW if setup.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=1e-5, **impl)
    momentum = 0.9 if setup.optimizer == "sgdm" else 0.0
    return torch.optim.SGD(params, lr=1e-3, momentum=momentum, **impl)


def _host_step_bytes(optimizer: Any, setup: TrainSetup) -> tuple[int, int]:
    """Adam's per-parameter ``step`` counters: on CUDA PyTorch keeps them on the CPU unless the optimizer is fused
    or capturable (torch/optim/adam.py, ``_init_group``); the fake trace puts them on its one device. Returns
    (count, bytes to take off the optimizer category)."""
    if setup.optimizer not in ("adam", "adamw") or setup.optimizer_impl == "fused":
        return 0, 0
    n = sum(1 for st in optimizer.state.values() if "step" in st)
    return n, n * CUDA_MIN_BLOCK_BYTES


def _train_step(model, optimizer, ids, labels, setup: TrainSetup, phases: _Phases | None) -> None:
    import torch

    amp = setup.precision == "amp-bf16"
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    if phases:
        phases.start()
    with cuda_autocast_fp32() if amp else contextlib.nullcontext(), autocast:
        out = model(input_ids=ids, labels=labels, use_cache=False)
    loss = out.loss
    if not setup.keep_logits:
        del out
    if phases:
        phases.mark("loss_forward")
        phases.end("forward")
        phases.start()
    loss.backward()
    del loss
    out = None
    if phases:
        phases.end("backward")
        phases.start()
    optimizer.step()
    optimizer.zero_grad(set_to_none=setup.zero_grad == "none")
    if phases:
        phases.end("optimizer")


def measure_training(config: dict[str, Any], setup: TrainSetup) -> Measurement:
    """Trace one steady-state training step of the model ``config`` (a config.json dict) under ``setup``."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from gpuplan.verify.build import build_model, encoder_head, encoder_is_mlm, prepare_for_training

    quiet_transformers()
    t0 = time.perf_counter()
    with warnings.catch_warnings(), trace_patches(), FakeTensorMode():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", message="Module is None")
        base = build_model(config, dtype=setup.param_dtype, attention=setup.attention)
        attention = base.config._attn_implementation
        vocab = base.config.get_text_config().vocab_size
        head = base.get_output_embeddings()
        classify = config.get("model_type") in ("bert", "roberta") and not encoder_is_mlm(config)
        if config.get("model_type") in ("bert", "roberta"):
            head = encoder_head(base)
        model = prepare_for_training(base, setup)
        wrapped = model.get_output_embeddings()
        if hasattr(wrapped, "modules_to_save"):
            # PEFT modules_to_save: the forward runs the wrapper's trainable copy, never the original head
            head = wrapped
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = _optimizer(trainable, setup)
        ids = torch.randint(0, vocab, (setup.batch, setup.seq))
        # a sequence-classification head takes one label per sequence; an encoder-decoder's decoder reads its labels
        # shifted right, target_seq long
        if classify:
            labels = torch.randint(0, base.config.num_labels, (setup.batch,))
        elif setup.target_seq and base.config.is_encoder_decoder:
            labels = torch.randint(0, vocab, (setup.batch, setup.target_seq))
        else:
            labels = ids.clone()
        # The first step only creates the optimizer states: it runs untracked; the tracker then adopts the
        # parameters, states and inputs and watches the second, steady-state step.
        _train_step(model, optimizer, ids, labels, setup, None)
        mt = _PeakTracker()
        mt.track_external(model, optimizer, ids, labels)
        skip_frozen_grad_hooks(mt, model)
        phases: _Phases | None = None

        def mark(name: str):
            def hook(*_args: Any) -> None:
                if phases is not None:
                    phases.mark(name)
            return hook

        handles = [head.register_forward_pre_hook(mark("before_lm_head")),
                   head.register_full_backward_pre_hook(mark("loss_backward"))]
        n_steps, host_bytes = _host_step_bytes(optimizer, setup)
        phases = _Phases(mt, host_bytes)
        with mt:
            _train_step(model, optimizer, ids, labels, setup, phases)
        for h in handles:
            h.remove()
        n_total = sum(p.numel() for p in model.parameters())
        n_trainable = sum(p.numel() for p in trainable)
    notes = [f"second training step of {setup.batch}x{setup.seq} tokens, {setup.precision}, "
             f"{setup.optimizer} ({setup.optimizer_impl}), recompute {setup.recompute}, {setup.method}"]
    if attention != setup.attention:
        notes.append(f"{attention} attention: transformers has no {setup.attention} path for this model")
    if n_steps:
        notes.append(f"{n_steps} Adam step counters excluded: PyTorch keeps them on the CPU (non-fused Adam)")
    m = _training_measurement(phases, n_total, n_trainable, time.perf_counter() - t0, notes)
    m.extra["attention"] = attention
    return m


def _training_measurement(phases: _Phases, n_total: int, n_trainable: int, wall_s: float,
                          notes: list[str]) -> Measurement:
    """Components with the meanings the training engine gives them (gpuplan.train.engine):

    - activations_bytes: tensors saved for backward when the output head starts (decoder stack, embeddings and
      the head's input);
    - logits_bytes: high-water mark of the loss region above that point: the larger of the forward peak after
      the head starts and the backward peak before the head's own backward;
    - buffers_bytes: the optimizer step's temporaries (peak minus persistent states) plus the model's buffers.
    """
    p = dict(phases.phases)
    marks = phases.marks
    peak_phase, at_peak = phases.peak()
    fwd_end = p["forward_end"]
    base = marks["before_lm_head"][0] if "before_lm_head" in marks else fwd_end
    region = [m[1].total_bytes for k, m in marks.items() if k in ("loss_forward", "loss_backward")]
    logits = max(0, max(region, default=fwd_end.total_bytes) - base.total_bytes)
    step_temp = p["optimizer_peak"].optimizer_bytes - p["optimizer_end"].optimizer_bytes
    for name, (now, peak_since) in marks.items():
        if name == "before_lm_head":
            p = {"before_lm_head": now, **p}
        else:
            p[f"{name}_peak"] = peak_since
    components = {
        "weights_bytes": fwd_end.parameters_bytes,
        "gradients_bytes": p["backward_end"].gradients_bytes,
        "optimizer_bytes": p["optimizer_end"].optimizer_bytes,
        "master_weights_bytes": 0,
        "activations_bytes": base.activations_bytes,
        "logits_bytes": logits,
        "kv_cache_bytes": 0,
        "buffers_bytes": fwd_end.buffers_bytes + step_temp,
        "allocated_peak_bytes": at_peak.total_bytes,
    }
    return Measurement(backend="cpu-trace", kind="train", allocated_peak_bytes=at_peak.total_bytes,
                       peak_phase=peak_phase, at_peak=at_peak, phases=p, components=components,
                       params_total=n_total, params_trainable=n_trainable, wall_s=wall_s, notes=tuple(notes))


def _storage_bytes(tensors) -> int:
    """Allocator bytes of the distinct storages behind ``tensors`` (storages are kept referenced while
    comparing, so no id is reused)."""
    storages: list = []
    for t in tensors:
        st = t.untyped_storage()
        if not any(st is s or st._cdata == s._cdata for s in storages):
            storages.append(st)
    return sum(cuda_block_bytes(st.nbytes()) for st in storages)


@contextlib.contextmanager
def _inference_model(config: dict[str, Any], setup: PrefillSetup):
    """The model of ``config`` in eval mode on fake tensors, inside the trace patches: yields (model, the attention
    implementation transformers chose)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from gpuplan.verify.build import build_model

    quiet_transformers()
    with warnings.catch_warnings(), trace_patches(), FakeTensorMode():
        warnings.simplefilter("ignore", FutureWarning)
        model = build_model(config, dtype=setup.dtype, attention=setup.attention)
        model.eval()
        yield model, model.config._attn_implementation


def measure_prefill(config: dict[str, Any], setup: PrefillSetup) -> Measurement:
    """Trace what ``model.generate`` (greedy) allocates for its first two forwards: the prefill of ``setup.batch``
    x ``setup.context`` tokens into an empty DynamicCache with ``logits_to_keep=1``, generate's fp32 copy of the
    last logits (``outputs.logits[:, -1].to(copy=True, dtype=float32)``), the argmax, and one decode step (the
    cache then holds ``context + 1`` tokens; the prefill output is dropped first, as generate does)."""
    import torch
    from transformers import DynamicCache

    t0 = time.perf_counter()
    with _inference_model(config, setup) as (model, attention):
        ids = torch.randint(0, model.config.get_text_config().vocab_size, (setup.batch, setup.context))
        cache = DynamicCache(config=model.config)
        mt = _PeakTracker()
        mt.track_external(model, ids)
        phases = _Phases(mt)
        with mt, torch.no_grad():
            phases.start()
            out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            next_logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
            next_ids = next_logits.argmax(dim=-1, keepdim=True)
            phases.end("prefill")
            logits = _storage_bytes([out.logits, next_logits])
            prefill_kv = _kv_bytes(cache)
            del out
            mt.reset_mod_stats()
            phases.start()
            out = model(input_ids=next_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)  # noqa: F841 (alive to the phase's end, as in generate)
            phases.end("decode")
        kv = _kv_bytes(cache)
        n_total = sum(p.numel() for p in model.parameters())
    note = (f"prefill of {setup.batch}x{setup.context} tokens + one decode step, {setup.dtype} weights, "
            "DynamicCache, greedy; activations = prefill peak - weights - buffers - KV cache - logits - input ids")
    return _inference_measurement(phases, ("prefill",), kv, prefill_kv, logits, n_total, t0, note, attention,
                                  setup)


def measure_seq2seq_prefill(config: dict[str, Any], setup: PrefillSetup) -> Measurement:
    """Trace what ``model.generate`` (greedy) allocates for an encoder-decoder (T5): the encoder pass over
    ``setup.batch`` x ``setup.context`` prompt tokens, whose output generate keeps as ``encoder_outputs`` to the
    end; the decoder's first step (one ``decoder_start_token_id`` per sequence) into an empty
    ``EncoderDecoderCache``, which projects the encoder output to every decoder layer's cross-attention keys and
    values; generate's fp32 copy of the last logits and the argmax; then one decode step (the self-attention cache
    then holds 2 tokens). With ``setup.target`` T > 2 the decoder's self-attention cache is first grown to T - 1
    tokens outside any phase (one call over T - 2 tokens: the cache generate leaves after as many steps), so the
    decode step is the last of a T-token output. The KV cache is both caches."""
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    t0 = time.perf_counter()
    with _inference_model(config, setup) as (model, attention):
        ids = torch.randint(0, model.config.vocab_size, (setup.batch, setup.context))
        start = torch.full((setup.batch, 1), int(model.config.decoder_start_token_id or 0), dtype=torch.long)
        cache = EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
        mt = _PeakTracker()
        mt.track_external(model, ids, start)
        phases = _Phases(mt)
        with mt, torch.no_grad():
            # the encoder pass and the decoder's first step are phases of their own: their peaks grow with the
            # depth at different rates, so the reduced-depth traces extrapolate each apart
            phases.start()
            encoded = model.get_encoder()(input_ids=ids)
            phases.end("encode")
            phases.start()
            out = model(encoder_outputs=encoded, decoder_input_ids=start, past_key_values=cache, use_cache=True)
            next_logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
            next_ids = next_logits.argmax(dim=-1, keepdim=True)
            phases.end("prefill")
            logits = _storage_bytes([out.logits, next_logits])
            prefill_kv = _kv_bytes(cache.self_attention_cache) + _kv_bytes(cache.cross_attention_cache)
            encoder_out = _storage_bytes([encoded.last_hidden_state])
            del out
            if setup.target > 2:  # the tokens generated before the last step, outside any phase
                mt.reset_mod_stats()
                grown = torch.randint(0, model.config.vocab_size, (setup.batch, setup.target - 2))
                out = model(encoder_outputs=encoded, decoder_input_ids=grown, past_key_values=cache, use_cache=True)
                del out, grown
            mt.reset_mod_stats()
            phases.start()
            out = model(encoder_outputs=encoded, decoder_input_ids=next_ids, past_key_values=cache,  # noqa: F841
                        use_cache=True)
            phases.end("decode")
        kv = _kv_bytes(cache.self_attention_cache) + _kv_bytes(cache.cross_attention_cache)
        n_total = sum(p.numel() for p in model.parameters())
    note = (f"encoder pass over {setup.batch}x{setup.context} tokens, the decoder's first step and its decode step "
            f"at {setup.target} tokens, "
            f"{setup.dtype} weights, EncoderDecoderCache, greedy; activations = prefill peak - weights - buffers - "
            "KV caches - logits - input ids (the encoder output is among them)")
    m = _inference_measurement(phases, ("encode", "prefill"), kv, prefill_kv, logits, n_total, t0, note, attention,
                               setup)
    m.extra["encoder_output_bytes"] = encoder_out
    return m


def _inference_measurement(phases: _Phases, prefill_phases: tuple[str, ...], kv: int, prefill_kv: int, logits: int,
                           n_total: int, t0: float, note: str, attention: str, setup: PrefillSetup) -> Measurement:
    """The Measurement of an inference trace: components at the end of the prefill (``prefill_phases``: the
    phases up to the first token, whose highest peak sizes the activations) and the peak over every phase."""
    peak_phase, at_peak = phases.peak()
    end = phases.phases["prefill_end"]
    prefill_peak = max(phases.phases[f"{name}_peak"].total_bytes for name in prefill_phases)
    components = {
        "weights_bytes": end.parameters_bytes, "kv_cache_bytes": kv, "logits_bytes": logits,
        "gradients_bytes": 0, "optimizer_bytes": 0, "master_weights_bytes": 0,
        "activations_bytes": max(0, prefill_peak - end.parameters_bytes - end.buffers_bytes - prefill_kv - logits
                                 - end.other_bytes),
        "allocated_peak_bytes": at_peak.total_bytes,
    }
    notes = [note]
    if attention != setup.attention:
        notes.append(f"{attention} attention: transformers has no {setup.attention} path for this model")
    return Measurement(backend="cpu-trace", kind="prefill", allocated_peak_bytes=at_peak.total_bytes,
                       peak_phase=peak_phase, at_peak=at_peak, phases=phases.phases, components=components,
                       params_total=n_total, params_trainable=0, wall_s=time.perf_counter() - t0,
                       notes=tuple(notes), extra={"attention": attention, "buffers_bytes": end.buffers_bytes})


_CACHE_TENSORS = ("keys", "values", "conv_states", "recurrent_states")


def _cache_tensors(layer):
    for attr in _CACHE_TENSORS:
        value = getattr(layer, attr, None)
        for t in value.values() if isinstance(value, dict) else (value,):  # linear-attention states by index
            if t is not None and hasattr(t, "numel") and t.numel():
                yield t


def _kv_bytes(cache) -> int:
    """The cache's tensors: keys and values of attention layers, and the constant-size convolution and recurrent
    states of linear-attention layers (transformers ``LinearAttentionLayer``: Qwen3-Next's Gated DeltaNet)."""
    return _storage_bytes(t for layer in cache.layers for t in _cache_tensors(layer))


def measure_forward(config: dict[str, Any], *, batch: int, seq: int, dtype: str = "bf16",
                    attention: str = "sdpa") -> int:
    """Peak tensor bytes of one ``torch.no_grad()`` forward of ``batch`` x ``seq`` tokens in eval mode: an
    encoder's inference (no cache, no generation), the weights and buffers included."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from gpuplan.verify.build import build_model

    quiet_transformers()
    with warnings.catch_warnings(), trace_patches(), FakeTensorMode():
        warnings.simplefilter("ignore", FutureWarning)
        model = build_model(config, dtype=dtype, attention=attention).eval()
        ids = torch.randint(0, model.config.vocab_size, (batch, seq))
        mt = _PeakTracker()
        mt.track_external(model, ids)
        phases = _Phases(mt)
        with mt, torch.no_grad():
            phases.start()
            out = model(input_ids=ids)  # noqa: F841 (alive to the phase's end, as a caller holds it)
            phases.end("forward")
    return phases.phases["forward_peak"].total_bytes
