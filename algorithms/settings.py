"""Declarative algorithm settings.

Each algorithm declares its settings once, as a `Schema` of `Setting`s. The schema validates and
parses the `algorithmSettings` of an Experiment, and renders the settings table of the README.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from katib_services.numbers import parse_float, parse_int, quote, shorten

from .errors import Problems

FIELD = "spec.algorithm.algorithmSettings"
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Setting:
    """One setting. `kind` is int, float, str or bool; `choices` restricts a str setting.

    `low`/`high` bound numbers; `low_open`/`high_open` make a bound exclusive. Every int and
    float setting has an upper bound, so that no setting can ask for unbounded work. A `default` of
    None with `required=False` means "unset" and is passed on as None. Numbers are plain ASCII
    decimals (`katib_services.numbers`).
    """

    name: str
    kind: type
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    required: bool = False
    ignore_case: bool = False  # a choice may be written in any case ("None" for "none")
    none: bool = False  # the value "None" is accepted and parsed as None (Katib's way to switch a term off)

    def __post_init__(self) -> None:
        if self.kind in (int, float) and self.high is None:
            raise TypeError(f"setting {self.name}: a numeric setting needs an upper bound (high)")

    def parse(self, text: str) -> tuple[Any, str | None]:
        """The parsed value, or (None, the reason it is invalid)."""
        text = text.strip()
        if self.none and text == "None":
            return None, None
        if self.kind is bool:
            lowered = text.lower()
            if lowered in ("true", "false"):
                return lowered == "true", None
            return None, f"{quote(text)} is not a boolean; use true or false"
        if self.kind is str:
            if self.ignore_case:
                text = next((c for c in self.choices if c.lower() == text.lower()), text)
            if self.choices and text not in self.choices:
                return None, f'{quote(text)} is not one of {", ".join(self.choices)}'
            if not text:
                return None, "is empty"
            return text, None
        value = parse_float(text) if self.kind is float else parse_int(text)
        if value is None:
            noun = "a finite decimal number" if self.kind is float else "an integer in plain digits"
            return None, f"{quote(text)} is not {noun}"
        if not self._in_range(value):
            return None, f"{shorten(text)} is out of range; it must be {self.range_text()}"
        return value, None

    def _in_range(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def range_text(self) -> str:
        """The allowed values in words, e.g. "> 0", "in (0, 1)", "one of GP, RF"."""
        if self.none:
            return f"{replace(self, none=False).range_text()} or None"
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '≥'} {_num(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '≤'} {_num(self.high)}"
        return "any " + {int: "integer", float: "number", str: "string", bool: "boolean"}[self.kind]


def _num(x: float) -> str:
    if x == MAX_SEED:
        return "2^63 - 1"
    return f"{int(x):,}" if float(x).is_integer() else str(x)


class Schema:
    """The settings of one algorithm."""

    def __init__(self, *settings: Setting):
        self.settings = {s.name: s for s in settings}

    def parse(
        self, algorithm: str, raw: Iterable[tuple[str, str]], problems: Problems, field: str = FIELD
    ) -> dict[str, Any]:
        """Parses raw (name, value) pairs, recording problems under `field`; later pairs win."""
        given = dict(raw)
        values = {}
        for name, text in given.items():
            setting = self.settings.get(name)
            if setting is None:
                known = ", ".join(self.settings) or "none"
                problems.add(field, f"unknown setting {quote(name)} for algorithm {algorithm}; its settings are: {known}")
                continue
            value, error = setting.parse(text)
            if error:
                problems.add(f"{field}[{quote(name)}]", error)
            else:
                values[name] = value
        for setting in self.settings.values():
            if setting.name in given:
                continue
            if setting.required:
                problems.add(field, f'"{setting.name}" is required by algorithm {algorithm}: {setting.help}')
            values[setting.name] = setting.default
        return values

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """(name, type, default, allowed, help) for each setting, for documentation."""
        out = []
        for s in self.settings.values():
            default = "required" if s.required else ("unset" if s.default is None else str(s.default))
            out.append((s.name, s.kind.__name__, default, s.range_text(), s.help))
        return out


RANDOM_STATE = Setting(
    "random_state",
    int,
    None,
    "Seed for reproducible runs; when unset, the seed is derived from the experiment name.",
    low=0,
    high=MAX_SEED,
)
