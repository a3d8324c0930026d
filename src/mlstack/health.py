"""Readiness: probes that do real work, and one polling loop with a deadline.

A probe passes only when a client could use the service: PostgreSQL answers an authenticated
query, S3 an authenticated list_buckets and the first byte of a stored object, MLflow both
/health and a real API call. The loop retries only what waiting can fix (`TRANSIENT`); anything
else fails at once, so a wrong password is said in a second and a bug in a probe is not mistaken
for a slow service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from mlstack.adapters import mlflow_http
from mlstack.adapters.targets import PgTarget, S3Target
from mlstack.errors import NotReady, ServiceUnhealthy

# What a probe may raise while a service starts: NotReady from the adapters, and the OS's own
# network errors (refused, reset, timed out) from probes that reach sockets themselves.
TRANSIENT: tuple[type[BaseException], ...] = (NotReady, OSError)


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


def describe(error: BaseException) -> str:
    """An error as one line of at most 300 characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


def run_probe(probe: Probe, clock: Callable[[], float] = time.perf_counter) -> ProbeResult:
    """Run a probe once, never raising: for `status`, where a failure is data."""
    start = clock()
    try:
        probe.check()
    except Exception as e:
        return ProbeResult(probe.service, False, clock() - start, describe(e))
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


# --- probes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresProbe:
    service: str
    target: PgTarget
    timeout: float = 2.0

    def check(self) -> None:
        # deferred: psycopg2 loads only when PostgreSQL is probed itself (status vouches by MLflow)
        from mlstack.adapters import postgres

        postgres.ping(self.target, self.timeout)


@dataclass(frozen=True)
class S3Probe:
    service: str
    target: S3Target
    timeout: float = 3.0
    bucket: str | None = None  # list this bucket rather than all (a managed S3 API's keys)
    read_from: str | None = None  # read one object of this bucket: its data, not only listings

    def check(self) -> None:
        # deferred: boto3 (0.1 s to import, 0.3 s per client) loads only when S3 is probed itself
        from mlstack.adapters import s3

        s3.ping(self.target, self.timeout, self.bucket, self.read_from)


@dataclass(frozen=True)
class MlflowProbe:
    """/health and an API call; with `storage`, also a listing through the artifact proxy."""

    service: str
    base_url: str
    timeout: float = 3.0
    headers: Mapping[str, str] | None = None
    storage: bool = False
    cafile: str | None = None  # https: the CA the server's certificate must verify against

    def check(self) -> None:
        mlflow_http.check_tracking_server(
            self.base_url,
            headers=self.headers,
            timeout=self.timeout,
            storage=self.storage,
            cafile=self.cafile,
        )


@dataclass(frozen=True)
class HttpProbe:
    """GET a URL; passes on HTTP 200 (a model server's /ping)."""

    service: str
    url: str
    timeout: float = 3.0

    def check(self) -> None:
        mlflow_http.get(self.url, timeout=self.timeout, service=self.service)


@dataclass(frozen=True)
class CallableProbe:
    """A probe from a function, e.g. a check run inside a container."""

    service: str
    fn: Callable[[], None]

    def check(self) -> None:
        self.fn()


# --- the loop ------------------------------------------------------------------------------------


def _never_exited(service: str) -> str | None:
    return None


def _ignore(service: str, seconds: float) -> None:
    return None


def wait_ready(
    probes: Sequence[Probe],
    *,
    timeout: float,
    interval: float = 0.1,
    exited: Callable[[str], str | None] = _never_exited,
    on_ready: Callable[[str, float], None] = _ignore,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, float]:
    """Poll every probe until all pass; {service: seconds to ready}.

    Fails fast when `exited(service)` says the container is gone (it returns why) or a probe
    raises something not in TRANSIENT, and at the deadline with the last error each pending
    probe saw.
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
            except TRANSIENT as e:  # not ready yet: keep the reason for the timeout message
                last_error[probe.service] = describe(e)
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
