"""MLflow's REST API as mlstack speaks it (no mlflow import), against a real local HTTP server
that answers the way MLflow's does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from mlstack.adapters.mlflow_http import (
    ApiError,
    TrackingApi,
    check_tracking_server,
    proxied_path,
    touch,
)
from mlstack.errors import NotReady, StateError


class Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str]]] = []  # (method, path, body)
    slow_seconds: ClassVar[float] = 0.0

    def log_message(self, *args: Any) -> None:
        return

    def _reply(self, status: int, body: object) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except BrokenPipeError:
            pass  # touch() leaves before the answer, as it should

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, self.headers.get("Authorization", "")))
        if self.path == "/health":
            self._reply(200, b"OK")
        elif self.path.startswith("/api/2.0/mlflow/registered-models/get?name=nope"):
            self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "not\nfound"})
        elif self.path.startswith("/api/2.0/mlflow/registered-models/get"):
            self._reply(200, {"registered_model": {"name": "wine"}})
        elif self.path.startswith("/api/2.0/mlflow-artifacts/artifacts?"):
            time.sleep(self.slow_seconds)
            self._reply(200, {"files": [{"path": "MLmodel", "is_dir": False}]})
        elif self.path.startswith("/api/2.0/mlflow-artifacts/artifacts/1/m/artifacts/MLmodel"):
            self._reply(200, b"flavors: {}\n")
        elif self.path.startswith("/api/2.0/mlflow/experiments/search"):
            self._reply(401 if "Authorization" in self.headers else 200, {})
        else:
            self._reply(500, b"<html>boom</html>")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.seen.append(("POST", self.path, self.rfile.read(length).decode()))
        self._reply(200, {"models": []})


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen = []
    Handler.slow_seconds = 0.0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_get_post_and_artifacts(server: str) -> None:
    api = TrackingApi(server, {"X-Test": "1"})
    assert api.get("/registered-models/get", {"name": "wine"}) == {
        "registered_model": {"name": "wine"}
    }
    assert api.post("/logged-models/search", {"experiment_ids": ["1"]}) == {"models": []}
    assert Handler.seen[-1] == (
        "POST",
        "/api/2.0/mlflow/logged-models/search",
        '{"experiment_ids": ["1"]}',
    )
    assert api.artifacts("mlflow-artifacts:/1/m/artifacts") == [
        {"path": "MLmodel", "is_dir": False}
    ]
    assert api.artifact("mlflow-artifacts:/1/m/artifacts/MLmodel") == b"flavors: {}\n"


def test_an_api_error_carries_mlflows_code_on_one_line(server: str) -> None:
    with pytest.raises(ApiError) as caught:
        TrackingApi(server).get("/registered-models/get", {"name": "nope"})
    assert caught.value.status == 404 and caught.value.missing
    assert caught.value.message == "not found"
    with pytest.raises(ApiError) as caught:
        TrackingApi(server).get("/anything")
    assert caught.value.status == 500 and not caught.value.missing


def test_a_server_that_does_not_answer_is_not_ready() -> None:
    with pytest.raises(NotReady, match=r"refused|Connection"):
        TrackingApi("http://127.0.0.1:9").get("/registered-models/search")


def test_only_proxied_locations_are_read() -> None:
    assert proxied_path("mlflow-artifacts:/1/models/m-1/artifacts") == "1/models/m-1/artifacts"
    for location in ("s3://bucket/1/m", "file:///tmp/m", "runs:/abc/model"):
        with pytest.raises(ValueError):
            proxied_path(location)


def test_the_tracking_server_check_reaches_storage_only_when_asked(server: str) -> None:
    check_tracking_server(server)
    assert not any("mlflow-artifacts" in path for _, path, _ in Handler.seen)
    check_tracking_server(server, storage=True)
    assert any(
        path.startswith("/api/2.0/mlflow-artifacts/artifacts?") for _, path, _ in Handler.seen
    )
    # a login the server refuses is no reason to wait: a StateError at once
    with pytest.raises(StateError, match="rejected the admin credentials"):
        check_tracking_server(server, headers={"Authorization": "Basic eA=="})


def test_touch_leaves_without_waiting_for_a_slow_answer(server: str) -> None:
    Handler.slow_seconds = 2.0
    started = time.monotonic()
    touch(f"{server}/api/2.0/mlflow-artifacts/artifacts?path=")
    assert time.monotonic() - started < 1.0
    deadline = time.monotonic() + 5
    while not any("mlflow-artifacts" in path for _, path, _ in Handler.seen):
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.01)
    touch("http://127.0.0.1:9/")  # nothing listens: still no error
