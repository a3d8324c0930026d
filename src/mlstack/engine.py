"""The Docker engine, through the Docker SDK for Python: the only module that imports docker.

Docker's exceptions are translated here, at the boundary, into mlstack errors with a hint, so
the rest of the code never sees a docker type. Everything is found by label, not by name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlstack.errors import Conflict, EngineUnavailable, ImageUnavailable, MlstackError
from mlstack.services import LABEL_PROJECT, LABEL_SERVICE, LABEL_SPEC_HASH, ServiceSpec

if TYPE_CHECKING:
    import docker


@dataclass(frozen=True)
class ContainerInfo:
    """What `status` and `up` need to know about one container."""

    id: str
    name: str
    service: str
    project: str
    image: str
    state: str  # created | running | restarting | exited | paused | dead
    health: str | None  # starting | healthy | unhealthy | None (no healthcheck)
    exit_code: int
    spec_hash: str
    restart_count: int
    ports: Mapping[str, list[tuple[str, int]]]  # "5000/tcp" -> [(host_ip, host_port)]
    labels: Mapping[str, str]
    image_id: str = ""  # sha256:..., what the container really runs (the tag may have moved)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> ContainerInfo:
        state = data.get("State", {})
        labels = data.get("Config", {}).get("Labels") or {}
        bindings = (data.get("NetworkSettings") or {}).get("Ports") or {}
        ports = {
            key: [
                (b.get("HostIp", ""), int(b["HostPort"]))
                for b in (value or [])
                if b.get("HostPort")
            ]
            for key, value in bindings.items()
        }
        return cls(
            id=data["Id"],
            name=data["Name"].lstrip("/"),
            service=labels.get(LABEL_SERVICE, ""),
            project=labels.get(LABEL_PROJECT, ""),
            image=data.get("Config", {}).get("Image", ""),
            state=state.get("Status", "unknown"),
            health=(state.get("Health") or {}).get("Status"),
            exit_code=int(state.get("ExitCode") or 0),
            spec_hash=labels.get(LABEL_SPEC_HASH, ""),
            restart_count=int(data.get("RestartCount") or 0),
            ports=ports,
            labels=labels,
            image_id=str(data.get("Image", "")),
        )


@dataclass(frozen=True)
class PullProgress:
    """Progress of one image pull, summed over its layers."""

    image: str
    completed: int
    total: int
    status: str
    done: bool = False


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _user() -> str:
    import pwd

    uid = os.getuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _unreachable(error: BaseException) -> MlstackError:
    text = str(error)
    host = _docker_host()
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


class Engine:
    """A connected Docker engine; every method raises MlstackError subclasses only."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client
        # The low-level API: full control over create/networking; its stubs are looser than it.
        self._api: Any = client.api

    @classmethod
    def connect(cls, timeout: float = 60) -> Engine:
        """Connect like the docker CLI does (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH)."""
        import docker
        import docker.errors

        try:
            client = docker.from_env(timeout=int(timeout))
            client.ping()
        except docker.errors.DockerException as e:
            raise _unreachable(e.__context__ or e) from None
        except (OSError, ValueError) as e:
            raise _unreachable(e) from None
        return cls(client)

    def close(self) -> None:
        self._client.close()

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one SDK call, translating Docker's errors into ours."""
        import docker.errors
        import requests

        try:
            return fn(*args, **kwargs)
        except docker.errors.APIError as e:
            explanation = e.explanation or str(e)
            if e.status_code == 409:
                raise Conflict(f"{what}: {explanation}", "see `mlstack status`") from None
            raise MlstackError(f"{what}: {explanation}", "see `mlstack status`") from None
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as e:
            raise _unreachable(e) from None

    # --- images --------------------------------------------------------------------------

    def image_present(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def image_id(self, ref: str) -> str | None:
        """The local image's id (sha256:...), None when it is not present."""
        import docker.errors

        try:
            return str(self._api.inspect_image(ref)["Id"])
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as e:
            if e.status_code == 404:
                return None
            raise MlstackError(f"cannot inspect image {ref}: {e.explanation}") from None

    def pull(self, ref: str, on_progress: Callable[[PullProgress], None]) -> None:
        """Pull one image, reporting byte progress summed over its layers."""
        import docker.errors
        from docker.utils import parse_repository_tag

        repository, tag = parse_repository_tag(ref)
        layers: dict[str, tuple[int, int]] = {}
        try:
            stream = self._api.pull(repository, tag=tag or "latest", stream=True, decode=True)
            for event in stream:
                if "error" in event:
                    raise ImageUnavailable(
                        f"pulling {ref} failed: {event['error']}",
                        _pull_hint(ref),
                    )
                detail = event.get("progressDetail") or {}
                if event.get("id") and detail.get("total"):
                    layers[event["id"]] = (int(detail.get("current", 0)), int(detail["total"]))
                elif event.get("id") and event.get("status") in ("Pull complete", "Already exists"):
                    _, total = layers.get(event["id"], (0, 0))
                    layers[event["id"]] = (total, total)
                completed = sum(c for c, _ in layers.values())
                total = sum(t for _, t in layers.values())
                on_progress(PullProgress(ref, completed, total, str(event.get("status", ""))))
        except docker.errors.APIError as e:
            raise ImageUnavailable(
                f"pulling {ref} failed: {e.explanation or e}", _pull_hint(ref)
            ) from None
        except docker.errors.DockerException as e:
            raise _unreachable(e) from None
        total = sum(t for _, t in layers.values())
        on_progress(PullProgress(ref, total, total, "done", done=True))

    # --- networks and volumes ----------------------------------------------------------

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create the stack's network unless it exists; True when created."""
        existing = self._call("listing networks", self._api.networks, names=[name])
        if any(n["Name"] == name for n in existing):
            return False
        self._call(
            f"creating network {name}",
            self._api.create_network,
            name,
            driver="bridge",
            labels=dict(labels),
            check_duplicate=True,
        )
        return True

    def volume_exists(self, name: str) -> bool:
        import docker.errors

        try:
            self._api.inspect_volume(name)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as e:
            raise MlstackError(f"inspecting volume {name}: {e.explanation}") from None
        except docker.errors.DockerException as e:
            raise _unreachable(e) from None
        return True

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create a named volume unless it exists; True when created."""
        if self.volume_exists(name):
            return False
        self._call(
            f"creating volume {name}", self._api.create_volume, name=name, labels=dict(labels)
        )
        return True

    def project_volumes(self, project: str) -> list[str]:
        found = self._call(
            "listing volumes", self._api.volumes, filters={"label": f"{LABEL_PROJECT}={project}"}
        )
        return sorted(v["Name"] for v in (found.get("Volumes") or []))

    def project_networks(self, project: str) -> list[str]:
        found = self._call(
            "listing networks", self._api.networks, filters={"label": f"{LABEL_PROJECT}={project}"}
        )
        return sorted(n["Name"] for n in found)

    def remove_volume(self, name: str) -> None:
        import docker.errors

        try:
            self._api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            raise MlstackError(f"removing volume {name}: {e.explanation}") from None

    def remove_network(self, name: str) -> None:
        import docker.errors

        try:
            self._api.remove_network(name)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            raise MlstackError(f"removing network {name}: {e.explanation}") from None

    # --- containers --------------------------------------------------------------------

    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        import docker.errors

        try:
            data = self._api.inspect_container(name_or_id)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as e:
            raise MlstackError(f"inspecting {name_or_id}: {e.explanation}") from None
        except docker.errors.DockerException as e:
            raise _unreachable(e) from None
        return ContainerInfo.from_inspect(data)

    def project_containers(self, project: str) -> list[ContainerInfo]:
        """Every container labelled with the project, running or not."""
        found = self._call(
            "listing containers",
            self._api.containers,
            all=True,
            filters={"label": f"{LABEL_PROJECT}={project}"},
        )
        infos = [self.inspect(c["Id"]) for c in found]
        return sorted((i for i in infos if i is not None), key=lambda i: i.name)

    def create(self, spec: ServiceSpec, network: str, aliases: list[str]) -> str:
        """Create (not start) the container for `spec` on `network`; returns its id."""
        api = self._api
        # Plain numbers: the SDK appends "/tcp" itself ("8080/tcp" would expose "8080/tcp/tcp",
        # and the binding then works only when the image EXPOSEs the port).
        ports = [p.container_port for p in spec.ports]
        port_bindings = {f"{p.container_port}/tcp": (p.host_ip, p.host_port) for p in spec.ports}
        binds = {name: {"bind": target, "mode": "rw"} for name, target in spec.volumes}
        host_config = api.create_host_config(
            port_bindings=port_bindings,
            binds=binds,
            restart_policy={"Name": spec.restart},
            network_mode=network,
            init=False,
        )
        networking = api.create_networking_config(
            {network: api.create_endpoint_config(aliases=aliases)}
        )
        health = None
        if spec.healthcheck:
            h = spec.healthcheck
            health = {
                "test": list(h.test),
                "interval": int(h.interval * 1e9),
                "timeout": int(h.timeout * 1e9),
                "retries": h.retries,
            }
        created = self._call(
            f"creating container {spec.container_name}",
            api.create_container,
            spec.image,
            command=list(spec.command) if spec.command is not None else None,
            name=spec.container_name,
            environment=dict(spec.environment),
            labels=dict(spec.labels),
            ports=ports,
            volumes=[target for _, target in spec.volumes],
            host_config=host_config,
            networking_config=networking,
            stop_signal=spec.stop_signal,
            stop_timeout=int(spec.stop_grace_period),
            healthcheck=health,
            detach=True,
        )
        return str(created["Id"])

    def start(self, name_or_id: str) -> None:
        self._call(f"starting {name_or_id}", self._api.start, name_or_id)

    def stop(self, name_or_id: str, timeout: float) -> None:
        import docker.errors

        try:
            self._api.stop(name_or_id, timeout=int(timeout))
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            raise MlstackError(f"stopping {name_or_id}: {e.explanation}") from None

    def remove(self, name_or_id: str) -> None:
        """Remove a container with its anonymous volumes (images that declare VOLUME leave them)."""
        import docker.errors

        try:
            self._api.remove_container(name_or_id, v=True, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code == 409 and "in progress" in str(e.explanation):
                return
            raise MlstackError(f"removing {name_or_id}: {e.explanation}") from None

    def logs(
        self, name_or_id: str, *, tail: int | str = "all", follow: bool = False
    ) -> Iterator[bytes]:
        """The container's output, as chunks (a stream when following)."""
        import docker.errors

        try:
            if follow:
                yield from self._api.logs(name_or_id, stream=True, follow=True, tail=tail)
            else:
                yield self._api.logs(name_or_id, tail=tail)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            raise MlstackError(f"reading logs of {name_or_id}: {e.explanation}") from None

    def log_tail(self, name_or_id: str, lines: int = 20) -> str:
        """The last lines a container printed, for error messages; never raises."""
        try:
            return b"".join(self.logs(name_or_id, tail=lines)).decode(errors="replace").rstrip()
        except MlstackError:
            return ""

    def exec(
        self,
        name_or_id: str,
        command: list[str],
        *,
        environment: Mapping[str, str] | None = None,
        user: str = "",
    ) -> tuple[int, str]:
        """Run a command in a running container; (exit code, output)."""
        api = self._api
        created = self._call(
            f"exec in {name_or_id}",
            api.exec_create,
            name_or_id,
            command,
            environment=dict(environment) if environment else None,
            user=user,
        )
        output = self._call(f"exec in {name_or_id}", api.exec_start, created["Id"])
        code = self._call(f"exec in {name_or_id}", api.exec_inspect, created["Id"])["ExitCode"]
        return int(code or 0), output.decode(errors="replace") if isinstance(
            output, bytes
        ) else str(output)

    def copy_out(self, name_or_id: str, path: str, dest: Path) -> None:
        """Copy one file out of a container to `dest` (streamed: dumps can be large)."""
        import tarfile

        stream, _ = self._call(
            f"copying {path} from {name_or_id}", self._api.get_archive, name_or_id, path
        )
        with tempfile.TemporaryFile() as raw:
            for chunk in stream:
                raw.write(chunk)
            raw.seek(0)
            with tarfile.open(fileobj=raw, mode="r:") as tar:
                member = tar.next()
                source = tar.extractfile(member) if member is not None else None
                if source is None:
                    raise MlstackError(f"copying {path} from {name_or_id}: not a regular file")
                with open(dest, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)

    def copy_in(self, name_or_id: str, source: Path, directory: str, name: str) -> None:
        """Copy one file into a directory of a container as `name` (streamed through a temp tar)."""
        import tarfile

        with tempfile.TemporaryFile() as raw:
            with tarfile.open(fileobj=raw, mode="w:") as tar:
                info = tar.gettarinfo(str(source), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(source, "rb") as f:
                    tar.addfile(info, f)
            raw.seek(0)
            done = self._call(
                f"copying {name} into {name_or_id}",
                self._api.put_archive,
                name_or_id,
                directory,
                raw,
            )
        if not done:
            raise MlstackError(f"copying {name} into {name_or_id} failed")

    def run_once(
        self,
        image: str,
        command: list[str],
        *,
        name: str,
        network: str,
        environment: Mapping[str, str],
        labels: Mapping[str, str],
        timeout: float,
        tail: int = 20,
    ) -> tuple[int, str]:
        """Run a one-shot container on `network` to its end: (exit code, last log lines).

        The container is removed afterwards whatever happens (failure, timeout, Ctrl-C); a
        timeout kills it and reports exit code -1.
        """
        import requests

        api = self._api
        self.remove(name)  # a leftover of an interrupted earlier run
        host_config = api.create_host_config(network_mode=network, init=False)
        created = self._call(
            f"creating container {name}",
            api.create_container,
            image,
            command=command,
            name=name,
            environment=dict(environment),
            labels=dict(labels),
            host_config=host_config,
            detach=True,
        )
        try:
            self._call(f"starting {name}", api.start, created["Id"])
            try:
                waited = api.wait(created["Id"], timeout=int(timeout))
                code = int(waited.get("StatusCode", -1))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                code = -1
            return code, self.log_tail(created["Id"], tail)
        finally:
            self.remove(created["Id"])

    def stats_memory(self, name_or_id: str) -> int:
        """Current memory use of a running container in bytes (0 when unknown)."""
        data = self._call(f"stats of {name_or_id}", self._api.stats, name_or_id, stream=False)
        usage = data.get("memory_stats", {})
        cache = usage.get("stats", {}).get("inactive_file", 0)
        return int(usage.get("usage", 0)) - int(cache)


def _pull_hint(ref: str) -> str:
    return (
        f"check the image name and your network or registry login (docker login); to use a "
        f"local or mirrored image instead, set its image key in mlstack.yaml (was {ref})"
    )
