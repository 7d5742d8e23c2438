"""Declarative parameter specs: each IMM action lists its parameters once, and this module checks them.

IMM carries every parameter in the query string as text: scalars as ``str(value)`` (so Python booleans
arrive as ``True``/``False``), objects and lists as one compact JSON value (the parameters marked **J** in
the spec). A handler declares what it takes -- ``Str("ProjectName", required=True, pattern=NAME)``,
``Int("MaxResults", low=0, high=100, default=100)``, ``Json("Files", list, required=True, max_items=100)`` --
and receives clean Python values, or the request fails with an error that names the parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from immray.protocol.errors import ImmError

# IMM's rule for project and dataset names.
RESOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")
_JSON_KINDS = {dict: "a JSON object", list: "a JSON array"}


@dataclass(frozen=True)
class Param:
    """One query parameter: its IMM name, whether it must be given, and its value when it is not."""

    name: str
    _: KW_ONLY
    required: bool = False
    default: Any = None

    def parse(self, raw: str) -> Any:
        raise NotImplementedError

    def _invalid(self, why: str) -> ImmError:
        return ImmError.invalid_argument(f"The parameter {self.name} {why}")


@dataclass(frozen=True, kw_only=True)
class Str(Param):
    min_length: int = 0
    max_length: int | None = None
    max_bytes: int | None = None
    pattern: re.Pattern[str] | None = None

    def parse(self, raw: str) -> str:
        if len(raw) < self.min_length:
            raise self._invalid(f"must be at least {self.min_length} characters long.")
        if self.max_length is not None and len(raw) > self.max_length:
            raise self._invalid(f"must be at most {self.max_length} characters long.")
        if self.max_bytes is not None and len(raw.encode("utf-8")) > self.max_bytes:
            raise self._invalid(f"must be at most {self.max_bytes} bytes long in UTF-8.")
        if self.pattern is not None and not self.pattern.fullmatch(raw):
            raise self._invalid(f"has an invalid value {_show(raw)}: it must match {self.pattern.pattern}.")
        return raw


@dataclass(frozen=True, kw_only=True)
class Int(Param):
    low: int | None = None
    high: int | None = None

    def parse(self, raw: str) -> int:
        if not _INTEGER.fullmatch(raw):
            raise self._invalid(f"must be an integer, not {_show(raw)}.")
        value = int(raw)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            low = "" if self.low is None else f" from {self.low}"
            high = "" if self.high is None else f" to {self.high}"
            raise self._invalid(f"must be an integer{low}{high}, not {value}.")
        return value


@dataclass(frozen=True, kw_only=True)
class Bool(Param):
    def parse(self, raw: str) -> bool:
        lowered = raw.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise self._invalid(f"must be true or false, not {_show(raw)}.")


@dataclass(frozen=True)
class Enum(Param):
    """One of a fixed set of words; ``ignore_case`` accepts ``DESC`` for ``desc`` and answers ``desc``."""

    choices: tuple[str, ...]
    _: KW_ONLY
    ignore_case: bool = False

    def parse(self, raw: str) -> str:
        for choice in self.choices:
            if raw == choice or (self.ignore_case and raw.lower() == choice.lower()):
                return choice
        raise self._invalid(f"must be one of {', '.join(self.choices)}, not {_show(raw)}.")


@dataclass(frozen=True)
class Json(Param):
    """A JSON-valued (**J**) parameter: an object (``dict``) or an array (``list``), optionally of ``items``."""

    kind: type
    _: KW_ONLY
    items: type | tuple[type, ...] | None = None
    max_items: int | None = None
    min_items: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _JSON_KINDS:
            raise TypeError(f"Json parameter {self.name}: kind must be dict or list")

    def parse(self, raw: str) -> Any:
        try:
            value = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise ImmError.invalid_json(self.name) from None
        if not isinstance(value, self.kind):
            raise self._invalid(f"must be {_JSON_KINDS[self.kind]}.")
        if len(value) < self.min_items:
            raise self._invalid(f"must hold at least {self.min_items} item(s).")
        if self.max_items is not None and len(value) > self.max_items:
            raise ImmError.limit_exceeded(
                f"The parameter {self.name} holds {len(value)} items; at most {self.max_items} are allowed."
            )
        if self.items is not None:
            elements = value.values() if isinstance(value, dict) else value
            allowed = self.items if isinstance(self.items, tuple) else (self.items,)
            for element in elements:
                # bool is an int in Python, but never what an int-typed JSON field means.
                if not isinstance(element, allowed) or (isinstance(element, bool) and bool not in allowed):
                    raise self._invalid(f"holds an item of the wrong type: {_show(json.dumps(element))}.")
        return value


def parse_params(specs: Sequence[Param], raw: Mapping[str, str]) -> dict[str, Any]:
    """Values of ``specs`` from the raw parameters, keyed by IMM name; parameters not declared are ignored.

    An empty value counts as not given, as IMM reads an empty NextToken or Sort; a required one is missing.
    """
    values: dict[str, Any] = {}
    for spec in specs:
        text = raw.get(spec.name)
        if text is None or text == "":
            if spec.required:
                raise ImmError.missing_parameter(spec.name)
            values[spec.name] = spec.default
        else:
            values[spec.name] = spec.parse(text)
    return values


def collect(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The query pairs as a dict; a name given twice is ambiguous, so it is refused."""
    found: dict[str, str] = {}
    for key, value in pairs:
        if key in found:
            raise ImmError.invalid_argument(f"The parameter {key[:128]} is given more than once.")
        found[key] = value
    return found


def _refuse_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


def _show(text: str, limit: int = 64) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
