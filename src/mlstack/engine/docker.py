"""The Docker engine through the Docker SDK for Python: with its ssh transport
(engine/ssh_transport.py), the only module that imports docker.

Every SDK call goes through `_translated`, the one place Docker's and requests' exceptions become
mlstack errors; the original stays attached as the cause (`--debug` prints it).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, cast

import docker
import docker.errors
import docker.tls
import requests
import urllib3.exceptions
from docker.utils import parse_repository_tag

from mlstack.config.endpoint import DEFAULT_HOST, Endpoint, TlsFiles, resolve_endpoint
from mlstack.engine.connection import captured_stderr, unreachable
from mlstack.engine.containers import ContainerCalls
from mlstack.engine.models import (
    PullProgress,
    count_layers,
    label_filter,
    pull_hint,
)
from mlstack.engine.relay import Forwarder, Stream, one_call_at_a_time, relay_command
from mlstack.engine.swarm import SwarmCalls
from mlstack.errors import (
    EngineConflict,
    EngineError,
    EngineUnavailable,
    ImageUnavailable,
    ObjectMissing,
)

_HINT = "see `mlstack status`; rerun with --debug for Docker's own error"
LOCAL = Endpoint(DEFAULT_HOST)
SSH_LOGINS = 4  # ssh logins started at once (sshd's MaxStartups drops some beyond 10)
SSH_RETRIES = 5  # a dropped ssh login (broken pipe before the exec started) is tried again
SSH_BACKOFF = (0.5, 1.0, 2.0, 4.0, 4.0)  # seconds before each retry: a busy server catches up


@contextmanager
def _translated(
    what: str, endpoint: Endpoint = LOCAL, said: Callable[[], str] = str
) -> Iterator[None]:
    """Docker's errors, as mlstack's: the one edge between the SDK and the rest. `said` reads
    what the ssh client wrote while connecting (its reason, when ssh is the way)."""
    try:
        yield
    except docker.errors.NotFound as e:
        raise ObjectMissing(f"{what}: {e.explanation or e}", _HINT) from e
    except docker.errors.APIError as e:
        explanation = e.explanation or str(e)
        if e.status_code == 409:
            raise EngineConflict(f"{what}: {explanation}", _HINT) from e
        raise EngineError(f"{what}: {explanation}", _HINT) from e
    # ConnectTimeout is a ConnectionError (no answer to begin with); the builtin: the socket
    except (requests.ConnectionError, docker.errors.DockerException, ConnectionError) as e:
        raise unreachable(endpoint, e, ssh_said=said()) from e
    except urllib3.exceptions.ProtocolError as e:  # a stream (a pull, logs) cut off midway
        raise EngineUnavailable(
            f"{what}: the Docker engine at {endpoint.describe()} broke off the connection",
            "check that the engine still runs (`docker info` there), then run the command again",
        ) from e
    except requests.exceptions.Timeout as e:
        raise EngineError(
            f"{what}: the Docker engine at {endpoint.describe()} did not answer in time", _HINT
        ) from e


def _tls(files: TlsFiles | None, verify: bool) -> docker.tls.TLSConfig | None:
    if files is None:
        return None
    pair = (str(files.cert), str(files.key)) if files.cert and files.key else None
    ca = str(files.ca) if files.ca else None
    if not verify:  # the context said SkipTLSVerify (DOCKER_TLS without _VERIFY): as asked
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    return docker.tls.TLSConfig(client_cert=pair, ca_cert=ca, verify=verify)


class _ApiClient(docker.APIClient):
    """The SDK's API client deaf to requests' environment: REQUESTS_CA_BUNDLE (CURL_CA_BUNDLE)
    would replace the engine's CA on every call, HTTPS_PROXY would carry the engine's API; the
    docker CLI uses neither for an engine. Over ssh, its transport closes safely (see
    engine/ssh_transport.py)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kwargs.get("use_ssh_client") and self.base_url == "http+docker://ssh":
            # the SDK's ssh transport imports paramiko, there since the SDK's ssh adapter was made
            from mlstack.engine.ssh_transport import SshAdapter  # deferred: paramiko

            ssh_host: str = getattr(self, "_custom_adapter").ssh_host  # noqa: B009
            self._custom_adapter = SshAdapter("ssh://" + ssh_host, self.timeout)
            self.mount("http+docker://ssh", self._custom_adapter)

    @property
    def trust_env(self) -> bool:
        return False

    @trust_env.setter
    def trust_env(self, value: bool) -> None:
        pass  # requests' Session.__init__ turns it on


class _Client(docker.DockerClient):
    def __init__(self, **kwargs: Any) -> None:  # what the SDK's own __init__ does, on ours
        self.api = _ApiClient(**kwargs)


class DockerEngine(ContainerCalls, SwarmCalls):
    """A connected Docker engine (implements `EngineAPI` and `SwarmAPI`)."""

    def __init__(self, client: docker.DockerClient, endpoint: Endpoint = LOCAL) -> None:
        self._client = client
        self._endpoint = endpoint
        self._logins = threading.BoundedSemaphore(SSH_LOGINS if endpoint.ssh else 64)
        # The low-level API: full control over create/networking; its stubs are looser than it.
        self._api: Any = client.api
        self._forwarders: list[Forwarder] = []

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @classmethod
    def connect(cls, timeout: float = 60, endpoint: Endpoint | None = None) -> DockerEngine:
        """Connect like the docker CLI does (DOCKER_HOST and its TLS variables, else the docker
        context), ssh through the system's ssh client (its config, known_hosts and agent)."""
        endpoint = endpoint or resolve_endpoint()
        with (
            captured_stderr(endpoint.ssh) as said,
            _translated("connecting to the Docker engine", endpoint, said),
        ):
            client = _Client(
                base_url=endpoint.url,
                tls=_tls(endpoint.tls, endpoint.verify) or False,
                timeout=int(timeout),
                use_ssh_client=endpoint.ssh,
            )
            try:
                client.ping()
            except BaseException:
                client.close()  # ends an ssh client it started
                raise
        return cls(client, endpoint)

    def _translated(self, what: str) -> AbstractContextManager[None]:
        return _translated(what, self._endpoint)

    @property
    def remote(self) -> bool:
        return self._endpoint.remote

    def close(self) -> None:
        for forwarder in self._forwarders:
            forwarder.close()
        self._client.close()

    # --- images --------------------------------------------------------------------------

    def image_id(self, ref: str) -> str | None:
        try:
            with self._translated(f"inspecting image {ref}"):
                return str(self._api.inspect_image(ref)["Id"])
        except ObjectMissing:
            return None

    def pull(self, ref: str, on_progress: Callable[[PullProgress], None]) -> None:
        repository, tag = parse_repository_tag(ref)
        layers: dict[str, tuple[int, int]] = {}
        try:
            with self._translated(f"pulling {ref}"):
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
        with self._translated(f"creating network {name}"):
            existing = self._api.networks(names=[name])
            if any(n["Name"] == name for n in existing):
                return False
            self._api.create_network(
                name, driver="bridge", labels=dict(labels), check_duplicate=True
            )
        return True

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        try:
            with self._translated(f"inspecting volume {name}"):
                self._api.inspect_volume(name)
                return False
        except ObjectMissing:
            pass
        with self._translated(f"creating volume {name}"):
            self._api.create_volume(name=name, labels=dict(labels))
        return True

    def networks(self, labels: Mapping[str, str]) -> list[str]:
        with self._translated("listing networks"):
            found = self._api.networks(filters=label_filter(labels))
        return sorted(n["Name"] for n in found)

    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        with self._translated("listing volumes"):
            found = self._api.volumes(filters=label_filter(labels))
        return sorted(v["Name"] for v in (found.get("Volumes") or []))

    def remove_network(self, name: str) -> None:
        with self._absent_ok(f"removing network {name}"):
            self._api.remove_network(name)

    def remove_volume(self, name: str) -> None:
        with self._absent_ok(f"removing volume {name}"):
            self._api.remove_volume(name, force=True)

    def exec_stream(self, name_or_id: str, command: list[str]) -> Stream:
        """An exec with stdin attached: its raw socket (stdout and stderr multiplexed). Over ssh
        each is a new login, and sshd drops logins beyond MaxStartups (10 at once by default):
        a few start at a time, and a login sshd dropped anyway (a busy server) is tried again."""
        for attempt in range(SSH_RETRIES + 1 if self._endpoint.ssh else 1):
            try:
                with self._logins, self._translated(f"exec in {name_or_id}"):
                    sock = self._api.exec_start(
                        self._api.exec_create(name_or_id, command, stdin=True), socket=True
                    )
                break
            except EngineUnavailable:
                if attempt == SSH_RETRIES or not self._endpoint.ssh:
                    raise
                time.sleep(SSH_BACKOFF[attempt])
        return one_call_at_a_time(cast(Stream, getattr(sock, "_sock", sock)))  # not SocketIO

    def forward(self, name_or_id: str, host: str, port: int) -> tuple[str, int]:
        command = relay_command(host, port)
        self._forwarders.append(
            Forwarder(lambda: self.exec_stream(name_or_id, command), command[-2])
        )
        return self._forwarders[-1].address
