"""The check that a line printed under ``--lang zh`` holds no English prose (used by tests/test_zh_everywhere.py).

A line passes when, after taking out what is a name and not prose, no run of three or more English words remains;
a line without Chinese must moreover hold no run of two English words and must not begin with one (an English label
such as ``ignored:`` or ``formula:``). Taken out, by rule:

- a source citation: the text after "来源：" up to the closing full-width parenthesis or the end of the line (file
  paths, papers and datasheets are quoted in their own language);
- a literal quoted in single quotes (another program's own message, such as vLLM's start-up error);
- the inputs of an explained term: the text after "输入：" (``name=value`` pairs);
- a command line to run (a line that starts with ``gpuplan``) and every ``--flag``;
- a config file's key, before `` -> `` in the account of what a stack's config file set;
- a token with a digit, ``_``, ``.``, ``/``, ``=``, ``*`` or ``@`` in it (ids, numbers with units, file names, code);
- a single letter other than "a" or "I" (a formula's symbol: ``b``, ``s``, ``x`` for times);
- a word with a capital letter after its first (acronyms and product names: GiB, NVIDIA, LoRA, DeepSpeed);
- the option names and values gpuplan itself accepts (names and choices of every option, as scenario files spell
  them; model ids, GPU ids and the product names of the GPU and server catalogs) and
  :data:`PROPER_NAMES` (proper names of people, products and formats written in lowercase or capitalized).
"""

from __future__ import annotations

import re
from functools import cache

CJK = re.compile(r"[\u3400-\u9fff]")
CITATION = re.compile(r"来源：.*?(?=）|$)")
INPUTS = re.compile(r"输入：.*$")
FLAG = re.compile(r"--[\w-]+")
SPLIT = re.compile(r"[\s,;:()\[\]{}\"'，；：、（）。<>|+]+")
WORD = re.compile(r"[A-Za-z][a-z]*(?:-[A-Za-z][a-z]*)*")
# Capitalized or lowercase names that are not English prose (products, people, formats, kernels, libraries).
PROPER_NAMES = frozenset("""
    adamw adam sgd lion adafactor foreach fused sdpa flash eager torch pytorch megatron transformers accelerate
    hugging face nvidia geforce tesla instinct ascend huawei amd infinity fabric blackwell hopper ampere nvlink pcie
    logits softmax rope rotary dao shah touvron korthikanti mosaicml llama mixtral mistral qwen deepseek gemma phi
    tok torchtitan torchtune axolotl unsloth litgpt safetensors bitsandbytes triton liger xformers vllm sglang
    et al
""".split())


@cache
def known_names() -> frozenset[str]:
    """Every option value, model id and GPU id gpuplan accepts, lowercased."""
    from gpuplan.hardware.catalog import load_catalog
    from gpuplan.model.presets import load_presets
    from gpuplan.options import COMMANDS, command_options

    names = set(PROPER_NAMES)
    for command in COMMANDS:
        for opt in command_options(command).options:
            names.update(str(c).lower() for c in opt.choices or ())
            names.add(opt.name.replace("_", "-"))
    for p in load_presets().values():
        names.update(w.lower() for w in (p.id, p.family, *p.aliases))
    names.update(i.lower() for i in load_catalog())
    return frozenset(names)


@cache
def product_names() -> tuple[str, ...]:
    """The catalog's GPU and server names (``NVIDIA GB200 (one Blackwell GPU of a GB200 superchip)``), longest
    first."""
    from gpuplan.hardware.catalog import load_catalog

    from gpuplan.hardware.systems import load_systems

    names = [g.name for g in load_catalog().values()] + [sy.name for sy in load_systems().values()]
    return tuple(sorted(names, key=len, reverse=True))


def _is_name(token: str) -> bool:
    if not token or CJK.search(token) or re.search(r"[\d_./=*@]", token):
        return True
    if len(token) == 1 and token not in "aAI":
        return True  # a formula's symbol (b, s, x as the multiplication sign)
    if token.lower() in known_names():
        return True
    if not WORD.fullmatch(token):
        return True  # symbols, formulas
    return any(ch.isupper() for ch in token[1:])  # acronyms, CamelCase product names


def prose_runs(line: str) -> list[str]:
    """The English prose left in ``line`` after the names are taken out: runs of three or more words (two or more,
    or a leading word, when the line has no Chinese)."""
    if line.strip().startswith("gpuplan "):
        return []
    text = INPUTS.sub("", CITATION.sub("", line))
    text = re.sub(r"(?<!\w)'[^']*'(?!\w)", " ", text)  # quotes, not apostrophes
    text = text.split(" -> ", 1)[1] if " -> " in text else text
    text = FLAG.sub(" ", text)
    for name in product_names():
        text = text.replace(name, " ")
    chinese = bool(CJK.search(text))
    longest = 3 if chinese else 2
    tokens = [tok for tok in SPLIT.split(text) if tok]
    if not chinese and tokens and not _is_name(tokens[0]):
        return [tokens[0]]
    runs, run = [], []
    for token in tokens:
        if not token:
            continue
        if _is_name(token):
            if len(run) >= longest:
                runs.append(" ".join(run))
            run = []
        else:
            run.append(token)
    if len(run) >= longest:
        runs.append(" ".join(run))
    return runs


def english_lines(text: str) -> list[str]:
    """The lines of ``text`` with English prose left in them."""
    return [line for line in text.splitlines() if prose_runs(line)]
