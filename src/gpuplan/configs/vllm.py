"""A ``vllm serve MODEL --flag value ...`` command line (or ``python -m vllm.entrypoints.openai.api_server
--model MODEL ...``) pasted into a text file, read as MODEL of ``gpuplan infer`` with ``--engine vllm``.

The flags mean what vLLM's ``EngineArgs`` (vllm/engine/arg_utils.py, vLLM 0.8-0.10) gives them: ``--max-model-len``
is the longest sequence admitted, ``--kv-cache-dtype fp8*`` stores the cache in one byte per element,
``--enable-expert-parallel`` shards the experts over TP x DP ranks (docs/serving/expert_parallel_deployment.md:
``EP_SIZE = TP_SIZE x DP_SIZE``). Flags with no effect on GPU memory are listed as ignored, with the reason.
"""

from __future__ import annotations

import re

from gpuplan.configs.launch import (
    Arg,
    int_value,
    is_launch,
    no_value,
    one_value,
    other_commands,
    real_value,
    split_args,
)
from gpuplan.configs.report import ConfigReport
from gpuplan.configs.shell import Script
from gpuplan.errors import InputError

SOURCE = "vLLM vllm/engine/arg_utils.py EngineArgs"
PROGRAM = re.compile(r"^((.*/)?vllm|vllm\.entrypoints\.openai\.api_server)$")
_SHORT = {"-tp": "--tensor-parallel-size", "-pp": "--pipeline-parallel-size", "-dp": "--data-parallel-size",
          "-q": "--quantization"}

_NO_MEM = "no GPU-memory effect"
_IGNORED = {
    **{f: "the API server's network and request handling: " + _NO_MEM for f in (
        "--host", "--port", "--api-key", "--served-model-name", "--uvicorn-log-level", "--disable-log-requests",
        "--disable-log-stats", "--enable-log-requests", "--api-server-count", "--headless", "--root-path",
        "--allowed-origins", "--ssl-keyfile", "--ssl-certfile", "--middleware", "--disable-uvicorn-access-log",
        "--data-parallel-address", "--data-parallel-rpc-port", "--data-parallel-start-rank",
        "--data-parallel-size-local", "--distributed-executor-backend", "--response-role")},
    **{f: "chat templates, tools and parsing: " + _NO_MEM for f in (
        "--chat-template", "--enable-auto-tool-choice", "--tool-call-parser", "--reasoning-parser",
        "--generation-config", "--max-logprobs", "--chat-template-content-format", "--guided-decoding-backend")},
    **{f: "where and how the weights are loaded: " + _NO_MEM for f in (
        "--tokenizer", "--tokenizer-mode", "--download-dir", "--load-format", "--revision", "--code-revision",
        "--tokenizer-revision", "--config-format", "--seed")},
    "--trust-remote-code": "gpuplan never runs remote code; the architecture comes from the preset or config.json",
    "--swap-space": "host memory for preempted sequences: no GPU memory",
    "--enable-prefix-caching": "prefix reuse inside the same KV pool: " + _NO_MEM,
    "--no-enable-prefix-caching": "prefix reuse inside the same KV pool: " + _NO_MEM,
    "--enable-chunked-prefill": "prefill in chunks of --max-num-batched-tokens (the profile run already uses it)",
    "--no-enable-chunked-prefill": "prefill scheduling: the profile run uses --max-num-batched-tokens",
    "--max-seq-len-to-capture": "CUDA-graph capture sizes: the graph pool is --cuda-graph-gib",
    "--enable-eplb": "expert load balancing: redundant experts (--eplb-config num_redundant_experts) are not "
                     "modelled, each adds its expert weights on every EP rank",
    "--eplb-config": "expert load balancing settings: redundant experts are not modelled",
    "--limit-mm-per-prompt": "multimodal inputs: gpuplan estimates the text model",
    "--cpu-offload-gb": "weights offloaded to the host are not modelled: the estimate keeps every weight on the GPU",
    "--disable-custom-all-reduce": "communication only",
}
_SWITCHES = frozenset({
    "--enforce-eager", "--enable-expert-parallel", "--trust-remote-code", "--enable-prefix-caching",
    "--no-enable-prefix-caching", "--enable-chunked-prefill", "--no-enable-chunked-prefill", "--disable-log-requests",
    "--disable-log-stats", "--enable-log-requests", "--enable-auto-tool-choice", "--headless", "--enable-eplb",
    "--disable-custom-all-reduce", "--disable-uvicorn-access-log",
})
_HANDLED = ("--model", "--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size",
            "--enable-expert-parallel", "--max-model-len", "--gpu-memory-utilization", "--kv-cache-dtype",
            "--quantization", "--dtype", "--max-num-seqs", "--max-num-batched-tokens", "--block-size",
            "--enforce-eager")
_KV = {"auto": "auto", "fp8": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "fp8_inc": "fp8", "bfloat16": "bf16",
       "float16": "fp16"}
_QUANT = {"awq": "awq", "awq_marlin": "awq", "gptq": "gptq", "gptq_marlin": "gptq", "fp8": "fp8",
          "bitsandbytes": "nf4", "modelopt_fp4": "nvfp4", "mxfp4": "mxfp4", "fbgemm_fp8": "fp8"}
_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}


def read(script: Script, name: str, report: ConfigReport) -> str:
    """Map a ``vllm serve`` command into ``report``; returns MODEL (a preset, Hugging Face id or path)."""
    cmds = [c for c in script.commands if is_launch(c, PROGRAM)]
    if len(cmds) != 1:
        raise InputError(name, None, "must hold exactly one `vllm serve MODEL ...` command" if not cmds else
                         f"holds {len(cmds)} vllm commands (lines {', '.join(str(c.line) for c in cmds)}): give one")
    cmd = cmds[0]
    at = next(i for i, w in enumerate(cmd.words) if PROGRAM.search(w.text))
    words = cmd.words[at + 1:]
    if cmd.words[at].text == "vllm":
        if not words or words[0].text != "serve":
            raise InputError(name, " ".join(w.text for w in cmd.words[at:at + 2]), "is not `vllm serve`")
        words = words[1:]
    lead, args = split_args(words, cmd.line, _SHORT)
    other_commands(script, cmd.line, report, "vllm serve")
    report.set("(file)", "engine", "vllm", "a vllm serve command: vLLM's memory semantics")
    seen: dict[str, Arg] = {}
    for arg in args:
        if arg.flag in seen:
            raise InputError(f"{name}: {arg.flag}", arg.text, "is given twice: give it once")
        if arg.flag in _SWITCHES:
            no_value(name, arg)
        if arg.flag not in _IGNORED and arg.flag not in _HANDLED:
            raise InputError(f"{name}: {arg.flag}", arg.text or None, f"is not a vllm serve argument gpuplan knows "
                             f"({SOURCE})", hint="remove it, or check its spelling")
        seen[arg.flag] = arg
    model = _model(name, lead, seen, report)
    _layout(name, seen, report)
    if "--max-model-len" in seen:
        report.set("--max-model-len", "context", _tokens(name, seen["--max-model-len"]),
                   "the longest sequence vLLM admits: each sequence is sized at it")
    for flag, option in (("--max-num-seqs", "max_num_seqs"), ("--max-num-batched-tokens", "max_num_batched_tokens"),
                         ("--block-size", "block_size")):
        if flag in seen:
            report.set(flag, option, int_value(name, seen[flag]))
    if "--gpu-memory-utilization" in seen:
        f = real_value(name, seen["--gpu-memory-utilization"])
        if not 0 < f <= 1:
            raise InputError(f"{name}: --gpu-memory-utilization", f, "must be in (0, 1]")
        report.set("--gpu-memory-utilization", "gpu_memory_utilization", f)
    if "--enforce-eager" in seen:
        report.set("--enforce-eager", "enforce_eager", True, "no CUDA graphs")
    _dtypes(name, seen, report)
    for flag in seen:
        if flag in _IGNORED:
            report.ignore(flag, _IGNORED[flag])
    return model


def _model(name: str, lead: list, seen: dict[str, Arg], report: ConfigReport) -> str:
    if "--model" in seen:
        if lead:
            raise InputError(f"{name}: --model", one_value(name, seen["--model"]), f"contradicts the positional "
                             f"MODEL {lead[0].text}: give one")
        model = one_value(name, seen["--model"])
        report.set("--model", "model", model)
        return model
    if len(lead) != 1:
        raise InputError(name, " ".join(w.text for w in lead) or None, "must name one MODEL after `vllm serve`")
    if lead[0].unresolved:
        raise InputError(f"{name}: MODEL", lead[0].text, f"uses the shell variable {', '.join(lead[0].unresolved)}, "
                         "which the file does not set", hint="write the model's name into the file")
    report.set("MODEL", "model", lead[0].text)
    return lead[0].text


def _tokens(name: str, arg: Arg) -> int:
    text = one_value(name, arg).lower()
    m = re.fullmatch(r"(\d+)([km]?)", text)
    if not m:
        raise InputError(f"{name}: {arg.flag}", text, "must be a whole number of tokens (e.g. 8192, 32k)")
    n = int(m.group(1)) * {"": 1, "k": 1000, "m": 1000000}[m.group(2)]
    if n < 1:
        raise InputError(f"{name}: {arg.flag}", text, "must be >= 1")
    return n


def _layout(name: str, seen: dict[str, Arg], report: ConfigReport) -> None:
    tp = int_value(name, seen["--tensor-parallel-size"]) if "--tensor-parallel-size" in seen else 1
    dp = int_value(name, seen["--data-parallel-size"]) if "--data-parallel-size" in seen else 1
    for flag, option, n in (("--tensor-parallel-size", "tp", tp), ("--data-parallel-size", "dp", dp)):
        if flag in seen:
            report.set(flag, option, n)
    if "--pipeline-parallel-size" in seen:
        report.set("--pipeline-parallel-size", "pp", int_value(name, seen["--pipeline-parallel-size"]))
    if "--enable-expert-parallel" in seen:
        report.set("--enable-expert-parallel", "ep", tp * dp, f"EP = TP {tp} x DP {dp}")


def _dtypes(name: str, seen: dict[str, Arg], report: ConfigReport) -> None:
    if "--kv-cache-dtype" in seen:
        kv = one_value(name, seen["--kv-cache-dtype"])
        if kv not in _KV:
            raise InputError(f"{name}: --kv-cache-dtype", kv, "must be one of " + ", ".join(_KV))
        report.set("--kv-cache-dtype", "kv_dtype", _KV[kv])
    if "--dtype" in seen:
        dt = one_value(name, seen["--dtype"])
        if dt == "auto":
            report.ignore("--dtype", "auto: the config's dtype (gpuplan's default)")
        elif dt in _DTYPE:
            report.set("--dtype", "dtype", _DTYPE[dt])
        else:
            raise InputError(f"{name}: --dtype", dt, "must be one of auto, " + ", ".join(_DTYPE))
    if "--quantization" in seen:
        q = one_value(name, seen["--quantization"])
        if q not in _QUANT:
            raise InputError(f"{name}: --quantization", q, "is a method gpuplan does not model (known: "
                             + ", ".join(_QUANT) + ")", hint="give --weights FORMAT on the command line")
        report.set("--quantization", "weights", _QUANT[q], "" if _QUANT[q] == q else f"vLLM's {q}")
