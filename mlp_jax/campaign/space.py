"""Search spaces: the settings a search samples, each a flag of `experiments.mlp` and how to draw
its value. Plain data, so that grids.py names spaces beside its grids and a search checks that a
study it resumes was sampled from the same space.

A parameter is written `FLAG=KIND:ARGS[@FLAG2=V1|V2]`:

    lr=float:0.001:1:log          a float between two bounds (log: log-uniform)
    batch_size=int:32:512:log     an integer between two bounds, both included
    act=cat:relu,tanh,elu         one of the values ('/' inside a value stands for ',')
    hidden=layers:1:3:64:1024     a depth between two bounds, then each layer's width
                                  (log-uniform integers): the conditional space of a net's shape
    momentum=float:0.5:0.99@optimizer=momentum|nesterov
                                  drawn only when an earlier parameter (or the flags for every
                                  trial) gives optimizer one of those values
"""

from collections.abc import Mapping, Sequence
import dataclasses
import json
from typing import Protocol

from mlp_jax.core import config
from mlp_jax.core.errors import InputError

KINDS = ("float", "int", "cat", "layers")
PARAM_FORMAT = (
    "FLAG=float:LOW:HIGH[:log], FLAG=int:LOW:HIGH[:log], FLAG=cat:V1,V2,..., "
    "hidden=layers:MIN_DEPTH:MAX_DEPTH:MIN_WIDTH:MAX_WIDTH, each optionally followed by "
    "@FLAG=V1|V2 (drawn only when FLAG has one of those values)"
)
# Flags a search cannot sample: they name, seed or place the run, or the search sets them.
NOT_SAMPLED = (*config.fields_with("label", "replica"), "steps", "epochs", "eval_every")


class Trial(Protocol):
    """What sampling needs of an Optuna trial (optuna.Trial has these methods)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Sequence[str]) -> str: ...


@dataclasses.dataclass(frozen=True)
class Param:
    """One sampled setting: `flag` drawn as `kind` says from `low`..`high` (log-uniform when
    `log`) or from `choices`; drawn only when the flag `when[0]` has one of the values
    `when[1]`. A `layers` param draws a depth in `low`..`high`, then each layer's width in
    `widths` (log-uniform)."""

    flag: str
    kind: str
    low: float = 0
    high: float = 0
    log: bool = False
    choices: tuple[str, ...] = ()
    widths: tuple[int, int] = (0, 0)
    when: tuple[str, tuple[str, ...]] | None = None

    def text(self) -> str:
        """Return the parameter as `--param` writes it."""
        body = {
            "float": f"{self.low:g}:{self.high:g}",
            "int": f"{int(self.low)}:{int(self.high)}",
            "cat": ",".join(c.replace(",", "/") for c in self.choices),
            "layers": f"{int(self.low)}:{int(self.high)}:{self.widths[0]}:{self.widths[1]}",
        }[self.kind]
        log = ":log" if self.log else ""
        when = f"@{self.when[0]}={'|'.join(self.when[1])}" if self.when else ""
        return f"{self.flag}={self.kind}:{body}{log}{when}"

    def draw(self, trial: Trial) -> str:
        """Return the flag's value drawn by `trial`, as the flag is written."""
        if self.kind == "float":
            return repr(trial.suggest_float(self.flag, self.low, self.high, log=self.log))
        if self.kind == "int":
            return str(trial.suggest_int(self.flag, int(self.low), int(self.high), log=self.log))
        if self.kind == "cat":
            return trial.suggest_categorical(self.flag, list(self.choices))
        depth = trial.suggest_int(f"{self.flag}_depth", int(self.low), int(self.high))
        return ",".join(
            str(trial.suggest_int(f"{self.flag}_width_{i}", *self.widths, log=True))
            for i in range(1, depth + 1)
        )


@dataclasses.dataclass(frozen=True)
class Space:
    """The parameters of a search, drawn in order (a condition names an earlier one)."""

    params: tuple[Param, ...]

    def sample(self, trial: Trial, fixed: Mapping[str, str]) -> dict[str, str]:
        """Return the flags `trial` draws; `fixed` are the flags for every trial, which
        conditions may read too."""
        drawn: dict[str, str] = {}
        for param in self.params:
            if param.when and {**fixed, **drawn}.get(param.when[0]) not in param.when[1]:
                continue
            drawn[param.flag] = param.draw(trial)
        return drawn

    def describe(self) -> str:
        """Return the space as one canonical text (a resumed study must have the same)."""
        return json.dumps([param.text() for param in self.params])

    def grid(self) -> dict[str, list]:
        """Return every parameter's values for Optuna's grid sampler; InputError for a space
        that has none (a float, a conditional parameter, a net's shape)."""
        values = {}
        for param in self.params:
            if param.kind == "cat" and not param.when:
                values[param.flag] = list(param.choices)
            elif param.kind == "int" and not param.when and not param.log:
                values[param.flag] = list(range(int(param.low), int(param.high) + 1))
            else:
                raise InputError(
                    f"--sampler grid cannot enumerate {param.text()!r}; accepted with grid: "
                    "unconditional cat parameters and int parameters without log"
                )
        return values


def _number(text: str, param: str, integer: bool) -> float:
    """Parse one bound of `param`."""
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise InputError(
            f"--param {param!r}: {text!r} is not {kind}; accepted: {PARAM_FORMAT}"
        ) from None


def _bounds(args: list[str], param: str, integer: bool) -> tuple[float, float, bool]:
    """Parse `LOW:HIGH[:log]` of a float or int parameter."""
    log = args[2:] == ["log"]
    if len(args) != 2 + log:
        raise InputError(f"malformed --param {param!r}; accepted: {PARAM_FORMAT}")
    low, high = (_number(a, param, integer) for a in args[:2])
    if not low < high or (log and low <= 0):
        raise InputError(
            f"--param {param!r}: bounds {args[0]}..{args[1]} are empty"
            + (" or not positive (log)" if log else "")
            + f"; accepted: LOW < HIGH{', LOW > 0 with log' if log else ''}"
        )
    return low, high, log


def _condition(text: str, param: str) -> tuple[str, tuple[str, ...]]:
    """Parse the `FLAG=V1|V2` after a parameter's @."""
    flag, sep, values = text.partition("=")
    flag = flag.removeprefix("--")
    if not sep or flag not in {f.name for f in config.flag_fields()} or not values:
        raise InputError(f"malformed condition in --param {param!r}; accepted: {PARAM_FORMAT}")
    return flag, tuple(values.split("|"))


def check_flag(option: str, text: str, flag: str, excluded: Sequence[str], what: str) -> None:
    """Raise InputError unless `flag` is a flag of experiments.mlp outside `excluded`; `option`
    and `text` name what was given, `what` says what the flag is for."""
    allowed = [f.name for f in config.flag_fields() if f.name not in excluded]
    if flag not in allowed:
        raise InputError(
            f"{option} {text!r}: {flag!r} is not a flag {what}; accepted: {', '.join(allowed)}"
        )


def split_values(option: str, text: str, values: str, accepted: str) -> tuple[str, ...]:
    """Return comma-separated `values`, '/' inside one standing for its own comma; InputError
    when one repeats."""
    parsed = tuple(v.strip().replace("/", ",") for v in values.split(","))
    if len(set(parsed)) != len(parsed):
        raise InputError(f"{option} {text!r} repeats a value; accepted: {accepted}")
    return parsed


def parse_param(text: str) -> Param:
    """Parse one `--param` text into a Param; InputError names what is wrong in one line."""
    body, _, condition = text.partition("@")
    flag, sep, spec = body.partition("=")
    flag = flag.strip().removeprefix("--")
    kind, _, rest = spec.partition(":")
    if not sep or not flag or kind not in KINDS or not rest:
        raise InputError(f"malformed --param {text!r}; accepted: {PARAM_FORMAT}")
    check_flag("--param", text, flag, NOT_SAMPLED, "a search can sample")
    when = _condition(condition, text) if condition else None
    if kind == "cat":
        choices = split_values("--param", text, rest, PARAM_FORMAT)
        return Param(flag, kind, choices=choices, when=when)
    if kind == "layers":
        numbers = [_number(a, text, True) for a in rest.split(":")]
        if flag != "hidden" or len(numbers) != 4:
            raise InputError(f"malformed --param {text!r}; accepted: {PARAM_FORMAT}")
        if not 1 <= numbers[0] <= numbers[1] or not 1 <= numbers[2] < numbers[3]:
            raise InputError(
                f"--param {text!r}: depths or widths are empty; accepted: 1 <= MIN_DEPTH <= "
                "MAX_DEPTH and 1 <= MIN_WIDTH < MAX_WIDTH"
            )
        return Param(flag, kind, numbers[0], numbers[1], widths=(numbers[2], numbers[3]), when=when)
    low, high, log = _bounds(rest.split(":"), text, kind == "int")
    return Param(flag, kind, low, high, log, when=when)


def merge(space: Space, texts: Sequence[str]) -> Space:
    """Return `space` with each `--param` text added, or replacing the parameter of its flag;
    InputError for a flag given twice."""
    params = list(space.params)
    given = [parse_param(text) for text in texts]
    flags = [p.flag for p in given]
    repeated = next((f for f in flags if flags.count(f) > 1), None)
    if repeated:
        raise InputError(f"--param {repeated} is given twice; accepted: each flag once")
    for param in given:
        at = next((i for i, p in enumerate(params) if p.flag == param.flag), None)
        if at is None:
            params.append(param)
        else:
            params[at] = param
    return Space(tuple(params))


def check_extra(space: Space, extra: Sequence[str]) -> None:
    """Refuse flags after `--` that a parameter of `space` samples (they would be overridden)."""
    given = {arg.removeprefix("--").partition("=")[0] for arg in extra}
    given |= {flag.removeprefix("no") for flag in given}  # absl's --noFLAG for a boolean
    clash = [p.flag for p in space.params if p.flag in given]
    if clash:
        raise InputError(
            f"--{clash[0]} is sampled by the search and also given after --; accepted: each "
            "flag either as a --param or for every trial"
        )
