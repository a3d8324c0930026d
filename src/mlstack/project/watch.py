"""Watching containers start: has one died, and what did it say before it did.

Shared by `up` (the stack's services) and `serve` (a model server): the same rule for "it exited
or is crash-looping", the same gist of its log, the same hints for causes a log tells apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mlstack.engine import ContainerInfo, EngineAPI
from mlstack.errors import MlstackError

LOG_LINES = 12  # of the gist shown with an error


def exit_reason(info: ContainerInfo | None, restarts_before: int = 0) -> str | None:
    """Why a starting container is no longer starting (gone, exited, restarting), or None."""
    if info is None:
        return "its container was removed"
    oom = ", killed: out of memory" if info.oom_killed else ""
    if info.state in ("exited", "dead"):
        return f"exited with code {info.exit_code}{oom}"
    if info.state == "restarting" or info.restart_count > restarts_before:
        said = f"exit code {info.exit_code}{oom}" if info.exit_code else oom[2:]
        return "crashed and is restarting" + (f" ({said})" if said else "")
    return None


def exited_check(
    engine: EngineAPI, containers: Mapping[str, str], restarts: Mapping[str, int]
) -> Callable[[str], str | None]:
    """For `wait_ready`: the exit reason of a service's container (by service name)."""

    def exited(service: str) -> str | None:
        info = engine.inspect(containers[service])
        return exit_reason(info, restarts.get(service, 0))

    return exited


def log_gist(text: str, lines: int = LOG_LINES) -> str:
    """The gist of a log: its own lines and the errors, without traceback frames (indented) and
    without repeats (a restarting container prints the same lines again)."""
    kept = [
        line.rstrip()
        for line in text.splitlines()
        if line.strip() and not line[0].isspace() and not line.startswith("Traceback")
    ]
    return "\n".join(list(dict.fromkeys(kept))[-lines:])


def log_hint(service: str, log: str) -> str | None:
    """A fix for a failure that the service's log tells apart, or None."""
    lowered = log.lower()
    # MLflow 3.17 says "requires the Flask-WTF package"; older ones fail on `import flask_wtf`.
    if service == "mlflow" and ("flask_wtf" in lowered or "flask-wtf" in lowered):
        return (
            "the MLflow image lacks Flask-WTF, which `auth: true` (MLflow's basic-auth app) "
            "needs: use an image with mlflow[auth] installed (the official -full image, or "
            "`pip install 'mlflow[auth]'` in yours) as mlflow.image, or set auth: false"
        )
    return None


def with_log(
    error: MlstackError,
    engine: EngineAPI,
    container: str,
    *,
    scrub: Callable[[str], str],
    service: str,
) -> MlstackError:
    """`error` with the gist of `container`'s log above it (secrets masked), and a specific hint
    when the log names a known cause."""
    log = engine.log_tail(container, 200)
    if not log:
        return error
    hint = log_hint(service, log)
    if hint:
        error.hint = hint
    gist = log_gist(log)
    if gist:
        error.details = "\n".join(
            filter(None, [error.details, f"last log lines of {service}:", scrub(gist)])
        )
    return error
