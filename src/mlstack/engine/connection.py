"""Why a Docker engine cannot be reached, said for the endpoint as resolved (a local socket, tcp
with TLS, ssh) with the fix for that way; and ssh's own words, caught while connecting.

No docker import: engine/docker.py, the one edge, hands over the text of the SDK's error chain.
"""

from __future__ import annotations

import os
import pwd
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mlstack.config.endpoint import SOCKET_SCHEMES, Endpoint
from mlstack.errors import EngineUnavailable

_LOCAL_HINT = (
    "start Docker (Docker Desktop, `sudo systemctl start docker` or `sudo dockerd &`), "
    "or point DOCKER_HOST at a running engine"
)


def _user() -> str:
    uid = os.getuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


@contextmanager
def captured_stderr(active: bool) -> Iterator[Callable[[], str]]:
    """While connecting over ssh, file descriptor 2 goes to a temporary file: the ssh client (a
    child process of the SDK) writes its own error there, which then becomes part of our one
    line instead of a stray line of its own. Yields a function reading what was written."""
    if not active:
        yield lambda: ""
        return
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)

        def said() -> str:
            sink.seek(0)
            return sink.read().decode(errors="replace")

        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _line(text: str, *markers: str) -> str:
    """The first line of `text` holding one of `markers` (the last line without markers)."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("@")]  # ssh's banner of warnings
    for marker in markers:
        found = next((line for line in lines if marker.lower() in line.lower()), None)
        if found:
            return found[:300]
    return lines[-1][:300] if lines else ""


_SSH_CASES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("IDENTIFICATION HAS CHANGED",),
        "the server's host key is not the one in your known_hosts: if the server was "
        "reinstalled, check its new key and `ssh-keygen -R {host}`; otherwise someone may be "
        "in between",
    ),
    (
        ("Host key verification failed", "host key is known"),
        "the server's host key is not in your known_hosts and mlstack never accepts one "
        "itself: check its fingerprint on the server (ssh-keygen -lf "
        "/etc/ssh/ssh_host_ed25519_key.pub), then `ssh {target}` once and accept it",
    ),
    (
        ("Permission denied (",),
        "load your key into ssh-agent (ssh-add) or name it in ~/.ssh/config (IdentityFile): "
        "`ssh {target} docker version` must work without a prompt",
    ),
    (
        ("Could not resolve hostname",),
        "check the host name in the endpoint (or its HostName in ~/.ssh/config)",
    ),
    (
        ("Connection refused", "timed out", "No route to host", "Network is unreachable"),
        "check that the server is up and sshd listens on its port: `ssh {target}` shows the same",
    ),
    (
        ("docker: not found", "command not found", "docker: No such file"),
        "install the docker CLI on the server: mlstack runs `docker system dial-stdio` there",
    ),
    (
        ("permission denied while trying to connect",),
        "add {user} to the docker group on the server (sudo usermod -aG docker {user})",
    ),
    (
        ("Cannot connect to the Docker daemon", "Is the docker daemon running"),
        "start Docker on the server (sudo systemctl start docker)",
    ),
)

_TLS_CASES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("match", "mismatch"),
        "its TLS certificate does not name {host}",
        "address the engine by a name its certificate holds (its subjectAltName), or reissue "
        "the server certificate for {host}",
    ),
    (
        ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"),
        "its TLS certificate is not signed by {ca}",
        "{ca_where} must hold the ca.pem of the CA that signed the server's certificate",
    ),
    (
        ("unknown ca", "bad certificate", "certificate required", "certificate unknown"),
        "it refused our TLS client certificate",
        "{ca_where} must hold cert.pem and key.pem of a client certificate signed by the CA the "
        "engine trusts (dockerd --tlscacert)",
    ),
    (
        ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure"),
        "it does not speak TLS on that port",
        "point the endpoint at the engine's TLS port (2376), or turn TLS off for a plain one",
    ),
)


def _ssh_error(endpoint: Endpoint, said: str, cause: str) -> EngineUnavailable:
    target = endpoint.url.removeprefix("ssh://")
    user = target.split("@", 1)[0] if "@" in target else "your user"
    words = _line(said, *(m for markers, _ in _SSH_CASES for m in markers)) or _line(cause)
    words = words.rstrip(".")  # ours goes on: "...: Host key verification failed; hint: ..."
    hint = f"`ssh {target} docker version` shows the same problem"
    for markers, text in _SSH_CASES:
        if any(m.lower() in words.lower() for m in markers):
            hint = text.format(host=endpoint.hostname, target=target, user=user)
            break
    return EngineUnavailable(
        f"the Docker engine at {endpoint.describe()} is not reachable over ssh: {words}", hint
    )


def _tls_error(endpoint: Endpoint, text: str) -> EngineUnavailable | None:
    files = endpoint.tls
    ca = str(files.ca) if files and files.ca else "the system's CAs"
    ca_where = str(files.ca.parent) if files and files.ca else "DOCKER_CERT_PATH (or ~/.docker)"
    for markers, problem, hint in _TLS_CASES:
        if any(m.lower() in text.lower() for m in markers):
            values = {"host": endpoint.hostname, "ca": ca, "ca_where": ca_where}
            return EngineUnavailable(
                f"the Docker engine at {endpoint.describe()} is not reachable: "
                + problem.format(**values),
                hint.format(**values),
            )
    return None


def chain(error: BaseException) -> str:
    """The error and those it came from, as text (the classification reads all of them)."""
    texts: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(texts) < 8:
        texts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(texts)


def unreachable(
    endpoint: Endpoint, error: BaseException, *, ssh_said: str = ""
) -> EngineUnavailable:
    """The one-line error for an engine that cannot be reached through `endpoint`."""
    where = endpoint.describe()
    text = chain(error)
    permission = isinstance(error, PermissionError)
    if "paramiko" in text:
        return EngineUnavailable(
            f"the Docker engine at {where} needs the Python package paramiko for ssh",
            "pip install paramiko (mlstack depends on docker[ssh], which brings it)",
        )
    if endpoint.ssh:
        return _ssh_error(endpoint, ssh_said, text)
    if "HTTP request to an HTTPS server" in text:  # the engine's answer to plain HTTP
        return _plain_http_to_tls(endpoint)
    if endpoint.scheme in SOCKET_SCHEMES:
        if permission or "Permission denied" in text:
            return EngineUnavailable(
                f"permission denied on the Docker engine at {where}: user {_user()} may not use it",
                "add the user to the docker group (sudo usermod -aG docker $USER, then log in "
                "again), use rootless Docker (DOCKER_HOST=unix://$XDG_RUNTIME_DIR/docker.sock), "
                "or run mlstack with sudo",
            )
        return EngineUnavailable(f"the Docker engine is not reachable at {where}", _LOCAL_HINT)
    tls = _tls_error(endpoint, text)
    if tls is not None:
        return tls
    address = endpoint.url.removeprefix("tcp://")
    reason = "nothing answers there"
    if "timed out" in text or "Timeout" in text:
        reason = "it did not answer in time"
    elif "resolution" in text or "not known" in text or "resolve" in text:
        reason = f"the name {endpoint.hostname} does not resolve"
    return EngineUnavailable(
        f"the Docker engine at {where} is not reachable: {reason}",
        f"check that dockerd listens on {address} (-H tcp://0.0.0.0:2376 --tlsverify) and that "
        "no firewall is in between, or point DOCKER_HOST / the context at a running engine",
    )


def _plain_http_to_tls(endpoint: Endpoint) -> EngineUnavailable:
    """The engine answered 400 "Client sent an HTTP request to an HTTPS server"."""
    return EngineUnavailable(
        f"the Docker engine at {endpoint.describe()} speaks TLS and the endpoint has none",
        "set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the directory holding ca.pem, "
        "cert.pem and key.pem (or use a context made with --docker host=...,ca=...,cert=...,key=...)",
    )
