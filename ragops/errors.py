"""One exit-code table and the errors that map onto it.

The CLI entry point catches RagopsError, prints its one-line message and exits with its code.
Engines raise these; they never call sys.exit themselves.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1          # an operation failed
    USAGE = 2           # bad usage or bad configuration
    GATE_FAILED = 3     # a gate, check or analysis failed
    LOCKED = 4          # the deploy lock is held by someone else
    NOT_APPROVED = 5    # an approval was denied or is missing (CI without --approve)
    INTERRUPTED = 130   # Ctrl-C / SIGINT


class RagopsError(Exception):
    exit_code: int = ExitCode.FAILED   # an ExitCode; a drill or nested runbook may pass its own code through

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.outputs: dict[str, Any] = {}   # what a runbook step saw when it failed (see with_outputs)


class OperationFailed(RagopsError):
    exit_code = ExitCode.FAILED


class ConfigError(RagopsError):
    exit_code = ExitCode.USAGE


class UsageError(RagopsError):
    exit_code = ExitCode.USAGE


class GateFailed(RagopsError):
    exit_code = ExitCode.GATE_FAILED


class LockHeld(RagopsError):
    exit_code = ExitCode.LOCKED


class NotApproved(RagopsError):
    exit_code = ExitCode.NOT_APPROVED
