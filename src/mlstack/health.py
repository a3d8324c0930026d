"""Readiness: probes that do real work from the host, and one polling loop with a deadline.

A probe passes only when a client could use the service: PostgreSQL answers an authenticated
query, S3 an authenticated list_buckets, MLflow both /health and a real API call (/health is
exempt from MLflow's Host check, so on its own it passes while every real client gets 403).
"""

from __future__ import annotations

import functools
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from mlstack.errors import MlstackError, ServiceUnhealthy, StateError


class Probe(Protocol):
    """One readiness check. `check` returns when the service is usable and raises otherwise."""

    @property
    def service(self) -> str: ...

    def check(self) -> None: ...


@dataclass(frozen=True)
class ProbeResult:
    service: str
    ok: bool
    latency: float
    detail: str


def run_probe(probe: Probe, clock: Callable[[], float] = time.perf_counter) -> ProbeResult:
    """Run a probe once, never raising: for `status`."""
    start = clock()
    try:
        probe.check()
    except Exception as e:  # a probe's failure is data here, not an error
        return ProbeResult(probe.service, False, clock() - start, _describe(e))
    return ProbeResult(probe.service, True, clock() - start, "ok")


def run_probes(probes: Sequence[Probe]) -> list[ProbeResult]:
    """Run probes concurrently, once each, in order: `status` waits for the slowest, not the sum."""
    if not probes:
        return []
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        return list(pool.map(run_probe, probes))


def answering(state: str, probe: ProbeResult | None) -> bool:
    """A container counts as healthy when it runs and its probe passed."""
    return state == "running" and probe is not None and probe.ok


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


@dataclass(frozen=True)
class PostgresProbe:
    service: str
    host: str
    port: int
    user: str
    password: str
    database: str = "postgres"
    timeout: float = 2.0

    def check(self) -> None:
        import psycopg2

        try:
            conn = psycopg2.connect(
                host=self.host.strip("[]"),
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=self.database,
                connect_timeout=max(1, int(self.timeout)),
            )
        except psycopg2.OperationalError as e:
            if "password authentication failed" in str(e):
                # Not transient: waiting longer will not change the password in the volume.
                raise StateError(
                    "PostgreSQL rejected the stack's password: its data volume was created with "
                    "other credentials",
                    "restore the secrets.env that belongs to this volume, or reset everything "
                    "with `mlstack down --purge`",
                    service=self.service,
                ) from None
            raise
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        finally:
            conn.close()


@functools.cache
def s3_client(endpoint: str, access_key: str, secret_key: str, timeout: float = 3.0) -> object:
    """A boto3 S3 client for the stack's storage: path-style, SigV4, no retries (we poll).

    Cached: creating a client costs a few hundred milliseconds, and probes call this in a loop.
    """
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


@dataclass(frozen=True)
class S3Probe:
    service: str
    endpoint: str
    access_key: str
    secret_key: str
    timeout: float = 3.0

    def check(self) -> None:
        client = s3_client(self.endpoint, self.access_key, self.secret_key, self.timeout)
        client.list_buckets()  # type: ignore[attr-defined]


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    """HTTP basic auth, as MLflow's basic-auth app expects it."""
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass(frozen=True)
class MlflowProbe:
    service: str
    base_url: str
    timeout: float = 3.0
    headers: Mapping[str, str] | None = None

    def _get(self, path: str) -> str:
        url = self.base_url + path
        request = urllib.request.Request(url, headers=dict(self.headers or {}))  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http only)
                return str(response.read().decode(errors="replace"))
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")[:200]
            if e.code == 401 and self.headers:
                # Not transient: the admin user exists before the server listens.
                raise StateError(
                    "MLflow rejected the admin credentials in the stack's secrets file: its auth "
                    "database holds another password for that user",
                    "restore the secrets file that belongs to this stack's volumes, or set the "
                    "admin password back through MLflow's API",
                    service=self.service,
                ) from None
            raise RuntimeError(f"GET {path} -> HTTP {e.code}: {body}") from None

    def check(self) -> None:
        body = self._get("/health")
        if body.strip() != "OK":
            raise RuntimeError(f"GET /health answered {body[:80]!r}, expected 'OK'")
        self._get("/api/2.0/mlflow/experiments/search?max_results=1")


@dataclass(frozen=True)
class HttpProbe:
    """GET a URL from the host; passes on HTTP 200 (a model server's /ping)."""

    service: str
    url: str
    timeout: float = 3.0

    def check(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:  # noqa: S310 (http only)
                response.read()
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")[:200]
            raise RuntimeError(f"GET {self.url} -> HTTP {e.code}: {body}") from None


@dataclass(frozen=True)
class CallableProbe:
    """A probe from a function, e.g. a check run inside a container."""

    service: str
    fn: Callable[[], None]

    def check(self) -> None:
        self.fn()


def wait_ready(
    probes: Sequence[Probe],
    *,
    timeout: float,
    interval: float = 0.1,
    exited: Callable[[str], str | None] = lambda service: None,
    on_ready: Callable[[str, float], None] = lambda service, seconds: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, float]:
    """Poll every probe until all pass; {service: seconds to ready}.

    Fails fast when `exited(service)` says the container is gone (it returns why), and at the
    deadline with the last error each pending probe saw.
    """
    start = clock()
    deadline = start + timeout
    pending = list(probes)
    last_error: dict[str, str] = {}
    ready: dict[str, float] = {}
    while True:
        for probe in list(pending):
            reason = exited(probe.service)
            if reason:
                raise ServiceUnhealthy(
                    f"{probe.service} stopped while starting: {reason}",
                    f"read its log: mlstack logs {probe.service}",
                    service=probe.service,
                )
            try:
                probe.check()
            except MlstackError:
                raise  # a probe that knows waiting will not help
            except Exception as e:  # not ready yet: keep the reason for the timeout message
                last_error[probe.service] = _describe(e)
                continue
            ready[probe.service] = clock() - start
            on_ready(probe.service, ready[probe.service])
            pending.remove(probe)
        if not pending:
            return ready
        now = clock()
        if now >= deadline:
            names = ", ".join(p.service for p in pending)
            first = pending[0].service
            raise ServiceUnhealthy(
                f"{names} not ready after {timeout:.0f}s; last error from {first}: "
                f"{last_error.get(first, 'none')}",
                f"read its log: mlstack logs {first}; or allow more time with --timeout",
                service=first,
            )
        sleep(min(interval, max(0.0, deadline - now)))
