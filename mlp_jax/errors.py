"""Errors that mean bad input from the user, reported as one line and exit code 2."""


class InputError(ValueError):
    """A setting or a data file the user supplied is not acceptable."""
