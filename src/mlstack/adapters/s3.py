"""The stack's S3 server (MinIO or SeaweedFS) through boto3: the bucket and its objects.

Clients are path-style and SigV4 (what both servers speak), never retry on their own (the
readiness loop polls), and are cached per endpoint and keys: creating one costs 0.3-0.5 s.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mlstack.adapters.targets import S3Target
from mlstack.config import bucket_name_problem
from mlstack.errors import NotReady, ProvisionError, StateError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WRONG_KEYS_HINT = (
    "restore the secrets file that belongs to this volume, or reset everything with "
    "`mlstack down --purge`"
)
_Style = Literal["auto", "virtual", "path"]  # S3 addressing styles, as botocore names them
_DENIED = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")
_MISSING = ("404", "NoSuchBucket", "NotFound")


@functools.cache
def client(target: S3Target, timeout: float = 3.0) -> S3Client:
    """A boto3 S3 client for `target` (cached)."""
    return boto3.client(
        "s3",
        endpoint_url=target.endpoint,
        aws_access_key_id=target.access_key,
        aws_secret_access_key=target.secret_key,
        region_name=target.region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": cast("_Style", target.addressing_style)},
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def ping(
    target: S3Target, timeout: float, bucket: str | None = None, read_from: str | None = None
) -> None:
    """An authenticated list_buckets: what "S3 is usable" means; with `bucket` (a managed S3
    API, whose keys may list nothing else), a listing of that bucket. With `read_from` (the
    stack's bucket), also the first byte of one object in it: a server can list what its
    metadata holds before the data behind it can be read (SeaweedFS's filer before its volumes)."""
    try:
        s3 = client(target, timeout)
        if bucket is None:
            names = {b.get("Name") for b in s3.list_buckets().get("Buckets", [])}
        else:
            s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
            names = {bucket}
        if read_from is not None and read_from in names:
            _read_one(s3, read_from)
    except (BotoCoreError, ClientError) as e:
        # While a server starts it refuses, resets, or answers 5xx (and SeaweedFS a 403 until
        # it has loaded its keys): all worth waiting for.
        raise NotReady(f"S3 at {target.endpoint}: {e}", service="storage") from e


def _read_one(s3: S3Client, bucket: str) -> None:
    """Read byte 0 of the first non-empty object among the bucket's first few (none: passes)."""
    listed = s3.list_objects_v2(Bucket=bucket, MaxKeys=20).get("Contents", [])
    key = next((o["Key"] for o in listed if o.get("Size", 0) > 0), None)
    if key is None:
        return
    try:
        s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].read()
    except ClientError as e:
        if _code(e) not in ("NoSuchKey", "404"):  # deleted since the listing: the store answered
            raise


def ensure_bucket(target: S3Target, bucket: str) -> bool:
    """Create `bucket` unless it exists; True when created. "Already owned" is success."""
    problem = bucket_name_problem(bucket)
    if problem:
        raise ProvisionError(problem, "set storage.bucket to a valid name")
    s3 = client(target)
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as e:
        code = _code(e)
        if code in _DENIED:
            raise StateError(
                f"the S3 server rejected the stack's keys ({code}): its data volume was created "
                "with other credentials",
                WRONG_KEYS_HINT,
                service="storage",
            ) from e
        if code not in _MISSING:
            raise ProvisionError(
                f"checking bucket {bucket!r} failed: {e}", "see `mlstack logs storage`"
            ) from e
    except BotoCoreError as e:
        raise ProvisionError(
            f"checking bucket {bucket!r} failed: {e}", "see `mlstack logs storage`"
        ) from e
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as e:
        if _code(e) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise ProvisionError(
            f"creating bucket {bucket!r} failed: {e}", "see `mlstack logs storage`"
        ) from e
    except BotoCoreError as e:
        raise ProvisionError(
            f"creating bucket {bucket!r} failed: {e}", "see `mlstack logs storage`"
        ) from e
    return True


# --- objects (backup and restore: long transfers, a long timeout) ----------------------------

TRANSFER_TIMEOUT = 120.0


def object_sizes(target: S3Target, bucket: str, prefix: str = "") -> dict[str, int]:
    """Every object of `bucket` (under `prefix`): its key and size in bytes."""
    sizes: dict[str, int] = {}
    paginator = client(target, TRANSFER_TIMEOUT).get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        sizes.update((o["Key"], int(o.get("Size", 0))) for o in page.get("Contents", []))
    return sizes


def list_keys(target: S3Target, bucket: str, prefix: str = "") -> list[str]:
    return list(object_sizes(target, bucket, prefix))


def has_objects(target: S3Target, bucket: str) -> bool:
    listed = client(target, TRANSFER_TIMEOUT).list_objects_v2(Bucket=bucket, MaxKeys=1)
    return bool(listed.get("KeyCount"))


def download_all(
    target: S3Target, bucket: str, workdir: Path, keys: list[str] | None = None
) -> list[tuple[str, Path]]:
    """Every object of `bucket` (or those of `keys`) into `workdir` (8 at a time): (key, file)
    pairs."""
    s3 = client(target, TRANSFER_TIMEOUT)

    def fetch(index_key: tuple[int, str]) -> tuple[str, Path]:
        index, key = index_key
        path = workdir / f"object-{index}"
        s3.download_file(bucket, key, str(path))
        return key, path

    with ThreadPoolExecutor(max_workers=8) as pool:
        wanted = list_keys(target, bucket) if keys is None else keys
        return list(pool.map(fetch, enumerate(wanted)))


def delete(target: S3Target, bucket: str, keys: list[str]) -> None:
    """Delete `keys` (1,000 a request)."""
    s3 = client(target, TRANSFER_TIMEOUT)
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})  # type: ignore[typeddict-item]


def copy_all(target: S3Target, bucket: str, pairs: list[tuple[str, str]]) -> None:
    """Copy objects within the bucket, (from key, to key), on the server (8 at a time)."""
    s3 = client(target, TRANSFER_TIMEOUT)

    def copy(pair: tuple[str, str]) -> None:
        s3.copy({"Bucket": bucket, "Key": pair[0]}, bucket, pair[1])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(copy, pairs))


def upload_all(target: S3Target, bucket: str, files: Mapping[str, Path]) -> None:
    s3 = client(target, TRANSFER_TIMEOUT)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kv: s3.upload_file(str(kv[1]), bucket, kv[0]), files.items()))
