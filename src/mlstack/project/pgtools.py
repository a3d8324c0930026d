"""Where `pg_dump` and `pg_restore` run for a backup or a restore.

The stack's own PostgreSQL: inside its container, over its loopback. A managed one
(postgres.external), or a swarm's (its task may run on another node than the one mlstack talks
to): inside a short-lived container of `postgres.image` on the stack's network (a swarm's
overlay is attachable), which reaches the server as MLflow does, removed afterwards whatever
happens. Not psycopg2 on
the host: the archive holds `pg_dump -Fc` dumps (one format for every stack, so a laptop's backup
restores into a team server's managed database and back), which only PostgreSQL's own tools
write and read completely (schema, sequences, constraints, large objects) as one consistent
snapshot; and the host needs no PostgreSQL client of the server's version.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlstack import labels
from mlstack.adapters.postgres import Tools
from mlstack.engine import EngineAPI, ServiceSpec
from mlstack.project.context import Project
from mlstack.project.reporting import Event, Reporter, quiet

POSTGRES_PORT = 5432
ROLE = "pgtools"  # its service label, and its container's name after the project's


def tools_spec(project: Project) -> ServiceSpec:
    """A container of the stack's PostgreSQL image that only waits: the tools are exec'd in it
    (with the password in their environment only)."""
    image = project.config.postgres.image
    return ServiceSpec(
        name=ROLE,
        container_name=f"{project.name}-{ROLE}",
        image=image,
        command=("2147483647",),
        entrypoint=("sleep",),
        environment={},
        ports=(),
        volumes=(),
        labels={**project.spec.labels, labels.SERVICE: ROLE},
        restart="no",
        stop_signal=None,
        stop_grace_period=0.0,
        healthcheck=None,
        depends_on=(),
    ).with_hash()


@contextmanager
def pg_tools(project: Project, engine: EngineAPI, report: Reporter = quiet) -> Iterator[Tools]:
    """The place to run pg_dump / pg_restore against the project's database server."""
    external = project.config.postgres.external
    if external is None and not project.config.swarm_target:
        yield Tools(project.container("postgres"))
        return
    spec = tools_spec(project)
    if engine.image_id(spec.image) is None:
        report(Event("step", message=f"pulling {spec.image} (pg_dump and pg_restore)"))
        engine.pull(spec.image, lambda p: report(Event("pull", pull=p)))
    engine.remove(spec.container_name)  # a leftover of an interrupted run
    try:
        engine.create(spec, project.spec.network, [spec.container_name])
        engine.start(spec.container_name)
        if external is not None:
            yield Tools(spec.container_name, external.host, external.port)
        else:  # a swarm's, on another node maybe: by its name in the overlay network
            yield Tools(spec.container_name, "postgres", POSTGRES_PORT)
    finally:
        engine.remove(spec.container_name)
