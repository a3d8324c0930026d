"""A second Docker engine on this machine, standing in for a team's server: a
Docker-in-Docker container (tests/images/dind, built by scripts/offline-images) with its own data
volume, reached at its address on the Docker bridge, as a remote engine is reached:

- tcp://IP:2376 with TLS: a CA, a server certificate naming IP and a client certificate, made
  here (and a second CA, which signed nothing of the server's, for the wrong-certificate case);
- ssh://root@IP: a key made here, root may log in with it only; the ssh client on this machine
  is given its config (that key, a known_hosts holding the server's host key, read from the
  container, or an empty one) by an `ssh` wrapper first on PATH, as a user's ~/.ssh/config would;
- the offline images of the stack, saved from this machine's engine into the server's
  (`docker save | docker load`, streamed through the SDK) when a test needs them, as they
  would reach a real server.

Every object carries the labels it is given (the integration session's, so it is swept).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mlstack.config.endpoint import Endpoint, TlsFiles
from mlstack.engine.docker import DockerEngine
from mlstack.errors import EngineUnavailable
from tests.pki import make_certificates

DIND_IMAGE = "mlstack-offline/dind:20.10"  # built by scripts/offline-images
TLS_PORT = 2376
# Not --privileged: an engine whose own bounding set lacks a capability (CAP_SYS_RESOURCE here)
# refuses every privileged container. These are the capabilities Docker 20.10 knows, less that
# one; the entrypoint mounts the cgroups read-write itself (see tests/images/dind/entrypoint.sh).
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
]


@dataclass(frozen=True)
class RemoteServer:
    ip: str
    container: str
    home: Path  # certificates, keys and ssh configs
    certs: Path  # ca.pem, cert.pem, key.pem: what DOCKER_CERT_PATH names
    wrong_certs: Path  # a client of another CA, trusting that CA only
    ssh_path: Path  # a directory with an `ssh` that knows the server's host key
    ssh_unknown_path: Path  # ... and one whose known_hosts is empty

    @property
    def tcp_url(self) -> str:
        return f"tcp://{self.ip}:{TLS_PORT}"

    @property
    def ssh_url(self) -> str:
        return f"ssh://root@{self.ip}"

    def tls_env(self, certs: Path | None = None) -> dict[str, str]:
        return {
            "DOCKER_HOST": self.tcp_url,
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(certs or self.certs),
        }

    @property
    def tls_endpoint(self) -> Endpoint:
        files = TlsFiles(self.certs / "ca.pem", self.certs / "cert.pem", self.certs / "key.pem")
        return Endpoint(self.tcp_url, "DOCKER_HOST", tls=files, verify=True)

    def engine(self, timeout: float = 300) -> DockerEngine:
        """The server's engine through tcp with TLS, for the test's own checks."""
        return DockerEngine.connect(timeout, self.tls_endpoint)

    def load_images(self, source: DockerEngine, refs: list[str]) -> None:
        """The images from this machine's engine, as `docker save | docker load` carries them."""
        inner = self.engine()
        try:
            load_images(source._api, inner._api, refs)
        finally:
            inner.close()


# --- keys ---------------------------------------------------------------------------------------


def make_ssh_key(home: Path) -> str:
    """A key pair under `home/ssh` (private key 0600); the public key's authorized_keys line."""
    key = ed25519.Ed25519PrivateKey.generate()
    path = home / "ssh" / "id_ed25519"
    path.parent.mkdir(parents=True)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.write_bytes(private)
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode() + " mlstack-test"


def ssh_wrapper(home: Path, name: str, known_hosts: str) -> Path:
    """A directory holding an `ssh` that runs the system's with this config (the test's key,
    this known_hosts, no global one): what ~/.ssh/config does for a user."""
    directory = home / name
    (directory / "bin").mkdir(parents=True)
    (directory / "known_hosts").write_text(known_hosts)
    config = directory / "ssh_config"
    config.write_text(
        "Host *\n"
        f"  IdentityFile {home / 'ssh' / 'id_ed25519'}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {directory / 'known_hosts'}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  ConnectTimeout 10\n"
    )
    wrapper = directory / "bin" / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F "{config}" "$@"\n')
    wrapper.chmod(0o755)
    return directory / "bin"


# --- the container ------------------------------------------------------------------------------


def _put_files(api: Any, container: str, directory: str, files: Mapping[str, bytes]) -> None:
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600 if "key" in name else 0o644
            tar.addfile(info, io.BytesIO(data))
    assert api.put_archive(container, directory, raw.getvalue())


def _exec(api: Any, container: str, command: list[str], wait: float = 0) -> str:
    """Run a command in the container; with `wait`, again until it succeeds (the entrypoint
    makes the host keys after the start)."""
    deadline = time.monotonic() + wait
    while True:
        created = api.exec_create(container, command)
        output = api.exec_start(created["Id"])
        if api.exec_inspect(created["Id"])["ExitCode"] == 0:
            return bytes(output).decode()
        assert time.monotonic() < deadline, output
        time.sleep(0.1)


def _wait_for_engine(server: RemoteServer, api: Any, deadline: float) -> DockerEngine:
    last: Exception | None = None
    while time.monotonic() < deadline:
        state = api.inspect_container(server.container)["State"]
        if not state["Running"]:
            logs = api.logs(server.container, tail=30).decode(errors="replace")
            raise AssertionError(f"the DinD container stopped: {logs}")
        try:
            return server.engine()
        except EngineUnavailable as e:
            last = e
            time.sleep(0.3)
    raise AssertionError(f"the DinD engine did not answer: {last}")


def load_images(source: Any, target: Any, refs: list[str]) -> None:
    """`docker save REF | docker load`, streamed from one engine's API into the other's (an
    image the target has already is left alone)."""
    for ref in refs:
        try:
            if target.inspect_image(ref)["Id"] == source.inspect_image(ref)["Id"]:
                continue
        except docker.errors.NotFound:
            pass
        events = target.load_image(source.get_image(ref, chunk_size=1 << 20))
        errors = [e["error"] for e in events if isinstance(e, dict) and e.get("error")]
        assert not errors, f"loading {ref} into the server failed: {errors}"
        assert target.inspect_image(ref)["Id"] == source.inspect_image(ref)["Id"]


@contextmanager
def remote_server(api: Any, home: Path, labels: Mapping[str, str]) -> Iterator[RemoteServer]:
    """Start the server on the engine behind `api` (never with --bridge=none: its dockerd has
    the default bridge, in the container's own network namespace), hand it its keys and certificates, load
    remove it and its volume afterwards."""
    name = f"mlstack-remote-{uuid.uuid4().hex[:8]}"
    authorized = make_ssh_key(home)
    api.create_volume(name=name, labels=dict(labels))
    try:
        host_config = api.create_host_config(
            binds={name: {"bind": "/var/lib/docker", "mode": "rw"}},
            cap_add=CAPABILITIES,
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            device_cgroup_rules=["c *:* rmw", "b *:* rmw"],
            cgroupns="private",
        )
        host_config.update(MaskedPaths=[], ReadonlyPaths=[])  # the CLI's systempaths=unconfined
        api.create_container(
            DIND_IMAGE,
            name=name,
            labels=dict(labels),
            environment={"AUTHORIZED_KEY": authorized},
            host_config=host_config,
            detach=True,
        )
        yield _started(api, name, home)
    finally:
        api.remove_container(name, force=True, v=True)
        api.remove_volume(name, force=True)


def _started(api: Any, name: str, home: Path) -> RemoteServer:
    api.start(name)
    ip = api.inspect_container(name)["NetworkSettings"]["IPAddress"]
    _put_files(api, name, "/certs", make_certificates(home, ip))
    _exec(api, name, ["touch", "/certs/ready"])
    host_key = _exec(api, name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"], 30)
    known = f"{ip} {' '.join(host_key.split()[:2])}\n"
    server = RemoteServer(
        ip=ip,
        container=name,
        home=home,
        certs=home / "certs",
        wrong_certs=home / "wrong-certs",
        ssh_path=ssh_wrapper(home, "ssh-known", known),
        ssh_unknown_path=ssh_wrapper(home, "ssh-unknown", ""),
    )
    _wait_for_engine(server, api, time.monotonic() + 120).close()
    return server
