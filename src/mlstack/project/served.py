"""Models served in a project (`mlstack serve`), as the other commands find them.

`status` lists them, `logs serve-NAME` reads one, `down` removes them with the stack: they need
the names and labels of served containers, not the serve command itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mlstack import labels
from mlstack.config import StackConfig
from mlstack.engine import ContainerInfo, EngineAPI
from mlstack.errors import NotRunning, UsageError

if TYPE_CHECKING:  # the type only: `completion` imports this module and should stay light
    from mlstack.project.context import Project

SERVICE = "serve"  # the io.mlstack.service label of a model server
CONTAINER_PORT = 8080
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")


LOOPBACK_ONLY = (
    "a model server has no login: it listens on the loopback of the stack's machine only; put "
    "a proxy with a login in front of it to share it"
)


def model_url(config: StackConfig, port: int) -> str:
    """Where a model server published on `port` answers (on loopback when kept there)."""
    return f"http://{config.private_host}:{port}"


def model_urls(project: Project, container: str, port: int) -> tuple[str, str]:
    """A model server's URL for the user, and the one mlstack probes (through the relay when
    the engine is another machine's)."""
    url = model_url(project.config, port)
    if project.relay is None:
        return url, url
    relayed, relayed_port = project.relay.address(container, CONTAINER_PORT)
    return url, f"http://{relayed}:{relayed_port}"


def check_name(name: str) -> str:
    """A serve name, refused unless it is Docker-safe."""
    if not _NAME_RE.match(name):
        raise UsageError(
            f"{name!r} is not a valid serve name: use 1-40 lowercase letters, digits, '.', '_' "
            "and '-', starting with a letter or digit",
            "e.g. --name wine-classifier",
        )
    return name


def container_name(project: str, name: str) -> str:
    return f"{project}-serve-{name}"


def served_name(info: ContainerInfo) -> str:
    return info.labels.get(labels.SERVE_NAME, info.name)


def served_containers(engine: EngineAPI, project: str) -> list[ContainerInfo]:
    """Every model server of `project`, by name."""
    found = engine.containers({labels.PROJECT: project, labels.SERVICE: SERVICE})
    return sorted(found, key=served_name)


def find_served(engine: EngineAPI, project: str, name: str) -> ContainerInfo:
    """The container serving `name` (for `mlstack logs serve-NAME`)."""
    for info in served_containers(engine, project):
        if served_name(info) == name:
            return info
    raise NotRunning(
        f"no model served as {name!r} in project {project!r}",
        "see `mlstack status` for what is served",
    )
