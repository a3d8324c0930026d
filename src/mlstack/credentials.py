"""The stack's credentials: generated once, stored with mode 0600, reused on every later `up`.

Reuse matters: PostgreSQL keeps the password it was initialised with in its volume, so a new
password on a kept volume would lock MLflow out of its own data. Likewise MLflow's basic-auth app
creates its admin user once, with the password it is given on first start.
"""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlstack.errors import ConfigError, StateError
from mlstack.state import ProjectState, check_private, write_private

if TYPE_CHECKING:
    from mlstack.config import StackConfig

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


# --- the secrets of managed services (postgres.external, storage.external) --------------------
# Never stored in the config: read from the environment variable or file the config names, when
# a command needs them. Stored only where the stack's own are (the rendered .env, mode 0600).


@dataclass(frozen=True)
class ExternalSecrets:
    """The password of a managed PostgreSQL and the keys of a managed S3 API ("" when the
    service is the stack's own, or when a reading command could not read them)."""

    postgres_password: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""

    def as_env(self) -> dict[str, str]:
        """As the compose file's variables (.env): only those that are set."""
        found = {
            "EXTERNAL_POSTGRES_PASSWORD": self.postgres_password,
            "EXTERNAL_S3_ACCESS_KEY": self.s3_access_key,
            "EXTERNAL_S3_SECRET_KEY": self.s3_secret_key,
        }
        return {k: v for k, v in found.items() if v}

    def values(self) -> list[str]:
        """The values to mask in output (an access key too: it names the account)."""
        return [v for v in (self.postgres_password, self.s3_secret_key, self.s3_access_key) if v]


def read_secret(
    key: str, env_name: str | None, file_path: str | None, environ: Mapping[str, str]
) -> str:
    """The secret `key` names: the first line of `file_path`, else the variable `env_name`.
    ConfigError (one line naming the key and the source) when it is missing or empty."""
    section = key.rsplit(".", 1)[0]
    if file_path:
        path = Path(file_path).expanduser()
        fix = f"write the secret on the first line of {path} (chmod 600), or point {key}_file at its file"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise ConfigError(f"{key}_file {path} does not exist: {e.strerror}", fix) from None
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise ConfigError(f"{key}_file {path} cannot be read: {why}", fix) from None
        value = (text.splitlines() or [""])[0].rstrip("\r\n")
        if not value:
            raise ConfigError(f"{key}_file {path} is empty: its first line holds the secret", fix)
        return value
    name = env_name or ""
    value = environ.get(name, "")
    if not value:
        state = "is empty" if name in environ else "is not set"
        raise ConfigError(
            f"{key}_env: ${name} {state}",
            f"export {name} in the shell that runs mlstack, or name a file with {key}_file "
            f"(see {section} in mlstack.yaml)",
        )
    return value


def external_secrets(
    config: StackConfig,
    environ: Mapping[str, str] | None = None,
    *,
    strict: bool = True,
    services: Sequence[str] = ("postgres", "storage"),
) -> ExternalSecrets:
    """Read the secrets of the config's managed services (of `services`); with `strict` False
    (commands that only read logs), one that cannot be read is left empty, not refused."""
    environ = os.environ if environ is None else environ
    pg = config.postgres.external if "postgres" in services else None
    s3 = config.storage.external if "storage" in services else None

    def read(key: str, env_name: str | None, file_path: str | None) -> str:
        try:
            return read_secret(key, env_name, file_path, environ)
        except ConfigError:
            if strict:
                raise
            return ""

    found = ExternalSecrets()
    if pg is not None:
        password = read("postgres.external.password", pg.password_env, pg.password_file)
        found = replace(found, postgres_password=password)
    if s3 is not None:
        found = replace(
            found,
            s3_access_key=read(
                "storage.external.access_key", s3.access_key_env, s3.access_key_file
            ),
            s3_secret_key=read(
                "storage.external.secret_key", s3.secret_key_env, s3.secret_key_file
            ),
        )
    return found
