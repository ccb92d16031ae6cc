"""Request and response shapes for the OpenAPI schema, built from the declared options (:mod:`gpuplan.options`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from gpuplan.commands.registry import Command
from gpuplan.limits import MAX_SAFE_INT
from gpuplan.options import Option
from gpuplan.web.limits import MAX_MODEL_NAME_CHARS, MAX_STACK_CONFIG_CHARS

COUNT_PATTERN = r"^\s*[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?\s*[kKmMbBgGtTpP]?\s*$"
# A finite decimal number as text (the page sends what was typed); never 'nan' or 'inf'.
NUMBER_PATTERN = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
# Numbers without a stated range still stay far from overflow (JSON numbers beyond 1.8e308 decode to infinity).
FLOAT_LIMIT = 1e300
# The ways of naming a model (the CLI refuses a request with none). train and time also take a bare parameter count.
MODEL_WAYS: tuple[tuple[str, ...], ...] = (("model",), ("config",), ("stack_config",), ("layers", "hidden", "heads"))
# the commands that read a stack's launch config (gpuplan.configs.MODEL_FORMATS and --from)
STACK_CONFIG_COMMANDS = frozenset({"train", "plan", "infer"})
PARAMS_ONLY_COMMANDS = frozenset({"train", "time"})
MAX_STR_CHARS = 1000
MAX_LIST_ITEMS = 64


class ErrorBody(BaseModel):
    """Every error: the field, the value that was refused and the rule it broke."""

    field: str = Field(description="the request field (option name without dashes) or 'body'")
    value: Any = Field(None, description="the refused value (shortened when long)")
    rule: str = Field(description="what is allowed")
    hint: Optional[str] = None
    message: str = Field(description="field=value: rule (hint), as the CLI prints it")
    errors: list[dict[str, Any]] = Field(default_factory=list, description="all problems when there are several")


def _finite(bounds: dict[str, float]) -> Any:
    """A finite float within ``bounds`` (gt/ge/lt/le), and within +-FLOAT_LIMIT where a side is open."""
    limits = dict(bounds)
    if "gt" not in limits and "ge" not in limits:
        limits["ge"] = -FLOAT_LIMIT
    if "lt" not in limits and "le" not in limits:
        limits["le"] = FLOAT_LIMIT
    return Annotated[float, Field(allow_inf_nan=False, **limits)]


def _field_type(opt: Option) -> Any:
    kind = opt.kind
    if kind == "flag":
        return bool
    if kind == "count":
        return Union[Annotated[int, Field(ge=1, le=opt.maximum)],
                     Annotated[str, Field(max_length=32, pattern=COUNT_PATTERN)]]
    if kind == "int":
        return Annotated[int, Field(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
    if kind == "float":
        return _finite(dict(opt.bounds))
    if kind == "choice":
        return Literal[tuple(opt.choices)]  # type: ignore[misc]
    if kind == "real":  # a real number with a range: as a number, or as text of one
        return Union[_finite(dict(opt.bounds)), Annotated[str, Field(max_length=64, pattern=NUMBER_PATTERN)]]
    if kind in ("names", "int_list", "values"):  # comma lists, as text (numbers are read as their text)
        return Union[_finite({}), Annotated[str, Field(max_length=200)]]
    if kind == "config":  # the web API never reads a path a request names: the file's content, pasted
        return dict[str, Any]
    if kind == "append":
        return Union[Annotated[str, Field(max_length=MAX_STR_CHARS)],
                     Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=MAX_LIST_ITEMS)]]
    return Annotated[str, Field(max_length=MAX_STR_CHARS)]


def _description(opt: Option) -> str:
    text = f"`{opt.label}`" + (f": {opt.help}" if opt.help else "")
    if opt.default not in (None, False):
        text += f" (CLI default: {opt.default})"
    if opt.kind == "count":
        text += " Counts accept 7e9, 7B, 2T or 128k."
    return text


def _model_ways(command: Command) -> dict[str, Any]:
    """JSON Schema for 'a model must be named', one way or another (an empty body is refused)."""
    ways = [list(w) for w in MODEL_WAYS
            if all(k in ("model", "config") or (k == "stack_config" and command.name in STACK_CONFIG_COMMANDS)
                   or k in command.by_dest for k in w)]
    if command.name in PARAMS_ONLY_COMMANDS and "params" in command.by_dest:
        ways.append(["params"])
    return {"anyOf": [{"required": w} for w in ways]}


def request_model(command: Command) -> type[BaseModel]:
    """A pydantic model with one field per offered option: required where the option is, else optional (absent =
    its default). The schema also says that a model must be named; the command checks that."""
    fields: dict[str, Any] = {}
    if command.takes_model:
        fields["f_model"] = (Optional[Annotated[str, Field(max_length=MAX_MODEL_NAME_CHARS)]], Field(
            None, alias="model", description="a preset id or a Hugging Face id that a preset carries "
                                            "(see /api/v1/models); never a path or URL",
            examples=["llama-3.1-8b"]))
        fields["f_config"] = (Optional[dict[str, Any]], Field(
            None, alias="config", description="a pasted config.json object (at most 64 KiB), instead of 'model'"))
    if command.name in STACK_CONFIG_COMMANDS:
        fields["f_stack_config"] = (Optional[Annotated[str, Field(max_length=MAX_STACK_CONFIG_CHARS)]], Field(
            None, alias="stack_config",
            description="a pasted launch config, as `gpuplan " + command.name + " FILE` reads it: a torchtitan TOML, "
                        "a torchtune, axolotl, LLaMA-Factory or TRL / Trainer YAML recipe, a Megatron-LM argument "
                        "list, a `vllm serve` line (MODEL), or a DeepSpeed JSON / accelerate YAML beside 'model'"))
    for opt in command.options:
        if opt.required:
            fields["f_" + opt.name] = (_field_type(opt), Field(alias=opt.name, description=_description(opt)))
        else:
            fields["f_" + opt.name] = (Optional[_field_type(opt)], Field(None, alias=opt.name,
                                                                         description=_description(opt)))
    title = command.name.capitalize() + "Request"
    extra = _model_ways(command) if command.takes_model else None
    return create_model(title, __config__=ConfigDict(extra="forbid", populate_by_name=True, title=title,
                                                     json_schema_extra=extra), **fields)
