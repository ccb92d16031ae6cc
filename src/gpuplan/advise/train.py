"""Advice for a training run that does not fit: seed 002 §8's tree (ZeRO → activation checkpointing → TP/PP) and
everything beyond it that gpuplan can estimate, each re-estimated with ``gpuplan train`` itself.

The order follows the tree. First the diagnosis (which component dominates; are activations large?). Then what can
be done on the GPUs in hand: ZeRO / FSDP over the same data-parallel ranks when ZeRO is off (the tree's first
question), activation savers (recompute, micro-batch with accumulation, chunked loss) first when activations are
large, TP/PP over the same GPUs, then the optimizer (8-bit, Adafactor, fused step) and CPU offload. Then changes to
what is trained (LoRA, QLoRA), then more GPUs of the same kind, then other hardware."""

from __future__ import annotations

from typing import Any, Mapping

from gpuplan.advise.core import (Advisor, AdviceItem, AdviceResult, Candidate, Diagnosis, Outcome, Part,
                                 category_of, rank, when_it_fits)
from gpuplan.advise.runner import runner
from gpuplan.advise.timefactor import (ASSUMPTIONS, TrainPoint, steptime_gpu_seconds_per_token,
                                      train_gpu_seconds_per_token)
from gpuplan.errors import InputError
from gpuplan.train.config import STACK_FIELDS as _FIELDS
from gpuplan.train.stacks import stack_value
from gpuplan.progress import progress
from gpuplan.units import GiB

RECOMPUTE_ORDER = ("none", "selective", "full")
TP_DEGREES = (1, 2, 4, 8)
PP_DEGREES = (1, 2, 4, 8, 16)
MAX_GPUS = 4096
LARGER_GPUS_LISTED = 3
LARGER_GPU_MIN_RATIO = 1.1  # a "larger GPU" has at least 10 % more usable memory (80 GB parts differ by < 1 %)
# Hugging Face names of the transformer blocks (llama/qwen/mistral/gemma…, gpt2/falcon, gpt-neox)
LAYER_GLOBS = ("model.layers.*", "transformer.h.*", "gpt_neox.layers.*")


def _pow2_upto(limit: int, start: int = 1) -> list[int]:
    out, v = [], start
    while v <= limit:
        out.append(v)
        v *= 2
    return out


def _layout(o: Mapping[str, Any]) -> tuple[int, int, int, int]:
    tp, pp, cp = o.get("tp") or 1, o.get("pp") or 1, o.get("cp") or 1
    dp = o.get("dp") or 1
    if o.get("gpus") and dp == 1:
        dp = max(1, o["gpus"] // (tp * pp * cp))
    return dp, tp, pp, cp


def _prod(values: tuple[int, ...]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _targets(value: Any) -> tuple[str, ...] | None:
    if not value:
        return None
    items = tuple(value) if isinstance(value, (list, tuple)) else tuple(str(value).split(","))
    return None if items in (("all-linear",), ()) else items


# options a training stack can set (gpuplan.train.config.STACK_FIELDS), by option dest
STACK_DESTS = {"loss": "loss_impl", "loss_chunk": "loss_chunk_tokens"}
STACK_FIELDS = frozenset(_FIELDS) | frozenset(STACK_DESTS)


class TrainAdvice:
    """Builds the candidate changes for one `gpuplan train` setup and ranks what they give."""

    def __init__(self, options: Mapping[str, Any], *, max_gpus: int = MAX_GPUS) -> None:
        from gpuplan.model.resolve import model_from_options
        from gpuplan.hardware.catalog import get_gpu

        self.r = runner("train")
        self.base = {k: v for k, v in options.items() if k in self.r.defaults}
        if not self.base.get("gpu"):
            raise InputError("--advise", True, "needs --gpu: the advice is about fitting a GPU's memory")
        self.spec = model_from_options(self.r.namespace(self.base), allow_params_only=True, encoders=True)
        self.get_gpu = get_gpu
        self.max_gpus = max_gpus
        self.advisor = Advisor(self.base, self._evaluate, self.r.argv, world=lambda o: _prod(_layout(o)),
                               savers=self._savers())

    # -- evaluation ---------------------------------------------------------------------------------------------
    def _o(self, options: Mapping[str, Any], dest: str, default: Any = None) -> Any:
        v = options.get(dest, self.r.defaults.get(dest))
        if v is None and dest in STACK_FIELDS:  # not given: the stack's default (gpuplan.train.stacks)
            v = stack_value(self._o(options, "stack"), STACK_DESTS.get(dest, dest), self._o(options, "method", "full"))
        return default if v is None else v

    def _evaluate(self, options: dict[str, Any]) -> Outcome:
        payload = self.r.run_json(options)
        memory = payload.get("memory", {})
        total = int(memory.get("total_bytes", 0))
        fits = payload.get("fits")
        if fits is None:
            fits = total <= self.get_gpu(options["gpu"]).memory_usable_bytes
        return Outcome(total, bool(fits), payload, self._time(options, payload))

    def _time(self, o: Mapping[str, Any], payload: Mapping[str, Any]) -> float | None:
        if self.spec is None:
            return None
        from gpuplan.compute.flops import training_flops

        trainable = (payload.get("params") or {}).get("trainable")
        method = self._o(o, "method", "full")
        seq = self._o(o, "seq", 2048)
        try:
            flops = training_flops(self.spec, seq=seq, method=method, recompute=self._o(o, "recompute", "none"),
                                   trainable_params=trainable if method == "freeze" else None,
                                   lora_rank=self._o(o, "lora_rank", 16), lora_targets=_targets(o.get("lora_targets")))
        except InputError:
            return None
        dp, tp, pp, cp = _layout(o)
        point = TrainPoint(gpu=self.get_gpu(o["gpu"]), hardware_flop_per_token=flops.hardware_flop_per_token,
                           trainable_params=int(trainable or flops.trainable_params),
                           total_params=int((payload.get("params") or {}).get("total") or flops.weight_params),
                           batch=self._o(o, "batch", 1),
                           seq=seq, grad_accum=self._o(o, "grad_accum", 1), dp=dp, tp=tp, pp=pp, cp=cp,
                           zero=self._o(o, "zero", 0), offload=self._o(o, "offload", "none"),
                           recompute=self._o(o, "recompute", "none"), microbatches=o.get("microbatches"),
                           precision=self._o(o, "precision", "bf16"))
        try:
            full = training_flops(self.spec, seq=seq, recompute=point.recompute).hardware_flop_per_token
            return steptime_gpu_seconds_per_token(self.spec, point, full)
        except InputError:  # e.g. no network default for this GPU beyond one node
            return train_gpu_seconds_per_token(self.spec, point)

    # -- candidate changes --------------------------------------------------------------------------------------
    def _loss_dest(self) -> str | None:
        return next((d for d in ("loss", "loss_impl") if self.r.has(d)), None)

    def _savers(self) -> list[Part]:
        """Same-result memory savers, cheapest first, added on top of a change that does not fit by itself."""
        o, out = self.base, []
        loss = self._loss_dest()
        if loss and self._o(o, loss) == "standard" and self.r.has(loss, "chunked"):
            out.append(Part("loss", {loss: "chunked"}, {"impl": "chunked"}))
        if self.r.has("optimizer_impl", "fused") and self._o(o, "optimizer_impl") == "foreach":
            out.append(Part("optimizer_impl", {"optimizer_impl": "fused"}))
        batch, accum = self._o(o, "batch", 1), self._o(o, "grad_accum", 1)
        if batch > 1:
            out.append(Part("accum", {"batch": 1, "grad_accum": accum * batch}, {"batch": 1, "accum": accum * batch}))
        current = RECOMPUTE_ORDER.index(self._o(o, "recompute", "none"))
        for mode in RECOMPUTE_ORDER[current + 1:]:
            out.append(Part("recompute", {"recompute": mode}, {"mode": mode}))
        return out

    def _single_gpu_parts(self) -> list[Part]:
        o, parts = self.base, list(self._savers())
        loss = self._loss_dest()
        if loss and self._o(o, loss) == "standard" and self.r.has(loss, "fused"):
            parts.append(Part("loss", {loss: "fused"}, {"impl": "fused"}))
        batch, accum = self._o(o, "batch", 1), self._o(o, "grad_accum", 1)
        b = batch // 2
        while b > 1:  # batch 1 is a saver already
            if batch % b == 0:
                k = batch // b
                parts.append(Part("accum", {"batch": b, "grad_accum": accum * k}, {"batch": b, "accum": accum * k}))
            b //= 2
        if self._o(o, "optimizer") in ("adam", "adamw") and self.r.has("optimizer", "adamw-8bit"):
            parts.append(Part("optimizer", {"optimizer": "adamw-8bit"}, {"optimizer": "adamw-8bit"}, same_result=False))
        if self._o(o, "optimizer") in ("adam", "adamw") and self.r.has("optimizer", "adafactor"):
            parts.append(Part("optimizer", {"optimizer": "adafactor"}, {"optimizer": "adafactor"}, same_result=False))
        precision = self._o(o, "precision", "bf16")
        if precision in ("fp32", "amp-bf16") and self.r.has("precision", "mixed-bf16"):
            parts.append(Part("precision", {"precision": "mixed-bf16"}, {"precision": "mixed-bf16"},
                              same_result=False))
        method = self._o(o, "method", "full")
        if method in ("full", "freeze") and self.r.has("method", "lora"):
            extra = {"trainable": self.r.defaults["trainable"]} if self.r.has("trainable") else {}
            rank_ = self._o(o, "lora_rank", 16)
            parts.append(Part("lora", {"method": "lora", **extra}, {"rank": rank_}, same_result=False))
            q = {"method": "qlora", **extra}
            if precision not in ("bf16", "fp16", "mixed-bf16", "mixed-fp16"):
                q["precision"] = "bf16"
            parts.append(Part("qlora", q, {"rank": rank_}, same_result=False))
        if method == "full" and self.r.has("method", "freeze") and self.r.has("trainable"):
            # freezing: train the transformer blocks, keep the embeddings and the output head frozen (their
            # gradients and optimizer states go); the glob that matches this model's names is the one the engine
            # accepts, the others are refused and dropped
            for glob in LAYER_GLOBS:
                parts.append(Part("freeze", {"method": "freeze", "trainable": (glob,)}, {"trainable": glob},
                                  same_result=False))
        if self.r.has("offload", "optimizer") and self._o(o, "offload", "none") == "none":
            zero = max(2, self._o(o, "zero", 0))
            ds = {"framework": "deepspeed"} if self.r.has("framework", "deepspeed") else {}
            parts.append(Part("offload", {"offload": "optimizer", "zero": zero, **ds}, {"what": "optimizer states"}))
            if self.r.has("offload", "optimizer+params"):
                parts.append(Part("offload", {"offload": "optimizer+params", "zero": 3, **ds},
                                  {"what": "optimizer states and parameters"}))
        return parts

    def _scale_dp(self, k: int) -> tuple[dict[str, Any], Part | None]:
        """Options for k times the data-parallel ranks, keeping the global batch through less accumulation."""
        o = self.base
        accum, batch = self._o(o, "grad_accum", 1), self._o(o, "batch", 1)
        if accum % k == 0:
            return {"grad_accum": accum // k}, None
        if accum * batch % k == 0 and k % accum == 0:
            return {"grad_accum": 1, "batch": accum * batch // k}, None
        dp, tp, pp, cp = _layout(o)
        before = batch * accum * dp
        return {}, Part("global_batch", {}, {"before": before, "after": before * k}, same_result=False)

    def _layout_candidate(self, tp: int, pp: int, zero: int, framework: str | None, dp: int,
                          sp: bool = True) -> Candidate:
        base_dp, base_tp, base_pp, cp = _layout(self.base)
        extra: dict[str, Any] = {}
        gb = None
        if dp > base_dp:
            extra, gb = self._scale_dp(max(1, dp // base_dp))
        elif dp < base_dp:  # fewer data-parallel ranks on the same GPUs: the same global batch by more accumulation
            extra = {"grad_accum": self._o(self.base, "grad_accum", 1) * (base_dp // dp)}
        opts: dict[str, Any] = {"tp": tp, "pp": pp, "dp": dp, "zero": zero, **extra}
        if pp > 1:  # feed the pipeline: micro-batch 1, the rest as micro-batches (accumulation)
            local = opts.get("batch", self._o(self.base, "batch", 1))
            opts["grad_accum"] = opts.get("grad_accum", self._o(self.base, "grad_accum", 1)) * local
            opts["batch"] = 1
        if self.r.has("gpus"):
            opts["gpus"] = dp * tp * pp * cp
        if tp > 1 and sp and self.r.has("sp"):  # sequence parallelism with TP (Megatron practice)
            opts["sp"] = True
        if framework:
            opts["framework"] = framework
        gpus = dp * tp * pp * cp
        more = gpus > base_dp * base_tp * base_pp * cp
        if tp == 1 and pp == 1:
            key = "fsdp" if zero == 3 and framework == "torch" else "zero"
            part = Part(key, opts, {"stage": zero, "gpus": gpus, "framework": framework or "DeepSpeed"}, hardware=more)
        else:
            part = Part("layout", opts, {"gpus": gpus, "tp": tp, "pp": pp, "dp": dp, "zero": zero,
                                         "framework": framework or self._o(self.base, "framework", "torch")},
                        hardware=more)
        return Candidate((part,) + ((gb,) if gb else ()))

    def _same_gpu_layouts(self) -> list[Candidate]:
        """seed 002 §8 on the GPUs in hand: ZeRO / FSDP over the current data-parallel ranks (用了 ZeRO? 没有 → 启用
        ZeRO), and TP/PP re-cut from the same GPU count (增加 TP/PP 切分), keeping the global batch."""
        base_dp, base_tp, base_pp, cp = _layout(self.base)
        world, zero0 = base_dp * base_tp * base_pp * cp, self._o(self.base, "zero", 0)
        out = []
        if base_dp > 1 and (base_tp, base_pp) != (1, 1):  # ZeRO over the data-parallel ranks of the TP/PP layout
            framework = self._o(self.base, "framework", "torch")
            for zero in (1, 2, 3):
                if zero > zero0:
                    out.append(Candidate((Part("zero", {"zero": zero}, {"stage": zero, "gpus": world,
                                                                         "framework": framework}),)))
        for tp, pp, zero, fw in self._layout_searches():
            if tp == 1 and pp == 1:
                if base_dp > 1 and zero > zero0 and (base_tp, base_pp) == (1, 1):
                    out.append(self._layout_candidate(1, 1, zero, fw, base_dp))
            elif world % (tp * pp * cp) == 0 and (tp, pp) != (base_tp, base_pp):
                dp = world // (tp * pp * cp)
                if base_dp % dp == 0:
                    out.append(self._layout_candidate(tp, pp, zero, fw, dp))
        return out

    def _priority(self, cand: Candidate, diagnosis: Diagnosis) -> int:
        """The tree's order inside the same-GPU step: ZeRO-1/2 first when ZeRO is off (the document: "启用 ZeRO
        Stage 1/2"; stage 3 "only when one GPU cannot hold the model"); activation savers next when activations are
        large, else TP/PP first; then the optimizer and offload."""
        part = cand.parts[0]
        zero_off = self._o(self.base, "zero", 0) == 0
        if part.key in ("zero", "fsdp"):
            return (0 if part.options.get("zero", 3) <= 2 else 1) if zero_off else 3
        if part.key in ("recompute", "accum", "loss"):
            return 2 if diagnosis.activations_large else 4
        if part.key == "layout":
            return 3
        return 5

    def _layout_searches(self) -> list[tuple[int, int, int, str | None]]:
        spec, out = self.spec, []
        framework = self._o(self.base, "framework", "torch")
        for tp in TP_DEGREES:
            if spec is not None and spec.num_heads % tp:  # the engine checks the rest (KV heads, experts)
                continue
            for pp in PP_DEGREES:
                if spec is not None and pp > spec.num_layers:
                    continue
                if tp == 1 and pp == 1:
                    out += [(1, 1, 1, framework if framework != "torch" else "deepspeed"),
                            (1, 1, 2, framework if framework != "torch" else "deepspeed"),
                            (1, 1, 3, "torch"), (1, 1, 3, "deepspeed")]
                else:  # the user's framework first; Megatron-LM as the alternative
                    out += [(tp, pp, 1, None)]
                    if framework != "megatron" and self.r.has("framework", "megatron"):
                        out += [(tp, pp, 1, "megatron")]
        return [(tp, pp, z, f if (f is None or self.r.has("framework", f)) else None) for tp, pp, z, f in out]

    def run(self) -> AdviceResult:
        adv = self.advisor
        base_out = adv.outcome(self.base)
        if base_out is None:  # the base itself is invalid: let the command report that error
            self.r.run_json(self.base)
            raise InputError("--advise", True, "the current options cannot be estimated")
        items: list[AdviceItem] = []
        singles = [Candidate((p,)) for p in self._single_gpu_parts()] + self._same_gpu_layouts()
        searches = self._layout_searches()
        base_dp, _, _, cp = _layout(self.base)
        larger = sorted((g for g in _catalog().values()
                         if g.memory_usable_bytes > LARGER_GPU_MIN_RATIO * self.get_gpu(self.base["gpu"]).memory_usable_bytes
                         and g.peak_flop_per_s_for("bf16")), key=lambda g: g.memory_usable_bytes)
        with progress(len(singles) + 2 * len(searches) + len(larger), "trying changes") as advance:
            for cand in singles:
                got = adv.try_candidate(cand)
                if got:
                    items.append(adv.item(*got, base_out.gpu_seconds_per_token))
                advance()
            for tp, pp, zero, fw in searches:
                for savers in ((), tuple(p for p in adv.savers if p.key == "recompute")[-1:]):
                    limit = self.max_gpus // (tp * pp * cp)
                    dps = [d for d in _pow2_upto(limit) if d >= base_dp and (d > base_dp or tp * pp > 1)]
                    found = None
                    for sp in ((True, False) if tp > 1 else (True,)):
                        def make(dp: int, tp=tp, pp=pp, zero=zero, fw=fw, savers=savers, sp=sp) -> Candidate:
                            c = self._layout_candidate(tp, pp, zero, fw, dp, sp)
                            return Candidate(c.parts + savers)
                        if not dps:
                            break
                        found = adv.smallest_fitting(make, dps)
                        if found or adv.outcome(make(dps[-1]).options(self.base)) is not None:
                            break  # found, or valid but too big: no need to try without SP
                    if found:
                        items.append(adv.item(*found, base_out.gpu_seconds_per_token))
                    advance()
            listed = 0
            for g in larger:
                if listed >= LARGER_GPUS_LISTED:
                    advance()
                    continue
                got = adv.try_candidate(Candidate((Part("gpu", {"gpu": g.id}, {
                    "gpu": g.id, "memory": f"{g.memory_usable_bytes / GiB:,.0f} GiB"}, hardware=True),)))
                if got and got[1].fits:
                    items.append(adv.item(*got, base_out.gpu_seconds_per_token))
                    listed += 1
                advance()
        diagnosis = Diagnosis.of(base_out.payload.get("memory", {}))
        base_gpus, base_gpu = _prod(_layout(self.base)), self.get_gpu(self.base["gpu"]).id
        for it in items:
            it.category = category_of(it.candidate, gpus=it.gpus, base_gpus=base_gpus,
                                      gpu=self.get_gpu(it.gpu).id if it.gpu else base_gpu, base_gpu=base_gpu)
            it.priority = self._priority(it.candidate, diagnosis) if it.category == "same_gpus" else 0
        ranked = rank(items, base_out.total_bytes, memory_counts=base_out.fits)
        if base_out.fits:
            ranked = when_it_fits(ranked, base_out.total_bytes)
        return AdviceResult("train", base_out, ranked, adv.evaluations, ASSUMPTIONS, diagnosis, base_gpus,
                            base_gpu)


def _catalog() -> dict:
    from gpuplan.hardware.catalog import load_catalog

    return load_catalog()


def advise_training(options: Mapping[str, Any], *, max_gpus: int = MAX_GPUS) -> AdviceResult:
    """Every change gpuplan knows for this `gpuplan train` setup (options keyed by argparse dest), ranked."""
    return TrainAdvice(options, max_gpus=max_gpus).run()
