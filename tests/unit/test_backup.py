"""The pure parts of backups and upgrades: manifest validation, archive reading, naming, and
when `up` migrates."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlstack.adapters.archive import (
    AUTH_DATABASE,
    DATABASE,
    FORMAT,
    MANIFEST,
    Entry,
    Manifest,
    ObjectEntry,
    default_name,
    parse_manifest,
    read_archive,
    read_manifest,
    write_archive,
)
from mlstack.engine import ContainerInfo
from mlstack.errors import ArchiveError, Conflict, ExitCode
from mlstack.project.migration import may_need_migration, needs_migration, previous_image
from mlstack.state import ImageRecord, ProjectState, record_image
from mlstack.state import read_image_record as read_record


def _entry(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


def _manifest(dump: bytes, objects: dict[str, bytes]) -> Manifest:
    return Manifest(
        format=FORMAT,
        mlstack_version="0.1.0",
        project="p",
        database="mlflow",
        bucket="mlflow",
        mlflow_image="mlflow:1",
        mlflow_image_id="sha256:" + "a" * 64,
        alembic_revision="abc",
        created_at="2026-01-01T00:00:00Z",
        dump=Entry(*_entry(dump)),
        objects=[ObjectEntry(*_entry(v), k) for k, v in objects.items()],
    )


def _archive(tmp_path: Path, objects: dict[str, bytes] | None = None) -> tuple[Path, Manifest]:
    objects = {"1/r/artifacts/a.txt": b"hello", "1/r/artifacts/b.bin": b"\0" * 5000} | (
        objects or {}
    )
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    dump = src / "dump"
    dump.write_bytes(b"PGDMP fake dump")
    files = []
    for i, (key, data) in enumerate(objects.items()):
        path = src / f"o{i}"
        path.write_bytes(data)
        files.append((ObjectEntry(*_entry(data), key), path))
    manifest = _manifest(dump.read_bytes(), objects)
    target = tmp_path / "backup.tar.gz"
    write_archive(target, manifest, dump, files, force=False)
    return target, manifest


def _raw_archive(tmp_path: Path, members: list[tuple[str, bytes]]) -> Path:
    path = tmp_path / "raw.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# --- manifest --------------------------------------------------------------------------------


def test_manifest_round_trip() -> None:
    manifest = _manifest(b"dump", {"k": b"v"})
    assert parse_manifest(manifest.to_json()) == manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 2}, "newer mlstack"),
        ({"format": 0}, "unknown archive format 0"),
        ({"format": "1"}, "'format'"),
        ({"project": None}, "'project'"),
        ({"objects": "x"}, "'objects'"),
        ({"objects": [{"key": "k", "size": -1, "sha256": "0" * 64}]}, "object 'k'"),
        ({"objects": [{"key": "", "size": 1, "sha256": "0" * 64}]}, "without a key"),
        ({"dump": {"size": 1, "sha256": "short"}}, "database dump"),
        ({"alembic_revision": 5}, "alembic_revision"),
    ],
)
def test_manifest_rejects(change: dict[str, Any], message: str) -> None:
    data = asdict(_manifest(b"dump", {"k": b"v"})) | change
    with pytest.raises(ArchiveError, match=message) as caught:
        parse_manifest(json.dumps(data).encode())
    assert caught.value.exit_code == ExitCode.USAGE


def test_manifest_rejects_duplicate_keys_and_non_json() -> None:
    data = asdict(_manifest(b"dump", {"k": b"v"}))
    data["objects"] = data["objects"] * 2
    with pytest.raises(ArchiveError, match="twice"):
        parse_manifest(json.dumps(data).encode())
    with pytest.raises(ArchiveError, match="not JSON"):
        parse_manifest(b"{not json")
    with pytest.raises(ArchiveError, match="not a JSON object"):
        parse_manifest(b"[]")


def test_default_name_is_utc() -> None:
    when = datetime(2026, 11, 28, 2, 3, 4, tzinfo=timezone.utc)
    assert default_name("exp2", when) == "mlstack-exp2-20261128T020304Z.tar.gz"


# --- archives ----------------------------------------------------------------------------------


def test_archive_round_trip_is_private(tmp_path: Path) -> None:
    path, manifest = _archive(tmp_path, {"../../etc/evil": b"x"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    work = tmp_path / "extract"
    work.mkdir()
    extracted = read_archive(path, work)
    assert extracted.manifest == manifest
    assert extracted.dump.read_bytes() == b"PGDMP fake dump"
    assert {k: p.read_bytes() for k, p in extracted.objects.items()}["1/r/artifacts/a.txt"] == (
        b"hello"
    )
    # keys never become paths: everything stays inside the work dir
    assert all(p.parent == work for p in extracted.objects.values())
    assert extracted.objects["../../etc/evil"].read_bytes() == b"x"


def test_archive_never_overwritten_without_force(tmp_path: Path) -> None:
    path, manifest = _archive(tmp_path)
    before = path.read_bytes()
    dump = tmp_path / "src" / "dump"
    with pytest.raises(Conflict, match="already exists"):
        write_archive(path, manifest, dump, [], force=False)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_truncated_archive(tmp_path: Path) -> None:
    path, _ = _archive(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        read_archive(path, tmp_path)


def test_checksum_mismatch(tmp_path: Path) -> None:
    manifest = _manifest(b"dump", {"k": b"value"})
    path = _raw_archive(
        tmp_path, [(MANIFEST, manifest.to_json()), (DATABASE, b"dump"), ("objects/k", b"VALUE")]
    )
    with pytest.raises(ArchiveError, match="objects/k does not match its checksum"):
        read_archive(path, tmp_path)


def test_missing_and_unknown_members(tmp_path: Path) -> None:
    manifest = _manifest(b"dump", {"k": b"value"})
    missing = _raw_archive(tmp_path, [(MANIFEST, manifest.to_json()), (DATABASE, b"dump")])
    with pytest.raises(ArchiveError, match="lacks 1 member"):
        read_archive(missing, tmp_path)
    extra = _raw_archive(
        tmp_path, [(MANIFEST, manifest.to_json()), (DATABASE, b"dump"), ("objects/zz", b"")]
    )
    with pytest.raises(ArchiveError, match="'objects/zz' is not in its manifest"):
        read_archive(extra, tmp_path)


def test_not_a_backup(tmp_path: Path) -> None:
    other = _raw_archive(tmp_path, [("README", b"hi")])
    with pytest.raises(ArchiveError, match="no manifest first"):
        read_archive(other, tmp_path)
    text = tmp_path / "plain.tar.gz"
    text.write_text("not gzip")
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        read_archive(text, tmp_path)
    with pytest.raises(ArchiveError, match="does not exist"):
        read_archive(tmp_path / "absent.tar.gz", tmp_path)


# --- when `up` migrates ---------------------------------------------------------------------


def _container(image_id: str) -> ContainerInfo:
    return ContainerInfo(
        id="c",
        name="p-mlflow",
        image="mlflow:old",
        state="exited",
        health=None,
        exit_code=0,
        restart_count=0,
        ports={},
        labels={"io.mlstack.project": "p", "io.mlstack.service": "mlflow"},
        image_id=image_id,
    )


def test_previous_image_prefers_the_record() -> None:
    record = ImageRecord("mlflow:1", "sha256:1")
    assert previous_image(record, _container("sha256:2")) == record
    assert previous_image(None, _container("sha256:2")) == ImageRecord("mlflow:old", "sha256:2")
    assert previous_image(None, _container("")) is None
    assert previous_image(None, None) is None


def test_needs_migration() -> None:
    old = ImageRecord("mlflow:1", "sha256:1")
    assert not needs_migration(old, "sha256:1", "rev")  # same image
    assert needs_migration(old, "sha256:2", "rev")  # new image on a schema
    assert not needs_migration(old, "sha256:2", None)  # fresh database: nothing to migrate
    assert needs_migration(None, "sha256:2", "rev")  # unknown history on a schema
    assert not needs_migration(None, "sha256:2", None)
    assert not may_need_migration(old, "sha256:1")  # a no-op `up` never looks at the database
    assert may_need_migration(old, "sha256:2") and may_need_migration(None, "sha256:1")


def test_image_record(tmp_path: Path) -> None:
    state = ProjectState(tmp_path / "p")
    assert read_record(state) is None
    record_image(state, "mlflow:1", "sha256:1")
    assert read_record(state) == ImageRecord("mlflow:1", "sha256:1")
    path = state.root / "mlflow-image.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record_image(state, "mlflow:1", "")  # an unknown id never replaces a known one
    assert read_record(state) == ImageRecord("mlflow:1", "sha256:1")
    path.write_text("{broken")
    assert read_record(state) is None


# --- the CLI, before any engine is needed ------------------------------------------------------


def test_backup_and_restore_of_a_stack_never_brought_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlstack.cli import run

    for args in (["backup"], ["restore", "some.tar.gz"]):
        code = run(["-p", "never-up", *args])
        err = capsys.readouterr().err
        assert code == ExitCode.NOT_RUNNING, err
        assert err.startswith("error: the stack 'never-up'") and "mlstack up" in err
    assert run(["restore", "x.tar.gz", "--timeout", "0"]) == ExitCode.USAGE


# --- users (auth) in the archive, and a restore's journal --------------------------------------


def test_archive_with_the_auth_database(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    dump, auth = src / "dump", src / "auth"
    dump.write_bytes(b"PGDMP main")
    auth.write_bytes(b"PGDMP users")
    manifest = replace(
        _manifest(dump.read_bytes(), {}),
        auth_database="mlflow_auth",
        auth_dump=Entry(*_entry(auth.read_bytes())),
    )
    path = tmp_path / "a.tar.gz"
    write_archive(path, manifest, dump, [], force=False, auth_dump=auth)
    assert read_manifest(path) == manifest
    work = tmp_path / "x"
    work.mkdir()
    extracted = read_archive(path, work)
    assert extracted.auth_dump is not None and extracted.auth_dump.read_bytes() == b"PGDMP users"
    assert extracted.dump.read_bytes() == b"PGDMP main"

    # an archive of a stack without auth has no auth dump; one whose auth dump went missing
    # is refused as truncated
    (tmp_path / "plain").mkdir()
    plain, _ = _archive(tmp_path / "plain")
    assert read_archive(plain, work).auth_dump is None
    with tarfile.open(path) as tar:
        kept = [(m.name, tar.extractfile(m).read()) for m in tar if m.name != AUTH_DATABASE]  # type: ignore[union-attr]
    with pytest.raises(ArchiveError, match="lacks 1 member"):
        read_archive(_raw_archive(tmp_path, kept), work)


def test_read_manifest_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    not_gzip = tmp_path / "x.tar.gz"
    not_gzip.write_bytes(b"plain text")
    with pytest.raises(ArchiveError, match="not a readable mlstack backup"):
        read_manifest(not_gzip)
    with pytest.raises(ArchiveError, match="no manifest first"):
        read_manifest(_raw_archive(tmp_path, [(DATABASE, b"x"), (MANIFEST, b"{}")]))


def test_restore_journal_names_and_round_trip(tmp_path: Path) -> None:
    from mlstack.project import restoring

    journal = restoring.new_journal(tmp_path / "a.tar.gz", ["ml_auth", "ml_auth_auth"])
    # names by position: a database whose own name ends in _auth cannot collide with its users'
    assert len(set(journal.staged.values()) | set(journal.old.values())) == 4
    assert journal.marker == journal.old["ml_auth"]
    assert journal.prefix == f".mlstack-restore/{journal.token}/"
    other = restoring.new_journal(tmp_path / "a.tar.gz", ["ml_auth"])
    assert other.token != journal.token

    state = ProjectState(tmp_path / "state")
    state.root.mkdir()
    project = SimpleNamespace(state=state)
    assert state.pending_restore() is None
    assert restoring.read_journal(project) is None  # type: ignore[arg-type]
    restoring._write_journal(project, journal, ["k1", "k2"])  # type: ignore[arg-type]
    assert stat.S_IMODE(state.restore_journal.stat().st_mode) == 0o600
    assert restoring.read_journal(project) == journal  # type: ignore[arg-type]
    assert state.pending_restore() == str(tmp_path / "a.tar.gz")
    state.restore_journal.write_text("{not json")
    assert state.pending_restore() == "(unreadable journal)"
    restoring.complete(project)  # type: ignore[arg-type]
    assert sorted(p.name for p in state.root.iterdir()) == []
