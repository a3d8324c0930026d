"""The stack's credentials: generated once, stored with mode 0600, reused on every later `up`.

Reuse matters: PostgreSQL keeps the password it was initialised with in its volume, so a new
password on a kept volume would lock MLflow out of its own data. Likewise MLflow's basic-auth app
creates its admin user once, with the password it is given on first start.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

from mlstack.errors import StateError
from mlstack.state import ProjectState, check_private, write_private

_ALNUM = string.ascii_letters + string.digits


def _token(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class StackSecrets:
    """Credentials shared by the services; the field names are the .env variable names."""

    POSTGRES_USER: str
    POSTGRES_PASSWORD: str
    S3_ACCESS_KEY: str
    S3_SECRET_KEY: str
    # MLflow's basic-auth app (`auth: true`): its admin login, and the key its CSRF protection
    # signs with. Added to files written before these existed (see `ensure`); empty only in
    # such a file that no `up` has upgraded yet.
    MLFLOW_AUTH_ADMIN_USERNAME: str = ""
    MLFLOW_AUTH_ADMIN_PASSWORD: str = ""
    MLFLOW_FLASK_SERVER_SECRET_KEY: str = ""

    @classmethod
    def generate(cls) -> StackSecrets:
        # Letters and digits only: safe unquoted in URIs, YAML, .env files and shell.
        return cls(
            POSTGRES_USER="mlflow",
            POSTGRES_PASSWORD=_token(32),
            S3_ACCESS_KEY="mlstack" + _token(13, string.ascii_uppercase + string.digits),
            S3_SECRET_KEY=_token(40),
            **_auth_secrets(),
        )

    @property
    def has_auth(self) -> bool:
        return all(getattr(self, name) for name in AUTH_KEYS)

    def as_env(self) -> dict[str, str]:
        return asdict(self)

    def values(self) -> list[str]:
        """The secret values (not user names), for scrubbing output."""
        found = [
            self.POSTGRES_PASSWORD,
            self.S3_SECRET_KEY,
            self.S3_ACCESS_KEY,
            self.MLFLOW_AUTH_ADMIN_PASSWORD,
            self.MLFLOW_FLASK_SERVER_SECRET_KEY,
        ]
        return [value for value in found if value]


AUTH_KEYS = (
    "MLFLOW_AUTH_ADMIN_USERNAME",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
)
REQUIRED_KEYS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY")


def _auth_secrets() -> dict[str, str]:
    # MLflow requires 12+ characters for a password; 32 random letters and digits are ~190 bits.
    return {
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": _token(32),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _token(48),
    }


def _parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def dump(creds: StackSecrets) -> str:
    lines = ["# mlstack credentials for this project: keep private (mode 0600)."]
    lines += [f"{k}={v}" for k, v in creds.as_env().items()]
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
    missing = [n for n in REQUIRED_KEYS if not values.get(n)]
    if missing:
        raise StateError(
            f"{path} lacks {', '.join(missing)}",
            "restore the file from a backup, or reset the stack with `mlstack down --purge`",
        )
    names = [f.name for f in fields(StackSecrets)]
    return StackSecrets(**{n: values[n] for n in names if values.get(n)})


def complete(existing: StackSecrets) -> tuple[StackSecrets, tuple[str, ...]]:
    """`existing` plus any key added to mlstack since it was made (the auth login); (secrets, added)."""
    missing = {k: v for k, v in _auth_secrets().items() if not getattr(existing, k)}
    return replace(existing, **missing), tuple(missing)


def save(state: ProjectState, creds: StackSecrets, added: Sequence[str] = ()) -> None:
    """Store the project's secrets with mode 0600: the whole file when there is none, else only
    the `added` keys the file lacks, appended, so every line already there stays as it is."""
    state.ensure()
    path = state.secrets_file
    if not path.exists():
        write_private(path, dump(creds))
        return
    text = path.read_text(encoding="utf-8")
    present = _parse(text)
    lines = [f"{k}={getattr(creds, k)}\n" for k in added if not present.get(k)]
    if lines:
        write_private(path, text + ("" if text.endswith("\n") else "\n") + "".join(lines))


def ensure(state: ProjectState) -> tuple[StackSecrets, bool]:
    """Load the project's secrets, generating and storing them on first use; (secrets, created).

    A file from before the auth keys existed gains them, every other value unchanged.
    """
    existing = load(state)
    if existing is None:
        fresh = StackSecrets.generate()
        save(state, fresh)
        return fresh, True
    full, added = complete(existing)
    save(state, full, added)
    return full, False
