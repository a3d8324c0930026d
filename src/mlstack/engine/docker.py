"""The Docker engine through the Docker SDK for Python: the only module that imports docker.

Every SDK call goes through `_translated`, the one place Docker's and requests' exceptions become
mlstack errors; the original stays attached as the cause (`--debug` prints it).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import requests
from docker.utils import parse_repository_tag

from mlstack.engine.access import docker_host as _docker_host
from mlstack.engine.access import is_remote
from mlstack.engine.access import unreachable as _unreachable
from mlstack.engine.models import (
    ContainerInfo,
    OneShot,
    PullProgress,
    ServiceSpec,
    count_layers,
    pull_hint,
)
from mlstack.engine.relay import Forwarder, Stream, relay_command
from mlstack.errors import (
    EngineConflict,
    EngineError,
    EngineUnavailable,
    ImageUnavailable,
    ObjectMissing,
)

_HINT = "see `mlstack status`; rerun with --debug for Docker's own error"
SINCE_MARGIN = 2.0  # seconds: Docker stamps a run's first log lines before its StartedAt


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Docker's errors, as mlstack's: the one edge between the SDK and the rest."""
    try:
        yield
    except docker.errors.NotFound as e:
        raise ObjectMissing(f"{what}: {e.explanation or e}", _HINT) from e
    except docker.errors.APIError as e:
        explanation = e.explanation or str(e)
        if e.status_code == 409:
            raise EngineConflict(f"{what}: {explanation}", _HINT) from e
        raise EngineError(f"{what}: {explanation}", _HINT) from e
    except requests.exceptions.Timeout as e:
        raise EngineError(
            f"{what}: the Docker engine at {_docker_host()} did not answer in time", _HINT
        ) from e
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as e:
        raise _unreachable(e) from e
    except ConnectionError as e:  # the socket itself (refused, reset, broken pipe)
        raise _unreachable(e) from e


@contextmanager
def _absent_ok(what: str) -> Iterator[None]:
    """As `_translated`, but a missing object means there is nothing to do."""
    try:
        with _translated(what):
            yield
    except ObjectMissing:
        pass


def _label_filter(labels: Mapping[str, str]) -> dict[str, list[str]]:
    return {"label": [f"{key}={value}" for key, value in labels.items()]}


class DockerEngine:
    """A connected Docker engine (implements `EngineAPI`)."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client
        # The low-level API: full control over create/networking; its stubs are looser than it.
        self._api: Any = client.api
        self._forwarders: list[Forwarder] = []

    @classmethod
    def connect(cls, timeout: float = 60) -> DockerEngine:
        """Connect like the docker CLI does (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH)."""
        with _translated("connecting to the Docker engine"):
            client = docker.from_env(timeout=int(timeout))
            client.ping()
        return cls(client)

    @property
    def remote(self) -> bool:
        return is_remote(_docker_host())

    def close(self) -> None:
        for forwarder in self._forwarders:
            forwarder.close()
        self._client.close()

    # --- images --------------------------------------------------------------------------

    def image_id(self, ref: str) -> str | None:
        try:
            with _translated(f"inspecting image {ref}"):
                return str(self._api.inspect_image(ref)["Id"])
        except ObjectMissing:
            return None

    def pull(self, ref: str, on_progress: Callable[[PullProgress], None]) -> None:
        repository, tag = parse_repository_tag(ref)
        layers: dict[str, tuple[int, int]] = {}
        try:
            with _translated(f"pulling {ref}"):
                stream = self._api.pull(repository, tag=tag or "latest", stream=True, decode=True)
                for event in stream:
                    if "error" in event:
                        raise ImageUnavailable(
                            f"pulling {ref} failed: {event['error']}", pull_hint(ref)
                        )
                    count_layers(layers, event)
                    completed = sum(c for c, _ in layers.values())
                    total = sum(t for _, t in layers.values())
                    on_progress(PullProgress(ref, completed, total, str(event.get("status", ""))))
        except EngineUnavailable:
            raise
        except EngineError as e:  # refused by the registry or the engine: not there to use
            reason = e.message.removeprefix(f"pulling {ref}: ")  # say the image once
            raise ImageUnavailable(f"pulling {ref} failed: {reason}", pull_hint(ref)) from e
        total = sum(t for _, t in layers.values())
        on_progress(PullProgress(ref, total, total, "done", done=True))

    # --- networks and volumes ----------------------------------------------------------

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> bool:
        with _translated(f"creating network {name}"):
            existing = self._api.networks(names=[name])
            if any(n["Name"] == name for n in existing):
                return False
            self._api.create_network(
                name, driver="bridge", labels=dict(labels), check_duplicate=True
            )
        return True

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        try:
            with _translated(f"inspecting volume {name}"):
                self._api.inspect_volume(name)
                return False
        except ObjectMissing:
            pass
        with _translated(f"creating volume {name}"):
            self._api.create_volume(name=name, labels=dict(labels))
        return True

    def networks(self, labels: Mapping[str, str]) -> list[str]:
        with _translated("listing networks"):
            found = self._api.networks(filters=_label_filter(labels))
        return sorted(n["Name"] for n in found)

    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        with _translated("listing volumes"):
            found = self._api.volumes(filters=_label_filter(labels))
        return sorted(v["Name"] for v in (found.get("Volumes") or []))

    def remove_network(self, name: str) -> None:
        with _absent_ok(f"removing network {name}"):
            self._api.remove_network(name)

    def remove_volume(self, name: str) -> None:
        with _absent_ok(f"removing volume {name}"):
            self._api.remove_volume(name, force=True)

    # --- containers --------------------------------------------------------------------

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        with _translated("listing containers"):
            found = self._api.containers(all=True, filters=_label_filter(labels))
        infos = [self.inspect(c["Id"]) for c in found]
        return sorted((i for i in infos if i is not None), key=lambda i: i.name)

    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        try:
            with _translated(f"inspecting {name_or_id}"):
                return ContainerInfo.from_inspect(self._api.inspect_container(name_or_id))
        except ObjectMissing:
            return None

    def create(self, spec: ServiceSpec, network: str, aliases: list[str]) -> str:
        api = self._api
        # Plain numbers: the SDK appends "/tcp" itself ("8080/tcp" would expose "8080/tcp/tcp",
        # and the binding then works only when the image EXPOSEs the port).
        ports = [p.container_port for p in spec.ports]
        port_bindings = {f"{p.container_port}/tcp": (p.host_ip, p.host_port) for p in spec.ports}
        binds = {name: {"bind": target, "mode": "rw"} for name, target in spec.volumes}
        health = spec.healthcheck.in_nanoseconds() if spec.healthcheck else None
        with _translated(f"creating container {spec.container_name}"):
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
            created = api.create_container(
                spec.image,
                command=list(spec.command) if spec.command is not None else None,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
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
        with _translated(f"starting {name_or_id}"):
            self._api.start(name_or_id)

    def unpause(self, name_or_id: str) -> None:
        with _translated(f"unpausing {name_or_id}"):
            self._api.unpause(name_or_id)

    def stop(self, name_or_id: str, timeout: float) -> None:
        with _absent_ok(f"stopping {name_or_id}"):
            self._api.stop(name_or_id, timeout=int(timeout))

    def remove(self, name_or_id: str) -> None:
        try:
            with _absent_ok(f"removing {name_or_id}"):
                self._api.remove_container(name_or_id, v=True, force=True)
        except EngineConflict as e:
            if "in progress" not in e.message:  # removed already, by a concurrent call
                raise

    def logs(
        self, name_or_id: str, *, tail: int | str = "all", follow: bool = False, since: float = 0
    ) -> Iterator[bytes]:
        after = max(since - SINCE_MARGIN, 0.001) if since else None
        with _absent_ok(f"reading logs of {name_or_id}"):
            if follow:
                yield from self._api.logs(name_or_id, stream=True, follow=True, tail=tail)
            else:
                yield self._api.logs(name_or_id, tail=tail, since=after)

    def log_tail(self, name_or_id: str, lines: int = 20, *, since: float = 0) -> str:
        try:
            chunks = self.logs(name_or_id, tail=lines, since=since)
            return b"".join(chunks).decode(errors="replace").rstrip()
        except EngineError:
            return ""

    def exec(
        self,
        name_or_id: str,
        command: list[str],
        *,
        environment: Mapping[str, str] | None = None,
        user: str = "",
    ) -> tuple[int, str]:
        api = self._api
        with _translated(f"exec in {name_or_id}"):
            created = api.exec_create(
                name_or_id,
                command,
                environment=dict(environment) if environment else None,
                user=user,
            )
            output = api.exec_start(created["Id"])
            code = api.exec_inspect(created["Id"])["ExitCode"]
        text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
        return int(code or 0), text

    def exec_stream(self, name_or_id: str, command: list[str]) -> Stream:
        """An exec with stdin attached: its raw socket (stdout and stderr multiplexed)."""
        with _translated(f"exec in {name_or_id}"):
            sock = self._api.exec_start(
                self._api.exec_create(name_or_id, command, stdin=True), socket=True
            )
        return cast(Stream, getattr(sock, "_sock", sock))  # the socket under SocketIO

    def forward(self, name_or_id: str, host: str, port: int) -> tuple[str, int]:
        command = relay_command(host, port)
        self._forwarders.append(
            Forwarder(lambda: self.exec_stream(name_or_id, command), command[-2])
        )
        return self._forwarders[-1].address

    def copy_out(self, name_or_id: str, path: str, dest: Path) -> None:
        with tempfile.TemporaryFile() as raw:
            with _translated(f"copying {path} from {name_or_id}"):
                stream, _ = self._api.get_archive(name_or_id, path)
                for chunk in stream:
                    raw.write(chunk)
            raw.seek(0)
            with tarfile.open(fileobj=raw, mode="r:") as tar:
                member = tar.next()
                source = tar.extractfile(member) if member is not None else None
                if source is None:
                    raise EngineError(f"copying {path} from {name_or_id}: not a regular file")
                with open(dest, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)

    def copy_in(self, name_or_id: str, source: Path, directory: str, name: str) -> None:
        with tempfile.TemporaryFile() as raw:
            with tarfile.open(fileobj=raw, mode="w:") as tar:
                info = tar.gettarinfo(str(source), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(source, "rb") as f:
                    tar.addfile(info, f)
            raw.seek(0)
            with _translated(f"copying {name} into {name_or_id}"):
                done = self._api.put_archive(name_or_id, directory, raw)
        if not done:
            raise EngineError(f"copying {name} into {name_or_id} failed")

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
    ) -> OneShot:
        api = self._api
        self.remove(name)  # a leftover of an interrupted earlier run
        with _translated(f"creating container {name}"):
            host_config = api.create_host_config(network_mode=network, init=False)
            created = api.create_container(
                image,
                command=command,
                name=name,
                environment=dict(environment),
                labels=dict(labels),
                host_config=host_config,
                detach=True,
            )
        try:
            with _translated(f"starting {name}"):
                api.start(created["Id"])
            try:
                waited = api.wait(created["Id"], timeout=int(timeout))
                code = int(waited.get("StatusCode", -1))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                code = -1
            return OneShot(code, self.log_tail(created["Id"], tail))
        finally:
            self.remove(created["Id"])

    def memory_used(self, name_or_id: str) -> int:
        with _translated(f"stats of {name_or_id}"):
            data = self._api.stats(name_or_id, stream=False)
        usage = data.get("memory_stats", {})
        cache = usage.get("stats", {}).get("inactive_file", 0)
        return int(usage.get("usage", 0)) - int(cache)
