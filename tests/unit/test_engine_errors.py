"""Docker's errors become mlstack's at one edge (engine/docker.py), keeping Docker's own error as
the cause: one line without --debug, the whole chain with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests
import urllib3.exceptions

from mlstack.engine import SwarmServiceSpec
from mlstack.engine.docker import DockerEngine
from mlstack.errors import (
    EngineConflict,
    EngineError,
    EngineUnavailable,
    ExitCode,
    ImageUnavailable,
    ObjectMissing,
    exit_code_for,
)

SPEC = SwarmServiceSpec("p_x", "image", None, None, {}, "p-net", (), {})


class Response:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.reason = "reason"
        self.url = "http+docker://localhost/v1.41/containers/x"


def api_error(status: int, text: str) -> docker.errors.APIError:
    cls = docker.errors.NotFound if status == 404 else docker.errors.APIError
    return cls(text, response=Response(status), explanation=text)  # type: ignore[arg-type]


class RaisingApi:
    """Every call raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return call


def engine_raising(error: BaseException) -> DockerEngine:
    class Client:
        api = RaisingApi(error)

    return DockerEngine(Client())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (api_error(409, "container is restarting"), EngineConflict, ExitCode.CONFLICT),
        (api_error(500, "driver failed"), EngineError, ExitCode.INTERNAL),
        (requests.exceptions.ConnectionError("socket gone"), EngineUnavailable, ExitCode.ENGINE),
        (docker.errors.DockerException("no engine"), EngineUnavailable, ExitCode.ENGINE),
        (ConnectionResetError("reset"), EngineUnavailable, ExitCode.ENGINE),
        (requests.exceptions.ReadTimeout("slow"), EngineError, ExitCode.INTERNAL),
        (urllib3.exceptions.ProtocolError("Connection broken"), EngineUnavailable, ExitCode.ENGINE),
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        "start",
        "unpause",
        "stop",
        "remove",
        "networks",
        "exec",
        "remove_volume",
        "swarm_state",
        "services",
        "deploy_service",
        "remove_secret",
    ],
)
def test_every_call_translates_the_engines_errors_keeping_the_cause(
    error: BaseException, kind: type[EngineError], code: ExitCode, call: str
) -> None:
    engine = engine_raising(error)
    calls = {
        "start": lambda: engine.start("x"),
        "unpause": lambda: engine.unpause("x"),
        "stop": lambda: engine.stop("x", 1),
        "remove": lambda: engine.remove("x"),
        "networks": lambda: engine.networks({"a": "b"}),
        "exec": lambda: engine.exec("x", ["true"]),
        "remove_volume": lambda: engine.remove_volume("x"),
        "swarm_state": engine.swarm_state,
        "services": lambda: engine.services({"a": "b"}),
        "deploy_service": lambda: engine.deploy_service(SPEC),
        "remove_secret": lambda: engine.remove_secret("x"),
    }
    with pytest.raises(kind) as caught:
        calls[call]()
    assert type(caught.value) is kind
    assert caught.value.__cause__ is error  # Docker's own error, for --debug
    assert exit_code_for(caught.value) == code
    assert "\n" not in caught.value.message


def test_a_missing_object_is_nothing_to_do_or_none() -> None:
    engine = engine_raising(api_error(404, "No such container: x"))
    engine.stop("x", 1)
    engine.remove("x")
    engine.remove_network("x")
    engine.remove_volume("x")
    assert engine.inspect("x") is None
    assert engine.image_id("x:1") is None
    assert list(engine.logs("x")) == []
    with pytest.raises(ObjectMissing) as caught:
        engine.start("x")
    assert isinstance(caught.value.__cause__, docker.errors.NotFound)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlstack", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_debug_shows_the_engines_own_error_under_ours(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MLSTACK_STATE_DIR": str(tmp_path),
        "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
    }
    plain = _cli("status", env=env)
    assert plain.returncode == ExitCode.ENGINE
    assert plain.stderr.splitlines() == [
        f"error: the Docker engine is not reachable at unix://{tmp_path}/no-engine.sock "
        "(DOCKER_HOST); hint: "
        "start Docker (Docker Desktop, `sudo systemctl start docker` or `sudo dockerd &`), or "
        "point DOCKER_HOST at a running engine"
    ]
    debug = _cli("--debug", "status", env=env)
    assert debug.returncode == ExitCode.ENGINE
    assert "Traceback" in debug.stderr
    # Docker's own error is in the chain, and ours stays the last line
    assert "The above exception was the direct cause of the following exception" in debug.stderr
    assert "docker.errors.DockerException" in debug.stderr
    assert debug.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1]


def test_a_failed_pull_names_the_image_once() -> None:
    """The registry's refusal, as Docker 20.10 words it for a registry where nothing listens."""
    refused = 'Get "http://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9: connect: connection refused'
    engine = engine_raising(api_error(500, refused))
    with pytest.raises(ImageUnavailable) as raised:
        engine.pull("127.0.0.1:9/x/y:1", lambda progress: None)
    assert raised.value.message == f"pulling 127.0.0.1:9/x/y:1 failed: {refused}"
    assert raised.value.exit_code == ExitCode.IMAGE
