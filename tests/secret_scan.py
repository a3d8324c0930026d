"""The check behind "secrets are never printed": every CLI call in the tests goes through it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

SHOW_SECRETS = "--show-secrets"


def secret_values(secrets_file: Path) -> set[str]:
    """The credential values in a project's secrets file (not user names); none when absent.

    Parsed here, not with mlstack's loader: a test may have broken the file on purpose.
    """
    try:
        text = secrets_file.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return set()
    values = set()
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if (
            sep
            and not key.startswith("#")
            and not key.strip().endswith(("_USER", "_USERNAME"))
            and value.strip()
        ):
            values.add(value.strip())
    return values


def leaked(values: Iterable[str], *outputs: str) -> list[str]:
    """The secret values that occur in any of `outputs`."""
    return sorted(v for v in values if any(v in output for output in outputs))


def assert_no_secrets(argv: Sequence[str], values: Iterable[str], *outputs: str) -> None:
    """Fail when a secret was printed by a command not given --show-secrets."""
    if SHOW_SECRETS in argv:
        return
    found = leaked(values, *outputs)
    assert not found, f"`mlstack {' '.join(argv)}` printed {len(found)} secret value(s)"
