"""Settings described once: each dataclass field carries its help, accepted values and bounds,
and its effect on what a run computes.

The flags, their `--help`, the validation and the README's flag table all read these. A field's
`choices` may be a registry itself (a dict from each name to what builds it, such as
`optim.OPTIMIZERS`), so that the names accepted are always the registry's.

Its `effect` says what changing the setting changes, one of EFFECTS; runs are matched, resumed
and varied in studies by it (`config.fields_with`).
"""

from collections.abc import Collection
import dataclasses
import math
from typing import Any

from mlp_jax.core.errors import InputError


@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers a setting accepts: from `low` (excluded when `low_open`) up to, not
    including, `high`."""

    low: float
    high: float | None = None
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value < self.high)

    def __str__(self) -> str:
        if self.high is not None:
            return f"[{self.low:g}, {self.high:g})"
        return f"{'>' if self.low_open else '>='} {self.low:g}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)

EFFECTS = {
    "protocol": "changes what the run computes (the default)",
    "replica": "chooses which replicas of the run are trained",
    "reporting": "changes what is measured, not how training goes",
    "placement": "changes where and how the run executes: no number moves but by float rounding",
    "label": "names the run or the folder its data is read from: no number moves",
}


def setting(
    default: Any,
    help: str,
    *,
    choices: Collection[str] = (),
    within: Range | None = None,
    accepts: str = "",
    effect: str = "protocol",
) -> Any:
    """Return a dataclass field with its default, help text, what it accepts (`choices`, a
    range `within`, or, for other text, `accepts` in words) and its `effect`, one of EFFECTS."""
    if effect not in EFFECTS:
        raise ValueError(f"unknown effect {effect!r}; accepted: {', '.join(EFFECTS)}")
    metadata = {
        "help": help,
        "choices": choices,
        "within": within,
        "accepts": accepts,
        "effect": effect,
    }
    return dataclasses.field(default=default, metadata=metadata)


def help_text(field: dataclasses.Field) -> str:
    """Return a field's help followed by what it accepts."""
    return f"{field.metadata['help']} Accepted: {accepted(field)}."


def accepted(field: dataclasses.Field) -> str:
    """Return what a field accepts, in words."""
    if field.metadata["accepts"]:
        return field.metadata["accepts"]
    if field.metadata["choices"]:
        return ", ".join(field.metadata["choices"])
    if field.metadata["within"] is not None:
        return str(field.metadata["within"])
    return {bool: "true or false", int: "an integer", float: "a finite number"}.get(
        type(field.default), "any text"
    )


def check_field(field: dataclasses.Field, value: Any) -> None:
    """Raise InputError naming the flag, the bad value and what is accepted."""
    choices, within = field.metadata["choices"], field.metadata["within"]
    if choices and value not in choices:
        raise InputError(f"unknown --{field.name} {value!r}; accepted: {', '.join(choices)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(
            f"--{field.name} {value!r} is not a finite number; accepted: {accepted(field)}"
        )
    if within is not None and value not in within:
        raise InputError(f"--{field.name} {value!r} is out of range; accepted: {within}")


def validate(instance: Any) -> None:
    """Check every field of a settings dataclass against its metadata."""
    for field in dataclasses.fields(instance):
        check_field(field, getattr(instance, field.name))
