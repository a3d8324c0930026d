"""What `up` checks before it creates anything: container names, host ports and images, then
the managed services (their login, their rights, and what is missing there created), so that a
refused `up` leaves nothing behind."""

from __future__ import annotations

from mlstack.choices import PullPolicy
from mlstack.engine import ContainerInfo, EngineAPI
from mlstack.errors import Conflict, ImageUnavailable
from mlstack.project.backends import Backends
from mlstack.project.context import Project
from mlstack.project.external import Made
from mlstack.project.ports import check_ports
from mlstack.project.reporting import Event, Reporter


def _existing(project: Project, engine: EngineAPI) -> dict[str, ContainerInfo]:
    """Our existing containers by service; refuse a same-named container that is not ours."""
    ours: dict[str, ContainerInfo] = {}
    for name, spec in project.spec.services.items():
        info = engine.inspect(spec.container_name)
        if info is None:
            continue
        if info.project != project.name:
            raise Conflict(
                f"a container named {spec.container_name} exists and is not part of mlstack "
                f"project {project.name!r}",
                "remove or rename that container, or choose another project name "
                "(set project in mlstack.yaml or --project)",
            )
        ours[name] = info
    return ours


def _ensure_images(
    project: Project, engine: EngineAPI, policy: PullPolicy, report: Reporter
) -> None:
    services = project.spec.services
    for image in dict.fromkeys(s.image for s in services.values()):
        # The service names are the config's sections: postgres.image, storage.image, ...
        key = next(f"{k}.image" for k, s in services.items() if s.image == image)
        present = engine.image_id(image) is not None
        if policy is PullPolicy.NEVER and not present:
            raise ImageUnavailable(
                f"image {image} is not on this machine and --pull never forbids pulling it",
                f"pull or build it first, use --pull missing, or set {key} to an image you have",
            )
        if policy is PullPolicy.ALWAYS or not present:
            report(Event("step", message=f"pulling {image}"))
            try:
                engine.pull(image, lambda p: report(Event("pull", pull=p)))
            except ImageUnavailable as e:
                e.hint = (
                    "check the image name, your network and registry login (docker login), "
                    f"or set {key} to an image you have (a local or mirrored one)"
                )
                raise


def preflight(
    project: Project, engine: EngineAPI, pull: PullPolicy, report: Reporter
) -> dict[str, ContainerInfo]:
    """Everything `up` checks before it creates anything; the existing containers by service."""
    current = _existing(project, engine)
    if not engine.remote:  # another machine's ports: its engine refuses a taken one itself
        check_ports(
            project.config, [port for info in current.values() for port in info.host_ports()]
        )
    _ensure_images(project, engine, pull, report)
    return current


def prepare_external(project: Project, backends: Backends, report: Reporter) -> list[Made]:
    """The managed services checked (and what is missing there created) before anything of
    the stack is made: a wrong password or a missing right leaves nothing behind."""
    if not project.external_services():
        return []
    report(Event("step", message="managed " + " and ".join(project.external_services())))
    return backends.prepare_external()
