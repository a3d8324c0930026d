"""Every failure mlstack reports, with the hint that fixes it and its exit code, in one place.

The CLI catches `MlstackError` at the top and prints one line, `error: <message>; hint: <hint>`;
anything else is a bug and exits 1 (with the traceback only under --debug). Errors raised while
translating a library's exception keep it as their cause (`raise ... from e`), so --debug shows
Docker's, PostgreSQL's or S3's own words too.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class ExitCode(IntEnum):
    """Documented exit codes (README, "Exit codes"); `@unique` refuses two names for one code."""

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


class ArchiveError(MlstackError):
    """A backup archive that cannot be read or written (missing, corrupt, not ours)."""

    exit_code = ExitCode.USAGE


class EngineError(MlstackError):
    """The Docker engine refused a call (its explanation is the message, its error the cause)."""

    exit_code = ExitCode.INTERNAL


class EngineUnavailable(EngineError):
    """The engine cannot be reached, or the user may not use it."""

    exit_code = ExitCode.ENGINE


class ObjectMissing(EngineError):
    """A container, network, volume or image the call named does not exist."""


class Conflict(MlstackError):
    exit_code = ExitCode.CONFLICT


class EngineConflict(Conflict, EngineError):
    """The engine refused a call because of the state of an object (HTTP 409)."""

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


class NotReady(NotRunning):
    """A service does not answer (refused, reset, timed out, still starting): worth waiting for.

    The readiness loop retries it and quotes the last one when its deadline passes; anywhere
    else it means what it says, the stack (or that service) is not running.
    """


def exit_code_for(error: BaseException) -> int:
    """The process exit code for any exception reaching the top of the CLI."""
    if isinstance(error, MlstackError):
        return int(error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.INTERNAL)
