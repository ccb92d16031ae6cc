"""One option of a command, declared once: its name, type, range, choices, default, help and command-line spelling.

The command line, the web API and the Python API all read values through :meth:`Option.parse` (text as typed) and
:meth:`Option.coerce` (a Python or JSON value), so they accept and refuse the same things. Kinds:

- ``count``: a whole number from 1 to the option's bound in :mod:`gpuplan.limits`, also written 7B or 128k;
- ``real``: a finite number within ``bounds`` (JSON Schema's words: gt, ge, lt, le), times ``scale``;
- ``int``, ``float``: a plain number (``choices`` may restrict an int);
- ``choice``: one of ``choices`` (text);
- ``text``: free text; ``names``: a comma list ``A,B`` read as a tuple of names;
- ``int_list``: a comma list of whole numbers from ``least`` to the bound; ``values``: a comma list of counts;
- ``flag``: on or off; ``append``: a repeatable option (a list of texts);
- ``positional``: an argument without a flag (``nargs`` '?' or '+');
- ``config``: a stack's config file: a path, or (Python and web APIs) its parsed content as a mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from gpuplan.errors import InputError
from gpuplan.limits import MAX_SAFE_INT, count_bound
from gpuplan.options.labels import HELP, UNITS, label_of
from gpuplan.units import parse_count


class _Absent:
    """The default of an option that is left out of the values when not given (sweep passes on only what is set)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()

_OPS = (("gt", ">", float.__gt__), ("ge", ">=", float.__ge__), ("lt", "<", float.__lt__), ("le", "<=", float.__le__))
COUNT_API_RULE = "must be a count between 1 and {bound:,}"


@dataclass(frozen=True)
class Option:
    name: str  # the value's key (argparse's dest; the API's field)
    kind: str
    flag: str | None = None  # '--batch'; None for a positional
    default: Any = None
    help: str = ""
    help_zh: str = ""  # the page's help in Chinese (the command line's --help stays English)
    group: str | None = None  # the section of --help
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    required: bool = False
    bounds: tuple[tuple[str, float], ...] = ()  # real: (('gt', 0), ('le', 1))
    scale: float = 1.0  # real: the unit typed (MiB) to the unit stored (bytes)
    as_int: bool = False  # real: stored as a whole number (bytes)
    least: int = 1  # int_list: the smallest item (0 for --zero)
    nargs: str | None = None  # positional: '?' or '+'
    api: bool = True  # offered by the web and Python APIs (not output plumbing or files)
    extra_flags: tuple[str, ...] = dc_field(default=())  # more spellings of the flag
    title: str = ""  # the form's label (else gpuplan.options.labels, else derived from the name)
    title_zh: str = ""
    suggest: tuple[str, ...] = ()  # text: the values a form offers in a list (others may still be typed)

    @property
    def flags(self) -> tuple[str, ...]:
        return ((self.flag,) if self.flag else ()) + self.extra_flags

    @property
    def label(self) -> str:
        """How messages name the option: its flag, or its name for a positional."""
        return self.flag or self.name

    @property
    def maximum(self) -> int:
        return count_bound(self.name)

    @property
    def py_type(self) -> type:
        return {"count": int, "int": int, "real": int if self.as_int else float, "float": float, "flag": bool,
                "names": tuple, "int_list": tuple, "values": list, "append": list}.get(
            self.kind, int if self.choices and isinstance(self.choices[0], int) else str)

    # --- text as typed on the command line (and in scenario files) ---------------------------------------------

    def parse(self, text: str) -> Any:
        """The value of ``text`` as the command line reads it; ValueError (InputError) when refused. Choices are
        checked by :meth:`check_choice` (argparse words that error itself)."""
        kind = self.kind
        if kind == "count":
            value = parse_count(text, self.label, self.maximum)
            if value < 1:
                raise InputError(self.label, text, "must be >= 1")
            return value
        if kind == "real":
            return self._real(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "names":
            return tuple(x.strip() for x in str(text).split(",") if x.strip())
        if kind == "int_list":
            return self._int_list(text)
        if kind == "values":
            return self._values(text)
        if kind == "choice" and self.choices and isinstance(self.choices[0], int):
            return int(text)
        return text

    def check_choice(self, value: Any) -> None:
        if self.choices is not None and value not in self.choices:
            raise InputError(self.label, value, "must be one of " + ", ".join(str(c) for c in self.choices))

    def _real(self, text: Any) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise InputError(self.label, text, "must be a number") from None
        ok = math.isfinite(value) and all(cmp(value, float(b)) for key, _, cmp in _OPS
                                          for name, b in self.bounds if name == key)
        if not ok:
            raise InputError(self.label, text, "must be " + (self.range_text() or "finite"))
        return int(value * self.scale) if self.as_int else value * self.scale

    def range_text(self) -> str:
        """'> 0 and <= 1' for a real number's bounds."""
        return " and ".join(f"{op} {b:g}" for key, op, _ in _OPS for name, b in self.bounds if name == key)

    def _int_list(self, text: str) -> tuple[int, ...]:
        bound = self.maximum
        try:
            values = tuple(int(v) for v in str(text).split(",") if v.strip())
        except ValueError:
            raise InputError(self.label, text, "must be whole numbers, comma-separated") from None
        if not values or any(not self.least <= v <= bound for v in values):
            raise InputError(self.label, text, f"must be whole numbers from {self.least} to {bound:,}, "
                             "comma-separated")
        return values

    def _values(self, text: str) -> list[int]:
        out = []
        for item in str(text).split(","):
            if not item.strip():
                continue
            value = parse_count(item.strip(), self.label)
            if value < 1:
                raise InputError(self.label, text, "every value must be >= 1")
            out.append(value)
        if not out:
            raise InputError(self.label, text, "give values such as 1,2,4,8")
        return out

    # --- values from JSON or Python ------------------------------------------------------------------------------

    def coerce(self, value: Any) -> Any:
        """A JSON or Python value (a number, a flag, a list, or the text the command line takes) as the command
        reads it; InputError naming the option (by name), the value and the rule."""
        try:
            return self._coerce(value)
        except InputError as exc:
            if exc.field == self.name:
                raise
            raise InputError(self.name, value, exc.rule, exc.hint) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(self.name, value, self._rule_for(exc)) from None

    def _coerce(self, value: Any) -> Any:
        kind = self.kind
        if kind == "config":
            if isinstance(value, dict) or isinstance(value, str) and value:
                return value
            raise InputError(self.name, value, "must be a file path or a config object")
        if kind == "flag":
            if not isinstance(value, bool):
                raise InputError(self.name, value, "must be True or False")
            return value
        if isinstance(value, bool):
            raise InputError(self.name, value, "is not a flag: give a value, not true/false")
        if kind == "count":
            try:
                n = parse_count(value, self.name)
            except OverflowError:  # '1e999': float('inf') reaches int()
                raise InputError(self.name, value, "must be a finite count") from None
            if not 1 <= n <= self.maximum:
                raise InputError(self.name, value, COUNT_API_RULE.format(bound=self.maximum))
            return n
        if kind == "real" and isinstance(value, (int, float)):
            return self._real(value)
        if kind == "int" and isinstance(value, int):
            if abs(value) > MAX_SAFE_INT:
                raise InputError(self.name, value, f"must be between {-MAX_SAFE_INT} and {MAX_SAFE_INT}")
            return value
        if kind == "float" and isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise InputError(self.name, value, "must be a finite number")
            return float(value)
        if kind in ("names", "append", "int_list", "values") and isinstance(value, (list, tuple)):
            if kind == "append":
                return [self._item(v) for v in value]
            if kind == "names":
                return tuple(self._item(v).strip() for v in value if self._item(v).strip())
            return self.parse(",".join(self._item(v) for v in value))
        if kind == "append":
            return [self._item(value)]
        if isinstance(value, (list, tuple, dict)):
            raise InputError(self.name, value, "must be a single value")
        if kind == "choice" and value in (self.choices or ()):
            return value
        out = self.parse(value if isinstance(value, str) else str(value))
        self.check_choice(out)
        return out

    def _item(self, value: Any) -> str:
        if isinstance(value, (list, tuple, dict, bool)):
            raise InputError(self.name, value, "a list here holds plain values only")
        return value if isinstance(value, str) else str(value)

    def _rule_for(self, exc: Exception) -> str:
        if self.kind in ("int", "choice"):
            return "must be an integer"
        if self.kind == "float":
            return "must be a number"
        return str(exc) or "is not a valid value"

    def as_dict(self) -> dict[str, Any]:
        """The option as the web page and scripts see it (``GET /api/v1/options``): a form's label in English and
        Chinese, the help (a form's own where none is declared), the unit of the typed number."""
        label, label_zh = label_of(self.name)
        help_en, help_zh = self.help, self.help_zh
        if not help_en and self.name in HELP:
            help_en, help_zh = HELP[self.name]
        out = {"name": self.name, "flag": self.flag or self.name, "kind": self.api_kind, "default": _jsonable(
            None if self.default is ABSENT else self.default), "help": help_en, "group": self.group or "",
               "required": self.required, "label": self.title or label, "label_zh": self.title_zh or label_zh}
        if help_zh:
            out["help_zh"] = help_zh
        if self.group:
            from gpuplan.i18n import has, t

            out["group_zh"] = t("group." + self.group, "zh") if has("group." + self.group) else self.group
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.suggest:
            out["suggest"] = list(self.suggest)
        if self.kind in ("count", "int"):
            out["maximum"] = self.maximum
        if self.bounds:
            out["bounds"] = dict(self.bounds)
        if self.unit:
            out["unit"] = self.unit
        return out

    @property
    def unit(self) -> str | None:
        """The unit of the number a form's user types: MiB (metavar MIB), GiB (a name ending in _gib), fraction,
        or a unit of :data:`gpuplan.options.labels.UNITS`; None for a plain count or text."""
        if self.kind == "real" and self.metavar in ("MIB", "FRACTION"):
            return {"MIB": "MiB", "FRACTION": "fraction"}[self.metavar]
        if self.name.endswith("_gib"):
            return "GiB"
        return UNITS.get(self.name)

    @property
    def api_kind(self) -> str:
        """The kind the page's forms know: bool, count, int, float, choice, str, list, append or value (a real
        number with a range, as a number or its text); a config file is an object (its parsed content)."""
        return {"flag": "bool", "real": "value", "names": "value", "int_list": "value", "values": "value",
                "text": "str", "positional": "str", "config": "object"}.get(self.kind, self.kind)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
