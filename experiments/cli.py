"""What every entry point shares: Config flags, the data folder, and one-line input errors."""

from collections.abc import Callable
import dataclasses
import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging

from mlp_jax import checkpoints, config, grids, parallel, results, settings, tables
from mlp_jax.config import Config
from mlp_jax.errors import INPUT_EXIT_CODE, MACHINE_EXIT_CODE, InputError, MachineError

DATA_ENV = "MLP_JAX_DATA"


def define_config_flags(
    flag_values: flags.FlagValues = flags.FLAGS, only: tuple[str, ...] | None = None
) -> None:
    """Define one absl flag for every Config field (or those named in `only`), with the field's
    default, help and accepted values."""
    for field in config.flag_fields():
        if only is not None and field.name not in only:
            continue
        define = {
            bool: flags.DEFINE_boolean,
            int: flags.DEFINE_integer,
            float: flags.DEFINE_float,
        }.get(type(field.default), flags.DEFINE_string)
        define(
            field.name,
            config.flag_default(field) if define is flags.DEFINE_string else field.default,
            settings.help_text(field),
            flag_values=flag_values,
        )


def define_workdir_flag() -> None:
    """Define --workdir, the run's work folder."""
    flags.DEFINE_string(
        "workdir",
        None,
        "Work folder of the run: config.json, Orbax checkpoints (the run resumes from the last "
        "one), TensorBoard event files and the run's records.",
    )


def open_workdir(path: str | None, cfg: Config) -> checkpoints.Workdir | None:
    """Return the locked work folder at `path` for a run of `cfg`, or None without one."""
    if not path:
        return None
    return checkpoints.Workdir(path, cfg, command(), results.environment()["versions"])


def data_dir(flag_value: str | None) -> str | None:
    """Return the IDX folder: the flag's value, else $MLP_JAX_DATA, else None (TFDS)."""
    return flag_value or os.environ.get(DATA_ENV) or None


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> Config:
    """Build the validated Config from parsed flags; --data_dir falls back to $MLP_JAX_DATA."""
    values = {f.name: flag_values[f.name].value for f in dataclasses.fields(Config)}
    values["hidden"] = config.parse_hidden(values["hidden"])
    values["data_dir"] = data_dir(values["data_dir"])
    return Config(**values)


def config_from_args(args: list[str]) -> Config:
    """Return the validated Config that `experiments.mlp` builds from these flags."""
    mlp_flags = flags.FlagValues()
    define_config_flags(mlp_flags)
    try:
        mlp_flags(["mlp", *args])
    except flags.Error as e:
        raise InputError(str(e)) from None
    return config_from_flags(mlp_flags)


def row_config(row: grids.Row, extra: list[str]) -> Config:
    """Return the validated config that `experiments.mlp` builds from a grid row and extra flags."""
    try:
        return config_from_args([*row.args(), *extra])
    except InputError as e:
        raise InputError(f"row {row.name}: {e}") from None


def command() -> str:
    """Return this process's command line as `python -m MODULE ARGS`, arguments quoted."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return tables.command_line(spec.name if spec else sys.argv[0], sys.argv[1:])


def provenance() -> list[str]:
    """Return the Command, Date and Machine lines of an entry point's printed results."""
    return tables.provenance(command(), [results.environment()])


def fail(message: str, code: int = INPUT_EXIT_CODE) -> None:
    """Print one error line to stderr and exit with `code` (2: bad input; 3: a machine fault)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e))


def run(main: Callable[[list[str]], None]) -> None:
    """Run `main` under absl (joining a multi-host run if one is set up); bad flags and
    InputError end in one line and exit code 2, MachineError in one line and exit code 3."""
    logging.getLogger("jax").setLevel(logging.WARNING)  # not "no TPU found" on every CPU run
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO

    def guarded(argv):
        try:
            parallel.initialize_distributed()
            main(argv)
        except InputError as e:
            fail(str(e))
        except MachineError as e:
            fail(str(e), MACHINE_EXIT_CODE)

    app.run(guarded, flags_parser=_parse_flags)
