"""What commands hand back: progress events while they run, a result when they end.

Nothing in mlstack prints but the CLI: commands report `Event`s to a callback and return a
`Result`, which carries its data and its exit code; the CLI renders any result as text or JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mlstack.errors import ExitCode

if TYPE_CHECKING:
    from mlstack.engine import PullProgress


@dataclass(frozen=True)
class Event:
    """Progress of a command, for the CLI's live display."""

    kind: Literal["step", "pull", "ready", "warning", "run"]
    service: str = ""
    message: str = ""
    seconds: float | None = None
    pull: PullProgress | None = None
    done: int = 0  # "run": units finished so far, of `total`
    total: int = 0


Reporter = Callable[[Event], None]


def quiet(_: Event) -> None:
    """A reporter that drops every event (tests, --json)."""
    return


class Result:
    """A command's outcome. `exit_code` is the process's; `output` is the one line scripts read on
    stdout in text mode (the tracking URI, a path), empty when there is none."""

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK

    @property
    def output(self) -> str:
        return ""

    def json_value(self) -> object:
        """What --json prints: the result itself unless a command says otherwise."""
        return self
