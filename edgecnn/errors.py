"""The exception every edgecnn stage raises for problems a user can fix.

The CLI turns an :class:`EdgecnnError` into one plain line and its ``exit_code``;
anything else is a bug and exits with 1.
"""

from __future__ import annotations


class EdgecnnError(Exception):
    """Base of all errors edgecnn reports to users (bad input, missing data or models)."""

    exit_code = 2

    def with_exit_code(self, code: int) -> EdgecnnError:
        """This error, reported with exit code ``code`` instead of the class's."""
        self.exit_code = code
        return self


class ConfigError(EdgecnnError, ValueError):
    """An option or configuration value is impossible (zero filters, negative epochs)."""


class DataError(EdgecnnError):
    """A dataset is missing, corrupt or truncated."""
