"""Errors that are the user's to fix: the CLI prints their message as one block and exits 2, no traceback.

Leaf packages (data, metrics) raise these too, so this module imports nothing from the project.
"""

from __future__ import annotations


class OtlabError(Exception):
    """Bad input (a config value, a file, a run dir): the message says what was wrong and what to do."""


class ConfigError(OtlabError, ValueError):
    """Invalid configuration values."""


class RunDirError(OtlabError):
    """The run directory cannot be used: held by another process, another experiment's, or not writable."""


class DataError(OtlabError, FileNotFoundError):
    """Dataset files are missing, truncated or not in the expected format."""
