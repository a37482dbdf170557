"""The one error type for data that does not fit: a missing, corrupt or unexpected file."""

from __future__ import annotations

from ..errors import UsageError


class DataError(UsageError):
    """A data file or folder is missing, corrupt or not what was expected. The message names the
    file (or URL) and says what was expected and what was found; the CLI prints it and exits 2."""
