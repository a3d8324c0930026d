"""Who can reach the stack and how: TLS for MLflow, and the rule that nothing is exposed
beyond the machine without a login."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlstack.config.checks import Checker, Problem, unknown_keys


@dataclass(frozen=True)
class TlsConfig:
    """HTTPS for MLflow: `tls: true` (a local CA and a server certificate made into the state
    dir) or `tls: {cert: server.pem, key: server.key}` (the user's own certificate)."""

    enabled: bool = False
    cert: str | None = None
    key: str | None = None

    @property
    def own_certificate(self) -> bool:
        return self.cert is not None

    @classmethod
    def checked(cls, raw: Any, check: Checker) -> TlsConfig:
        if isinstance(raw, TlsConfig):
            return raw
        if not isinstance(raw, Mapping):
            return cls(enabled=bool(check.boolean("tls", raw)))
        unknown_keys(check, "tls.", raw, cls)
        cert = None if raw.get("cert") is None else check.text("tls.cert", raw.get("cert"))
        key = None if raw.get("key") is None else check.text("tls.key", raw.get("key"))
        if (cert is None) != (key is None):
            missing = "tls.key" if key is None else "tls.cert"
            check.fail(missing, f"{missing} is missing: give both tls.cert and tls.key, or neither")
        enabled = check.boolean("tls.enabled", raw.get("enabled", True))
        return cls(enabled=bool(enabled), cert=cert, key=key)

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "cert": self.cert, "key": self.key}


def exposure_problems(*, exposed: bool, auth: bool, allow_unauthenticated: bool) -> list[Problem]:
    """A stack published beyond loopback without a login lets anyone on the network read and
    delete every run: refused unless the user says their network is trusted."""
    if exposed and not auth and not allow_unauthenticated:
        return [
            Problem(
                "bind",
                "bind publishes MLflow beyond this machine without a login: set auth: true "
                "(and tls: true), or allow_unauthenticated: true on a network you trust",
            )
        ]
    return []


def exposure_warning(
    *, exposed: bool, bind: str, private: str, port: int, auth: bool, tls: bool
) -> str | None:
    """What `up` says, once, about a stack published beyond loopback; nothing when MLflow asks
    for a login over HTTPS (PostgreSQL and S3 stay on `private`, the loopback, anyway)."""
    if not exposed:
        return None
    where = (
        f"MLflow is published on {bind} port {port} (PostgreSQL, S3 and served models on "
        f"{private} only)"
    )
    if not auth:
        return (
            f"{where} without a login (allow_unauthenticated: true): anyone who reaches it "
            "can read and delete every run; set auth: true and tls: true"
        )
    if not tls:
        return (
            f"{where} over plain HTTP: the login's password travels in clear with every "
            "request; set tls: true (or your own certificate: tls.cert and tls.key)"
        )
    return None
