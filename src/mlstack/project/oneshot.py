"""One-shot containers of an MLflow image on the stack's network: `mlflow db upgrade`
(migration.py), `mlflow gc` (commands/gc.py) and the admin login in a users database the stack
did not make (restoring.py, external.py).

They get the MLflow server's environment, so the backend URI with its password and the S3 keys
reach them there only, never on a command line (which `docker inspect` and `ps` show). The
container is removed whatever happens (engine.run_once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlstack import labels
from mlstack.compose.launcher import TLS_CERT, TLS_KEY
from mlstack.engine import EngineAPI
from mlstack.project.context import Project


@dataclass(frozen=True)
class Finished:
    """How a one-shot container ended: its exit code (-1: killed at its timeout), the tail of
    its log with secrets masked, and `problem`, the gist of a failure ("" on success)."""

    exit_code: int
    log: str
    problem: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def gist(log: str, exit_code: int, timeout: float) -> str:
    """The gist of a failed run: its last log line (MLflow ends with the exception's message)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {exit_code}"
    if exit_code == -1:
        return f"no result after {timeout:.0f}s ({last})"
    return last


def backend_on(project: Project, database: str | None) -> dict[str, str]:
    """The server's environment changed to name `database` as its backend (none: unchanged)."""
    if database is None:
        return {}
    uri = project.service("mlflow").environment["MLFLOW_BACKEND_STORE_URI"]
    base, query = uri.partition("?")[::2]  # a managed server's URI ends with ?sslmode=...
    renamed = base.rsplit("/", 1)[0] + "/" + database
    return {"MLFLOW_BACKEND_STORE_URI": renamed + (f"?{query}" if query else "")}


def _server_environment(project: Project) -> dict[str, str]:
    """The MLflow server's environment without its TLS certificate and key: a one-shot
    container is a client of the server at most (it keeps the CA)."""
    server = project.service("mlflow").environment
    return {k: v for k, v in server.items() if k not in (TLS_CERT, TLS_KEY)}


def run_on_database(
    project: Project,
    engine: EngineAPI,
    image: str,
    script: str,
    *,
    role: str,
    args: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> Finished:
    """Run `sh -c SCRIPT ROLE ARGS...` in a one-shot container of `image` named
    `<project>-mlflow-<role>`, with the server's environment plus `environment`.

    The script reads secrets from its environment (`"$MLFLOW_BACKEND_STORE_URI"`); `args` (its
    "$@") carry only what is no secret.
    """
    done = engine.run_once(
        image,
        ["sh", "-c", script, role, *args],
        name=f"{project.name}-mlflow-{role}",
        network=project.spec.network,
        environment={**_server_environment(project), **(environment or {})},
        labels={**project.spec.labels, labels.SERVICE: role},
        timeout=timeout,
    )
    log = project.scrub(done.log_tail)
    problem = "" if done.exit_code == 0 else gist(log, done.exit_code, timeout)
    return Finished(done.exit_code, log, problem)


# The stack's admin login in a users database it did not make (a restored one, or a managed
# one made before the stack's secrets): an archive of another stack (or of this one before
# `down --purge` made new secrets) holds another admin password, and MLflow never changes the
# password of an admin that exists. Run with MLflow's own auth store, in its image. The server's
# auth config file is written by its launcher, which a one-shot container does not run: MLflow's
# packaged default is read instead (the store needs only the URI it is given).
ADMIN_LOGIN = """
import os
e = os.environ
e.pop("MLFLOW_AUTH_CONFIG_PATH", None)
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore
store = SqlAlchemyStore()
store.init_db(e["MLFLOW_BACKEND_STORE_URI"])
user, password = e["MLFLOW_AUTH_ADMIN_USERNAME"], e["MLFLOW_AUTH_ADMIN_PASSWORD"]
if store.has_user(user):
    store.update_user(user, password=password, is_admin=True)
else:
    store.create_user(user, password, is_admin=True)
"""


def set_admin_login(
    project: Project, engine: EngineAPI, image: str, database: str, *, role: str
) -> Finished:
    """Give the admin user in the users `database` the stack's login (others keep theirs)."""
    return run_on_database(
        project,
        engine,
        image,
        'exec python -c "$1"',
        role=role,
        args=[ADMIN_LOGIN],
        environment=backend_on(project, database),
        timeout=300.0,
    )
