"""`mlstack gc` without Docker: --older-than, which items MLflow's gc removes, where their objects
are, the one-shot container it runs (environment, never a secret on its command), what it
reports, a failed run, and the CLI around it (FakeEngine; the database and bucket scripted)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from mlstack import labels
from mlstack.adapters import postgres, s3
from mlstack.adapters.postgres import Deleted
from mlstack.cli import options, run
from mlstack.commands import gc as gc_command
from mlstack.commands.gc import (
    GcFailed,
    GcResult,
    OlderThan,
    bucket_prefix,
    gc,
    older_than,
    removed_by_gc,
)
from mlstack.config import StackConfig
from mlstack.engine import OneShot
from mlstack.errors import ExitCode, NotRunning, StackBusy, UsageError
from mlstack.project.context import Project
from mlstack.state import ProjectState
from tests.fakes import FakeEngine, OneShotRun

DAY = 86_400_000
NOW = 1_800_000_000_000


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- --older-than ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30d", 30 * DAY),
        ("1d2h", DAY + 2 * 3_600_000),
        ("1d2h3m4s", DAY + 2 * 3_600_000 + 3 * 60_000 + 4_000),
        ("90m", 90 * 60_000),
        ("1.5h", 5_400_000),
        (".5d", DAY // 2),
        ("0s", 0),
    ],
)
def test_older_than_takes_mlflows_form(text: str, ms: int) -> None:
    assert older_than(text) == OlderThan(text, ms)


@pytest.mark.parametrize("text", ["", " ", "30", "1x", "d", "2h1d", "-1d", "1..2d", "1d 2h", "1w"])
def test_a_bad_older_than_is_refused(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        older_than(text)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "is not a duration" in caught.value.message and "30d" in caught.value.hint


def test_a_bad_older_than_on_the_command_line_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(options, "engine", lambda: pytest.fail("the engine was touched"))
    code, out, err = cli(capsys, "gc", "--older-than", "2weeks")
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        "error: --older-than '2weeks' is not a duration; hint: use days, hours, minutes and "
        "seconds in that order, e.g. --older-than 30d, 1d2h, 90m or 1.5h"
    ]


# --- what MLflow's gc removes, and where its objects are -----------------------------------


def _run(deleted_at: int | None, experiment_at: int | None = None) -> Deleted:
    in_deleted = experiment_at is not None
    return Deleted(
        "run",
        "r",
        "",
        "1",
        "mlflow-artifacts:/1/r/artifacts",
        deleted_at,
        in_deleted,
        experiment_at,
    )


def test_without_older_than_everything_deleted_goes_but_runs_without_a_deletion_time() -> None:
    assert removed_by_gc(_run(NOW - 1), NOW, None)
    assert removed_by_gc(Deleted("experiment", "1", "e", "1", "", None), NOW, None)
    # MLflow compares runs.deleted_time, so a run deleted before it was recorded stays ...
    assert not removed_by_gc(_run(None), NOW, None)
    # ... unless its experiment is deleted too: then all its deleted runs go
    assert removed_by_gc(_run(None, experiment_at=NOW), NOW, None)


def test_older_than_compares_each_kind_with_its_own_time() -> None:
    week = older_than("7d")
    assert removed_by_gc(_run(NOW - 8 * DAY), NOW, week)
    assert not removed_by_gc(_run(NOW - 6 * DAY), NOW, week)
    assert removed_by_gc(_run(NOW - 6 * DAY, experiment_at=NOW - 8 * DAY), NOW, week)
    assert not removed_by_gc(_run(NOW - 6 * DAY, experiment_at=NOW - 6 * DAY), NOW, week)
    old_experiment = Deleted("experiment", "1", "e", "1", "", NOW - 8 * DAY)
    assert removed_by_gc(old_experiment, NOW, week)
    assert not removed_by_gc(Deleted("experiment", "1", "e", "1", "", None), NOW, week)
    model = Deleted("logged model", "m-1", "m", "1", "mlflow-artifacts:/1/models/m-1/artifacts", 0)
    assert removed_by_gc(model, NOW, week)
    assert not removed_by_gc(Deleted("logged model", "m", "m", "1", "", NOW), NOW, week)


@pytest.mark.parametrize(
    ("uri", "prefix"),
    [
        ("mlflow-artifacts:/1/abc/artifacts", "1/abc/artifacts/"),
        ("mlflow-artifacts://mlflow:5000/1/abc/artifacts/", "1/abc/artifacts/"),
        ("s3://mlflow/custom/abc/artifacts", "custom/abc/artifacts/"),
        ("s3://other/1/abc/artifacts", None),
        ("file:///mlruns/1/abc/artifacts", None),
        ("mlflow-artifacts:/", None),
        ("", None),
    ],
)
def test_bucket_prefix(uri: str, prefix: str | None) -> None:
    assert bucket_prefix(uri, "mlflow") == prefix


# --- the command on a FakeEngine -------------------------------------------------------------


@dataclass
class Data:
    """The stack's database (its deleted items) and bucket, as the adapters would read them."""

    deleted: list[Deleted] = field(default_factory=list)
    objects: dict[str, int] = field(default_factory=dict)

    def gc(self, run: OneShotRun) -> OneShot:
        """What `mlflow gc` does: every deleted item and its objects go."""
        for item in self.deleted:
            prefix = bucket_prefix(item.artifact_uri, "mlflow")
            self.objects = {
                k: v for k, v in self.objects.items() if not (prefix and k.startswith(prefix))
            }
        self.deleted = []
        return OneShot(0, "Run with ID r1 has been permanently deleted.")


@dataclass
class Running:
    project: Project
    engine: FakeEngine
    data: Data


def _deleted_run(run_id: str, experiment: str = "1") -> Deleted:
    uri = f"mlflow-artifacts:/{experiment}/{run_id}/artifacts"
    return Deleted("run", run_id, f"name-{run_id}", experiment, uri, 0)


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    """The default project brought up on a FakeEngine: secrets stored, three services running;
    two deleted runs with two objects each, and a kept run's object."""
    project = Project.open(StackConfig(), create_secrets=True)
    assert project is not None
    specs = project.spec.services.values()
    engine = FakeEngine(images={spec.image: f"sha256:{spec.name}" for spec in specs})
    for spec in specs:
        engine.create(spec, project.spec.network, [spec.name])
        engine.start(spec.container_name)
    data = Data(
        [_deleted_run("r1"), _deleted_run("r2")],
        {
            "1/r1/artifacts/model.pkl": 1000,
            "1/r1/artifacts/notes.txt": 10,
            "1/r2/artifacts/model.pkl": 2000,
            "1/r2/artifacts/plot.png": 500,
            "1/kept/artifacts/model.pkl": 3000,
        },
    )
    engine.one_shot_behaviours["gc"] = data.gc
    monkeypatch.setattr(postgres, "deleted", lambda target: list(data.deleted))
    monkeypatch.setattr(s3, "object_sizes", lambda target, bucket: dict(data.objects))
    monkeypatch.setattr(options, "engine", lambda: engine)
    yield Running(project, engine, data)


def test_gc_runs_mlflow_gc_with_the_servers_environment_and_no_secret_on_its_command(
    running: Running,
) -> None:
    project, engine = running.project, running.engine
    gc(project, engine, older_than("30d"))
    [done] = engine.one_shots
    assert done.image == "sha256:mlflow"  # the running server's image, by id
    assert done.name == "mlstack-mlflow-gc" and done.network == project.spec.network
    assert done.labels[labels.SERVICE] == "gc" and done.labels[labels.PROJECT] == "mlstack"
    assert done.command[:2] == ["sh", "-c"]
    assert 'mlflow gc --backend-store-uri "$MLFLOW_BACKEND_STORE_URI"' in done.command[2]
    assert done.command[3:] == ["gc", "--older-than", "30d"]
    env = done.environment
    assert project.secrets.POSTGRES_PASSWORD in env["MLFLOW_BACKEND_STORE_URI"]
    assert env["AWS_SECRET_ACCESS_KEY"] == project.secrets.S3_SECRET_KEY
    assert env["MLFLOW_S3_ENDPOINT_URL"].startswith("http://storage:")
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow"
    assert "MLFLOW_TRACKING_PASSWORD" not in env  # auth is off
    command = " ".join(done.command)
    assert not [s for s in project.secrets.values() if s and s in command]


def test_with_auth_the_container_gets_the_admin_login(running: Running) -> None:
    project = Project.open(StackConfig(auth=True), create_secrets=True)
    assert project is not None and project.secrets.has_auth
    gc(project, running.engine)
    [done] = running.engine.one_shots
    assert done.environment["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert (
        done.environment["MLFLOW_TRACKING_PASSWORD"] == project.secrets.MLFLOW_AUTH_ADMIN_PASSWORD
    )
    assert project.secrets.MLFLOW_AUTH_ADMIN_PASSWORD not in " ".join(done.command)


def test_gc_reports_what_went_counted_before_and_after(running: Running) -> None:
    result = gc(running.project, running.engine)
    assert [(r.id, r.objects, r.bytes) for r in result.runs] == [("r1", 2, 1010), ("r2", 2, 2500)]
    assert (result.objects, result.bytes) == (4, 3510)
    assert result.dry_run is False and result.gc_seconds is not None
    assert result.output == "r1\nr2"
    assert running.data.objects == {"1/kept/artifacts/model.pkl": 3000}


def test_gc_counts_what_the_bucket_lost_not_what_it_expected(running: Running) -> None:
    """An artifact deletion MLflow skipped (it warns and goes on) is not reported as freed."""

    def rows_only(run: OneShotRun) -> OneShot:
        running.data.deleted = []
        return OneShot(0, "")

    running.engine.one_shot_behaviours["gc"] = rows_only
    result = gc(running.project, running.engine)
    assert [r.id for r in result.runs] == ["r1", "r2"]
    assert (result.objects, result.bytes) == (0, 0)


def test_a_dry_run_lists_and_counts_and_deletes_nothing(running: Running) -> None:
    running.data.deleted.append(Deleted("experiment", "7", "old", "7", "", 0))
    result = gc(running.project, running.engine, dry_run=True)
    assert running.engine.one_shots == []
    assert [(r.id, r.objects, r.bytes) for r in result.runs] == [("r1", 2, 1010), ("r2", 2, 2500)]
    assert (result.objects, result.bytes) == (4, 3510)
    assert result.experiments == ["7"]
    assert result.dry_run is True and result.gc_seconds is None
    assert len(running.data.objects) == 5 and len(running.data.deleted) == 3


def test_a_failed_gc_is_one_line_with_the_gist_of_its_log_and_exit_7(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    password = running.project.secrets.POSTGRES_PASSWORD
    log = (
        "Traceback (most recent call last):\n"
        '  File "/usr/local/bin/mlflow", line 8, in <module>\n'
        f"sqlalchemy.exc.OperationalError: connection to postgres:{password}@postgres failed\n"
    )
    running.engine.one_shot_behaviours["gc"] = lambda run: OneShot(1, log)
    with pytest.raises(GcFailed) as caught:
        gc(running.project, running.engine)
    assert caught.value.exit_code == ExitCode.PROVISION == 7
    assert "OperationalError: connection to postgres:****@postgres failed" in caught.value.message
    code, out, err = cli(capsys, "gc")
    assert code == 7 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [err.splitlines()[-1]]
    assert errors[0].startswith("error: `mlflow gc` failed: sqlalchemy.exc.OperationalError")
    assert "mlstack gc" in errors[0] and password not in err and "Traceback" not in err


def test_a_gc_that_does_not_end_says_so(running: Running) -> None:
    running.engine.one_shot_behaviours["gc"] = lambda run: OneShot(-1, "")
    with pytest.raises(GcFailed, match=r"no result after 3600s \(exit code -1\)"):
        gc(running.project, running.engine)


@pytest.mark.parametrize("stopped", ["mlflow", "postgres", "storage"])
def test_gc_needs_the_stack_running(running: Running, stopped: str) -> None:
    running.engine.stop(running.project.container(stopped), 10)
    with pytest.raises(NotRunning) as caught:
        gc(running.project, running.engine, dry_run=True)
    assert caught.value.exit_code == ExitCode.NOT_RUNNING == 11
    assert "`mlstack gc` needs it" in caught.value.message
    assert caught.value.hint == "start it with `mlstack up`"
    assert running.engine.one_shots == []


def test_gc_of_a_stack_never_brought_up_is_not_running(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(options, "engine", FakeEngine)
    code, out, err = cli(capsys, "gc", "--dry-run")
    assert code == 11 and out == ""
    assert err.splitlines() == [
        "error: the stack 'mlstack' is not running: `mlstack gc` needs it; hint: start it with "
        "`mlstack up`"
    ]


# --- the command line ------------------------------------------------------------------------


def test_gc_is_a_command_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "  gc " in out
    code, out, _ = cli(capsys, "gc", "--help")
    assert code == 0
    assert all(flag in out for flag in ("--older-than", "--dry-run", "--json"))


def test_the_cli_passes_its_options_and_holds_the_lock(
    running: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[OlderThan | None, bool]] = []

    def fake_gc(
        project: Project, engine: FakeEngine, older: OlderThan | None, *, dry_run: bool, **_: object
    ) -> GcResult:
        busy = ProjectState.for_project(project.name).lock("up")
        with pytest.raises(StackBusy), busy:  # held while the command runs
            pass
        seen.append((older, dry_run))
        return GcResult(
            project.name, dry_run, older.text if older else None, [], [], [], 0, 0, 0.1, None
        )

    monkeypatch.setattr(gc_command, "gc", fake_gc)
    code, out, err = cli(capsys, "gc", "--older-than", "2d", "--dry-run", "--json")
    assert code == 0, err
    assert seen == [(OlderThan("2d", 2 * DAY), True)]
    assert json.loads(out)["older_than"] == "2d"


def test_the_text_view_lists_the_runs_and_prints_their_ids_on_stdout(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "gc", "--dry-run")
    assert code == 0, err
    assert out == "r1\nr2\n"
    assert "name-r1" in err and "nothing was deleted" in err and "4 objects (3.4 KB)" in err
    assert running.engine.one_shots == []
    code, out, err = cli(capsys, "gc", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert [r["id"] for r in result["runs"]] == ["r1", "r2"]
    assert (result["objects"], result["bytes"], result["dry_run"]) == (4, 3510, False)
    assert cli(capsys, "gc")[1] == ""  # nothing left: no ids
