"""The fault catalogue: each way a running stack breaks for its users, on the real engine.

Each row brings a stack up, has a client process write runs (params, metrics, artifacts, a
registered model) and snapshots all the stack holds, then induces its fault as it happens to users:
a container stopped, a file gone from a volume, a password changed, a host port taken, an image
deleted, too little memory, a frozen process. Then:

- `mlstack status` exits 10 and says, in its text and in `--json` alike, what state the broken
  service is in, why (the cause) and what fixes it; MLflow failing because of its database names
  that database as its root;
- `mlstack up` heals the stack, or refuses with its exit code and one `error:` line that says why,
  before the fault is undone (as the fix says) and it heals;
- after healing, `status` exits 0 and the data read back is the snapshot taken before.

Times are measured and printed (run with -s to see them), never asserted.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from mlstack.engine.docker import DockerEngine as Engine
from mlstack.errors import ExitCode

from .conftest import SESSION, SESSION_LABEL, Project, free_ports
from .mlflow_data import cli_ok, snapshot, write_runs

OK, CONFLICT, IMAGE, UNHEALTHY, STATE = (
    ExitCode.OK,
    ExitCode.CONFLICT,
    ExitCode.IMAGE,
    ExitCode.UNHEALTHY,
    ExitCode.STATE,
)
PGDATA = "/var/lib/postgresql/data"
OTHER_PASSWORD = "not-the-stacks-password"
WAIT = 180.0  # seconds a fault may take to show (Docker's restart back-off): a guard, not a claim


@dataclass(frozen=True)
class Fault:
    service: str  # the service at fault: its row is checked
    induce: str  # a name in STEPS: what breaks the stack
    state: str  # in the row's problem (its state as Docker reports it)
    cause: tuple[str, ...]  # each in the row's cause; none: status knows no cause
    fix: tuple[str, ...]  # each in the row's fix
    up: ExitCode  # what `up` does to the fault: OK heals it, else refuses with this code
    words: tuple[str, ...] = ()  # each in the error line of a refusing `up`
    undo: str = ""  # a name in STEPS: what undoes the fault before `up` heals
    root: bool = False  # MLflow's row names the service as the root of its failure
    prepare: str = ""  # a name in STEPS: what the stack needs before its first `up`


def fault(id_: str, service: str, induce: str, state: str, cause: list[str], fix: list[str], up: ExitCode, words: list[str] | None = None, *, undo: str = "", root: bool = False, prepare: str = "") -> Any:  # fmt: skip
    found = Fault(service, induce, state, tuple(cause), tuple(fix), up, tuple(words or ()), undo, root, prepare)  # fmt: skip
    return pytest.param(found, id=id_)


# Placeholders, filled per row: {port} (MLflow's host port), {image} (its own tag of the MLflow
# image), {backup} (an archive taken before the fault).
FAULTS = [
    fault("mlflow-stopped", "mlflow", "stop_mlflow", "exited", ["it was stopped", "restart policy"], ["mlstack up"], OK),
    fault("pgdata-damaged", "postgres", "damage_pgdata", "crash-looping: restarted", ["data directory is damaged"], ["mlstack down --purge --yes && mlstack up && mlstack restore {backup} --force"], OK, undo="put_pg_control_back", root=True),
    fault("password-rejected", "postgres", "change_password", "PostgreSQL rejected the stack's password", ["password does not match the one its volume was made with"], ["restore the secrets.env", "mlstack down --purge"], STATE, ["PostgreSQL rejected the stack's password", "down --purge"], undo="put_password_back", root=True),
    fault("port-taken", "mlflow", "take_port", "exited (exit code 128)", ["port {port} is taken by another program", "address already in use"], ["free port {port}", "set mlflow.port to another port", "mlstack up"], CONFLICT, ["port {port} on 127.0.0.1 is already in use (mlflow.port)", "--set mlflow.port="], undo="release_port"),
    fault("image-gone", "mlflow", "remove_image", "exited", ["its image {image} is no longer on this machine"], ["mlstack up", "set mlflow.image"], IMAGE, ["pulling {image} failed", "connection refused", "mlflow.image"], undo="tag_image", prepare="own_image_tag"),
    fault("out-of-memory", "mlflow", "starve_mlflow", "killed: out of memory", ["the kernel killed it: out of memory"], ["more memory", "mlflow.workers", "mlstack up"], UNHEALTHY, ["mlflow stopped while starting", "killed: out of memory"], undo="give_memory"),
    # a start does nothing to a paused container: `up` unpauses it
    fault("storage-paused", "storage", "pause_storage", "paused", ["it is paused"], ["mlstack up", "docker unpause"], OK),
]  # fmt: skip


# --- a row's stack and what was done to it -------------------------------------------------------


@dataclass
class Scene:
    project: Project
    engine: Engine
    capsys: pytest.CaptureFixture[str]
    values: dict[str, str] = field(default_factory=dict)
    held: list[socket.socket] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # image tags this row made

    @property
    def api(self) -> Any:
        return self.engine._api

    def container(self, service: str) -> str:
        return f"{self.project.name}-{service}"

    def fill(self, text: str) -> str:
        for key, value in self.values.items():
            text = text.replace("{" + key + "}", value)
        return text

    def inspect(self, service: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api.inspect_container(self.container(service))
        return found

    def wait_for(self, what: str, service: str, done: Callable[[dict[str, Any]], bool]) -> None:
        """Poll `docker inspect` until `done` holds (Docker's restart back-off takes a while)."""
        deadline = time.monotonic() + WAIT
        while not done(info := self.inspect(service)):
            state = info["State"]
            assert time.monotonic() < deadline, f"{service}: no {what} in {WAIT:.0f} s: {state}"
            time.sleep(0.2)

    def exec(self, service: str, script: str, user: str = "postgres") -> str:
        code, output = self.engine.exec(self.container(service), ["sh", "-c", script], user=user)
        assert code == 0, output
        return output

    def on_volume(self, volume: str, argv: list[str]) -> None:
        """Run `argv` in a helper container with `volume` at /data (the postgres image)."""
        api = self.api
        host = api.create_host_config(binds={volume: {"bind": "/data", "mode": "rw"}})
        created = api.create_container(
            self.project.config.postgres.image,
            entrypoint=argv[:1],
            command=argv[1:],
            host_config=host,
            labels={SESSION_LABEL: SESSION},
        )
        try:
            api.start(created["Id"])
            code = api.wait(created["Id"], timeout=120)["StatusCode"]
            assert code == 0, api.logs(created["Id"]).decode(errors="replace")
        finally:
            api.remove_container(created["Id"], force=True)

    def close(self) -> None:
        for held in self.held:
            held.close()
        for tag in self.tags:  # only the tags this row made, never the offline images
            try:
                self.engine._client.images.remove(tag)
            except docker.errors.ImageNotFound:
                pass


# --- preparing, inducing, undoing ------------------------------------------------------------------


def own_image_tag(scene: Scene) -> None:
    """MLflow runs from a tag of its own (on a registry address where nothing listens)."""
    tag = f"127.0.0.1:{free_ports(1)[0]}/mlstack-fault/mlflow:{uuid.uuid4().hex[:8]}"
    scene.values.update(image=tag, offline=scene.project.config.mlflow.image)
    tag_image(scene)
    scene.tags.append(tag)
    scene.project.write_config(mlflow={"image": tag})


def stop_mlflow(scene: Scene) -> None:
    scene.api.stop(scene.container("mlflow"), timeout=10)


def damage_pgdata(scene: Scene) -> None:
    """pg_control moved aside, PostgreSQL killed: the restart policy restarts it into a crash loop.
    A backup taken first is the one the fix names."""
    out, _ = cli_ok(scene.project, scene.capsys, "backup")
    scene.values["backup"] = out.strip()
    scene.exec("postgres", f"mv {PGDATA}/global/pg_control {PGDATA}/global/pg_control.aside")
    # its exit code does not matter: the container stops under it
    scene.engine.exec(
        scene.container("postgres"),
        ["pg_ctl", "stop", "-D", PGDATA, "-m", "immediate"],
        user="postgres",
    )
    scene.wait_for("crash loop", "postgres", lambda i: i["RestartCount"] >= 3)


def put_pg_control_back(scene: Scene) -> None:
    """Back while PostgreSQL waits out a restart back-off (as a user's repair would be)."""
    scene.wait_for("restart back-off", "postgres", lambda i: i["State"]["Restarting"])
    volume = f"{scene.project.name}-postgres-data"
    scene.on_volume(volume, ["mv", "/data/global/pg_control.aside", "/data/global/pg_control"])


def _alter_password(scene: Scene, password: str) -> None:
    sql = f"ALTER USER $POSTGRES_USER PASSWORD '{password}'"
    scene.exec("postgres", f'psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d postgres -c "{sql}"')


def change_password(scene: Scene) -> None:
    """PostgreSQL holds another password than the stack's (as a volume made with other secrets),
    and MLflow restarts into it."""
    _alter_password(scene, OTHER_PASSWORD)
    scene.api.restart(scene.container("mlflow"), timeout=10)
    scene.wait_for("failed start", "mlflow", lambda i: i["RestartCount"] >= 1)


def put_password_back(scene: Scene) -> None:
    _alter_password(scene, "$POSTGRES_PASSWORD")  # the stack's, from the container's environment


def take_port(scene: Scene) -> None:
    """MLflow stopped; another program listens on its host port; Docker cannot start it."""
    port = scene.project.config.mlflow.port
    scene.values["port"] = str(port)
    scene.api.stop(scene.container("mlflow"), timeout=10)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT sockets
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    scene.held.append(blocker)
    with pytest.raises(docker.errors.APIError, match="address already in use"):
        scene.api.start(scene.container("mlflow"))


def release_port(scene: Scene) -> None:
    while scene.held:
        scene.held.pop().close()


def remove_image(scene: Scene) -> None:
    scene.api.stop(scene.container("mlflow"), timeout=10)
    scene.engine._client.images.remove(scene.values["image"])  # the tag only: others remain


def tag_image(scene: Scene) -> None:
    scene.api.tag(scene.values["offline"], *scene.values["image"].rsplit(":", 1))


def starve_mlflow(scene: Scene) -> None:
    """64 MB for MLflow, which needs more to import: killed by the kernel, restarted, again."""
    name = scene.container("mlflow")
    scene.api.stop(name, timeout=10)
    scene.api.update_container(name, mem_limit="64m", memswap_limit="64m")
    scene.api.start(name)
    scene.wait_for("OOM loop", "mlflow", lambda i: i["State"]["OOMKilled"] and i["RestartCount"] >= 2)  # fmt: skip


def give_memory(scene: Scene) -> None:
    scene.api.update_container(scene.container("mlflow"), mem_limit="4g", memswap_limit=-1)


def pause_storage(scene: Scene) -> None:
    scene.api.pause(scene.container("storage"))


def nothing(scene: Scene) -> None:
    return None


STEPS: dict[str, Callable[[Scene], None]] = {
    f.__name__: f
    for f in (
        own_image_tag, stop_mlflow, damage_pgdata, put_pg_control_back, change_password,
        put_password_back, take_port, release_port, remove_image, tag_image, starve_mlflow,
        give_memory, pause_storage,
    )
} | {"": nothing}  # fmt: skip


# --- the checks ----------------------------------------------------------------------------------


def text_rows(out: str) -> dict[str, dict[str, str]]:
    """The problem, cause and fix lines `status` prints per service that is not healthy."""
    rows: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("  cause: "):
            current["cause"] = line.removeprefix("  cause: ")
        elif line.startswith("  fix: "):
            current["fix"] = line.removeprefix("  fix: ")
        elif line.startswith(("postgres: ", "storage: ", "mlflow: ")):
            service, problem = line.split(": ", 1)
            current = rows.setdefault(service, {"problem": problem, "cause": "", "fix": ""})
    return rows


def check_status(scene: Scene, bad: Fault, report: list[str]) -> None:
    project, capsys = scene.project, scene.capsys
    started = time.monotonic()
    code, out, err = project.cli(capsys, "status")
    report.append(f"status (text) exit {code} in {time.monotonic() - started:.1f}s")
    assert code == ExitCode.DEGRADED, out + err
    code, raw, err = project.cli(capsys, "status", "--json")
    assert code == ExitCode.DEGRADED, raw + err
    as_json = {r["service"]: r for r in json.loads(raw)["services"]}
    as_text = text_rows(out)
    for where, rows in (("text", as_text), ("json", as_json)):
        row = rows[bad.service]
        assert bad.state in row["problem"], (where, row)
        for word in bad.cause:
            assert scene.fill(word) in row["cause"], (where, word, row)
        if not bad.cause:
            assert row["cause"] == "", (where, row)
        for word in bad.fix:
            assert scene.fill(word) in row["fix"], (where, word, row)
        if bad.root:
            mlflow = rows["mlflow"]
            assert mlflow["fix"].startswith(f"fix {bad.service} first: "), (where, mlflow)
            assert mlflow["cause"].startswith(f"{bad.service} is not healthy ("), (where, mlflow)
    if bad.root:
        assert as_json["mlflow"]["root"] == bad.service
    for service, row in as_text.items():
        report += [f"  {service}: {row['problem']}", f"    cause: {row['cause']}"]
        report.append(f"    fix: {row['fix']}")


def check_up(scene: Scene, bad: Fault, report: list[str]) -> None:
    """`up` on the fault: heals it, or refuses with one line; then, the fault undone, heals."""
    project, capsys = scene.project, scene.capsys
    if bad.up is not OK:
        started = time.monotonic()
        code, _, err = project.cli(capsys, "up")
        seconds = time.monotonic() - started
        lines = err.rstrip("\n").splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        report.append(f"up refused: exit {code} in {seconds:.1f}s: {errors[-1] if errors else err}")
        assert code == bad.up, err
        assert len(errors) == 1 and lines[-1] == errors[0], err
        assert "Traceback" not in err
        for word in bad.words:
            assert scene.fill(word) in errors[0], (word, errors[0])
    STEPS[bad.undo](scene)
    states = {s: scene.inspect(s)["State"]["Status"] for s in ("postgres", "storage", "mlflow")}
    started = time.monotonic()
    code, _, err = project.cli(capsys, "up")
    report.append(f"up healed: exit {code} in {time.monotonic() - started:.1f}s (from {states})")
    assert code == 0, err
    code, out, _ = project.cli(capsys, "status")
    assert code == 0, out


@pytest.mark.parametrize("bad", FAULTS)
def test_fault(
    bad: Fault,
    seaweed_project: Project,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    scene = Scene(seaweed_project, engine, capsys)
    report: list[str] = []
    try:
        STEPS[bad.prepare](scene)
        cli_ok(scene.project, capsys, "up")
        (tmp_path / "data").mkdir()
        write_runs(scene.project, "catalogue", runs=2, mb=0.5, out=str(tmp_path / "data"))
        before = snapshot(scene.project)
        assert len(before["runs"]) == 2
        STEPS[bad.induce](scene)
        check_status(scene, bad, report)
        check_up(scene, bad, report)
        assert snapshot(scene.project) == before, "data changed or lost"
    finally:
        scene.close()
        report.append(f"row took {time.monotonic() - began:.0f}s")
        with capsys.disabled():
            print(f"\n[{bad.induce}]\n" + "\n".join(report))
