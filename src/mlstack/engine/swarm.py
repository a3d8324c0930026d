"""The swarm calls of the Docker engine (a base of `DockerEngine`): services, tasks, secrets,
configs, nodes and overlay networks through the SDK's low-level API object, with the engine's
one edge for errors (`_translated`); no docker import of its own, like containers.py.

Bodies are the Engine API's own JSON (the SDK's TaskTemplate & co. are dicts of it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from mlstack import labels as label_keys
from mlstack.engine.models import label_filter, pull_hint
from mlstack.engine.swarm_models import (
    SECRETS_DIR,
    FileMount,
    PublishedPort,
    SwarmNode,
    SwarmServiceInfo,
    SwarmServiceSpec,
    SwarmState,
    TaskInfo,
    TaskLogLine,
    UpdatePolicy,
    detailed_lines,
)
from mlstack.errors import (
    EngineConflict,
    EngineError,
    EngineUnavailable,
    ImageUnavailable,
    ObjectMissing,
)

NS = 1_000_000_000  # the API's durations are nanoseconds
SEQUENCE_RETRIES = 4  # node updates refused because the node changed since it was read


class SwarmCalls:
    """Swarm state, node labels, overlay networks, secrets, configs, services and tasks."""

    _api: Any  # the SDK's APIClient

    def _translated(self, what: str) -> AbstractContextManager[None]:
        raise NotImplementedError  # DockerEngine's: Docker's errors as mlstack's

    @contextmanager
    def _gone_ok(self, what: str) -> Iterator[None]:
        try:
            with self._translated(what):
                yield
        except ObjectMissing:
            pass

    # --- nodes ---------------------------------------------------------------------------

    def swarm_state(self) -> SwarmState:
        with self._translated("reading the engine's swarm state"):
            swarm = self._api.info().get("Swarm") or {}
        manager = bool(swarm.get("ControlAvailable"))
        nodes: tuple[SwarmNode, ...] = ()
        if manager:
            with self._translated("listing the swarm's nodes"):
                nodes = tuple(SwarmNode.from_inspect(n) for n in self._api.nodes())
        return SwarmState(
            node_id=str(swarm.get("NodeID") or ""),
            local_state=str(swarm.get("LocalNodeState") or "inactive"),
            manager=manager,
            nodes=nodes,
        )

    def set_node_label(self, node_id: str, key: str, value: str | None) -> None:
        """Set (None: remove) a node label. A node's own status reports bump its version too,
        so an update may be refused as "out of sequence": read again and retry."""
        for attempt in range(SEQUENCE_RETRIES + 1):
            try:
                with self._translated(f"labelling node {node_id}"):
                    self._update_node_label(node_id, key, value)
                return
            except EngineError as e:
                if "out of sequence" not in e.message or attempt == SEQUENCE_RETRIES:
                    raise

    def _update_node_label(self, node_id: str, key: str, value: str | None) -> None:
        node = self._api.inspect_node(node_id)
        spec = dict(node["Spec"])
        node_labels = dict(spec.get("Labels") or {})
        if value is None:
            if key not in node_labels:
                return
            node_labels.pop(key)
        elif node_labels.get(key) == value:
            return
        else:
            node_labels[key] = value
        spec["Labels"] = node_labels
        self._api.update_node(node_id, node["Version"]["Index"], spec)

    # --- images ------------------------------------------------------------------------

    def registry_digest(self, ref: str) -> str:
        """The digest `ref`'s registry holds, asked through the engine (as `docker service
        create` does to pin one); ImageUnavailable in the registry's or the network's words
        when the engine cannot get it."""
        try:
            with self._translated(f"asking the registry of {ref}"):
                found = self._api.inspect_distribution(ref)
        except EngineUnavailable:
            raise
        except EngineError as e:
            raise ImageUnavailable(" ".join(e.message.split()), pull_hint(ref)) from e
        return str(found["Descriptor"]["digest"])

    # --- networks, secrets, configs ----------------------------------------------------

    def ensure_overlay(self, name: str, labels: Mapping[str, str]) -> bool:
        """Created first, asked after: a manager may still list a network the swarm removed a
        moment ago (its local copy), and a service cannot attach to that one."""
        try:
            with self._translated(f"creating overlay network {name}"):
                self._api.create_network(
                    name,
                    driver="overlay",
                    attachable=True,
                    labels=dict(labels),
                    scope="swarm",
                    check_duplicate=True,
                )
        except EngineConflict:
            return False
        except EngineError as e:  # the engine's word for a duplicate varies by version
            if "already exists" not in e.message:
                raise
            return False
        return True

    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> bool:
        try:
            with self._translated(f"creating secret {name}"):
                self._api.create_secret(name, data, labels=dict(labels))
        except EngineConflict:
            return False  # named by its content: the same secret exists
        return True

    def secrets(self, labels: Mapping[str, str]) -> list[str]:
        with self._translated("listing secrets"):
            return sorted(s["Spec"]["Name"] for s in self._api.secrets(label_filter(labels)))

    def remove_secret(self, name: str) -> None:
        with self._gone_ok(f"removing secret {name}"):
            self._api.remove_secret(name)

    def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> bool:
        try:
            with self._translated(f"creating config {name}"):
                self._api.create_config(name, data, labels=dict(labels))
        except EngineConflict:
            return False
        return True

    def configs(self, labels: Mapping[str, str]) -> list[str]:
        with self._translated("listing configs"):
            return sorted(c["Spec"]["Name"] for c in self._api.configs(label_filter(labels)))

    def remove_config(self, name: str) -> None:
        with self._gone_ok(f"removing config {name}"):
            self._api.remove_config(name)

    # --- services and tasks ------------------------------------------------------------

    def deploy_service(self, spec: SwarmServiceSpec) -> str:
        with self._translated(f"inspecting service {spec.name}"):
            found = self._api.services(filters={"name": spec.name})
        current = next((s for s in found if s["Spec"]["Name"] == spec.name), None)
        action = "updated"
        if current is not None:
            if (current["Spec"].get("Labels") or {}).get(label_keys.SPEC_HASH) == spec.spec_hash:
                if _same_scale(current["Spec"], spec):
                    return "kept"
                action = "scaled"  # the same tasks: the swarm adds or stops some, none replaced
            elif spec.job:  # a job ran to its end: a new run is a new service
                self.remove_service(spec.name)
                current = None
        body = self._service_body(spec)
        if current is None:
            with self._translated(f"creating service {spec.name}"):
                self._api.create_service(name=spec.name, **body)
            return "created"
        with self._translated(f"updating service {spec.name}"):
            self._api.update_service(
                current["ID"], current["Version"]["Index"], name=spec.name, **body
            )
        return action

    def _service_body(self, spec: SwarmServiceSpec) -> dict[str, Any]:
        container: dict[str, Any] = {
            "Image": spec.image,
            "Env": [f"{k}={v}" for k, v in spec.environment.items()],
            "Labels": dict(spec.labels),
            "Mounts": [
                {
                    "Type": "volume",
                    "Source": name,
                    "Target": target,
                    "VolumeOptions": {"Labels": dict(spec.volume_labels)},
                }
                for name, target in spec.volumes
            ],
            "Secrets": [self._file(m, "Secret") for m in spec.secrets],
            "Configs": [self._file(m, "Config") for m in spec.configs],
            "StopGracePeriod": int(spec.stop_grace_period * NS),
        }
        if spec.entrypoint is not None:
            container["Command"] = list(spec.entrypoint)
        if spec.command is not None:
            container["Args"] = list(spec.command)
        if spec.stop_signal:
            container["StopSignal"] = spec.stop_signal
        if spec.healthcheck is not None:
            health = spec.healthcheck.in_nanoseconds()
            container["Healthcheck"] = {k.capitalize(): v for k, v in health.items()}
        template = {
            "ContainerSpec": container,
            "Placement": {"Constraints": list(spec.constraints)},
            "RestartPolicy": {"Condition": "on-failure" if spec.job else "any", "Delay": NS},
            "Networks": [{"Target": spec.network, "Aliases": list(spec.aliases)}],
        }
        mode: dict[str, Any] = (
            {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
            if spec.job
            else {"Replicated": {"Replicas": spec.replicas}}
        )
        body: dict[str, Any] = {
            "task_template": template,
            "labels": dict(spec.labels),
            "mode": mode,
            "endpoint_spec": {"Mode": spec.endpoint_mode, "Ports": [_port(p) for p in spec.ports]},
        }
        if spec.update is not None:
            body["update_config"] = _policy(spec.update)
            body["rollback_config"] = _policy(
                UpdatePolicy(spec.update.order, "pause", spec.update.monitor)
            )
        return body

    def _file(self, mount: FileMount, kind: str) -> dict[str, Any]:
        with self._translated(f"finding {kind.lower()} {mount.name}"):
            listed = getattr(self._api, kind.lower() + "s")({"name": [mount.name]})
        ids = [o["ID"] for o in listed if o["Spec"]["Name"] == mount.name]
        if not ids:
            raise ObjectMissing(f"{kind.lower()} {mount.name} is gone", "run `mlstack up` again")
        name = mount.target if kind == "Config" else mount.target.removeprefix(SECRETS_DIR + "/")
        return {
            "File": {"Name": name, "UID": "0", "GID": "0", "Mode": mount.mode},
            f"{kind}ID": ids[0],
            f"{kind}Name": mount.name,
        }

    def services(self, labels: Mapping[str, str]) -> list[SwarmServiceInfo]:
        with self._translated("listing services"):
            found = self._api.services(filters=label_filter(labels))
            hostnames = {}
            if found:
                hostnames = {n["ID"]: n["Description"]["Hostname"] for n in self._api.nodes()}
            infos = [self._service_info(s, hostnames) for s in found]
        return sorted(infos, key=lambda i: i.name)

    def _service_info(
        self, data: Mapping[str, Any], hostnames: Mapping[str, str]
    ) -> SwarmServiceInfo:
        spec = data["Spec"]
        mode = spec.get("Mode") or {}
        tasks = self._api.tasks(filters={"service": data["ID"]})
        ports = (data.get("Endpoint") or {}).get("Ports") or (
            (spec.get("EndpointSpec") or {}).get("Ports") or []
        )
        return SwarmServiceInfo(
            id=data["ID"],
            name=spec["Name"],
            labels=dict(spec.get("Labels") or {}),
            replicas=int((mode.get("Replicated") or {}).get("Replicas", 1)),
            ports=tuple(
                PublishedPort(
                    int(p.get("PublishedPort", 0)),
                    int(p["TargetPort"]),
                    str(p.get("PublishMode", "ingress")),
                )
                for p in ports
            ),
            tasks=tuple(
                sorted(
                    (TaskInfo.from_inspect(t, hostnames) for t in tasks),
                    key=lambda t: (t.slot, t.node, t.id),
                )
            ),
            job="ReplicatedJob" in mode,
            image=str(
                ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", "")
            ).partition("@sha256:")[0],
        )

    def tasks(self, labels: Mapping[str, str]) -> list[TaskInfo]:
        with self._translated("listing tasks"):
            found = self._api.tasks()
        wanted = dict(labels)

        def carries(task: Mapping[str, Any]) -> bool:
            container = (task.get("Spec") or {}).get("ContainerSpec") or {}
            have = container.get("Labels") or {}
            return all(have.get(k) == v for k, v in wanted.items())

        return [TaskInfo.from_inspect(t, {}) for t in found if carries(t)]

    def service_log_lines(
        self, name: str, *, tail: int | str = "all", follow: bool = False
    ) -> Iterator[TaskLogLine]:
        """Asked with details, as `docker service logs` asks: each line names its task and node."""
        with self._gone_ok(f"reading the log of service {name}"):
            asked = {"follow": follow, "tail": tail, "timestamps": False}
            chunks = self._api.service_logs(name, details=True, stdout=True, stderr=True, **asked)
            yield from detailed_lines(chunks)

    def remove_service(self, name: str) -> None:
        with self._gone_ok(f"removing service {name}"):
            self._api.remove_service(name)

    def scale_service(self, name: str, replicas: int) -> None:
        # `docker service scale`: the rest of the spec as it is, so no task is replaced
        with self._translated(f"scaling service {name}"):
            current = self._api.inspect_service(name)
            self._api.update_service(
                current["ID"],
                current["Version"]["Index"],
                mode={"Replicated": {"Replicas": replicas}},
                fetch_current_spec=True,
            )


def _same_scale(current: Mapping[str, Any], spec: SwarmServiceSpec) -> bool:
    """Whether an inspected service spec runs as many tasks as `spec` and replaces them the
    same way (the parts its hash leaves out)."""
    replicas = ((current.get("Mode") or {}).get("Replicated") or {}).get("Replicas")
    update = current.get("UpdateConfig") or {}
    wanted = _policy(spec.update) if spec.update is not None else {}
    same_update = all(update.get(k) == wanted.get(k) for k in ("Order", "FailureAction", "Monitor"))
    return replicas == (None if spec.job else spec.replicas) and same_update


def _port(port: PublishedPort) -> dict[str, Any]:
    return {
        "Protocol": "tcp",
        "PublishedPort": port.published,
        "TargetPort": port.target,
        "PublishMode": port.mode,
    }


def _policy(policy: UpdatePolicy) -> dict[str, Any]:
    return {
        "Parallelism": policy.parallelism,
        "Order": policy.order,
        "FailureAction": policy.failure_action,
        "Monitor": int(policy.monitor * NS),
        "MaxFailureRatio": 0,
    }
