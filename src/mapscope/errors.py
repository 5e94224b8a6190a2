"""Errors a user can cause.

Every message says what was wrong, what was expected and how to fix it; the CLI prints the
message without a traceback and exits with code 2.
"""


class MapscopeError(Exception):
    """Base class for problems caused by input, files or configuration, not by bugs."""


class DataError(MapscopeError):
    """A dataset file is missing, corrupt or malformed."""


class ConfigError(MapscopeError, ValueError):
    """A configuration value or command-line parameter is invalid (a ``ValueError`` too, as
    scikit-learn and numpy users expect of a bad parameter)."""


class RunError(MapscopeError):
    """A run folder is missing, incomplete or of the wrong kind."""


class TrainingDiverged(MapscopeError):
    """The loss became NaN or infinite; nothing broken is written."""
