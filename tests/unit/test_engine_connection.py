"""An engine that cannot be reached, by the way it is reached: one line naming the endpoint as
resolved, with the fix for that way. Real sockets on 127.0.0.1 (a closed port, a TLS server of
the test's own) and an `ssh` of the test's own on PATH, as the SDK runs the system's ssh."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from mlstack.config.endpoint import Endpoint, TlsFiles
from mlstack.engine import docker as docker_engine
from mlstack.engine.connection import captured_stderr, unreachable
from mlstack.engine.docker import SSH_BACKOFF, SSH_RETRIES, DockerEngine
from mlstack.engine.relay import one_call_at_a_time
from mlstack.errors import EngineUnavailable, ExitCode
from tests.pki import client_dir, leaf, make_ca


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused(endpoint: Endpoint, capfd: pytest.CaptureFixture[str]) -> EngineUnavailable:
    """Connecting fails with one line and exit 3, and prints nothing itself."""
    capfd.readouterr()
    with pytest.raises(EngineUnavailable) as raised:
        DockerEngine.connect(10, endpoint)
    error = raised.value
    assert error.exit_code == ExitCode.ENGINE
    assert "\n" not in error.message and "\n" not in error.hint
    assert endpoint.describe() in error.message
    assert capfd.readouterr() == ("", "")  # not even the ssh client's own words
    return error


def test_nothing_listens_on_the_tcp_port(capfd: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    endpoint = Endpoint(f"tcp://127.0.0.1:{port}", "DOCKER_HOST")
    error = refused(endpoint, capfd)
    assert error.message == (
        f"the Docker engine at tcp://127.0.0.1:{port} (DOCKER_HOST) is not reachable: "
        "nothing answers there"
    )
    assert f"dockerd listens on 127.0.0.1:{port}" in error.hint


# --- ssh: the system's client, run by the SDK -------------------------------------------------


def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: str, code: int = 255) -> Path:
    """An `ssh` first on PATH that says `said` on stderr and exits, recording its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv"
    script = bin_dir / "ssh"
    script.write_text(
        f'#!/bin/sh\necho "$@" > {record}\nprintf "%s\\n" "{said}" >&2\nexit {code}\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


@pytest.mark.parametrize(
    ("said", "words", "hint"),
    [
        (
            "Host key verification failed.",
            "over ssh: Host key verification failed",
            "not in your known_hosts and mlstack never accepts one itself",
        ),
        (
            "root@192.0.2.10: Permission denied (publickey).",
            "Permission denied (publickey)",
            "ssh-agent",
        ),
        (
            "ssh: Could not resolve hostname nowhere: Name or service not known",
            "Could not resolve hostname",
            "check the host name",
        ),
        (
            "ssh: connect to host 192.0.2.10 port 22: Connection refused",
            "Connection refused",
            "sshd listens",
        ),
        ("bash: line 1: docker: command not found", "docker: command not found", "docker CLI"),
        (
            "permission denied while trying to connect to the Docker daemon socket at unix:///x",
            "permission denied while trying to connect",
            "add root to the docker group on the server",
        ),
    ],
)
def test_ssh_says_why_in_our_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    said: str,
    words: str,
    hint: str,
) -> None:
    record = fake_ssh(tmp_path, monkeypatch, said)
    endpoint = Endpoint("ssh://root@192.0.2.10", "docker context team", "team")
    error = refused(endpoint, capfd)
    assert error.message.startswith(
        "the Docker engine at ssh://root@192.0.2.10 (context team) is not reachable over ssh: "
    )
    assert words in error.message
    assert hint in error.hint
    # the SDK ran the system's ssh (its config, known_hosts, agent) with no options of its own
    # but the port, which it always names (22 unless the URL says otherwise)
    assert record.read_text().split() == [
        "-l", "root", "-p", "22", "--", "192.0.2.10", "docker", "system", "dial-stdio"
    ]  # fmt: skip


def test_fd_2_is_ours_again_after_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    fake_ssh(tmp_path, monkeypatch, "Host key verification failed.")
    with pytest.raises(EngineUnavailable):
        DockerEngine.connect(10, Endpoint("ssh://root@192.0.2.10"))
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_captured_stderr_reads_what_a_child_wrote(capfd: pytest.CaptureFixture[str]) -> None:
    with captured_stderr(True) as said:
        child = "import sys; sys.stderr.write('child\\n')"
        subprocess.run([sys.executable, "-c", child], check=True)
        assert said() == "child\n"
    with captured_stderr(False) as said:
        assert said() == ""
    assert capfd.readouterr().err == ""


# --- TLS: a server of the test's own on 127.0.0.1 ---------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS server for 127.0.0.1 whose CA the test holds (`ca.pem` in the returned dir);
    it completes handshakes and closes, which is all a client's certificate check needs."""
    ca = make_ca("unit")
    cert, key = leaf(ca, "server", "127.0.0.1")
    (tmp_path / "server.pem").write_bytes(cert + key)
    certs = client_dir(tmp_path / "certs", ca)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)  # the loop looks at `stop` between accepts
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1]), certs
    stop.set()
    thread.join(5)
    listener.close()


def test_a_server_certificate_another_ca_signed(
    tls_server: tuple[int, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    port, _ = tls_server
    other = client_dir(tmp_path / "other", make_ca("other"))
    files = TlsFiles(other / "ca.pem", other / "cert.pem", other / "key.pem")
    endpoint = Endpoint(f"tcp://127.0.0.1:{port}", "DOCKER_HOST", tls=files, verify=True)
    error = refused(endpoint, capfd)
    assert f"its TLS certificate is not signed by {other / 'ca.pem'}" in error.message
    assert f"{other} must hold the ca.pem of the CA that signed" in error.hint


def test_a_server_certificate_for_another_address(
    tls_server: tuple[int, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    port, certs = tls_server
    files = TlsFiles(certs / "ca.pem", certs / "cert.pem", certs / "key.pem")
    endpoint = Endpoint(f"tcp://localhost:{port}", "DOCKER_HOST", tls=files, verify=True)
    error = refused(endpoint, capfd)
    assert "its TLS certificate does not name localhost" in error.message


def test_the_ca_bundle_of_requests_does_not_replace_the_engines(
    tls_server: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQUESTS_CA_BUNDLE names the system's CAs here; the engine's CA is what counts."""
    port, certs = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    files = TlsFiles(certs / "ca.pem", certs / "cert.pem", certs / "key.pem")
    endpoint = Endpoint(f"tcp://127.0.0.1:{port}", "DOCKER_HOST", tls=files, verify=True)
    with pytest.raises(EngineUnavailable) as raised:
        DockerEngine.connect(10, endpoint)
    # the handshake passed: what failed is the server closing without an HTTP answer
    assert "certificate" not in raised.value.message


# --- the words for each way, without a connection ---------------------------------------------


def test_a_local_socket_keeps_its_permission_hint() -> None:
    error = unreachable(Endpoint("unix:///var/run/docker.sock"), PermissionError(13, "denied"))
    assert error.message.startswith("permission denied on the Docker engine at unix://")
    assert "docker group" in error.hint


def test_a_missing_paramiko_says_what_to_install() -> None:
    from docker.errors import DockerException

    error = unreachable(
        Endpoint("ssh://server"), DockerException("Install paramiko package to enable ssh://")
    )
    assert "needs the Python package paramiko" in error.message
    assert "pip install paramiko" in error.hint


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            '400 Client Error: Bad Request ("Client sent an HTTP request to an HTTPS server.")',
            "speaks TLS and the endpoint has none",
        ),
        ("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca", "refused our TLS client"),
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number", "does not speak TLS on that port"),
        ("Read timed out. (read timeout=10)", "it did not answer in time"),
        ("Failed to resolve 'nowhere' ([Errno -2] Name or service not known)", "does not resolve"),
    ],
)
def test_tcp_reasons(text: str, words: str) -> None:
    endpoint = Endpoint("tcp://10.1.2.3:2376", "DOCKER_HOST", tls=TlsFiles(), verify=True)
    assert words in unreachable(endpoint, ConnectionError(text)).message


def test_a_tls_stream_carries_both_ways_at_once(tmp_path: Path) -> None:
    """The relay reads a TLS stream in one thread and writes it in another: every byte arrives."""
    ca = make_ca("echo")
    cert, key = leaf(ca, "echo", "127.0.0.1")
    (tmp_path / "server.pem").write_bytes(cert + key)
    (tmp_path / "ca.pem").write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "server.pem")
    listener = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            while data := tls.recv(65536):
                tls.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    client_context = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    raw = socket.create_connection(listener.getsockname()[:2])
    tls = client_context.wrap_socket(raw, server_hostname="127.0.0.1")
    stream = one_call_at_a_time(tls)
    assert stream is not tls  # wrapped; a plain socket is not
    payload = os.urandom(1 << 20)

    def send() -> None:
        for start in range(0, len(payload), 4096):
            stream.sendall(payload[start : start + 4096])

    writer = threading.Thread(target=send)
    writer.start()
    received = bytearray()
    while len(received) < len(payload):
        chunk = stream.recv(65536)
        assert chunk, "the stream ended early"
        received += chunk
    writer.join(10)
    assert bytes(received) == payload
    stream.close()
    listener.close()
    plain = socket.socket()
    assert one_call_at_a_time(plain) is plain
    plain.close()


class _DroppingApi:
    """An engine API whose first `drops` exec logins sshd drops (a broken pipe)."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.created = 0

    def exec_create(self, name: str, command: list[str], stdin: bool) -> dict[str, str]:
        self.created += 1
        if self.drops:
            self.drops -= 1
            raise requests.exceptions.ConnectionError(BrokenPipeError(32, "Broken pipe"))
        return {"Id": "e1"}

    def exec_start(self, exec_id: dict[str, str], socket: bool) -> socket.socket:
        ours, _ = socket_pair()
        return ours


def socket_pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


@pytest.mark.parametrize(
    ("url", "drops", "tries", "ok"),
    [
        ("ssh://root@192.0.2.10", SSH_RETRIES, SSH_RETRIES + 1, True),  # the last login holds
        ("ssh://root@192.0.2.10", SSH_RETRIES + 1, SSH_RETRIES + 1, False),  # the error, once
        ("tcp://192.0.2.10:2376", 1, 1, False),  # not ssh: no retry
    ],
)
def test_a_dropped_ssh_login_is_tried_again(
    url: str, drops: int, tries: int, ok: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    waited: list[float] = []
    monkeypatch.setattr(docker_engine.time, "sleep", waited.append)
    api = _DroppingApi(drops)
    client = type("Client", (), {"api": api})()
    engine = DockerEngine(client, Endpoint(url, source="DOCKER_HOST"))  # type: ignore[arg-type]
    if ok:
        engine.exec_stream("c", ["true"]).close()
    else:
        with pytest.raises(EngineUnavailable):
            engine.exec_stream("c", ["true"])
    assert api.created == tries
    assert waited == list(SSH_BACKOFF[: tries - 1])  # longer waits as a busy server catches up
