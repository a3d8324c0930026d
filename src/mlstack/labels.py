"""The labels mlstack puts on every Docker object it makes, and finds them by.

A vocabulary shared by the engine (which filters by them), the compose renderer (which writes
them) and the commands (which read them): it sits at the bottom, beside the errors.
"""

from __future__ import annotations

import re

PROJECT = "io.mlstack.project"
SERVICE = "io.mlstack.service"
SPEC_HASH = "io.mlstack.spec-hash"

# A served model's container (`mlstack serve`).
SERVE_NAME = "io.mlstack.serve.name"
SERVE_PORT = "io.mlstack.serve.port"
MODEL_URI = "io.mlstack.model.uri"  # as the user gave it
MODEL_SERVED = "io.mlstack.model.served-uri"  # what the container loads (pinned)
MODEL_NAME = "io.mlstack.model.name"
MODEL_VERSION = "io.mlstack.model.version"

# Docker's own rule for label keys is loose; these are the keys people write (reverse DNS).
_KEY_RE = re.compile(r"^[a-z0-9]([a-z0-9._/-]{0,126}[a-z0-9])?$")
RESERVED_PREFIXES = ("io.mlstack.", "com.docker.")


def key_problem(key: str) -> str | None:
    """Why `key` cannot be a user's label key, or None when it can."""
    if not _KEY_RE.match(key):
        return (
            f"{key!r} is not a label key: use lowercase letters, digits, '.', '-', '_' and '/', "
            "e.g. com.example.team"
        )
    if key.startswith(RESERVED_PREFIXES):
        return (
            f"{key!r} is reserved: mlstack and Docker set keys under {', '.join(RESERVED_PREFIXES)}"
        )
    return None


def of_project(project: str) -> dict[str, str]:
    """The filter that finds every object of one project."""
    return {PROJECT: project}
