"""A model gpuplan has no rules for, described by what PyTorch showed: its tensors, built from the config.json by
transformers on the meta device, and its memory, traced on reduced-depth copies and extrapolated per layer kind.

The tracing itself lives in :mod:`gpuplan.verify.generic` (PyTorch and transformers, extra ``[verify]``); this
module is the typed description it hands back and the arithmetic on it, both torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from gpuplan.errors import InputError

# The extra that holds PyTorch and transformers (pyproject.toml ``[project.optional-dependencies] verify``).
VERIFY_EXTRA = "pip install 'gpuplan[verify]'"


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

    ``layer_kinds`` names each decoder layer's kind ("A", "B", ... in order of first appearance): layers of one
    kind hold the same parameter names and shapes. ``architecture`` is the transformers class that was built."""

    family: str
    name: str
    architecture: str
    tensors: tuple[TracedTensor, ...]
    layer_kinds: tuple[str, ...]
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
        return {k: kinds.count(k) for k in sorted(set(self.layer_kinds))}


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


def depths_to_trace(layer_kinds: tuple[str, ...], min_depth: int = 2) -> tuple[int, ...]:
    """The smallest depths (from ``min_depth``) whose layer-kind counts determine a linear model ``bytes(d) =
    base + Σ_k n_k(d) · per_layer_k``: a depth is kept when its row ``[1, n_1(d), ...]`` is independent of the rows
    kept so far, until there are as many rows as unknowns. The first layers of a reduced copy are the first layers
    of the full model (the copy keeps the config's layer pattern), so ``n_k(d)`` counts kinds among them.
    ``min_depth`` 2 keeps a one-layer copy, whose first layer is also its last, out of the fit."""
    kinds = sorted(set(layer_kinds))
    rows: list[list[Fraction]] = []
    depths: list[int] = []
    start = min(min_depth, len(layer_kinds))
    for d in range(start, len(layer_kinds) + 1):
        row = [Fraction(1)] + [Fraction(layer_kinds[:d].count(k)) for k in kinds]
        if _rank(rows + [row]) > len(rows):
            rows.append(row)
            depths.append(d)
        if len(rows) == len(kinds) + 1:
            break
    if len(rows) < len(kinds) + 1:  # the pattern never separates base and kinds (e.g. a one-layer model)
        return tuple(sorted(set(depths) | {len(layer_kinds)}))
    return tuple(depths)


def extrapolate(points: list[TracedPoint], target_counts: dict[str, int]) -> dict[str, int]:
    """Each measured value at the full depth: solve ``value(d) = base + Σ_k n_k(d) · per_layer_k`` exactly (rational
    Gaussian elimination) on the traced points, then evaluate it at ``target_counts``. Memory of a decoder stack is
    a sum over its layers (weights, gradients, optimizer states and saved activations per layer, each layer's
    backward running with the same live set around it), so each kind's per-layer bytes are constant; what is not
    per layer (embeddings, head, logits) is the base. With fewer points than unknowns (a model whose every depth
    holds its kinds in one ratio), the traced point at the full depth is returned as is."""
    kinds = sorted(target_counts)
    by_depth = {p.depth: p for p in points}
    full_depth = sum(target_counts.values())
    if full_depth in by_depth:
        return dict(by_depth[full_depth].values)
    rows = [[Fraction(1)] + [Fraction(p.kind_counts.get(k, 0)) for k in kinds] for p in points]
    if len(rows) != len(kinds) + 1 or _rank(rows) != len(rows):
        raise InputError("layers", full_depth, "the reduced-depth traces do not determine each layer kind's bytes")
    target = [Fraction(1)] + [Fraction(target_counts[k]) for k in kinds]
    # weights w with target = Σ_i w_i · row_i, so value(target) = Σ_i w_i · value_i: solve rowsᵀ · w = target
    weights = _solve([[rows[i][j] for i in range(len(rows))] for j in range(len(rows))], target)
    out: dict[str, int] = {}
    for key in points[0].values:
        value = sum((w * p.values.get(key, 0) for w, p in zip(weights, points)), Fraction(0))
        out[key] = max(0, round(value))
    return out


def _rank(rows: list[list[Fraction]]) -> int:
    m = [list(r) for r in rows]
    rank, cols = 0, len(m[0]) if m else 0
    for c in range(cols):
        pivot = next((r for r in range(rank, len(m)) if m[r][c] != 0), None)
        if pivot is None:
            continue
        m[rank], m[pivot] = m[pivot], m[rank]
        for r in range(len(m)):
            if r != rank and m[r][c] != 0:
                f = m[r][c] / m[rank][c]
                m[r] = [a - f * b for a, b in zip(m[r], m[rank])]
        rank += 1
    return rank


def _solve(a: list[list[Fraction]], b: list[Fraction]) -> list[Fraction]:
    """x with a · x = b for a square, non-singular ``a`` (Gauss-Jordan on exact fractions)."""
    n = len(a)
    m = [list(row) + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        pivot = next(r for r in range(c, n) if m[r][c] != 0)
        m[c], m[pivot] = m[pivot], m[c]
        for r in range(n):
            if r != c and m[r][c] != 0:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c])]
    return [m[i][n] / m[i][i] for i in range(n)]
