"""What every entry point shares: Config flags, --workdir, the data folder, and one-line
errors (exit code 2 for bad input, 3 for a fault of the machine)."""

import atexit
from collections.abc import Callable
import dataclasses
import errno
import functools
import gc
import logging
import os
import re
import shlex
import sys
import tempfile
import warnings

from absl import app, flags
from absl import logging as absl_logging
import jax

from mlp_jax.campaign import engines, grids
from mlp_jax.core import augment, config, parallel, settings
from mlp_jax.core.config import Config
from mlp_jax.core.errors import INPUT_EXIT_CODE, MACHINE_EXIT_CODE, InputError, MachineError
from mlp_jax.store import results

# A run imports no more than it uses: the modules whose imports take seconds (SciPy through
# tables and evaluation, Matplotlib through plots) are imported by the functions that use them.

DATA_ENV = "MLP_JAX_DATA"

# At exit the interpreter tears everything down anyway; its last garbage collection, over every
# object of JAX and the other libraries, would take 0.3 s of each process. Frozen objects are
# skipped; every file an entry point writes is closed (or fsynced) before then.
atexit.register(gc.freeze)


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


def define_workdir_flag(required: bool = False, multiple: bool = False) -> None:
    """Define --workdir, a run's work folder; `required` where a saved run is read, `multiple`
    where several saved runs vote together (the flag then gives a list)."""
    define = flags.DEFINE_multi_string if multiple else flags.DEFINE_string
    define(
        "workdir",
        None,
        "Work folder of the run: config.json, Orbax checkpoints (a training run resumes from the "
        "last one), TensorBoard event files and the run's records."
        + (" Repeat it for a committee of several runs." if multiple else ""),
        required=required,
    )


def define_committee_flags() -> None:
    """Define --checkpoint, --weights and --tta: which checkpoint of each --workdir votes, how
    a committee of saved replicas weighs its members, and its test-time augmentation."""
    from mlp_jax.uses import evaluation

    flags.DEFINE_string(
        "checkpoint",
        "latest",
        "Which checkpoint of each --workdir votes: latest, best or a step number (a snapshot "
        "kept by --keep_every); --workdir=FOLDER@WHICH chooses one for that folder.",
    )
    flags.DEFINE_enum(
        "weights",
        "equal",
        list(evaluation.WEIGHTS),
        "How the committee weighs its members: equally, or as the validation split says (by "
        "likelihood, or by accuracy through greedy selection).",
    )
    flags.DEFINE_enum(
        "tta",
        "none",
        list(augment.TEST_VIEWS),
        "Test-time augmentation: each member's mean softmax over the image and its 1-pixel "
        "shifts (shifts), on validation as on test.",
    )


ENGINE_FLAGS = ("engine", "ray_address", "cpus_per_run", "gpus_per_run")


def define_engine_flags() -> None:
    """Define the flags that choose where a campaign's runs execute (campaign/engines.py)."""
    flags.DEFINE_enum("engine", "local", list(engines.ENGINES), "Where the runs execute.")
    flags.DEFINE_string(
        "ray_address", "auto", "With --engine=ray: the cluster's HOST:PORT, or auto."
    )
    flags.DEFINE_float("cpus_per_run", 1.0, "With --engine=ray: CPUs each run holds.")
    flags.DEFINE_float("gpus_per_run", 0.0, "With --engine=ray: GPUs each run holds.")


def engine_choice() -> engines.EngineChoice:
    """Return the engine the flags choose; InputError for a Ray flag given without Ray."""
    if flags.FLAGS.engine == "local":
        given = [f"--{name}" for name in ENGINE_FLAGS[1:] if flags.FLAGS[name].present]
        if given:
            raise InputError(
                f"{given[0]} is a flag of --engine=ray; accepted with --engine=local: --jobs"
            )
    values = flags.FLAGS
    return engines.EngineChoice(
        values.engine, values.ray_address, values.cpus_per_run, values.gpus_per_run
    )


def check_writable(folder: str, flag: str, value: str) -> None:
    """Raise InputError unless files can be written in `folder` (made if missing), where the
    flag `flag` with `value` writes."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise InputError(
            f"--{flag} {value!r} cannot be written ({e.strerror}); accepted: a path in a "
            "writable folder"
        ) from None


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


def command_line(module: str, argv: list[str]) -> str:
    """Return the shell command `python -m module argv...` that ran, arguments quoted as needed."""
    return shlex.join(["python", "-m", module, *argv])


def command() -> str:
    """Return this process's command line as `python -m MODULE ARGS`, arguments quoted."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return command_line(spec.name if spec else sys.argv[0], sys.argv[1:])


def provenance() -> list[str]:
    """Return the Command, Date and Machine lines of an entry point's printed results."""
    from mlp_jax.campaign import tables

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
    except SystemExit as e:  # absl's --help and --helpfull print the help, then exit 1
        sys.exit(0 if e.code == 1 else e.code)


# Errors of the operating system that are faults of the machine, not of the input.
MACHINE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


def machine_fault(error: Exception) -> str | None:
    """Return the one line of a fault of the machine (a full disk, no memory left), else None."""
    if isinstance(error, OSError) and error.errno in MACHINE_ERRNOS:
        return f"cannot write {error.filename}: {error.strerror}" if error.filename else str(error)
    text = str(error).splitlines()[0] if str(error) else ""
    code = re.search(r"os_error_code='(\d+)'", text)  # how TensorStore (Orbax) reports one
    if code and int(code.group(1)) in MACHINE_ERRNOS:
        return f"{os.strerror(int(code.group(1)))}: {text}"
    if isinstance(error, jax.errors.JaxRuntimeError) and text.startswith("RESOURCE_EXHAUSTED"):
        return (
            f"out of memory ({text}); accepted: fewer --num_seeds, smaller --hidden or "
            "--batch_size, or a machine with more memory"
        )
    return None


def guarded(main: Callable[[list[str]], None], argv: list[str], positional: bool) -> None:
    """Call `main`, turning bad input and faults of the machine into one line and an exit code;
    stray arguments are bad input unless `main` takes `positional` ones."""
    try:
        if len(argv) > 1 and not positional:
            raise InputError(
                f"unexpected argument(s) {' '.join(argv[1:])!r}; accepted: flags only "
                "(--help lists them)"
            )
        parallel.initialize_distributed()
        main(argv)
    except InputError as e:
        fail(str(e))
    except MachineError as e:
        fail(str(e), MACHINE_EXIT_CODE)
    except Exception as e:
        message = machine_fault(e)
        if message is None:
            raise
        fail(message, MACHINE_EXIT_CODE)


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Format a warning as one line for the user, without the source line behind it."""
    return f"warning: {message}\n"


class Unread:
    """Standard output whose reader may go away (`| head -1`): from then on what is printed
    goes to /dev/null, and the run goes on to its end and its records."""

    def __init__(self, stream):
        self.stream = stream

    def __getattr__(self, name: str):
        return getattr(self.stream, name)

    def write(self, text: str) -> int:
        """Write `text`, or drop it when no one reads."""
        return self._unless_unread(self.stream.write, text)

    def flush(self) -> None:
        """Flush, or drop what is buffered when no one reads."""
        self._unless_unread(self.stream.flush)

    def _unless_unread(self, call: Callable, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
            return call(*args)


def run(main: Callable[[list[str]], None], positional: bool = False) -> None:
    """Run `main` under absl (joining a multi-host run if one is set up): bad flags, stray
    arguments (unless `main` takes `positional` ones) and InputError end in one line and exit
    code 2, MachineError and other faults of the machine in one line and exit code 3. A
    closed standard output (`| head -1`) ends nothing early: the exit code is the run's."""
    logging.getLogger("jax").setLevel(logging.WARNING)  # not "no TPU found" on every CPU run
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
    warnings.formatwarning = one_line_warning
    stdout = sys.stdout
    sys.stdout = Unread(stdout)
    try:
        app.run(functools.partial(guarded, main, positional=positional), flags_parser=_parse_flags)
    finally:
        sys.stdout.flush()  # here, not at exit, where a closed pipe would end in a traceback
        sys.stdout = stdout
