"""The backup archive: one .tar.gz with a manifest of what it holds and a sha256 of each member.

In this order: `manifest.json` (what it is, and the size and sha256 of every other member),
`database.dump` (`pg_dump -Fc`) and `objects/<key>` for every object of the bucket. Reading
verifies every member before anything is used; writing goes to a temporary name first, so an
interrupted backup never leaves half an archive. Pure file-format code: no engine, no network.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlstack.errors import ArchiveError, Conflict
from mlstack.state import private_file

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE = "database.dump"
AUTH_DATABASE = "auth.dump"
OBJECTS = "objects/"
COMPRESS_LEVEL = 1  # pg_dump -Fc is compressed already, artifacts mostly are: speed wins


@dataclass(frozen=True)
class Entry:
    """One member of the archive besides the manifest."""

    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectEntry(Entry):
    key: str


@dataclass(frozen=True)
class Manifest:
    format: int
    mlstack_version: str
    project: str
    database: str
    bucket: str
    mlflow_image: str
    mlflow_image_id: str
    alembic_revision: str | None
    created_at: str
    dump: Entry
    objects: list[ObjectEntry] = field(default_factory=list)
    bucket_uris: int = 0  # artifact URIs in the database that name s3://<bucket> directly
    # With `auth: true`: MLflow's users and permissions (`<database>_auth`), as `auth.dump`.
    auth_database: str | None = None
    auth_dump: Entry | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @property
    def object_bytes(self) -> int:
        return sum(o.size for o in self.objects)


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ArchiveError(f"the archive's manifest has no valid {name!r}")
    return value


def _entry(data: Any, what: str) -> tuple[int, str]:
    if not isinstance(data, Mapping):
        raise ArchiveError(f"the archive's manifest has no valid {what}")
    size, digest = data.get("size"), data.get("sha256")
    if not isinstance(size, int) or size < 0 or not isinstance(digest, str) or len(digest) != 64:
        raise ArchiveError(f"the archive's manifest has no valid size and sha256 for {what}")
    return size, digest


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest of an archive, validated: a bad one raises ArchiveError naming what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ArchiveError("the archive's manifest is not JSON") from None
    if not isinstance(data, dict):
        raise ArchiveError("the archive's manifest is not a JSON object")
    version = _field(data, "format", int)
    if version != FORMAT:
        newer = " (written by a newer mlstack: upgrade mlstack)" if version > FORMAT else ""
        raise ArchiveError(f"unknown archive format {version}, this mlstack reads {FORMAT}{newer}")
    objects: list[ObjectEntry] = []
    seen: set[str] = set()
    for item in _field(data, "objects", list):
        key = item.get("key") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key or key in seen:
            raise ArchiveError("the archive's manifest lists an object without a key, or twice")
        seen.add(key)
        size, digest = _entry(item, f"object {key!r}")
        objects.append(ObjectEntry(size, digest, key))
    revision = data.get("alembic_revision")
    if revision is not None and not isinstance(revision, str):
        raise ArchiveError("the archive's manifest has no valid 'alembic_revision'")
    return Manifest(
        format=version,
        mlstack_version=_field(data, "mlstack_version", str),
        project=_field(data, "project", str),
        database=_field(data, "database", str),
        bucket=_field(data, "bucket", str),
        mlflow_image=_field(data, "mlflow_image", str),
        mlflow_image_id=_field(data, "mlflow_image_id", str),
        alembic_revision=revision,
        created_at=_field(data, "created_at", str),
        dump=Entry(*_entry(data.get("dump"), "the database dump")),
        objects=objects,
        bucket_uris=int(data.get("bucket_uris") or 0),
        auth_database=data.get("auth_database")
        if isinstance(data.get("auth_database"), str)
        else None,
        auth_dump=Entry(*_entry(data["auth_dump"], "the auth database's dump"))
        if data.get("auth_dump") is not None
        else None,
    )


def utc_stamp(now: datetime | None = None) -> str:
    """UTC time as in archive names: 20261128T020304Z."""
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_name(project: str, now: datetime | None = None) -> str:
    return f"mlstack-{project}-{utc_stamp(now)}.tar.gz"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def entry_for(path: Path) -> Entry:
    return Entry(path.stat().st_size, sha256_file(path))


def write_archive(
    path: Path,
    manifest: Manifest,
    dump: Path,
    objects: Sequence[tuple[ObjectEntry, Path]],
    *,
    force: bool,
    auth_dump: Path | None = None,
) -> None:
    """Write the archive (0600) under a temporary name, then move it to `path`; without `force`
    an existing file is never replaced, not even one that appeared meanwhile (Conflict)."""
    dumps = [(DATABASE, dump)] + ([(AUTH_DATABASE, auth_dump)] if auth_dump else [])
    try:
        with (
            private_file(path, replace=force) as raw,
            tarfile.open(fileobj=raw, mode="w:gz", compresslevel=COMPRESS_LEVEL) as tar,
        ):
            data = manifest.to_json()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for name, source in dumps + [(OBJECTS + o.key, p) for o, p in objects]:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = source.stat().st_size, 0o600, int(time.time())
                with open(source, "rb") as f:
                    tar.addfile(info, f)
    except FileExistsError:
        raise Conflict(f"{path} already exists", "choose another -o, or add --force") from None


@dataclass(frozen=True)
class Extracted:
    manifest: Manifest
    dump: Path
    objects: dict[str, Path]
    auth_dump: Path | None = None


def read_archive(path: Path, workdir: Path) -> Extracted:
    """Unpack and verify an archive into `workdir` (never by member name): every member known,
    present once, of the size and sha256 the manifest says. Raises ArchiveError otherwise."""
    try:
        return _read_archive(path, workdir)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        if isinstance(e, FileNotFoundError) and e.filename == str(path):
            raise ArchiveError(f"{path} does not exist", "give the path of a backup") from None
        raise ArchiveError(
            f"{path} is not a readable mlstack backup (corrupt or truncated: {e})",
            "use another backup; nothing was changed",
        ) from None


def read_manifest(path: Path) -> Manifest:
    """The manifest alone (the first member): what an archive holds, without unpacking it."""
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                source = tar.extractfile(member) if member.isfile() else None
                if source is None or member.name != MANIFEST or member.size > 64 << 20:
                    break
                return parse_manifest(source.read())
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ArchiveError(f"{path} is not a readable mlstack backup ({e})") from None
    raise ArchiveError(f"{path} is not an mlstack backup (no manifest first)")


def _read_archive(path: Path, workdir: Path) -> Extracted:
    manifest: Manifest | None = None
    expected: dict[str, Entry] = {}
    files: dict[str, Path] = {}
    with tarfile.open(path, mode="r|gz") as tar:
        for index, member in enumerate(tar):
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise ArchiveError(f"{path}: unexpected member {member.name!r}")
            if manifest is None:
                if member.name != MANIFEST or member.size > 64 << 20:
                    raise ArchiveError(f"{path} is not an mlstack backup (no manifest first)")
                manifest = parse_manifest(source.read())
                expected = {DATABASE: manifest.dump}
                if manifest.auth_dump is not None:
                    expected[AUTH_DATABASE] = manifest.auth_dump
                expected.update({OBJECTS + o.key: o for o in manifest.objects})
                continue
            entry = expected.get(member.name)
            if entry is None or member.name in files:
                raise ArchiveError(f"{path}: member {member.name!r} is not in its manifest")
            target = workdir / f"member-{index}"
            digest = hashlib.sha256()
            with open(target, "wb") as out:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if target.stat().st_size != entry.size or digest.hexdigest() != entry.sha256:
                raise ArchiveError(
                    f"{path}: {member.name} does not match its checksum (the archive is corrupt)",
                    "use another backup; nothing was changed",
                )
            files[member.name] = target
    if manifest is None:
        raise ArchiveError(f"{path} is empty: not an mlstack backup")
    missing = sorted(set(expected) - set(files))
    if missing:
        raise ArchiveError(
            f"{path} lacks {len(missing)} member(s) of its manifest, e.g. {missing[0]} "
            "(truncated?)",
            "use another backup; nothing was changed",
        )
    objects = {o.key: files[OBJECTS + o.key] for o in manifest.objects}
    return Extracted(manifest, files[DATABASE], objects, files.get(AUTH_DATABASE))
