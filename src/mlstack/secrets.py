"""The stack's credentials: generated once, stored with mode 0600, reused on every later `up`.

Reuse matters: PostgreSQL keeps the password it was initialised with in its volume, so a new
password on a kept volume would lock MLflow out of its own data.
"""

from __future__ import annotations

import secrets as random
import string
from dataclasses import asdict, dataclass, fields

from mlstack.errors import StateError
from mlstack.state import ProjectState, check_private, write_private

_ALNUM = string.ascii_letters + string.digits


def _token(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(random.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class StackSecrets:
    """Credentials shared by the services; the field names are the .env variable names."""

    POSTGRES_USER: str
    POSTGRES_PASSWORD: str
    S3_ACCESS_KEY: str
    S3_SECRET_KEY: str

    @classmethod
    def generate(cls) -> StackSecrets:
        # Letters and digits only: safe unquoted in URIs, YAML, .env files and shell.
        return cls(
            POSTGRES_USER="mlflow",
            POSTGRES_PASSWORD=_token(32),
            S3_ACCESS_KEY="mlstack" + _token(13, string.ascii_uppercase + string.digits),
            S3_SECRET_KEY=_token(40),
        )

    def as_env(self) -> dict[str, str]:
        return asdict(self)

    def values(self) -> list[str]:
        """The secret values (not user names), for scrubbing output."""
        return [self.POSTGRES_PASSWORD, self.S3_SECRET_KEY, self.S3_ACCESS_KEY]


def _parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def dump(secrets_: StackSecrets) -> str:
    lines = ["# mlstack credentials for this project: keep private (mode 0600)."]
    lines += [f"{k}={v}" for k, v in secrets_.as_env().items()]
    return "\n".join(lines) + "\n"


def load(state: ProjectState) -> StackSecrets | None:
    """The stored secrets, None when there are none yet; refuses files others can read."""
    path = state.secrets_file
    if not path.exists():
        return None
    check_private(path)
    try:
        values = _parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise StateError(
            f"cannot read {path}: {e}", "check the file's owner and permissions"
        ) from None
    names = [f.name for f in fields(StackSecrets)]
    missing = [n for n in names if not values.get(n)]
    if missing:
        raise StateError(
            f"{path} lacks {', '.join(missing)}",
            "restore the file from a backup, or reset the stack with `mlstack down --purge`",
        )
    return StackSecrets(**{n: values[n] for n in names})


def save(state: ProjectState, secrets_: StackSecrets) -> None:
    """Store the project's secrets with mode 0600."""
    state.ensure()
    write_private(state.secrets_file, dump(secrets_))
