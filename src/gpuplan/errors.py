"""Typed input errors: every message names the field, the value and the rule."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input. The CLI turns it into exit code 2; the web API into HTTP 422."""

    def __init__(self, field: str, value: object, rule: str, hint: str | None = None) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        self.hint = hint
        message = f"{field}={_short_repr(value)}: {rule}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class UnknownFamily(InputError):
    """A config.json whose ``model_type`` gpuplan has no rules for. It carries the config dict, its name and source
    so that a command can take the traced path (``gpuplan.verify.generic``) instead; elsewhere it is the InputError
    it says."""

    def __init__(self, field: str, value: object, rule: str, *, config: dict, name: str, source: str) -> None:
        super().__init__(field, value, rule, hint="gpuplan params, train and infer trace other architectures "
                         "transformers knows, with the [verify] extra")
        self.config, self.name, self.source = config, name, source


MAX_VALUE_CHARS = 200


def _short_repr(value: object) -> str:
    """The value as typed, cut to MAX_VALUE_CHARS: a message must stay one readable line whatever was passed."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # deeply nested data, or an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 3] + "..."


def require_positive_int(field: str, value: object) -> int:
    """Return ``value`` as an int if it is an integer >= 1, else raise InputError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(field, value, "must be an integer >= 1")
    return value


def require_nonnegative_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(field, value, "must be an integer >= 0")
    return value


class HubUnavailable(InputError):
    """MODEL names a Hugging Face repository whose config.json cannot be fetched now, for a reason that is not
    the id's: offline, the ``[hub]`` extra missing, the hub unreachable, slow or limiting requests. The CLI exits
    2 as for any input error; the web API answers 503 (the server cannot do it now)."""
