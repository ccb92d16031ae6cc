"""The library releases whose internals gpuplan's activation rules describe, and the rules that depend on them.

What a training step keeps alive is decided by transformers' modelling code and PyTorch's kernels, so a release
can move a number without any change of the model. Each such rule is keyed here by the first release it holds
for; ``--transformers-version`` picks the release an estimate describes (default: the newest traced one), and
``gpuplan verify`` passes the installed release so a trace is always compared with the rules of that release.
``benchmarks/drift.py`` re-traces the rule probes under the newest releases and prints which rules moved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpuplan.errors import InputError

# Releases the CPU traces were taken with (constraints.txt pins the one the accuracy tables use).
TRACED_TRANSFORMERS = ((5, 23), (5, 25))
TRACED_TORCH = "2.13"
DEFAULT_TRANSFORMERS = "5.25"

Version = tuple[int, ...]

# X[.Y[.Z]], then PEP 440 pre/post/dev parts and a local label: 5.25, 5.25.0, 5.26.0.dev0, 2.13.0+cpu
_VERSION_RE = re.compile(r"^\s*v?(\d{1,4})(?:\.(\d{1,4}))?(?:\.(\d{1,4}))?(?:\.?(?:dev|rc|a|b|post)\d*)*"
                         r"(?:\+[0-9A-Za-z.]+)?\s*$")


def parse_version(field: str, text: str, parts: int = 2, example: str = "5.25 or 5.25.0") -> Version:
    """``"5.25.0"``, ``"5.25"``, ``"5.26.0.dev0"`` -> (5, 25); major and minor are what the transformers rules
    key on (``parts`` 3 keeps the patch release: bitsandbytes changed behaviour in 0.43.2)."""
    m = _VERSION_RE.match(str(text))
    if not m:
        raise InputError(field, text, f"must be a release number such as {example}")
    return tuple(int(m.group(i) or 0) for i in range(1, parts + 1))


@dataclass(frozen=True)
class VersionRule:
    """A behaviour of one library that holds from ``since`` (inclusive) to ``until`` (exclusive)."""

    name: str
    library: str
    since: Version | None
    until: Version | None
    what: str
    source: str

    def holds(self, version: Version) -> bool:
        return (self.since is None or version >= self.since) and (self.until is None or version < self.until)


FALCON_SDPA_MATH = VersionRule(
    "falcon-mqa-sdpa-math", "transformers", None, (5, 25),
    "Falcon multi-query attention calls SDPA itself with one K/V head, no enable_gqa and an explicit mask: PyTorch "
    "runs the math kernel and keeps fp32 [batch, heads, seq, seq] probabilities per layer",
    "transformers <= 5.24 models/falcon/modeling_falcon.py FalconAttention.forward (torch.nn.functional."
    "scaled_dot_product_attention); torch sdp_utils.cpp check_batch_size_and_num_heads_dense")
FALCON_SHARED_SDPA = VersionRule(
    "falcon-mqa-shared-sdpa", "transformers", (5, 25), None,
    "Falcon multi-query attention goes through the shared sdpa_attention_forward: with the mask Falcon always "
    "materialises, K/V are repeated to every query head (a stride-0 view of the one K/V head) and the "
    "memory-efficient kernel keeps the [batch, 1, seq, seq] mask per layer",
    "transformers 5.25 models/falcon/modeling_falcon.py FalconAttention.forward (ALL_ATTENTION_FUNCTIONS), "
    "integrations/sdpa_attention.py use_gqa_in_sdpa / repeat_kv")

# The causal LM loss before transformers 4.49: the shifted fp32 logits copied (``.contiguous()``) beside the fp32 logits
# and the log-softmax output. Forward high-water marks traced on the CPU with each release's own LlamaForCausalLM
# (benchmarks/trace_loss_releases.py): 12·T·V bytes in bf16 and fp32 up to 4.45, (2 + 12)·T·V in bf16 and 12·T·V in
# fp32 in 4.46-4.48, against (e + 8)·T·V (bf16) and 8·T·V (fp32) from 4.49; the backward peak is 12·T·V in all.
LOSS_IN_MODEL_FORWARD = VersionRule(
    "causal-lm-loss-in-forward", "transformers", None, (4, 46),
    "the model's forward upcasts its logits in place of the half ones (logits = logits.float()) and copies the "
    "shifted fp32 logits (shift_logits = logits[..., :-1, :].contiguous()) before CrossEntropyLoss: 12 bytes per "
    "token and vocabulary entry at the loss forward",
    "transformers 4.45.2 models/llama/modeling_llama.py LlamaForCausalLM.forward (the loss in the model's forward "
    "until loss/loss_utils.py ForCausalLMLoss in 4.46)")
LOSS_SHIFT_COPY = VersionRule(
    "causal-lm-loss-shift-copy", "transformers", (4, 46), (4, 49),
    "ForCausalLMLoss upcasts the logits the model still holds and copies the shifted fp32 logits "
    "(shift_logits = logits[..., :-1, :].contiguous()): the half logits, the fp32 logits, the copy and the "
    "log-softmax output at the loss forward",
    "transformers 4.48.3 loss/loss_utils.py ForCausalLMLoss; 4.49.0 pads the labels instead (PR #35646 'Optimize "
    "ForCausalLMLoss by removing unnecessary contiguous() call to reduce memory overhead')")

# The rules benchmarks/drift.py re-traces under the newest releases (one probe each, gpuplan.verify.probes); the loss
# rules above describe releases before the traced ones and end before any newer release.
RULES = (FALCON_SDPA_MATH, FALCON_SHARED_SDPA)

# bitsandbytes: the release of a QLoRA run's 4-bit matmuls (None: the newest behaviour)
BNB_MATMUL4BIT_KEEPS_INPUT = VersionRule(
    "bnb-matmul4bit-keeps-input", "bitsandbytes", None, (0, 43, 2),
    "MatMul4Bit keeps its input A for backward (ctx.tensors = (A, B)) whenever an input needs a gradient, although "
    "the gradient of A needs only the dequantized weight: every quantized linear's input stays alive until "
    "backward, even where the frozen weight needs none",
    "bitsandbytes autograd/_functions.py MatMul4Bit.forward before commit 9e75374 'fix QLoRA mem bug: delete "
    "useless buffered activation' (#1270, July 2024), first released in 0.43.2")


# PyTorch: the release a run's autograd kernels come from (None: the traced one, TRACED_TORCH)
TORCH_SOFTMAX_KEEPS_INPUT = VersionRule(
    "softmax-keeps-input", "torch", None, (1, 11),
    "autograd keeps softmax's input beside its output for backward (the backward formula named the input, for the "
    "double backward's sake, though the kernel reads only the output): eager attention keeps its pre-softmax "
    "scores, batch x heads x seq x seq in the dtype the softmax reads, in every layer",
    "pytorch/pytorch issue #64000 (Aug 2021, 'Softmax/logsoftmax use more memory for backward than needed'); "
    "fixed by passing the input's dtype instead (derivatives.yaml: _softmax_backward_data(grad, result, dim, "
    "self.scalar_type())), first released in PyTorch 1.11 (NVIDIA/apex issue #1422: the 4th argument became "
    "'input_dtype')")


def torch_release(text: str) -> Version:
    return parse_version("--torch-version", text, example="1.10 or 2.4.1")


def bitsandbytes_release(text: str) -> Version:
    return parse_version("--bitsandbytes-version", text, parts=3)


def transformers_release(text: str | None) -> Version:
    """The release an estimate describes: ``text`` or the default."""
    return parse_version("--transformers-version", text or DEFAULT_TRANSFORMERS)


def version_text(version: Version) -> str:
    return ".".join(str(x) for x in version)


def version_warnings(version: Version) -> list[str]:
    """A release outside the traced range is used with the nearest traced release's rules, and said so."""
    low, high = TRACED_TRANSFORMERS[0], TRACED_TRANSFORMERS[-1]
    if version > high:
        return [f"transformers {version_text(version)} is newer than the newest release gpuplan's activation rules "
                f"were traced with ({version_text(high)}); the rules of {version_text(high)} are used "
                "(benchmarks/drift.py re-traces them under a new release)"]
    if version < low:
        return [f"transformers {version_text(version)} is older than the oldest release gpuplan's activation "
                f"rules were traced with ({version_text(low)}); the rules of {version_text(low)} are used for "
                "everything not keyed to a release"]
    return []


def installed_version(package: str) -> str | None:
    """The installed release of ``package`` from its metadata (no import), or None."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
