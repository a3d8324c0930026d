"""Real-engine checks that the offline test images honour their containers' contracts.

The images are built by scripts/offline-images (from Debian's mirror and PyPI only)
and named in tests/offline-images.yaml / tests/offline-images-minio.yaml:

* postgres: the official image's env contract (POSTGRES_USER/PASSWORD/DB, PGDATA),
  scram-sha-256 for host connections, runs as the postgres user, initdb only once.
* seaweedfs: S3 on 8333 with SigV4 credentials taken from AWS_ACCESS_KEY_ID /
  AWS_SECRET_ACCESS_KEY, multipart uploads, data kept on the /data volume.
* minio stand-in: MinIO's arguments/env/health paths in front of nanio.
* mlflow: `mlflow server` answers /health with a postgresql+psycopg2 backend and
  proxies artifacts to S3.

Every container, volume and network is named mlstack-imgtest-* and removed by the
fixtures, pass or fail. Ports are published on 127.0.0.1 with random host ports.
"""

from __future__ import annotations

import io
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.exceptions
import docker
import docker.errors
import psycopg2
import pytest
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.config import Config

from mlstack.compose.render import seaweedfs_command, seaweedfs_entrypoint
from mlstack.compose.services import interpolate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PREFIX = "mlstack-imgtest-"
HINT = "run scripts/engine and then scripts/offline-images to build it"

PG_IMAGE = "mlstack-offline/postgres:15"
MLFLOW_IMAGE = "mlstack-offline/mlflow:3.17.2"
SEAWEEDFS_IMAGE = "mlstack-offline/seaweedfs:4.48"
MINIO_STANDIN_VERSION = "0.1.7"
MINIO_IMAGE = f"mlstack-offline/minio-standin:{MINIO_STANDIN_VERSION}"

# How the stack runs SeaweedFS (its entrypoint and command, `$$` unescaped as compose does), and
# the other command lines it may use; all take the S3 credentials from AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY and work with the stock chrislusf/seaweedfs image as well (its
# entrypoint passes `mini` through unchanged and adds -dir=/data ... to `server`; later flags
# override its defaults). An entrypoint of None is the image's own.
SeaweedRun = tuple[list[str] | None, list[str]]
STACK: SeaweedRun = (seaweedfs_entrypoint(), [interpolate(c, {}) for c in seaweedfs_command()])
MINI: SeaweedRun = (
    None,
    ["mini", "-dir=/data", "-master.telemetry=false", "-master.volumeSizeLimitMB=64"],
)
# -master.electionTimeout=1s: with the default 10s a restart on an existing /data waits ~10 s
# for the single master to re-elect itself.
SERVER_S3: SeaweedRun = (
    None,
    [
        "server",
        "-s3",
        "-master.telemetry=false",
        "-master.volumePreallocate=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",
        "-volume.preStopSeconds=1",
        "-master.electionTimeout=1s",
    ],
)
# variant -> (the run that writes, the run after it on the same /data)
SEAWEEDFS_RUNS = {
    "stack": (STACK, STACK),
    # data that `weed mini` alone wrote, as the stack ran SeaweedFS before S3 was split off
    "mini-then-stack": (MINI, STACK),
    "server-s3": (SERVER_S3, SERVER_S3),
}

T = TypeVar("T")


# ----------------------------------------------------------------------------- helpers


def wait_for(
    what: str,
    probe: Callable[[], T],
    timeout: float,
    on_timeout: Callable[[], str] | None = None,
    interval: float = 0.2,
) -> T:
    """Call probe() until it returns a truthy value without raising; fail after timeout."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout else ""
            pytest.fail(f"{what} not ready within {timeout:.0f} s (last error: {last!r})\n{detail}")
        time.sleep(interval)


def host_port(container: Any, port: str) -> int:
    container.reload()
    bindings = container.ports.get(port)
    assert bindings, f"{container.name}: {port} is not published ({container.ports})"
    return int(bindings[0]["HostPort"])


def logs(container: Any) -> str:
    try:
        container.reload()
        text: str = container.logs(tail=80).decode("utf-8", "replace")
        return f"--- {container.name} ({container.status}) last log lines ---\n{text}"
    except docker.errors.APIError as exc:
        return f"(no logs for {container.name}: {exc})"


def s3_client(endpoint: str, key: str, secret: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            retries={"max_attempts": 1},
            connect_timeout=3,
            read_timeout=60,
            s3={"addressing_style": "path"},
        ),
    )


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def error_code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    return exc.response["Error"].get("Code", ""), exc.response["ResponseMetadata"]["HTTPStatusCode"]


def assert_rejected(call: Callable[[], object], codes: set[str]) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    code, status = error_code(info.value)
    assert status == 403 or code in codes, f"unexpected rejection {code} / HTTP {status}"
    return code


def check_s3_contract(endpoint: str, key: str, secret: str) -> tuple[str, dict[str, float]]:
    """SigV4 enforced, bucket + put/get, 20 MB multipart. Returns (bucket, timings)."""
    good = s3_client(endpoint, key, secret)
    timings: dict[str, float] = {}

    # Wrong secret, unknown key, no signature at all: all refused.
    assert_rejected(
        lambda: s3_client(endpoint, key, secret + "-wrong").list_buckets(),
        {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"},
    )
    assert_rejected(
        lambda: s3_client(endpoint, "NOSUCHKEY0000", secret).list_buckets(),
        {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"},
    )
    anonymous = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    assert_rejected(
        anonymous.list_buckets,
        {"AccessDenied", "MissingAuthenticationToken", "MissingSecurityHeader"},
    )

    bucket = f"imgtest-{uuid.uuid4().hex[:8]}"
    good.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in good.list_buckets()["Buckets"]]
    assert_rejected(
        lambda: s3_client(endpoint, key, "x" + secret).put_object(
            Bucket=bucket, Key="no", Body=b"1"
        ),
        {"SignatureDoesNotMatch", "AccessDenied"},
    )

    good.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello offline")
    assert good.get_object(Bucket=bucket, Key="dir/hello.txt")["Body"].read() == b"hello offline"
    listed = good.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in listed.get("Contents", [])] == ["dir/hello.txt"]

    payload = os.urandom(20 * 1024 * 1024)
    started = time.monotonic()
    good.upload_fileobj(
        io.BytesIO(payload),
        bucket,
        "big/blob.bin",
        Config=TransferConfig(
            multipart_threshold=5 * 1024 * 1024,
            multipart_chunksize=5 * 1024 * 1024,
            max_concurrency=4,
        ),
    )
    timings["multipart_20mb_s"] = time.monotonic() - started
    head = good.head_object(Bucket=bucket, Key="big/blob.bin")
    assert head["ContentLength"] == len(payload)
    assert head["ETag"].strip('"').endswith("-4"), f"not a 4-part multipart object: {head['ETag']}"
    assert good.get_object(Bucket=bucket, Key="big/blob.bin")["Body"].read() == payload

    good.put_object(Bucket=bucket, Key="keep/me.txt", Body=b"still here")
    return bucket, timings


def wait_for_s3(endpoint: str, key: str, secret: str, container: Any, timeout: float) -> float:
    """Seconds until an authenticated list_buckets succeeds."""
    started = time.monotonic()
    client = s3_client(endpoint, key, secret)
    wait_for(
        f"S3 at {endpoint}",
        lambda: client.list_buckets() is not None,
        timeout,
        lambda: logs(container),
    )
    return time.monotonic() - started


def memory_mib(container: Any) -> float:
    stats = container.stats(stream=False)
    usage = stats.get("memory_stats", {})
    cache = usage.get("stats", {}).get("cache", 0) or usage.get("stats", {}).get("inactive_file", 0)
    return float(usage.get("usage", 0) - cache) / (1024 * 1024)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        pytest.fail(f"no Docker engine answers ({exc}); run scripts/engine first")
    yield client
    client.close()


def require_image(client: Any, tag: str) -> Any:
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {tag} is missing: {HINT}")


class Resources:
    """Creates prefixed containers/volumes/networks and removes them all at teardown."""

    def __init__(self, client: Any, test_name: str) -> None:
        self.client = client
        self.tag = f"{PREFIX}{test_name[:30].strip('_')}-{uuid.uuid4().hex[:6]}".replace("_", "-")
        self.containers: list[Any] = []
        self.volumes: list[Any] = []
        self.networks: list[Any] = []

    def name(self, what: str) -> str:
        return f"{self.tag}-{what}"

    def volume(self, what: str) -> str:
        vol = self.client.volumes.create(
            name=self.name(what), labels={"io.mlstack.test": "imgtest"}
        )
        self.volumes.append(vol)
        return str(vol.name)

    def network(self, what: str) -> str:
        net = self.client.networks.create(
            self.name(what), driver="bridge", labels={"io.mlstack.test": "imgtest"}
        )
        self.networks.append(net)
        return str(net.name)

    def run(self, image: str, what: str, **kwargs: Any) -> Any:
        kwargs.setdefault("labels", {"io.mlstack.test": "imgtest"})
        container = self.client.containers.run(image, name=self.name(what), detach=True, **kwargs)
        self.containers.append(container)
        return container

    def remove_container(self, container: Any) -> None:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        if container in self.containers:
            self.containers.remove(container)

    def cleanup(self) -> None:
        errors = []
        for container in reversed(self.containers):
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                errors.append(f"container {container.name}: {exc}")
        for net in self.networks:
            try:
                net.remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                errors.append(f"network {net.name}: {exc}")
        for vol in self.volumes:
            try:
                vol.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                errors.append(f"volume {vol.name}: {exc}")
        assert not errors, "cleanup failed: " + "; ".join(errors)


@pytest.fixture
def res(engine: Any, request: pytest.FixtureRequest) -> Iterator[Resources]:
    resources = Resources(engine, request.node.name)
    try:
        yield resources
    finally:
        resources.cleanup()


LOCAL_PORT = ("127.0.0.1", None)


def report(request: pytest.FixtureRequest, **values: float) -> None:
    for key, value in values.items():
        request.node.user_properties.append((key, round(value, 2)))
    print(f"\n[{request.node.name}] " + ", ".join(f"{k}={v:.2f}" for k, v in values.items()))


# ------------------------------------------------------------------ images and config


@pytest.mark.parametrize(
    ("tag", "description_word"),
    [
        (PG_IMAGE, "PostgreSQL"),
        (MLFLOW_IMAGE, "MLflow"),
        (SEAWEEDFS_IMAGE, "SeaweedFS"),
        (MINIO_IMAGE, "STAND-IN"),
    ],
)
def test_image_is_built_from_a_known_recipe(engine: Any, tag: str, description_word: str) -> None:
    image = require_image(engine, tag)
    labels = image.labels or {}
    assert len(labels.get("io.mlstack.recipe-hash", "")) == 64, labels
    assert description_word in labels.get("org.opencontainers.image.description", ""), labels


def test_config_fragments_name_the_images() -> None:
    expected = {
        "offline-images.yaml": ("seaweedfs", SEAWEEDFS_IMAGE),
        "offline-images-minio.yaml": ("minio", MINIO_IMAGE),
    }
    for name, (engine_name, storage_image) in expected.items():
        path = REPO / "tests" / name
        if not path.exists():
            pytest.fail(f"{path} is missing: run scripts/offline-images (it writes it)")
        text = path.read_text()
        assert text.startswith("#") and "scripts/offline-images" in text.splitlines()[0]
        body = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert body == [
            "storage:",
            f"  engine: {engine_name}",
            f"  image: {storage_image}",
            "postgres:",
            f"  image: {PG_IMAGE}",
            "mlflow:",
            f"  image: {MLFLOW_IMAGE}",
        ], text


def test_image_runtime_metadata_matches_the_official_images(engine: Any) -> None:
    pg = require_image(engine, PG_IMAGE).attrs["Config"]
    assert pg["Entrypoint"] == ["docker-entrypoint.sh"]
    assert pg["Cmd"] == ["postgres"]
    assert pg["StopSignal"] == "SIGINT"
    assert "/var/lib/postgresql/data" in (pg["Volumes"] or {})
    assert "5432/tcp" in (pg["ExposedPorts"] or {})
    env = dict(item.split("=", 1) for item in pg["Env"])
    assert env["PGDATA"] == "/var/lib/postgresql/data"
    assert env["PATH"].startswith("/usr/lib/postgresql/15/bin:")

    sw = require_image(engine, SEAWEEDFS_IMAGE).attrs["Config"]
    assert sw["Entrypoint"] == ["/entrypoint.sh"]
    assert "/data" in (sw["Volumes"] or {})
    assert "8333/tcp" in (sw["ExposedPorts"] or {})

    mn = require_image(engine, MINIO_IMAGE).attrs["Config"]
    assert "/data" in (mn["Volumes"] or {})
    assert {"9000/tcp", "9001/tcp"} <= set(mn["ExposedPorts"] or {})

    ml = require_image(engine, MLFLOW_IMAGE).attrs["Config"]
    assert not ml["Entrypoint"], "like the official MLflow image: no ENTRYPOINT"
    env = dict(item.split("=", 1) for item in ml["Env"])
    assert env["PATH"].split(":")[0] == "/opt/mlflow/bin"


# ----------------------------------------------------------------------------- postgres


def pg_connect(port: int, user: str, password: str, dbname: str) -> Any:
    return psycopg2.connect(
        host="127.0.0.1", port=port, user=user, password=password, dbname=dbname, connect_timeout=3
    )


def test_postgres_env_contract_and_restart(res: Resources, request: pytest.FixtureRequest) -> None:
    require_image(res.client, PG_IMAGE)
    user, password, db = "mlstack_user", "s3cret-Pass!", "mlstack_db"
    volume = res.volume("pgdata")
    env = {"POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": db}

    started = time.monotonic()
    pg = res.run(
        PG_IMAGE,
        "pg",
        environment=env,
        ports={"5432/tcp": LOCAL_PORT},
        volumes={volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
    )
    port = host_port(pg, "5432/tcp")
    conn = wait_for("postgres", lambda: pg_connect(port, user, password, db), 60, lambda: logs(pg))
    first_ready = time.monotonic() - started
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT current_user, current_database(), "
            "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
        )
        assert cur.fetchone() == (user, db, True)
        cur.execute("SHOW listen_addresses")
        assert cur.fetchone() == ("*",)
        cur.execute("SHOW password_encryption")
        assert cur.fetchone() == ("scram-sha-256",)
        cur.execute("SHOW data_directory")
        assert cur.fetchone() == ("/var/lib/postgresql/data",)
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,))
        assert cur.fetchone()[0].startswith("SCRAM-SHA-256$")
        cur.execute("SELECT type, auth_method FROM pg_hba_file_rules WHERE type LIKE 'host%%'")
        host_rules = cur.fetchall()
        assert host_rules and all(method == "scram-sha-256" for _, method in host_rules), host_rules
        cur.execute("SELECT setting FROM pg_settings WHERE name = 'server_version_num'")
        assert cur.fetchone()[0].startswith("15")
        cur.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives restart')")
    conn.close()

    # The health check command the stack uses works inside the container.
    probe = pg.exec_run(["pg_isready", "-q", "-h", "127.0.0.1", "-U", user, "-d", db])
    assert probe.exit_code == 0, probe.output

    # The default "postgres" database exists too, and the wrong password is refused.
    pg_connect(port, user, password, "postgres").close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        pg_connect(port, user, "not-the-password", db)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        pg_connect(port, "postgres", password, db)

    # Every server process runs as the postgres user (uid 999), none as root.
    top = pg.top(ps_args="-o pid,uid,args")
    uid_col = top["Titles"].index("UID")
    uids = {row[uid_col] for row in top["Processes"]}
    assert uids == {"999"}, top

    # A new container on the same volume keeps the data and does not re-initdb,
    # even with a different POSTGRES_PASSWORD (the env only matters for initdb).
    res.remove_container(pg)
    started = time.monotonic()
    pg2 = res.run(
        PG_IMAGE,
        "pg2",
        ports={"5432/tcp": LOCAL_PORT},
        environment={**env, "POSTGRES_PASSWORD": "another-password"},
        volumes={volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
    )
    port2 = host_port(pg2, "5432/tcp")
    conn = wait_for(
        "postgres restart", lambda: pg_connect(port2, user, password, db), 60, lambda: logs(pg2)
    )
    restart_ready = time.monotonic() - started
    with conn, conn.cursor() as cur:
        cur.execute("SELECT v FROM kept")
        assert cur.fetchall() == [("survives restart",)]
    conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        pg_connect(port2, user, "another-password", db)
    log_text = pg2.logs().decode()
    assert "skipping initdb" in log_text and "initializing" not in log_text, log_text
    report(
        request,
        postgres_first_start_to_ready_s=first_ready,
        postgres_restart_to_ready_s=restart_ready,
        postgres_mem_mib=memory_mib(pg2),
    )


def test_postgres_refuses_to_init_without_password(res: Resources) -> None:
    require_image(res.client, PG_IMAGE)
    pg = res.run(PG_IMAGE, "pgnopw", environment={"POSTGRES_USER": "someone"})
    result = pg.wait(timeout=60)
    assert result["StatusCode"] != 0
    assert "POSTGRES_PASSWORD" in pg.logs().decode()


# ---------------------------------------------------------------------------- seaweedfs


@pytest.mark.parametrize("variant", sorted(SEAWEEDFS_RUNS))
def test_seaweedfs_s3_with_sigv4_credentials_from_env(
    res: Resources, request: pytest.FixtureRequest, variant: str
) -> None:
    require_image(res.client, SEAWEEDFS_IMAGE)
    key, secret = "mlstackAccessKey", "mlstack-secret-key-123"
    env = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    volume = res.volume("swdata")
    (entrypoint, command), (entrypoint2, command2) = SEAWEEDFS_RUNS[variant]
    mounts = {volume: {"bind": "/data", "mode": "rw"}}

    started = time.monotonic()
    sw = res.run(
        SEAWEEDFS_IMAGE,
        "sw",
        entrypoint=entrypoint,
        command=command,
        environment=env,
        ports={"8333/tcp": LOCAL_PORT},
        volumes=mounts,
    )
    endpoint = f"http://127.0.0.1:{host_port(sw, '8333/tcp')}"
    wait_for_s3(endpoint, key, secret, sw, 60)
    ready = time.monotonic() - started
    # Health check as in the official image: busybox wget against the S3 /healthz (no auth).
    probe = sw.exec_run(["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8333/healthz"])
    assert probe.exit_code == 0, probe.output
    bucket, timings = check_s3_contract(endpoint, key, secret)
    mem = memory_mib(sw)

    # Nothing preallocated: the volume holds about what was written (~20 MB), not GBs.
    du = res.client.containers.run(
        SEAWEEDFS_IMAGE,
        entrypoint=["du", "-sm", "/data"],
        name=res.name("du"),
        volumes=mounts,
        remove=True,
    )
    used_mb = int(du.decode().split()[0])
    assert used_mb < 200, f"/data uses {used_mb} MB after writing ~20 MB"

    # Data survives removing the container when /data is a named volume.
    res.remove_container(sw)
    started = time.monotonic()
    sw2 = res.run(
        SEAWEEDFS_IMAGE,
        "sw2",
        entrypoint=entrypoint2,
        command=command2,
        environment=env,
        ports={"8333/tcp": LOCAL_PORT},
        volumes=mounts,
    )
    endpoint2 = f"http://127.0.0.1:{host_port(sw2, '8333/tcp')}"
    wait_for_s3(endpoint2, key, secret, sw2, 60)
    restart_ready = time.monotonic() - started
    client = s3_client(endpoint2, key, secret)

    # The volume server may re-register a moment after the S3 gateway answers.
    def read_kept() -> bytes:
        body: bytes = client.get_object(Bucket=bucket, Key="keep/me.txt")["Body"].read()
        return body

    body = wait_for("object after restart", read_kept, 30, lambda: logs(sw2))
    assert body == b"still here"
    assert client.head_object(Bucket=bucket, Key="big/blob.bin")["ContentLength"] == 20 << 20
    assert_rejected(
        lambda: s3_client(endpoint2, key, "wrong-secret").list_buckets(), {"SignatureDoesNotMatch"}
    )
    report(
        request,
        seaweedfs_start_to_s3_ready_s=ready,
        seaweedfs_restart_to_s3_ready_s=restart_ready,
        seaweedfs_mem_mib=mem,
        seaweedfs_data_mb=used_mb,
        **timings,
    )


# ----------------------------------------------------------------------- minio stand-in


def test_minio_standin_contract(res: Resources, request: pytest.FixtureRequest) -> None:
    image = require_image(res.client, MINIO_IMAGE)
    assert "STAND-IN" in image.labels["org.opencontainers.image.description"]
    user, password = "mlstackMinioUser", "mlstack-minio-pass"
    env = {"MINIO_ROOT_USER": user, "MINIO_ROOT_PASSWORD": password}
    volume = res.volume("miniodata")
    mounts = {volume: {"bind": "/data", "mode": "rw"}}
    ports = {"9000/tcp": LOCAL_PORT, "9001/tcp": LOCAL_PORT}

    started = time.monotonic()
    mn = res.run(
        MINIO_IMAGE,
        "minio",
        environment=env,
        ports=ports,
        volumes=mounts,
        command=["server", "/data", "--address", ":9000", "--console-address", ":9001"],
    )
    api = f"http://127.0.0.1:{host_port(mn, '9000/tcp')}"
    console = f"http://127.0.0.1:{host_port(mn, '9001/tcp')}"
    wait_for(
        "minio stand-in live",
        lambda: http_get(f"{api}/minio/health/live")[0] == 200,
        60,
        lambda: logs(mn),
    )
    live = time.monotonic() - started
    assert http_get(f"{api}/minio/health/ready")[0] == 200
    ready = wait_for_s3(api, user, password, mn, 30) + live
    status, page = http_get(console)
    assert status == 200 and b"STAND-IN" in page
    assert "STAND-IN" in mn.logs().decode()
    # The health paths are open, the S3 API is not.
    assert http_get(f"{api}/")[0] == 403
    # `mc ready local`, the usual MinIO container health check, is provided.
    probe = mn.exec_run(["mc", "ready", "local"])
    assert probe.exit_code == 0, probe.output

    bucket, timings = check_s3_contract(api, user, password)
    mem = memory_mib(mn)

    # `minio server ...` (with the program name) is accepted too; data persists.
    res.remove_container(mn)
    mn2 = res.run(
        MINIO_IMAGE,
        "minio2",
        environment=env,
        ports=ports,
        volumes=mounts,
        command=["minio", "server", "/data", "--console-address", ":9001"],
    )
    api2 = f"http://127.0.0.1:{host_port(mn2, '9000/tcp')}"
    wait_for_s3(api2, user, password, mn2, 60)
    client = s3_client(api2, user, password)
    assert client.get_object(Bucket=bucket, Key="keep/me.txt")["Body"].read() == b"still here"
    assert client.head_object(Bucket=bucket, Key="big/blob.bin")["ContentLength"] == 20 << 20
    assert_rejected(
        lambda: s3_client(api2, user, "wrong-password").list_buckets(), {"SignatureDoesNotMatch"}
    )
    report(
        request,
        minio_standin_start_to_live_s=live,
        minio_standin_start_to_s3_ready_s=ready,
        minio_standin_mem_mib=mem,
        **timings,
    )


def test_minio_standin_refuses_a_short_password(res: Resources) -> None:
    require_image(res.client, MINIO_IMAGE)
    mn = res.run(
        MINIO_IMAGE,
        "minioshort",
        command=["server", "/data"],
        environment={"MINIO_ROOT_USER": "someone", "MINIO_ROOT_PASSWORD": "short"},
    )
    assert mn.wait(timeout=60)["StatusCode"] != 0
    assert "at least 8 characters" in mn.logs().decode()


# ------------------------------------------------------------------------------ mlflow


def test_mlflow_server_with_postgres_backend_and_s3_artifacts(
    res: Resources, request: pytest.FixtureRequest
) -> None:
    for tag in (MLFLOW_IMAGE, PG_IMAGE, SEAWEEDFS_IMAGE):
        require_image(res.client, tag)
    net = res.network("net")
    user, password, db = "mlflow", "mlflow-db-pass", "mlflow"
    key, secret = "mlflowS3Key", "mlflow-s3-secret-1"

    pg = res.run(
        PG_IMAGE,
        "pg",
        network=net,
        ports={"5432/tcp": LOCAL_PORT},
        environment={"POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": db},
    )
    sw = res.run(
        SEAWEEDFS_IMAGE,
        "sw",
        network=net,
        ports={"8333/tcp": LOCAL_PORT},
        entrypoint=STACK[0],
        command=STACK[1],
        environment={"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret},
    )
    pg_port = host_port(pg, "5432/tcp")
    s3_endpoint = f"http://127.0.0.1:{host_port(sw, '8333/tcp')}"
    wait_for(
        "postgres", lambda: pg_connect(pg_port, user, password, db), 60, lambda: logs(pg)
    ).close()
    wait_for_s3(s3_endpoint, key, secret, sw, 60)
    s3 = s3_client(s3_endpoint, key, secret)
    s3.create_bucket(Bucket="mlflow-artifacts")

    started = time.monotonic()
    ml = res.run(
        MLFLOW_IMAGE,
        "mlflow",
        network=net,
        ports={"5000/tcp": LOCAL_PORT},
        environment={
            "MLFLOW_S3_ENDPOINT_URL": f"http://{sw.name}:8333",
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
        },
        command=[
            "mlflow",
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            "5000",
            "--backend-store-uri",
            f"postgresql+psycopg2://{user}:{password}@{pg.name}:5432/{db}",
            "--artifacts-destination",
            "s3://mlflow-artifacts/",
            "--workers",
            "1",
        ],
    )
    base = f"http://127.0.0.1:{host_port(ml, '5000/tcp')}"
    wait_for(
        "mlflow /health",
        lambda: http_get(f"{base}/health") == (200, b"OK"),
        240,
        lambda: logs(ml),
        interval=0.5,
    )
    ready = time.monotonic() - started

    # The tracking store really is PostgreSQL.
    name = f"imgtest-{uuid.uuid4().hex[:8]}"
    req = urllib.request.Request(
        f"{base}/api/2.0/mlflow/experiments/create",
        method="POST",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        experiment_id = json.loads(resp.read())["experiment_id"]
    with pg_connect(pg_port, user, password, db) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM experiments WHERE experiment_id = %s", (int(experiment_id),))
        assert cur.fetchone() == (name,)
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchone()
    conn.close()

    # Artifacts are proxied by the server to S3 (boto3 inside the image).
    put = urllib.request.Request(
        f"{base}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/probe/hello.txt",
        method="PUT",
        data=b"artifact bytes",
    )
    with urllib.request.urlopen(put, timeout=30) as resp:
        assert resp.status == 200
    obj = s3.get_object(Bucket="mlflow-artifacts", Key=f"{experiment_id}/probe/hello.txt")
    assert obj["Body"].read() == b"artifact bytes"

    # scikit-learn is importable in the image (models are served from it later).
    out = res.client.containers.run(
        MLFLOW_IMAGE,
        ["python", "-c", "import sklearn, mlflow.sklearn; print(sklearn.__version__)"],
        name=res.name("sklearn"),
        remove=True,
    )
    assert out.decode().strip()
    report(request, mlflow_start_to_health_s=ready, mlflow_mem_mib=memory_mib(ml))
