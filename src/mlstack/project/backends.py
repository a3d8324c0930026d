"""The stack's services as their clients reach them: probes, databases, the bucket, the schema.

`Backends` is the second seam beside the engine: `up` and `status` talk to the services only
through it, so the tests drive them with scripted services on the FakeEngine, and a stack whose
PostgreSQL or S3 is managed elsewhere can put its own behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mlstack.adapters.mlflow_http import STORAGE_CHECK, touch
from mlstack.compose.render import api_check
from mlstack.engine import EngineAPI
from mlstack.errors import NotReady
from mlstack.health import CallableProbe, MlflowProbe, PostgresProbe, Probe, S3Probe
from mlstack.project import external
from mlstack.project.context import Project
from mlstack.project.external import Made


class Backends(Protocol):
    def probes(self, engine: EngineAPI | None = None) -> dict[str, Probe]:
        """A readiness probe per service; with an engine, MLflow's also checks in-network."""
        ...

    def vouch(self) -> Probe:
        """One probe of MLflow that proves its database and its bucket too, as MLflow uses them:
        an API search (MLflow -> PostgreSQL) and a listing through its artifact proxy (MLflow
        -> S3 with the stack's keys). When it passes, the other probes need not run."""
        ...

    def warm(self) -> None:
        """Have MLflow make its S3 client now (0.7 s on its first artifact call), for the next
        command's sake; returns at once."""
        ...

    def prepare_external(self) -> list[Made]:
        """Check the managed services (postgres.external, storage.external) and create what
        the stack needs there, before `up` makes anything of its own; what was created."""
        ...

    def ensure_databases(self) -> bool:
        """Create the tracking (and auth) databases unless they exist; True when the tracking
        database was created."""
        ...

    def ensure_bucket(self) -> bool:
        """Create the artifact bucket unless it exists; True when created."""
        ...

    def schema_revision(self) -> str | None:
        """MLflow's alembic revision in the tracking database, None without a schema."""
        ...


def in_network_check(project: Project) -> list[str]:
    """Python run inside the MLflow container: the API by its in-network name, as serve does."""
    return [
        "python",
        "-S",
        "-c",
        api_check(5, auth=project.config.auth, base=project.in_network_url),
    ]


class HostBackends:
    """The services through the ports the stack publishes on this machine."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def probes(self, engine: EngineAPI | None = None) -> dict[str, Probe]:
        p = self.project
        mlflow: Probe = p.mlflow_probe()
        if engine is not None:
            mlflow = CallableProbe("mlflow", _host_and_network(p, engine, mlflow))
        # A managed S3 API's keys may list nothing but the bucket: its probe lists that.
        bucket = p.config.storage.bucket if p.config.storage.external else None
        return {
            "postgres": PostgresProbe("postgres", p.postgres()),
            "storage": S3Probe("storage", p.s3(), bucket=bucket, read_from=p.config.storage.bucket),
            "mlflow": mlflow,
        }

    def vouch(self) -> Probe:
        p = self.project
        return MlflowProbe(
            "mlflow",
            p.tracking_uri,
            headers=p.mlflow_headers(),
            storage=True,
            cafile=p.ca_file,
        )

    def warm(self) -> None:
        p = self.project
        touch(p.tracking_uri + STORAGE_CHECK, headers=p.mlflow_headers(), cafile=p.ca_file)

    def prepare_external(self) -> list[Made]:
        return external.provision(self.project)

    def ensure_databases(self) -> bool:
        # deferred: psycopg2 and boto3 load only when provisioning (a no-op `up` never does)
        from mlstack.adapters import postgres

        c = self.project.config
        target = self.project.postgres()
        created = postgres.ensure_database(target, c.postgres.database)
        if c.auth:
            postgres.ensure_database(target, c.auth_database)
        return created

    def ensure_bucket(self) -> bool:
        # deferred: as ensure_databases
        from mlstack.adapters import s3

        return s3.ensure_bucket(self.project.s3(), self.project.config.storage.bucket)

    def schema_revision(self) -> str | None:
        # deferred: as ensure_databases
        from mlstack.adapters import postgres

        return postgres.schema_revision(self.project.postgres())


def _host_and_network(project: Project, engine: EngineAPI, from_host: Probe) -> Callable[[], None]:
    container = project.container("mlflow")

    def check() -> None:
        from_host.check()
        info = engine.inspect(container)
        if info is not None and info.health == "healthy":
            return  # Docker's healthcheck made this same in-network call moments ago
        code, output = engine.exec(container, in_network_check(project))
        if code != 0:
            raise NotReady(f"in-network API call failed: {output.strip()[-200:]}", service="mlflow")

    return check
