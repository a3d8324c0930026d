"""The relay seam on the FakeEngine: a remote engine's services are reached through forwarded
ports (made once, into a relay container on the stack's network); a local one's directly."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from mlstack import labels
from mlstack.config import StackConfig
from mlstack.engine.relay import RELAY_SCRIPT, Forwarder, relay_command
from mlstack.project.context import Project
from tests.fakes import FakeEngine


def open_project(config: StackConfig, engine: FakeEngine) -> Project:
    engine.images[config.mlflow.image] = "sha256:1"  # the relay runs on MLflow's image
    project = Project.open(config, create_secrets=True, save=False, engine=engine)
    assert project is not None
    return project


def test_a_local_engine_is_reached_on_the_published_ports() -> None:
    config = StackConfig(project="p", postgres={"port": 6001}, storage={"port": 6002})
    project = open_project(config, FakeEngine())
    assert (project.postgres().host, project.postgres().port) == ("127.0.0.1", 6001)
    assert project.s3().endpoint == "http://127.0.0.1:6002"
    assert project.tracking_uri == config.tracking_uri and "Host" not in project.mlflow_headers()
    assert project.route() == "the ports published on 127.0.0.1"


def test_a_remote_engine_is_reached_through_one_relay_container() -> None:
    engine = FakeEngine()
    engine.remote = True
    config = StackConfig(project="p", host="server.example", labels={"team": "ml"})
    project = open_project(config, engine)
    pg, s3 = project.postgres(), project.s3()
    assert (pg.host, pg.port) == ("postgres", 5432)  # the fake forwards to the in-network name
    assert s3.endpoint == "http://storage:9000"
    # MLflow is published on the server's loopback only: forwarded too, with a Host it allows
    assert project.tracking_uri == "http://mlflow:5000"
    assert project.mlflow_headers()["Host"] == "mlflow:5000"
    relay = engine.inspect("p-relay")
    assert relay is not None and relay.running
    assert relay.labels[labels.SERVICE] == "relay" and relay.labels["team"] == "ml"
    forwards = [name for verb, name in engine.calls if verb == "forward"]
    assert forwards == [
        "p-relay -> postgres:5432",
        "p-relay -> storage:9000",
        "p-relay -> mlflow:5000",
    ]
    project.postgres()  # a second use reuses the forwarded port
    assert len([c for c in engine.calls if c[0] == "forward"]) == 3
    assert len([c for c in engine.calls if c == ("create", "p-relay")]) == 1


def test_an_exposed_remote_stack_is_reached_directly_at_its_host() -> None:
    engine = FakeEngine()
    engine.remote = True
    config = StackConfig(project="p", host="server.example", bind="0.0.0.0", auth=True)
    project = open_project(config, engine)
    assert project.tracking_uri == "http://server.example:5050" == config.tracking_uri
    assert project.postgres().host == "postgres"  # PostgreSQL stays on the server's loopback
    assert project.route() == (
        "MLflow on the ports published on server.example; PostgreSQL and S3 through the engine "
        "into the stack's network (p-relay)"
    )


class _Exec:
    """What the engine hands the forwarder: one exec stream, framed as Docker frames it."""

    def __init__(self, server: socket.socket) -> None:
        self.sock = server

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def close(self) -> None:
        self.sock.close()


def _echo_relay(sock: socket.socket) -> None:
    """Stands in for the relay process: echoes stdin upper-cased as stdout frames, then a
    stderr frame, split at awkward places."""
    data = b""
    while not data.endswith(b"\n"):
        data += sock.recv(100)
    out = struct.pack(">BxxxL", 1, len(data)) + data.upper()
    err = struct.pack(">BxxxL", 2, 5) + b"oops\n"
    for i in range(0, len(out + err), 3):
        sock.sendall((out + err)[i : i + 3])
    sock.close()


def test_the_forwarder_unframes_stdout_and_keeps_stderr() -> None:
    def open_stream() -> _Exec:
        ours, theirs = socket.socketpair()
        threading.Thread(target=_echo_relay, args=(theirs,), daemon=True).start()
        return _Exec(ours)

    forwarder = Forwarder(open_stream, "echo")
    try:
        for _ in range(2):  # each connection its own exec
            with socket.create_connection(forwarder.address, timeout=5) as client:
                client.sendall(b"hello relay\n")
                received = b""
                while chunk := client.recv(100):
                    received += chunk
            assert received == b"HELLO RELAY\n"
        assert forwarder.errors == [b"oops\n", b"oops\n"]
    finally:
        forwarder.close()


def test_a_refused_exec_closes_the_client_and_is_kept() -> None:
    def refuse() -> _Exec:
        raise OSError("engine said no")

    forwarder = Forwarder(refuse, "nowhere")
    try:
        with socket.create_connection(forwarder.address, timeout=5) as client:
            assert client.recv(10) == b""
        assert forwarder.errors == [b"engine said no"]
    finally:
        forwarder.close()


@pytest.mark.parametrize("port", [5432, 8333])
def test_the_relay_command_carries_its_target(port: int) -> None:
    command = relay_command("postgres", port)
    assert command[:4] == ["python", "-S", "-c", RELAY_SCRIPT] and command[4:] == [
        "postgres",
        str(port),
    ]
    compile(RELAY_SCRIPT, "relay", "exec")  # valid Python
