"""User-facing errors.

Anything the user can fix (a typo in a config, a malformed record, a missing file)
raises `UserError`; the CLI prints its one-line message and exits with code 2, with no
traceback. Programming errors stay ordinary exceptions so they keep their tracebacks.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input, reported as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(UserError):
    """The configuration (YAML, --set, UI form) is invalid."""


class DataError(UserError):
    """The training data is unusable. `issues` holds every problem found (file:line: field: what)."""

    def __init__(self, message: str, issues: list | None = None):
        super().__init__(message)
        self.issues = list(issues or [])


class ModelError(UserError):
    """The base model or adapter cannot be found, downloaded or loaded."""
