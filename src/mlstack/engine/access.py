"""Which engine mlstack talks to, and what to tell the user when it cannot."""

from __future__ import annotations

import os
import pwd

from mlstack.errors import EngineUnavailable


def is_remote(url: str) -> bool:
    """A tcp:// or ssh:// engine is another machine's (tcp to loopback counts as ours)."""
    local = ("unix://", "npipe://", "tcp://127.0.0.1", "tcp://localhost", "tcp://[::1]")
    return not url.startswith(local)


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _user() -> str:
    uid = os.getuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def unreachable(error: BaseException) -> EngineUnavailable:
    host = docker_host()
    text = f"{error} {error.__context__ or ''}"
    if isinstance(error, PermissionError) or "Permission denied" in text:
        return EngineUnavailable(
            f"permission denied on the Docker engine at {host}: user {_user()} may not use it",
            "add the user to the docker group (sudo usermod -aG docker $USER, then log in "
            "again), use rootless Docker (DOCKER_HOST=unix://$XDG_RUNTIME_DIR/docker.sock), "
            "or run mlstack with sudo",
        )
    return EngineUnavailable(
        f"the Docker engine is not reachable at {host}",
        "start Docker (Docker Desktop, `sudo systemctl start docker` or `sudo dockerd &`), "
        "or point DOCKER_HOST at a running engine",
    )
