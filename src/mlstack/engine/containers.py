"""The container calls of the Docker engine (a base of `DockerEngine`): only the SDK's low-level
API object and the engine's one edge for errors (`_translated`) are used, so this module needs no
docker import of its own."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from mlstack.engine.archives import extract_single, write_single
from mlstack.engine.models import ContainerInfo, OneShot, ServiceSpec, label_filter
from mlstack.errors import EngineConflict, EngineError, ObjectMissing

SINCE_MARGIN = 2.0  # seconds: Docker stamps a run's first log lines before its StartedAt


class ContainerCalls:
    """Containers: create, start, stop, remove, inspect, logs, exec, copy, one-shot runs."""

    _api: Any  # the SDK's APIClient

    def _translated(self, what: str) -> AbstractContextManager[None]:
        raise NotImplementedError  # DockerEngine's: Docker's errors as mlstack's

    @contextmanager
    def _absent_ok(self, what: str) -> Iterator[None]:
        """As `_translated`, but a missing object means there is nothing to do."""
        try:
            with self._translated(what):
                yield
        except ObjectMissing:
            pass

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        with self._translated("listing containers"):
            found = self._api.containers(all=True, filters=label_filter(labels))
        infos = [self.inspect(c["Id"]) for c in found]
        return sorted((i for i in infos if i is not None), key=lambda i: i.name)

    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        try:
            with self._translated(f"inspecting {name_or_id}"):
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
        with self._translated(f"creating container {spec.container_name}"):
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
        with self._translated(f"starting {name_or_id}"):
            self._api.start(name_or_id)

    def unpause(self, name_or_id: str) -> None:
        with self._translated(f"unpausing {name_or_id}"):
            self._api.unpause(name_or_id)

    def stop(self, name_or_id: str, timeout: float) -> None:
        with self._absent_ok(f"stopping {name_or_id}"):
            self._api.stop(name_or_id, timeout=int(timeout))

    def remove(self, name_or_id: str) -> None:
        try:
            with self._absent_ok(f"removing {name_or_id}"):
                self._api.remove_container(name_or_id, v=True, force=True)
        except EngineConflict as e:
            if "in progress" not in e.message:  # removed already, by a concurrent call
                raise

    def logs(
        self, name_or_id: str, *, tail: int | str = "all", follow: bool = False, since: float = 0
    ) -> Iterator[bytes]:
        after = max(since - SINCE_MARGIN, 0.001) if since else None
        with self._absent_ok(f"reading logs of {name_or_id}"):
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
        with self._translated(f"exec in {name_or_id}"):
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

    def copy_out(self, name_or_id: str, path: str, dest: Path) -> None:
        with tempfile.TemporaryFile() as raw:
            with self._translated(f"copying {path} from {name_or_id}"):
                stream, _ = self._api.get_archive(name_or_id, path)
                for chunk in stream:
                    raw.write(chunk)
            if not extract_single(raw, dest):
                raise EngineError(f"copying {path} from {name_or_id}: not a regular file")

    def copy_in(self, name_or_id: str, source: Path, directory: str, name: str) -> None:
        with tempfile.TemporaryFile() as raw:
            write_single(raw, source, name)
            with self._translated(f"copying {name} into {name_or_id}"):
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
        with self._translated(f"creating container {name}"):
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
            with self._translated(f"starting {name}"):
                api.start(created["Id"])
            try:
                with self._translated(f"waiting for {name}"):
                    waited = api.wait(created["Id"], timeout=int(timeout))
                code = int(waited.get("StatusCode", -1))
            except EngineError:  # it did not end in time, or the engine went away meanwhile
                code = -1
            return OneShot(code, self.log_tail(created["Id"], tail))
        finally:
            self.remove(created["Id"])

    def memory_used(self, name_or_id: str) -> int:
        with self._translated(f"stats of {name_or_id}"):
            data = self._api.stats(name_or_id, stream=False)
        usage = data.get("memory_stats", {})
        cache = usage.get("stats", {}).get("inactive_file", 0)
        return int(usage.get("usage", 0)) - int(cache)
