"""Calls over ssh through the SDK, with an `ssh` of the test's own on PATH standing in for
`ssh HOST docker system dial-stdio`: one HTTP exchange per process, as an engine answers it.
For an exec's output it closes its input first and exits with the output's end, as ssh does
when the engine ends the exec: the moment the SDK's own transport wrote into a closed pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from docker.transport.sshconn import SSHSocket

from mlstack.config.endpoint import Endpoint
from mlstack.engine.docker import DockerEngine
from mlstack.engine.ssh_transport import SshSocket

# A one-exchange engine: /version, /_ping, exec create/start/inspect. Every process is one call.
DIAL_STDIO = r"""
import json, os, sys
head = b""
while b"\r\n\r\n" not in head:
    b = os.read(0, 1)
    if not b:
        sys.exit(0)
    head += b
lines = head.decode().split("\r\n")
method, path, _ = lines[0].split(" ")
length = next((int(l.split(":")[1]) for l in lines if l.lower().startswith("content-length")), 0)
while length > 0:
    length -= len(os.read(0, length))
with open(os.environ["CALLS"], "a") as f:
    f.write(f"{method} {path.split('?')[0]}\n")
out = sys.stdout.buffer
def answer(status, body):
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    out.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\n"
              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
if path.endswith("/exec/e1/start"):
    os.close(0)  # the engine ended the exec: ssh's input is gone before its output ends
    out.write(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
              b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    out.write(b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n")
elif "/exec" in path and method == "POST":
    answer("201 Created", {"Id": "e1"})
elif path.endswith("/exec/e1/json"):
    answer("200 OK", {"ExitCode": 0, "Running": False})
elif path.endswith("/_ping"):
    answer("200 OK", b"OK")
else:
    answer("200 OK", {"ApiVersion": "1.41", "Version": "20.10.24"})
out.flush()
"""


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dial.py").write_text(DIAL_STDIO)
    script = bin_dir / "ssh"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {bin_dir / 'dial.py'}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    return tmp_path / "calls"


def test_an_exec_whose_ssh_exited_first_is_a_success(calls: Path) -> None:
    engine = DockerEngine.connect(10, Endpoint("ssh://root@server.invalid", "DOCKER_HOST"))
    try:
        for _ in range(3):
            assert engine.exec("c", ["echo", "hello"]) == (0, "hello\n")
    finally:
        engine.close()
    made = calls.read_text().splitlines()
    assert made.count("POST /v1.41/exec/e1/start") == 3  # through the fake, not around it


def test_the_sdks_own_socket_fails_where_ours_does_not() -> None:
    """Why the transport is ours: the SDK's close writes into ssh's input after ssh exited."""

    def exited(socket_type: type[SSHSocket]) -> SSHSocket:
        sock = socket_type("root@server.invalid")
        sock.proc = subprocess.Popen(
            ["true"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        sock.proc.wait()
        return sock

    with pytest.raises(BrokenPipeError):
        exited(SSHSocket).close()
    ours = exited(SshSocket)
    ours.close()  # no error
    assert ours.proc is not None
    assert ours.proc.returncode == 0


def test_without_paramiko_only_ssh_is_refused_and_in_one_line() -> None:
    """The ssh transport loads with an ssh endpoint only: mlstack runs without paramiko."""
    script = (
        "import sys; sys.modules['paramiko'] = None\n"
        "from mlstack.config.endpoint import Endpoint\n"
        "from mlstack.engine.docker import DockerEngine\n"
        "from mlstack.errors import EngineUnavailable\n"
        "try:\n"
        "    DockerEngine.connect(5, Endpoint('ssh://root@server.invalid'))\n"
        "except EngineUnavailable as e:\n"
        "    print(e.message)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "needs the Python package paramiko for ssh" in done.stdout
