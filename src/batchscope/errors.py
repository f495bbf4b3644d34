"""User-facing errors.

Every error a user can cause by what they typed or pointed us at is a
:class:`BatchscopeError`. The CLI prints its message as one line and exits with
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BatchscopeError(Exception):
    """Base class: a problem with the user's input, reported as one clear line."""

    exit_code = 2


class UsageError(BatchscopeError):
    """A flag or argument has a value we cannot accept."""


class WorkloadError(BatchscopeError):
    """A workload spec does not name, import or build a usable workload."""


class DataError(WorkloadError):
    """A data folder or file cannot be used (missing, empty, corrupt)."""


class DeviceError(BatchscopeError):
    """A requested device is unknown or not present on this machine."""


class ExportError(BatchscopeError):
    """A result file cannot be written where the user asked."""


class StoreError(BatchscopeError):
    """The results store cannot be opened, or a run id is unknown."""
