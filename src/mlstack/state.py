"""Where a project's state lives on this machine: secrets, the rendered files and the lock.

One directory per project (`<state>/<project>/`), so two projects never share anything and
`down --purge` can remove exactly one of them.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mlstack.errors import StackBusy, StateError


def state_root(env: Mapping[str, str] | None = None) -> Path:
    """MLSTACK_STATE_DIR, else $XDG_STATE_HOME/mlstack, else ~/.local/state/mlstack."""
    env = os.environ if env is None else env
    if env.get("MLSTACK_STATE_DIR"):
        return Path(env["MLSTACK_STATE_DIR"]).expanduser()
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mlstack"


@dataclass(frozen=True)
class ProjectState:
    """The files of one project."""

    root: Path

    @classmethod
    def for_project(cls, project: str, env: Mapping[str, str] | None = None) -> ProjectState:
        return cls(state_root(env) / project)

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.env"

    @property
    def compose_file(self) -> Path:
        return self.root / "docker-compose.yml"

    @property
    def env_file(self) -> Path:
        return self.root / ".env"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    @contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold the project's lock, or refuse at once: two `up` must never race on one project.

        The lock file exists only while a command runs, and a project directory made only for
        it goes with it: a command refused on a project leaves its state as it found it.
        """
        fresh = not self.root.exists()
        fd = self._acquire(command)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"`mlstack {command}` (pid {os.getpid()})".encode(), 0)
            yield
        finally:
            # Unlinked while still held: whoever opened it meanwhile finds it stale (_acquire).
            self.lock_file.unlink(missing_ok=True)
            if fresh:
                with suppress(OSError):  # not empty: another command has made files since
                    self.root.rmdir()
            os.close(fd)

    def _acquire(self, command: str) -> int:
        while True:
            self.ensure()
            try:
                fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:  # the directory was removed after ensure(): again
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise StackBusy(
                    f"project {self.root.name!r} is busy: {holder or 'another mlstack'} is running",
                    "wait for it to finish, or stop it (Ctrl-C) and run the command again",
                ) from None
            try:
                current = os.stat(self.lock_file).st_ino
            except FileNotFoundError:
                current = -1
            if current == os.fstat(fd).st_ino:
                return fd
            os.close(fd)  # the holder removed this file as we opened it: take the new one


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (never a moment with wider permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_private(path: Path) -> None:
    """Refuse a secrets file that others can read: it would leak the stack's credentials."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise StateError(
            f"{path} is readable by other users (mode {mode:o})",
            f"run: chmod 600 {path}",
        )
