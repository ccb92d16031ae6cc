"""The advisor's machinery: changes as option edits, evaluated by the engine, ranked by what they cost in speed.

A :class:`Part` is one elementary change (ZeRO-3 over 16 GPUs, full recompute, LoRA, weights in int4 …): a set of
option values (argparse dests) with a label and two flags, ``same_result`` (the model trained or the tokens served
are the same, up to floating-point order) and ``hardware`` (it needs more or other GPUs). A :class:`Candidate` is
one or more parts. :class:`Advisor` evaluates candidates through an ``evaluate(options) -> Outcome`` function (the
engine's own numbers), completes the ones that do not fit with cheap same-result savers, and ranks: those that fit
by the steps of seed 002 §8's decision tree (:data:`STEPS`): changes on the same GPUs, then changes to what is
trained, then more GPUs of the same kind, then other hardware; inside a step those that fit first, in the tree's
order for the component that dominates (:class:`Diagnosis`), then by ``time_factor``; the rest by memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from gpuplan.errors import InputError
from gpuplan.i18n import t


@dataclass(frozen=True)
class Part:
    key: str  # advice.change.<key> in strings.toml
    options: Mapping[str, Any]
    fields: Mapping[str, Any] = field(default_factory=dict)
    same_result: bool = True
    hardware: bool = False

    def label(self, lang: str | None = "en") -> str:
        return t(f"advice.change.{self.key}", lang, **self.fields)


@dataclass(frozen=True)
class Candidate:
    parts: tuple[Part, ...]

    def options(self, base: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(base)
        for p in self.parts:
            merged.update(p.options)
        return merged

    def delta(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.parts:
            out.update(p.options)
        return out

    def label(self, lang: str | None = "en") -> str:
        return " + ".join(p.label(lang) for p in self.parts)

    def plus(self, part: Part) -> "Candidate":
        return Candidate(self.parts + (part,))

    @property
    def same_result(self) -> bool:
        return all(p.same_result for p in self.parts)

    @property
    def hardware(self) -> bool:
        return any(p.hardware for p in self.parts)


@dataclass(frozen=True)
class Outcome:
    """The engine's answer for one set of options."""

    total_bytes: int
    fits: bool
    payload: Mapping[str, Any]
    gpu_seconds_per_token: float | None  # None when the time estimate cannot be made


# The steps of the advice, in seed 002 §8's order: what can be done with the GPUs in hand comes first, then changes
# to what is trained (PEFT: a different model comes out), then more GPUs of the same kind, then other hardware.
STEPS = {"same_gpus": 1, "what_is_trained": 2, "more_gpus": 3, "other_gpu": 4}
TRAINED_KEYS = frozenset({"lora", "qlora", "freeze"})  # parts that change which parameters are trained


def category_of(candidate: Candidate, *, gpus: int, base_gpus: int, gpu: str, base_gpu: str) -> str:
    """The step a change belongs to: another GPU type, more GPUs, another set of trained parameters, or none of
    these (same GPUs)."""
    if gpu and base_gpu and gpu != base_gpu:
        return "other_gpu"
    if gpus > base_gpus:
        return "more_gpus"
    if any(p.key in TRAINED_KEYS for p in candidate.parts):
        return "what_is_trained"
    return "same_gpus"


@dataclass
class AdviceItem:
    candidate: Candidate
    options: dict[str, Any]
    argv: list[str]
    outcome: Outcome
    time_factor: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"change": self.candidate.label("en"), "total_bytes": int(self.outcome.total_bytes),
                "fits": bool(self.outcome.fits), "time_factor": self.time_factor,
                "category": self.category, "step": STEPS[self.category],
                "options": self.argv_delta, "argv": self.argv, "same_result": self.candidate.same_result,
                "needs_hardware": self.candidate.hardware, "gpus": self.gpus, "gpu": self.gpu}

    argv_delta: list[str] = field(default_factory=list)
    gpus: int = 1
    gpu: str = ""
    category: str = "same_gpus"
    priority: int = 0  # the decision tree's order inside a step (lower first); see the advisors

    @property
    def step(self) -> int:
        return STEPS[self.category]


def _key(options: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


@dataclass
class Advisor:
    """Evaluates candidates against ``base`` with ``evaluate``; ``argv`` renders options as a command line."""

    base: dict[str, Any]
    evaluate: Callable[[dict[str, Any]], Outcome]
    argv: Callable[..., list[str]]
    world: Callable[[Mapping[str, Any]], int] = lambda options: 1
    savers: Sequence[Part] = ()  # same-result savers tried, in order, on top of a change that does not fit
    _cache: dict[tuple, Outcome | InputError] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)

    def outcome(self, options: Mapping[str, Any]) -> Outcome | None:
        key = _key(options)
        if key not in self._cache:
            try:
                self._cache[key] = self.evaluate(dict(options))
            except InputError as exc:  # a combination the engine refuses (e.g. TP not dividing the heads)
                self._cache[key] = exc
        hit = self._cache[key]
        return None if isinstance(hit, InputError) else hit

    @property
    def evaluations(self) -> int:
        return len(self._cache)

    def try_candidate(self, cand: Candidate) -> tuple[Candidate, Outcome] | None:
        """Evaluate ``cand``; when it does not fit, add savers one at a time (cheapest first) until it does."""
        out = self.outcome(cand.options(self.base))
        if out is None:
            self.rejected.append(cand.label())
            return None
        current = cand
        primary = set().union(*(p.options for p in cand.parts))
        for saver in self.savers:
            if out.fits:
                break
            if set(saver.options) & primary:
                continue
            kept = tuple(p for p in current.parts if p in cand.parts or not set(p.options) & set(saver.options))
            trial = Candidate(kept + (saver,))
            if _key(trial.options(self.base)) == _key(current.options(self.base)):
                continue
            new = self.outcome(trial.options(self.base))
            if new is not None and new.total_bytes < out.total_bytes:
                current, out = trial, new
        if not out.fits and current is not cand:  # still too big: report what the change alone gives
            bare = self.outcome(cand.options(self.base))
            return cand, bare  # type: ignore[return-value]
        # drop the savers that turn out not to be needed (keeps the change as short as possible)
        for part in [p for p in current.parts[:-1] if p not in cand.parts]:
            trial = Candidate(tuple(p for p in current.parts if p is not part))
            new = self.outcome(trial.options(self.base))
            if new is not None and new.fits and (new.gpu_seconds_per_token or 0) <= (out.gpu_seconds_per_token or 0):
                current, out = trial, new
        return current, out

    def smallest_fitting(self, make: Callable[[int], Candidate], values: Sequence[int]) -> tuple[Candidate, Outcome] | None:
        """Binary search over increasing ``values`` (e.g. GPU counts) for the first whose candidate fits as is;
        memory must not grow along ``values`` (more sharding never raises per-GPU memory)."""
        lo, hi, best = 0, len(values) - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            cand = make(values[mid])
            out = self.outcome(cand.options(self.base))
            if out is not None and out.fits:
                best, hi = (cand, out), mid - 1
            else:
                lo = mid + 1
        return best

    def item(self, cand: Candidate, out: Outcome, base_time: float | None) -> AdviceItem:
        opts = cand.options(self.base)
        factor = None
        if base_time and out.gpu_seconds_per_token:
            factor = round(out.gpu_seconds_per_token / base_time, 3)
        return AdviceItem(cand, opts, self.argv(opts), out, factor, argv_delta=self.argv(cand.delta(), keep_defaults=True),
                          gpus=self.world(opts), gpu=str(opts.get("gpu") or ""))


def _dominates(a: AdviceItem, b: AdviceItem, memory: bool = False) -> bool:
    if not (a.outcome.fits and b.outcome.fits) or a.gpu != b.gpu or a.step > b.step:
        return False
    if a.time_factor is None or b.time_factor is None:
        return False
    no_worse = a.time_factor <= b.time_factor and a.gpus <= b.gpus and _alters(a) <= _alters(b)
    better = a.time_factor < b.time_factor or a.gpus < b.gpus or _alters(a) < _alters(b)
    # the same change with an extra part that buys neither time nor memory is no advice of its own
    better = better or (_parts(a) < _parts(b) and a.outcome.total_bytes <= b.outcome.total_bytes)
    if memory:  # the setup fits already: what a change saves is the point, so memory counts too
        no_worse = no_worse and a.outcome.total_bytes <= b.outcome.total_bytes
        better = better or a.outcome.total_bytes < b.outcome.total_bytes
    return no_worse and better


def _parts(it: AdviceItem) -> set[str]:
    return {f"{p.key}:{sorted(p.options.items())!r}" for p in it.candidate.parts}


def _alters(it: AdviceItem) -> set[str]:
    """The kinds of result-changing parts (LoRA, 8-bit optimizer, global batch …) a change makes."""
    return {p.key for p in it.candidate.parts if not p.same_result}


def rank(items: Iterable[AdviceItem], base_total_bytes: int | None = None, *,
         memory_counts: bool = False) -> list[AdviceItem]:
    """By step (:data:`STEPS`); inside a step, fitting changes first, by the tree's priority, then time factor
    (unknown last), fewer parts and less memory; then the rest by memory. Identical option sets are kept once
    (the first, i.e. the simplest, label); a change that neither fits nor saves memory against
    ``base_total_bytes`` is no advice and is left out."""
    seen: set[tuple] = set()
    unique = []
    for it in items:
        if base_total_bytes is not None and not it.outcome.fits and it.outcome.total_bytes >= base_total_bytes:
            continue
        k = _key(it.options)
        if k not in seen:
            seen.add(k)
            unique.append(it)

    def order(it: AdviceItem) -> tuple:
        tf = it.time_factor if it.time_factor is not None else float("inf")
        if it.outcome.fits:
            return (it.step, 0, it.priority, tf, len(it.candidate.parts), it.outcome.total_bytes)
        return (it.step, 1, it.outcome.total_bytes, tf)

    ranked = sorted(unique, key=order)
    # Pareto: drop a fitting change when another one that fits, in the same or an earlier step, is no slower,
    # needs no more GPUs of the same type, alters the result in no way this one does not, and is strictly better
    # in one of these (``memory_counts``: also no more memory)
    fitting = [it for it in ranked if it.outcome.fits]
    return [it for it in ranked if not (it.outcome.fits and any(_dominates(k, it, memory_counts) for k in fitting))]


def when_it_fits(items: Iterable[AdviceItem], base_total_bytes: int) -> list[AdviceItem]:
    """For a setup that already fits: only changes on the same hardware that lower its memory (a larger or
    additional GPU, or a change that leaves the total unchanged, as vLLM's preallocated KV pool does, answers
    nothing)."""
    return [it for it in items if it.outcome.fits and it.step <= STEPS["what_is_trained"]
            and it.outcome.total_bytes < base_total_bytes]


# Memory components the diagnosis compares (the `*_bytes` keys of `train` and `infer`), and the share above which
# activations count as "large" in the tree's question 激活值占比大? (the document gives no number: a third of the
# components means they weigh as much as the weights and gradients together in a 16-byte/param setup).
DIAGNOSED = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "master_weights_bytes", "activations_bytes",
             "logits_bytes", "kv_cache_bytes")
ACTIVATIONS_LARGE_SHARE = 1 / 3


@dataclass(frozen=True)
class Diagnosis:
    """Which memory component dominates, and each component's share of their sum (the peak is not their sum; the
    shares say what to cut first)."""

    bytes: Mapping[str, int]

    @classmethod
    def of(cls, memory: Mapping[str, Any]) -> Diagnosis:
        return cls({k: int(memory.get(k) or 0) for k in DIAGNOSED if memory.get(k)})

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def share(self, key: str) -> float:
        return self.bytes.get(key, 0) / self.total_bytes if self.total_bytes else 0.0

    @property
    def dominant(self) -> str | None:
        return max(self.bytes, key=lambda k: self.bytes[k]) if self.bytes else None

    @property
    def activations_share(self) -> float:
        """Activations and the logits (both scale with micro-batch × sequence): the tree's 激活值占比."""
        return self.share("activations_bytes") + self.share("logits_bytes")

    @property
    def activations_large(self) -> bool:
        return self.activations_share >= ACTIVATIONS_LARGE_SHARE

    def as_json(self) -> dict[str, Any]:
        return {"dominant": self.dominant, "components_bytes": dict(self.bytes),
                "shares": {k: round(self.share(k), 4) for k in self.bytes},
                "activations_share": round(self.activations_share, 4), "activations_large": self.activations_large}


@dataclass
class AdviceResult:
    """The advisor's answer: the current setup's outcome, the ranked changes, and the time model's assumptions."""

    command: str
    base: Outcome
    items: list[AdviceItem]
    evaluations: int
    assumptions: tuple[str, ...] = ()
    diagnosis: Diagnosis | None = None
    base_gpus: int = 1
    base_gpu: str = ""

    def as_json(self) -> list[dict[str, Any]]:
        return [it.as_dict() for it in self.items]

    @property
    def fitting(self) -> list[AdviceItem]:
        return [it for it in self.items if it.outcome.fits]
