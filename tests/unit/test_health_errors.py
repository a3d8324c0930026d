from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, unique

import pytest

from mlstack.errors import (
    ConfigError,
    EngineUnavailable,
    ExitCode,
    ImageUnavailable,
    MlstackError,
    NotReady,
    NotRunning,
    PortInUse,
    ProvisionError,
    ServiceUnhealthy,
    StackBusy,
    StateError,
    UsageError,
    exit_code_for,
)
from mlstack.health import run_probe, wait_ready


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class ScriptedProbe:
    """Fails `failures` times, then passes; each check costs `cost` seconds of fake time."""

    service: str
    failures: int
    clock: FakeClock
    cost: float = 0.0
    calls: int = field(default=0)

    def check(self) -> None:
        self.calls += 1
        self.clock.now += self.cost
        if self.calls <= self.failures:
            raise ConnectionRefusedError(f"{self.service} refused (try {self.calls})")


def test_wait_ready_polls_until_every_probe_passes() -> None:
    clock = FakeClock()
    a, b = ScriptedProbe("postgres", 3, clock), ScriptedProbe("storage", 1, clock)
    seen: list[str] = []
    ready = wait_ready(
        [a, b],
        timeout=10,
        interval=0.25,
        clock=clock,
        sleep=clock.sleep,
        on_ready=lambda s, t: seen.append(s),
    )
    assert seen == ["storage", "postgres"]
    assert ready == {"storage": 0.25, "postgres": 0.75}
    assert a.calls == 4 and b.calls == 2  # a passed probe is not run again
    assert all(s == 0.25 for s in clock.sleeps)


def test_wait_ready_times_out_with_the_last_error() -> None:
    clock = FakeClock()
    probe = ScriptedProbe("mlflow", 10_000, clock)
    with pytest.raises(ServiceUnhealthy) as info:
        wait_ready([probe], timeout=5, interval=0.5, clock=clock, sleep=clock.sleep)
    assert "mlflow not ready after 5s" in info.value.message
    assert "refused (try 11)" in info.value.message  # the last error, not the first
    assert info.value.service == "mlflow"
    assert clock.now == pytest.approx(5.0)  # never sleeps past the deadline


def test_wait_ready_fails_fast_when_the_container_exits() -> None:
    clock = FakeClock()
    probe = ScriptedProbe("postgres", 10_000, clock)
    states = iter([None, None, "exited with code 1"])
    with pytest.raises(
        ServiceUnhealthy, match="postgres stopped while starting: exited with code 1"
    ):
        wait_ready(
            [probe],
            timeout=300,
            interval=0.2,
            clock=clock,
            sleep=clock.sleep,
            exited=lambda s: next(states),
        )
    assert clock.now < 1.0


def test_run_probe_reports_failure_as_data() -> None:
    clock = FakeClock()
    result = run_probe(ScriptedProbe("storage", 1, clock, cost=0.1), clock=clock)
    assert not result.ok and "refused" in result.detail
    assert result.latency == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x"), ExitCode.USAGE),
        (UsageError("x"), ExitCode.USAGE),
        (EngineUnavailable("x"), ExitCode.ENGINE),
        (PortInUse("x"), ExitCode.CONFLICT),
        (StackBusy("x"), ExitCode.CONFLICT),
        (ImageUnavailable("x"), ExitCode.IMAGE),
        (ServiceUnhealthy("x"), ExitCode.UNHEALTHY),
        (ProvisionError("x"), ExitCode.PROVISION),
        (StateError("x"), ExitCode.STATE),
        (NotRunning("x"), ExitCode.NOT_RUNNING),
        (MlstackError("x"), ExitCode.INTERNAL),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (RuntimeError("x"), ExitCode.INTERNAL),
    ],
)
def test_every_error_maps_to_its_documented_exit_code(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) == code


def test_exit_codes_are_distinct_per_kind() -> None:
    # __members__ holds aliases too (iterating the Enum skips them)
    members = ExitCode.__members__
    assert len({member.value for member in members.values()}) == len(members)
    # and what keeps it so: ExitCode is @unique, which refuses a second name for a code
    twice = IntEnum("Twice", {"ONE": 1, "AGAIN": 1})
    with pytest.raises(ValueError, match="duplicate values found"):
        unique(twice)
    assert unique(ExitCode) is ExitCode


def test_wait_ready_fails_at_once_on_a_bug_in_a_probe() -> None:
    """Only what waiting can fix is retried: a TypeError is not a slow service."""
    clock = FakeClock()

    class Broken:
        service = "mlflow"
        calls = 0

        def check(self) -> None:
            self.calls += 1
            raise TypeError("unsupported operand")

    probe = Broken()
    with pytest.raises(TypeError, match="unsupported operand"):
        wait_ready([probe], timeout=300, clock=clock, sleep=clock.sleep)
    assert probe.calls == 1 and clock.now == 0.0


def test_wait_ready_retries_what_waiting_can_fix() -> None:
    clock = FakeClock()

    @dataclass
    class Starting:
        service: str
        errors: list[BaseException]

        def check(self) -> None:
            if self.errors:
                raise self.errors.pop(0)

    probe = Starting(
        "postgres", [NotReady("refused"), ConnectionResetError("reset"), TimeoutError("slow")]
    )
    ready = wait_ready([probe], timeout=10, interval=0.5, clock=clock, sleep=clock.sleep)
    assert ready == {"postgres": 1.5} and probe.errors == []


def test_wait_ready_stops_at_once_on_a_non_transient_error() -> None:
    clock = FakeClock()

    class WrongPassword:
        service = "postgres"

        def check(self) -> None:
            raise StateError("PostgreSQL rejected the stack's password", service="postgres")

    with pytest.raises(StateError):
        wait_ready([WrongPassword()], timeout=60, clock=clock, sleep=clock.sleep)
    assert clock.now == 0.0
