"""Every failure mlstack reports, with the hint that fixes it and its exit code, in one place.

The CLI catches `MlstackError` at the top and prints one line, `error: <message>; hint: <hint>`;
anything else is a bug and exits 1 (with the traceback only under --debug).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (README, "Exit codes")."""

    OK = 0
    INTERNAL = 1
    USAGE = 2  # bad flags, bad config, unknown service
    ENGINE = 3  # Docker engine unreachable or refusing us
    CONFLICT = 4  # a host port, container name or lock is taken
    IMAGE = 5  # image absent with --pull never, or a pull failed
    UNHEALTHY = 6  # a service did not become healthy in time, or exited
    PROVISION = 7  # database or bucket could not be created
    STATE = 8  # secrets/state unreadable, insecure, or not matching the data
    DEGRADED = 10  # status: running, but some service is unhealthy
    NOT_RUNNING = 11  # status/env/logs: the stack is not running
    INTERRUPTED = 130


class MlstackError(Exception):
    """An expected failure: a one-line message saying what is wrong and a hint saying how to fix it."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(
        self, message: str, hint: str = "", *, details: str = "", service: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # extra lines (e.g. a log tail), printed above the error line
        self.service = service  # the service at fault, when there is one

    def __str__(self) -> str:
        return self.message


class ConfigError(MlstackError):
    exit_code = ExitCode.USAGE


class UsageError(MlstackError):
    exit_code = ExitCode.USAGE


class EngineUnavailable(MlstackError):
    exit_code = ExitCode.ENGINE


class Conflict(MlstackError):
    exit_code = ExitCode.CONFLICT


class PortInUse(Conflict):
    pass


class StackBusy(Conflict):
    pass


class ImageUnavailable(MlstackError):
    exit_code = ExitCode.IMAGE


class ServiceUnhealthy(MlstackError):
    exit_code = ExitCode.UNHEALTHY


class ProvisionError(MlstackError):
    exit_code = ExitCode.PROVISION


class StateError(MlstackError):
    exit_code = ExitCode.STATE


class NotRunning(MlstackError):
    exit_code = ExitCode.NOT_RUNNING


def exit_code_for(error: BaseException) -> int:
    """The process exit code for any exception reaching the top of the CLI."""
    if isinstance(error, MlstackError):
        return int(error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.INTERNAL)


class ArchiveError(MlstackError):
    """A backup archive that cannot be read or written (missing, corrupt, not ours)."""

    exit_code = ExitCode.USAGE
