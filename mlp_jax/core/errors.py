"""Errors reported as one line without a traceback: bad input (exit code 2) and faults of the
machine the run needs more of (exit code 3)."""

INPUT_EXIT_CODE = 2
MACHINE_EXIT_CODE = 3


class InputError(ValueError):
    """A setting or a data file the user supplied is not acceptable."""


class MachineError(RuntimeError):
    """The machine cannot do what was asked: a full disk, too little memory, an unwritable folder
    that the user did not choose."""
