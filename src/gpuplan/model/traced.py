"""A model gpuplan has no rules for, described by what PyTorch showed: its tensors, built from the config.json by
transformers on the meta device, and its memory, traced on reduced-depth copies and extrapolated per layer kind.

The tracing itself lives in :mod:`gpuplan.verify.generic` (PyTorch and transformers, extra ``[verify]``); this
module is the typed description it hands back and the arithmetic on it, both torch-free.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

from gpuplan.errors import InputError

# The extra that holds PyTorch and transformers (pyproject.toml ``[project.optional-dependencies] verify``).
VERIFY_EXTRA = "pip install 'gpuplan[verify]'"
# Whether a family without rules may be traced here (False inside :func:`without_tracing`: the web server answers
# what it can estimate and leaves minutes of CPU tracing to a local run).
_TRACING: ContextVar[bool] = ContextVar("gpuplan_tracing_allowed", default=True)


@contextmanager
def without_tracing() -> Iterator[None]:
    """Within the block a family without rules is refused (its InputError) instead of traced."""
    token = _TRACING.set(False)
    try:
        yield
    finally:
        _TRACING.reset(token)


def tracing_allowed() -> bool:
    return _TRACING.get()


# Parts of a traced model: the input embedding (``get_input_embeddings()``), the decoder layers, the output head
# (``get_output_embeddings()``, absent when tied to the embedding) and everything else (final norm, position
# embeddings, ...).
TRACED_COMPONENTS = ("embedding", "layers", "lm_head", "other")


@dataclass(frozen=True)
class TracedTensor:
    """One parameter of the model as transformers builds it: its name, shape, the part of the model that holds it
    (:data:`TRACED_COMPONENTS`, from the modules transformers returns for the input and output embeddings and the
    decoder layers' ModuleList) and the kind of decoder layer it belongs to (``""`` outside the decoder layers)."""

    name: str
    shape: tuple[int, ...]
    component: str = "other"
    layer_kind: str = ""

    @property
    def numel(self) -> int:
        return _numel(self.shape)


@dataclass(frozen=True)
class TracedModel:
    """The exact tensor table of an architecture gpuplan has no rules for (``family`` is its model_type).

    ``layer_kinds`` names each decoder layer's kind ("1", "2", ... in order of first appearance): layers of one
    kind hold the same parameter names and shapes and the same per-layer config settings (``layer_settings``:
    the entries of ``layer_types`` and other per-layer lists, e.g. sliding or full attention). ``architecture`` is the transformers class that was built."""

    family: str
    name: str
    architecture: str
    tensors: tuple[TracedTensor, ...]
    layer_kinds: tuple[str, ...]
    layer_settings: tuple[str, ...]
    layers_prefix: str
    hidden_size: int
    vocab_size: int
    wall_s: float = 0.0

    @property
    def num_layers(self) -> int:
        return len(self.layer_kinds)

    @property
    def params_total(self) -> int:
        return sum(t.numel for t in self.tensors)

    def layer_shapes(self, index: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """(name within the layer, shape) of each parameter of decoder layer ``index``."""
        head = f"{self.layers_prefix}.{index}."
        return tuple((t.name[len(head):], t.shape) for t in self.tensors if t.name.startswith(head))

    def component_params(self) -> dict[str, int]:
        """Parameters of each part (:data:`TRACED_COMPONENTS`), each tensor counted once."""
        out = {c: 0 for c in TRACED_COMPONENTS}
        for t in self.tensors:
            out[t.component] += t.numel
        return out

    def kind_params(self) -> dict[str, tuple[int, int]]:
        """Per layer kind: (layers of that kind, parameters of one such layer)."""
        counts = self.kind_counts()
        out = {}
        for kind, n in counts.items():
            first = self.layer_kinds.index(kind)
            out[kind] = (n, sum(_numel(s) for _, s in self.layer_shapes(first)))
        return out

    def kind_counts(self, depth: int | None = None) -> dict[str, int]:
        """How many decoder layers of each kind the first ``depth`` layers hold (all layers by default)."""
        kinds = self.layer_kinds if depth is None else self.layer_kinds[:depth]
        return {k: kinds.count(k) for k in dict.fromkeys(self.layer_kinds)}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@dataclass(frozen=True)
class TracedPoint:
    """One reduced-depth trace: its depth, the layers of each kind it held and the bytes it measured, by name
    (phase peaks such as ``forward_peak`` and components such as ``activations_bytes``)."""

    depth: int
    kind_counts: dict[str, int]
    values: dict[str, int]
    wall_s: float


@dataclass(frozen=True)
class TracedMemory:
    """Memory of the full-depth model, extrapolated from reduced-depth traces (:func:`extrapolate`)."""

    family: str
    kind: str  # "train" or "prefill"
    values: dict[str, int]
    depths: tuple[int, ...]
    wall_s: float
    notes: tuple[str, ...] = field(default=())

    def peak(self) -> tuple[str, int]:
        """(phase, bytes) of the largest extrapolated phase peak (keys ending in ``_peak``)."""
        name, value = max(((k, v) for k, v in self.values.items() if k.endswith("_peak")), key=lambda kv: kv[1])
        return name.removesuffix("_peak"), value


def layer_pattern(layer_kinds: tuple[str, ...]) -> tuple[int, int]:
    """(head, period) of the decoder's layer kinds: after ``head`` layers the kinds repeat every ``period`` layers
    (``kinds[i] == kinds[i + period]`` for every ``i >= head``), with ``head + period`` smallest (then the shorter
    period). A uniform model is (0, 1); DeepSeek-style dense-first layers are a head; alternating sliding and full
    attention is a period."""
    n = len(layer_kinds)
    for total in range(1, n + 1):
        for period in range(1, total + 1):
            head = total - period
            if all(layer_kinds[i] == layer_kinds[i + period] for i in range(head, n - period)):
                return head, period
    return n, 1


def depths_to_trace(layer_kinds: tuple[str, ...], min_depth: int = 2) -> tuple[int, int] | None:
    """The two depths to trace (the first layers of the model, so each copy keeps the config's own layer order),
    ``d`` and ``d + period``, or None when the second would not be smaller than the model (trace it whole). Both
    hold the head and end as the full model ends (the same first ``r`` layers of a period after whole periods,
    ``r = (layers - head) mod period``), so the full model is the first copy plus whole periods; ``d`` is the
    smallest such depth that holds one whole period (every kind, and whatever a kind builds once, such as a
    sliding-window mask) and at least ``min_depth`` layers (2: a one-layer copy's first layer is also its last)."""
    n = len(layer_kinds)
    head, period = layer_pattern(layer_kinds)
    d = head + (n - head) % period
    while d < min_depth or d < head + period:
        d += period
    return None if d + period >= n else (d, d + period)


def extrapolate(first: TracedPoint, second: TracedPoint, num_layers: int) -> dict[str, int]:
    """Each measured value at the full depth: ``v(L) = v(d1) + (L - d1) / period · (v(d2) - v(d1))`` with ``period
    = d2 - d1``, for copies from :func:`depths_to_trace`. Memory of a decoder stack is a sum over its layers
    (weights, gradients, optimizer states, saved activations and KV cache per layer, each phase's peak at the same
    place in the last period with the same live set before it), so each whole period of layers adds the same bytes;
    what is not per layer (embeddings, head, logits, masks) stays in ``v(d1)``."""
    period = second.depth - first.depth
    if period <= 0 or (num_layers - first.depth) % period:
        raise InputError("layers", num_layers, f"copies of {first.depth} and {second.depth} layers do not extrapolate "
                         "to the full depth by whole repeats of the layer pattern")
    repeats = (num_layers - first.depth) // period
    return {k: max(0, v + repeats * (second.values.get(k, 0) - v)) for k, v in first.values.items()}
