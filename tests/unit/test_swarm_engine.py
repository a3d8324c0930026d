"""The Docker engine's swarm calls (engine/swarm.py) against a recording stand-in of the SDK's
low-level API: the Engine API bodies they send, and what they read back."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import docker.errors
import pytest

from mlstack import labels
from mlstack.engine import FileMount, HealthcheckSpec, PublishedPort, SwarmServiceSpec, UpdatePolicy
from mlstack.engine.docker import DockerEngine
from mlstack.errors import EngineError

SPEC = SwarmServiceSpec(
    name="p_mlflow",
    image="reg:5000/mlflow:1",
    command=("python", "-c", "serve"),
    entrypoint=("sh", "-c", "prelude", "x"),
    environment={"A": "1"},
    network="p-net",
    aliases=("mlflow",),
    labels={labels.PROJECT: "p"},
    secrets=(FileMount("p_mlflow_uri-abc", "/run/secrets/mlstack-env-URI"),),
    volumes=(("p-data", "/data"),),
    constraints=("node.labels.x==true",),
    replicas=2,
    ports=(PublishedPort(5050, 5000, "host"),),
    healthcheck=HealthcheckSpec(("CMD", "true"), 3, 5, 40),
    update=UpdatePolicy("start-first", "rollback", 20),
).with_hash()


class Api:
    """Records create_service / update_service; holds one service when `existing`."""

    def __init__(self, existing: dict[str, Any] | None = None) -> None:
        self.existing = existing
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def services(self, filters: Any = None) -> list[dict[str, Any]]:
        return [self.existing] if self.existing else []

    def secrets(self, filters: Any = None) -> list[dict[str, Any]]:
        return [{"ID": "sec1", "Spec": {"Name": "p_mlflow_uri-abc"}}]

    def configs(self, filters: Any = None) -> list[dict[str, Any]]:
        return []

    def create_service(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("create", kwargs))
        return {"ID": "s1"}

    def update_service(self, service: str, version: int, **kwargs: Any) -> None:
        self.calls.append(("update", {"service": service, "version": version, **kwargs}))


def engine_on(api: object) -> DockerEngine:
    """A DockerEngine over a scripted low-level API (the SDK's APIClient's calls)."""

    class Client:
        pass

    client = Client()
    client.api = api  # type: ignore[attr-defined]
    return DockerEngine(client)  # type: ignore[arg-type]


def test_a_new_service_is_created_with_the_engine_apis_own_body() -> None:
    api = Api()
    assert engine_on(api).deploy_service(SPEC) == "created"
    ((verb, body),) = api.calls
    assert verb == "create" and body["name"] == "p_mlflow"
    container = body["task_template"]["ContainerSpec"]
    assert container["Command"] == ["sh", "-c", "prelude", "x"]  # the image's ENTRYPOINT
    assert container["Args"] == ["python", "-c", "serve"]  # its CMD
    assert container["Secrets"] == [
        {
            "File": {"Name": "mlstack-env-URI", "UID": "0", "GID": "0", "Mode": 0o444},
            "SecretID": "sec1",
            "SecretName": "p_mlflow_uri-abc",
        }
    ]
    assert container["Labels"][labels.SPEC_HASH] == SPEC.spec_hash
    assert container["Healthcheck"]["Interval"] == 3_000_000_000
    assert body["mode"] == {"Replicated": {"Replicas": 2}}
    assert body["endpoint_spec"]["Ports"][0]["PublishMode"] == "host"
    assert body["update_config"]["Order"] == "start-first"
    assert body["update_config"]["FailureAction"] == "rollback"
    assert body["task_template"]["Placement"] == {"Constraints": ["node.labels.x==true"]}


def test_a_changed_service_is_updated_under_its_own_name_and_an_equal_one_kept() -> None:
    current = {"ID": "s1", "Version": {"Index": 7}, "Spec": {"Name": "p_mlflow", "Labels": {}}}
    api = Api(current)
    assert engine_on(api).deploy_service(SPEC) == "updated"
    ((verb, body),) = api.calls
    # without the name the engine reads a rename, which a swarm refuses
    assert verb == "update" and body["name"] == "p_mlflow" and body["version"] == 7
    current["Spec"].update(
        Labels={labels.SPEC_HASH: SPEC.spec_hash},
        Mode=body["mode"],
        UpdateConfig=body["update_config"],
    )
    assert engine_on(Api(current)).deploy_service(SPEC) == "kept"


def test_other_replicas_or_update_order_scale_the_service_and_replace_no_task() -> None:
    for other in (replace(SPEC, replicas=3), replace(SPEC, update=UpdatePolicy("stop-first"))):
        changed = other.with_hash()
        assert changed.spec_hash == SPEC.spec_hash  # what the tasks run is the same
        api = Api()
        engine_on(api).deploy_service(SPEC)
        ((_, body),) = api.calls
        current = {
            "ID": "s1",
            "Version": {"Index": 7},
            "Spec": {
                "Name": "p_mlflow",
                "Labels": {labels.SPEC_HASH: SPEC.spec_hash},
                "Mode": body["mode"],
                "UpdateConfig": body["update_config"],
            },
        }
        api = Api(current)
        assert engine_on(api).deploy_service(changed) == "scaled"
        ((verb, sent),) = api.calls
        assert verb == "update" and sent["task_template"] == body["task_template"]
        assert (sent["mode"], sent["update_config"]["Order"]) == (
            {"Replicated": {"Replicas": changed.replicas}},
            changed.update.order if changed.update else "",
        )


class NodeApi:
    """A node whose version moves under the first `races` updates (its own status reports)."""

    def __init__(self, races: int) -> None:
        self.races, self.version = races, 1
        self.labels: dict[str, str] = {"keep": "1"}

    def inspect_node(self, node_id: str) -> dict[str, Any]:
        return {"Version": {"Index": self.version}, "Spec": {"Labels": dict(self.labels)}}

    def update_node(self, node_id: str, version: int, node_spec: dict[str, Any]) -> None:
        if self.races:
            self.races -= 1
            self.version += 1
            response = type("R", (), {"status_code": 500, "reason": "Server Error"})()
            raise docker.errors.APIError(
                "500 Server Error", response=response, explanation="update out of sequence"
            )
        assert version == self.version
        self.labels = dict(node_spec["Labels"])


def test_a_node_label_is_set_again_when_the_node_changed_since_it_was_read() -> None:
    api = NodeApi(races=2)
    engine_on(api).set_node_label("n1", "data", "true")  # type: ignore[arg-type]
    assert api.labels == {"keep": "1", "data": "true"}
    engine_on(api).set_node_label("n1", "data", None)  # type: ignore[arg-type]
    assert api.labels == {"keep": "1"}


def test_a_node_that_keeps_changing_is_an_engine_error_in_one_line() -> None:
    api = NodeApi(races=99)
    with pytest.raises(EngineError, match="out of sequence"):
        engine_on(api).set_node_label("n1", "data", "true")  # type: ignore[arg-type]
