"""The swarm test cluster (scripts/swarm-cluster) does what the swarm target needs of it: three
ready nodes behind the manager's TLS endpoint, the offline images served by its registry, and
services that work without IPVS (this kernel has none, so no routing mesh and no virtual IP):
endpoint mode dnsrr, ports published in host mode, tasks reaching each other by name over an
overlay network, placed by node labels. Taking it down leaves the host's engine as it was.
"""

from __future__ import annotations

import functools
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import docker.errors
import docker.types
import pytest

from mlstack.engine.docker import DockerEngine
from tests.integration.conftest import free_ports
from tests.integration.swarm_cluster import (
    SwarmCluster,
    SwarmNode,
    SwarmSession,
    swarm_state,
    update_node,
    wait_for,
)

# busybox (in the seaweedfs image) serves the task's container hostname over http.
HTTPD = "mkdir -p /www && hostname >/www/index.html && exec busybox httpd -f -p 8080 -h /www"


@pytest.fixture
def manager(swarm_cluster: SwarmCluster) -> Iterator[DockerEngine]:
    engine = swarm_cluster.engine()
    yield engine
    engine.close()


def storage_image(cluster: SwarmCluster) -> str:
    return next(image for image in cluster.images if "seaweedfs" in image)


def test_three_ready_nodes_one_manager(swarm_cluster: SwarmCluster, manager: DockerEngine) -> None:
    nodes = manager._api.nodes()
    by_name = {node["Description"]["Hostname"]: node for node in nodes}
    assert sorted(by_name) == sorted(node.name for node in swarm_cluster.nodes)
    assert {name: node["Status"]["State"] for name, node in by_name.items()} == {
        node.name: "ready" for node in swarm_cluster.nodes
    }
    managers = [name for name, node in by_name.items() if node["Spec"]["Role"] == "manager"]
    assert managers == [swarm_cluster.manager.name]
    assert by_name[swarm_cluster.manager.name]["ManagerStatus"]["Leader"] is True
    assert {node.node_id for node in swarm_cluster.nodes} == {node["ID"] for node in nodes}


def test_the_registry_serves_the_offline_images_to_a_node(
    swarm_cluster: SwarmCluster, engine: DockerEngine
) -> None:
    worker = swarm_cluster.workers[-1]
    node = swarm_cluster.engine(worker)
    image = storage_image(swarm_cluster)
    ref = swarm_cluster.pull_ref(image)
    try:
        try:
            node._api.remove_image(ref, force=True)
        except docker.errors.NotFound:
            pass
        assert node.image_id(ref) is None
        node.pull(ref, lambda progress: None)
        # the registry keeps the image's config: the node has the very image of this machine
        assert node.image_id(ref) == engine.image_id(image)
    finally:
        node.close()


def _label_workers(api: Any, cluster: SwarmCluster, key: str, value: str | None) -> None:
    for worker in cluster.workers:
        set_it = functools.partial(_set_label, api, worker.node_id, key, value)
        wait_for(f"label {worker.name}", set_it, 60)


def _set_label(api: Any, node_id: str, key: str, value: str | None) -> bool:
    """Set (or with None remove) a node label; False when the node changed meanwhile."""

    def labelled(spec: dict[str, Any]) -> dict[str, Any]:
        labels = dict(spec.get("Labels") or {})
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value
        return {**spec, "Labels": labels}

    return update_node(api, node_id, labelled)


def _running_tasks(api: Any, service: str) -> list[dict[str, Any]]:
    tasks = api.tasks(filters={"service": service, "desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read()).decode().strip()


def _hostnames_by_name(node: DockerEngine, container: str, service: str) -> set[str]:
    """From a task's container: every address `tasks.SERVICE` resolves to, over the overlay,
    answering with its container's hostname."""
    script = (
        f"for a in $(busybox nslookup tasks.{service} 127.0.0.11 | awk '/^Address: / {{print $2}}'); "
        'do printf "GET / HTTP/1.0\\r\\n\\r\\n" | busybox nc -w 5 $a 8080 | tail -n 1; done'
    )
    created = node._api.exec_create(container, ["sh", "-c", script])
    output = bytes(node._api.exec_start(created["Id"])).decode()
    return {line.strip() for line in output.splitlines() if line.strip()}


def test_a_dnsrr_service_with_host_ports_answers_on_each_worker(
    swarm_cluster: SwarmCluster, manager: DockerEngine
) -> None:
    api = manager._api
    name = f"web-{uuid.uuid4().hex[:6]}"
    label = f"mlstack-test.{name}"
    port = free_ports(1)[0]
    _label_workers(api, swarm_cluster, label, "web")
    api.create_network(name, driver="overlay", attachable=True)
    try:
        api.create_service(
            docker.types.TaskTemplate(
                docker.types.ContainerSpec(
                    swarm_cluster.pull_ref(storage_image(swarm_cluster)),
                    command=["sh"],
                    args=["-c", HTTPD],
                ),
                placement=docker.types.Placement(
                    constraints=[f"node.labels.{label}==web"],
                    preferences=[docker.types.PlacementPreference("spread", "node.id")],
                ),
                networks=[name],
            ),
            name=name,
            mode=docker.types.ServiceMode("replicated", replicas=2),
            endpoint_spec=docker.types.EndpointSpec(
                mode="dnsrr",
                ports=[
                    {
                        "Protocol": "tcp",
                        "PublishedPort": port,
                        "TargetPort": 8080,
                        "PublishMode": "host",
                    }
                ],
            ),
        )
        tasks = wait_for(
            "2 running tasks", lambda: (t := _running_tasks(api, name)) and len(t) == 2 and t
        )
        by_node = {t["NodeID"]: t["Status"]["ContainerStatus"]["ContainerID"] for t in tasks}
        workers = {w.node_id: w for w in swarm_cluster.workers}
        assert set(by_node) == set(workers)  # the label put them there, one on each
        for node_id, container in by_node.items():
            assert _get(f"http://{workers[node_id].ip}:{port}/") == container[:12]
        with pytest.raises(OSError):  # host mode: only where a task runs, no routing mesh
            _get(f"http://{swarm_cluster.manager.ip}:{port}/")
        first: SwarmNode = next(iter(workers.values()))
        node = swarm_cluster.engine(first)
        try:
            seen = _hostnames_by_name(node, by_node[first.node_id], name)
        finally:
            node.close()
        assert seen == {container[:12] for container in by_node.values()}
    finally:
        api.remove_service(name)
        wait_for("the service's tasks gone", lambda: _no_tasks(api, name))
        wait_for("the network removed", lambda: _removed_network(api, name), 60)
        _label_workers(api, swarm_cluster, label, None)


def _no_tasks(api: Any, service: str) -> bool:
    try:
        return not api.tasks(filters={"service": service})
    except docker.errors.NotFound:  # the service is gone, its tasks with it
        return True


def _removed_network(api: Any, name: str) -> bool:
    try:
        api.remove_network(name)
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError:  # still in use by a task being torn down
        return False
    return True


def test_a_cluster_with_a_stopped_node_is_made_afresh_by_up(
    swarm: SwarmSession, engine: DockerEngine
) -> None:
    """What an engine restart leaves behind (nodes stopped, their addresses and swarm gone) is
    no cluster to reuse: status says which node and exits 1; up takes it down and makes one
    whose three nodes are ready again."""
    stopped = swarm.cluster.workers[0]
    engine._api.kill(stopped.name)
    status = swarm.script.run("status")
    assert status.returncode == 1, status.stdout
    assert f"not usable: {stopped.name} is not running" in status.stdout
    swarm.cluster = swarm.script.up()
    assert swarm.script.run("status").returncode == 0
    manager = swarm.cluster.engine()
    try:
        states = {
            node["Description"]["Hostname"]: node["Status"]["State"]
            for node in manager._api.nodes()
        }
    finally:
        manager.close()
    assert states == {node.name: "ready" for node in swarm.cluster.nodes}
    assert stopped.name in states


@pytest.mark.swarm_last
def test_down_leaves_the_host_engine_as_it_was(swarm: SwarmSession, engine: DockerEngine) -> None:
    """Last of all the tests: takes the session's cluster down (and up again if it was up
    before the session, as it was found)."""
    swarm.script.down()
    swarm.is_down = True
    assert swarm_state(engine._api) == swarm.host_swarm_before == "inactive"
    assert swarm.script.leftovers(engine._api) == {"containers": [], "networks": [], "volumes": []}
    assert not swarm.script.state.exists()
    if not swarm.started:
        swarm.cluster = swarm.script.up()
        swarm.is_down = False
