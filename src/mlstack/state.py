"""Where a project's state lives on this machine: secrets, the rendered files, the lock, and the
record of which MLflow image last ran on its database.

One directory per project (`<state>/<project>/`), so two projects never share anything and
`down --purge` can remove exactly one of them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlstack.errors import StackBusy, StateError

IMAGE_RECORD = "mlflow-image.json"


def backups_root(env: Mapping[str, str] | None = None) -> Path:
    """MLSTACK_BACKUP_DIR, else $XDG_DATA_HOME/mlstack/backups, else ~/.local/share/mlstack/
    backups: outside the state dir, so `down --purge` never deletes a backup."""
    env = os.environ if env is None else env
    if env.get("MLSTACK_BACKUP_DIR"):
        return Path(env["MLSTACK_BACKUP_DIR"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mlstack" / "backups"


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

    @property
    def image_record(self) -> Path:
        return self.root / IMAGE_RECORD

    @property
    def restore_journal(self) -> Path:
        """What an unfinished restore staged (`project.restoring`): `up` finishes it."""
        return self.root / "restore.json"

    def pending_restore(self) -> str | None:
        """The archive of a restore that was interrupted, None when there is none."""
        try:
            return str(json.loads(self.restore_journal.read_text(encoding="utf-8"))["archive"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return "(unreadable journal)"

    @property
    def backups(self) -> Path:
        """The project's backups (`up`'s before a migration, `backup`'s by default)."""
        return backups_root() / self.root.name

    def backups_dir(self) -> Path:
        """The backups dir, made if need be (0700)."""
        path = self.backups
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
        return path

    def latest_backup(self) -> Path | None:
        """The newest archive in the backups dir, None when there is none."""
        try:
            found = [p for p in self.backups.iterdir() if p.name.endswith(".tar.gz")]
        except OSError:
            return None
        return max(found, key=lambda p: p.stat().st_mtime, default=None)

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


@contextmanager
def private_file(path: Path, *, replace: bool = True) -> Iterator[BinaryIO]:
    """A file only its owner can read, written under a temporary name and moved into place
    when the block ends (fsynced): never a half-written file, never wider permissions.

    With `replace=False` an existing `path` is never clobbered, not even one that appeared while
    writing: FileExistsError, and nothing changed.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails when `path` exists
    finally:
        tmp.unlink(missing_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write a text file only its owner can read, atomically."""
    with private_file(path) as f:
        f.write(text.encode("utf-8"))


def check_private(path: Path) -> None:
    """Refuse a secrets file that others can read: it would leak the stack's credentials."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise StateError(
            f"{path} is readable by other users (mode {mode:o})",
            f"run: chmod 600 {path}",
        )


# --- which MLflow image last ran on the database ---------------------------------------------


@dataclass(frozen=True)
class ImageRecord:
    """An MLflow image by reference (what to set mlflow.image back to) and by id (what ran)."""

    image: str
    image_id: str


def read_image_record(state: ProjectState) -> ImageRecord | None:
    try:
        data = json.loads(state.image_record.read_text(encoding="utf-8"))
        return ImageRecord(str(data["image"]), str(data["image_id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: treated as unknown, which only costs a migration


def record_image(state: ProjectState, image: str, image_id: str) -> None:
    """Remember the image that runs on the database now (an unknown id never replaces one)."""
    if not image_id or read_image_record(state) == ImageRecord(image, image_id):
        return
    write_private(state.image_record, json.dumps({"image": image, "image_id": image_id}))
