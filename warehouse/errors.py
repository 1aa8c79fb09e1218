"""Errors the warehouse raises for bad input; ValueError subclasses, so the CLI shows one line."""

from __future__ import annotations


class WarehouseError(ValueError):
    """A request the warehouse refuses: unknown run, closed run, duplicate problem, write in query."""


class UnknownRun(WarehouseError):
    """No run (or more than one) matches a run id, prefix or `latest`."""


class RunClosed(WarehouseError):
    """The run is complete (immutable) or failed (resume it first), so rows cannot be appended."""


class RunBusy(WarehouseError):
    """Another process is writing the run (one writer per run at a time)."""


class RunDamaged(WarehouseError):
    """A data file of the run is missing, truncated, unreadable or corrupt."""
