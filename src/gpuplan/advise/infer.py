"""Advice for serving that does not fit: seed 002 §8's inference branch (quantize the weights → KV-cache
quantization / shorter context → TP) plus a smaller batch and a larger GPU, each re-estimated with
``gpuplan infer`` itself. (Switching to a GQA/MQA model, the tree's other branch, changes the model and is left
to the user.)

The order follows the tree: the diagnosis first (weights, KV cache or prefill activations: which dominates), then
the changes on the same GPUs, the dominant component's remedies first (quantized weights when the weights dominate;
KV-cache quantization or a shorter context when the KV cache does), then TP over more GPUs, then other hardware.
A setup that already fits gets only the same-GPU changes that lower its memory: with vLLM's preallocated KV pool
none does, and the answer is "no change needed"."""

from __future__ import annotations

from typing import Any, Mapping

from gpuplan.advise.core import (Advisor, AdviceItem, AdviceResult, Candidate, Diagnosis, Outcome, Part,
                                 category_of, rank, when_it_fits)
from gpuplan.advise.runner import runner
from gpuplan.advise.timefactor import INFER_ASSUMPTIONS, infer_gpu_seconds_per_token
from gpuplan.errors import InputError
from gpuplan.progress import progress
from gpuplan.units import GiB

# Weight formats tried, most accurate first; a format the command does not accept is skipped.
WEIGHT_FORMATS = ("fp8", "int8", "awq", "gptq", "int4", "nf4")
BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "awq": 4, "gptq": 4, "int4": 4, "nf4": 4}
KV_DTYPES = ("fp8", "int8", "int4")
TP_DEGREES = (2, 4, 8)
LARGER_GPUS_LISTED = 3
LARGER_GPU_MIN_RATIO = 1.1  # a "larger GPU" has at least 10 % more usable memory (80 GB parts differ by < 1 %)
MIN_CONTEXT = 256


class InferAdvice:
    def __init__(self, options: Mapping[str, Any]) -> None:
        from gpuplan.model.resolve import model_from_options
        from gpuplan.hardware.catalog import get_gpu

        self.r = runner("infer")
        self.base = {k: v for k, v in options.items() if k in self.r.defaults}
        if not self.base.get("gpu"):
            raise InputError("--advise", True, "needs --gpu: the advice is about fitting a GPU's memory")
        self.spec = model_from_options(self.r.namespace(self.base), encoders=True)
        self.get_gpu = get_gpu
        self.advisor = Advisor(self.base, self._evaluate, self.r.argv, world=self._world)

    def _o(self, o: Mapping[str, Any], dest: str, default: Any = None) -> Any:
        v = o.get(dest, self.r.defaults.get(dest))
        return default if v is None else v

    def _world(self, o: Mapping[str, Any]) -> int:
        return self._o(o, "tp", 1) * self._o(o, "pp", 1) * self._o(o, "dp", 1)

    def _evaluate(self, o: dict[str, Any]) -> Outcome:
        payload = self.r.run_json(o)
        memory = payload.get("memory", {})
        total = int(memory.get("total_bytes", 0))
        fits = payload.get("fits")
        if fits is None:
            fits = total <= self.get_gpu(o["gpu"]).memory_usable_bytes
        gpus = int((payload.get("layout") or {}).get("gpus") or self._world(o))
        tokens_per_s = (payload.get("speed") or {}).get("decode_tokens_per_s")
        if tokens_per_s:  # the engine's own decode roofline
            seconds = gpus / tokens_per_s
        else:
            seconds = infer_gpu_seconds_per_token(self.spec, self.get_gpu(o["gpu"]), memory,
                                                  batch=self._o(o, "batch", 1), tp=self._o(o, "tp", 1), gpus=gpus)
        return Outcome(total, bool(fits), payload, seconds)

    def _parts(self, base_payload: Mapping[str, Any]) -> list[Part]:
        o, parts = self.base, []
        weights = str(self._o(o, "weights", "auto")).lower()
        if weights == "auto":
            weights = str((base_payload.get("weights") or {}).get("format") or "bf16").lower()
        for fmt in WEIGHT_FORMATS:
            if fmt != weights and BITS.get(fmt, 16) < BITS.get(weights, 16) and self.r.has("weights", fmt):
                parts.append(Part("weights", {"weights": fmt}, {"fmt": fmt}, same_result=False))
        kv = str(self._o(o, "kv_dtype", "auto") or "auto").lower()
        if kv == "auto":
            kv = str((base_payload.get("weights") or {}).get("dtype") or "bf16").lower()
        for dtype in KV_DTYPES:
            if dtype != kv and BITS.get(dtype, 16) < BITS.get(kv, 16) and self.r.has("kv_dtype", dtype):
                parts.append(Part("kv", {"kv_dtype": dtype}, {"dtype": dtype}, same_result=False))
        return parts

    def run(self) -> AdviceResult:
        adv = self.advisor
        base_out = adv.outcome(self.base)
        if base_out is None:
            self.r.run_json(self.base)
            raise InputError("--advise", True, "the current options cannot be estimated")
        t0 = base_out.gpu_seconds_per_token
        items: list[AdviceItem] = []
        parts = self._parts(base_out.payload)
        larger = sorted((g for g in _catalog().values()
                         if g.memory_usable_bytes > LARGER_GPU_MIN_RATIO * self.get_gpu(self.base["gpu"]).memory_usable_bytes),
                        key=lambda g: g.memory_usable_bytes)
        with progress(len(parts) + len(TP_DEGREES) + len(larger) + 2, "trying changes") as advance:
            for p in parts:
                got = adv.try_candidate(Candidate((p,)))
                if got:
                    items.append(adv.item(*got, t0))
                advance()
            context = self._o(self.base, "context", 0)
            if context and self.r.has("context"):
                values = []
                c = context // 2
                while c >= MIN_CONTEXT:
                    values.append(c)
                    c //= 2
                found = adv.smallest_fitting(
                    lambda c: Candidate((Part("context", {"context": c}, {"context": f"{c:,}"}, same_result=False),)),
                    values)
                if found:
                    items.append(adv.item(*found, t0))
            advance()
            batch = self._o(self.base, "batch", 1)
            if batch > 1:
                found = adv.smallest_fitting(
                    lambda b: Candidate((Part("batch", {"batch": b}, {"batch": b}),)), list(range(batch - 1, 0, -1)))
                if found:
                    items.append(adv.item(*found, t0))
            advance()
            tp0 = self._o(self.base, "tp", 1)
            for tp in TP_DEGREES:
                if tp > tp0 and self.r.has("tp"):
                    opts: dict[str, Any] = {"tp": tp}
                    got = adv.try_candidate(Candidate((Part("tp", opts, {"tp": tp}, hardware=True),)))
                    if got:
                        items.append(adv.item(*got, t0))
                advance()
            listed = 0
            for g in larger:
                if listed < LARGER_GPUS_LISTED:
                    got = adv.try_candidate(Candidate((Part("gpu", {"gpu": g.id}, {
                        "gpu": g.id, "memory": f"{g.memory_usable_bytes / GiB:,.0f} GiB"}, hardware=True),)))
                    if got and got[1].fits:
                        items.append(adv.item(*got, t0))
                        listed += 1
                advance()
        diagnosis = Diagnosis.of(base_out.payload.get("memory", {}))
        base_gpus, base_gpu = self._world(self.base), self.get_gpu(self.base["gpu"]).id
        for it in items:
            it.category = category_of(it.candidate, gpus=it.gpus, base_gpus=base_gpus,
                                      gpu=self.get_gpu(it.gpu).id if it.gpu else base_gpu, base_gpu=base_gpu)
            it.priority = _priority(it.candidate, diagnosis) if it.category == "same_gpus" else 0
        ranked = rank(items, base_out.total_bytes, memory_counts=base_out.fits)
        if base_out.fits:
            ranked = when_it_fits(ranked, base_out.total_bytes)
        return AdviceResult("infer", base_out, ranked, adv.evaluations, INFER_ASSUMPTIONS, diagnosis, base_gpus,
                            base_gpu)


# seed 002 §8, inference: 瓶颈在哪? weights → quantize them; KV cache → KV quantization / shorter context; the
# prefill's activations (a long prompt at once) → shorter context or fewer sequences
_REMEDIES = {"weights_bytes": ("weights",), "kv_cache_bytes": ("kv", "context"),
             "activations_bytes": ("context", "batch")}


def _priority(cand: Candidate, diagnosis: Diagnosis) -> int:
    """0 for a remedy of the dominant component, 1 for the other components' remedies."""
    return 0 if cand.parts[0].key in _REMEDIES.get(diagnosis.dominant or "", ()) else 1


def _catalog() -> dict:
    from gpuplan.hardware.catalog import load_catalog

    return load_catalog()


def advise_inference(options: Mapping[str, Any]) -> AdviceResult:
    """Every change gpuplan knows for this `gpuplan infer` setup (options keyed by argparse dest), ranked."""
    return InferAdvice(options).run()
