"""Request and response shapes for the OpenAPI schema, built from the CLI's options (see :mod:`.bridge`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from gpuplan.cli.bridge import MAX_SAFE_INT, Command, Option
from gpuplan.web.limits import MAX_MODEL_NAME_CHARS

COUNT_PATTERN = r"^\s*[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?\s*[kKmMbBgGtTpP]?\s*$"
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


def _field_type(opt: Option) -> Any:
    if opt.kind == "bool":
        return bool
    if opt.kind == "count":
        return Union[Annotated[int, Field(ge=1, le=opt.maximum)],
                     Annotated[str, Field(max_length=32, pattern=COUNT_PATTERN)]]
    if opt.kind == "int":
        return Annotated[int, Field(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
    if opt.kind == "float":
        return Annotated[float, Field(allow_inf_nan=False, ge=-1e300, le=1e300)]
    if opt.kind == "choice":
        return Literal[tuple(opt.choices)]  # type: ignore[misc]
    if opt.kind == "value":
        return Union[Annotated[float, Field(allow_inf_nan=False, ge=-1e300, le=1e300)],
                     Annotated[str, Field(max_length=200)]]
    if opt.kind == "append":
        return Union[Annotated[str, Field(max_length=MAX_STR_CHARS)],
                     Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=MAX_LIST_ITEMS)]]
    if opt.kind == "list":
        return Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=MAX_LIST_ITEMS)]
    return Annotated[str, Field(max_length=MAX_STR_CHARS)]


def _description(opt: Option) -> str:
    text = f"`{opt.flag}`" + (f": {opt.help}" if opt.help else "")
    if opt.default not in (None, False):
        text += f" (CLI default: {opt.default})"
    if opt.kind == "count":
        text += " Counts accept 7e9, 7B, 2T or 128k."
    return text


def request_model(command: Command) -> type[BaseModel]:
    """A pydantic model with one optional field per CLI option (absent = the CLI's default)."""
    fields: dict[str, Any] = {}
    if command.takes_model:
        fields["f_model"] = (Optional[Annotated[str, Field(max_length=MAX_MODEL_NAME_CHARS)]], Field(
            None, alias="model", description="a preset id or a Hugging Face id that a preset carries "
                                            "(see /api/v1/models); never a path or URL",
            examples=["llama-3.1-8b"]))
        fields["f_config"] = (Optional[dict[str, Any]], Field(
            None, alias="config", description="a pasted config.json object (at most 64 KiB), instead of 'model'"))
    for opt in command.options:
        fields["f_" + opt.dest] = (Optional[_field_type(opt)], Field(None, alias=opt.dest,
                                                                     description=_description(opt)))
    title = command.name.capitalize() + "Request"
    return create_model(title, __config__=ConfigDict(extra="forbid", populate_by_name=True, title=title),
                        **fields)
