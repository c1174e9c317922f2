"""User-facing errors.

Every error a user can cause (a bad file, a bad config field, a missing dataset) is raised as
:class:`OpticsfreeError` with a one-line message that names the file or field and what was
expected. The command line prints that line and exits with status 2, with no traceback.
"""

from __future__ import annotations


class OpticsfreeError(Exception):
    """An error caused by input the user can fix (message names the file/field)."""


class ConfigError(OpticsfreeError):
    """A configuration file or field is invalid."""


class DataError(OpticsfreeError):
    """A dataset, image file or capture set is missing, unreadable or inconsistent."""
