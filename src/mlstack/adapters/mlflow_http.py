"""MLflow's tracking server over plain HTTP (urllib): what probes and status need, without
importing mlflow (seconds) into a command that only asks whether the server answers."""

from __future__ import annotations

import base64
import functools
import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from mlstack.errors import NotReady, StateError

API_CHECK = "/api/2.0/mlflow/experiments/search?max_results=1"  # MLflow -> its database
# The artifact proxy lists the bucket's root: MLflow -> S3, with the stack's keys, bucket there.
STORAGE_CHECK = "/api/2.0/mlflow-artifacts/artifacts?path="


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    """HTTP basic auth, as MLflow's basic-auth app expects it."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@functools.cache
def tls_context(cafile: str | None) -> ssl.SSLContext:
    """Verification of https servers against `cafile` (the stack's CA), or the system's trust
    when None; never without verification."""
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as e:
        raise StateError(
            f"cannot read the CA certificate {cafile}: {getattr(e, 'strerror', None) or e}",
            "`mlstack up` makes the stack's CA again (tls: true); with your own certificate, "
            "check tls.cert",
        ) from None


def untrusted(url: str, error: BaseException, service: str = "") -> StateError | None:
    """A StateError when `error` is a failed certificate verification: waiting cannot fix it."""
    reason = getattr(error, "reason", error)
    if not isinstance(reason, ssl.SSLCertVerificationError):
        return None
    return StateError(
        f"{url}: the server's certificate is not trusted: "
        f"{reason.verify_message or reason.reason or reason}",
        "with tls: true, clients verify MLflow by the stack's CA (`mlstack env` exports it as "
        "MLFLOW_TRACKING_SERVER_CERT_PATH); run `mlstack up` if the stack's certificate changed",
        service=service or None,
    )


def get(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 3.0,
    service: str = "",
    cafile: str | None = None,
) -> str:
    """GET `url`; its body. A 401 with credentials is a StateError (the password will not change
    by waiting), and so is a certificate that does not verify against `cafile` (or the system's
    trust); a refusal, a reset, a timeout or any other HTTP error is NotReady."""
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 (http/https only)
    context = tls_context(cafile) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return str(response.read().decode(errors="replace"))
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")[:200]
        if e.code == 401 and headers:
            raise StateError(
                "MLflow rejected the admin credentials in the stack's secrets file: its auth "
                "database holds another password for that user",
                "restore the secrets file that belongs to this stack's volumes, or set the "
                "admin password back through MLflow's API",
                service=service or None,
            ) from e
        raise NotReady(f"GET {url} -> HTTP {e.code}: {body}", service=service or None) from e
    except (OSError, http.client.HTTPException) as e:  # refused, reset, timed out, cut short
        refused = untrusted(url, e, service)
        if refused is not None:
            raise refused from e
        reason = getattr(e, "reason", None) or e
        raise NotReady(f"GET {url}: {reason}", service=service or None) from e


def check_tracking_server(
    base_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 3.0,
    storage: bool = False,
    cafile: str | None = None,
) -> None:
    """/health and a real API call: /health is exempt from MLflow's Host check, so on its own it
    passes while every real client gets 403. With `storage`, also a listing through the artifact
    proxy: then this one probe vouches for the database and the bucket as MLflow uses them."""
    kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout, "cafile": cafile}
    body = get(base_url + "/health", service="mlflow", **kwargs)
    if body.strip() != "OK":
        raise NotReady(f"GET /health answered {body[:80]!r}, expected 'OK'", service="mlflow")
    get(base_url + API_CHECK, service="mlflow", **kwargs)
    if storage:
        get(base_url + STORAGE_CHECK, service="mlflow", **kwargs)


def touch(url: str, *, headers: Mapping[str, str] | None = None, cafile: str | None = None) -> None:
    """Send a GET and leave without its answer: the server still does the work (a handler is not
    cancelled when its client goes), so a slow first request costs the next client nothing."""
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310
    try:
        context = tls_context(cafile) if url.startswith("https:") else None
        with urllib.request.urlopen(request, timeout=0.05, context=context):  # noqa: S310
            pass
    except (OSError, http.client.HTTPException, StateError):
        pass  # the answer was never the point


class ApiError(Exception):
    """MLflow's REST API refused a call: its HTTP status, error code and message."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {error_code}: {message}")
        self.status, self.error_code, self.message = status, error_code, message

    @property
    def missing(self) -> bool:
        """The thing asked for does not exist (MLflow's codes for it vary by endpoint)."""
        return self.error_code in (
            "RESOURCE_DOES_NOT_EXIST",
            "INVALID_PARAMETER_VALUE",
            "NOT_FOUND",
        )


class TrackingApi:
    """MLflow's REST API (what its Python client calls), without importing mlflow: seconds
    saved in every command that only reads the registry."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str] | None = None, cafile: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.cafile = cafile

    def _open(self, method: str, path: str, body: bytes | None, timeout: float) -> bytes:
        headers = {**self.headers, **({"Content-Type": "application/json"} if body else {})}
        request = urllib.request.Request(  # noqa: S310 (http/https only)
            self.base_url + path, data=body, headers=headers, method=method
        )
        context = tls_context(self.cafile) if self.base_url.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
                return bytes(response.read())
        except urllib.error.HTTPError as e:
            raw = e.read().decode(errors="replace")
            try:
                found = json.loads(raw)
            except ValueError:
                found = {}
            code = str(found.get("error_code", "")) if isinstance(found, dict) else ""
            text = str(found.get("message", raw[:200])) if isinstance(found, dict) else raw[:200]
            raise ApiError(e.code, code, " ".join(text.split())) from e
        except (OSError, http.client.HTTPException) as e:
            refused = untrusted(self.base_url, e)
            if refused is not None:
                raise refused from e
            raise NotReady(f"{method} {self.base_url}{path}: {getattr(e, 'reason', e)}") from e

    def get(
        self, endpoint: str, params: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> Any:
        """GET /api/2.0/mlflow<endpoint>?<params> as JSON."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return json.loads(self._open("GET", f"/api/2.0/mlflow{endpoint}{query}", None, timeout))

    def post(self, path: str, body: Mapping[str, Any], timeout: float = 30.0) -> Any:
        return json.loads(
            self._open("POST", f"/api/2.0/mlflow{path}", json.dumps(body).encode(), timeout)
        )

    def artifact(self, location: str, timeout: float = 60.0) -> bytes:
        """A file under a proxied artifact location (`mlflow-artifacts:/...`)."""
        path = urllib.parse.quote(proxied_path(location))
        return self._open("GET", f"/api/2.0/mlflow-artifacts/artifacts/{path}", None, timeout)

    def artifacts(self, location: str) -> list[dict[str, Any]]:
        """The entries directly under a proxied artifact location."""
        query = urllib.parse.urlencode({"path": proxied_path(location)})
        found = json.loads(
            self._open("GET", f"/api/2.0/mlflow-artifacts/artifacts?{query}", None, 30.0)
        )
        return list(found.get("files", [])) if isinstance(found, dict) else []


def proxied_path(location: str) -> str:
    """`mlflow-artifacts:/1/models/m-x/artifacts` -> `1/models/m-x/artifacts`; ValueError for a
    location the server does not proxy (s3://..., file:...)."""
    scheme, _, rest = location.partition(":")
    if scheme != "mlflow-artifacts" or not rest:
        raise ValueError(location)
    return urllib.parse.urlparse(location).path.lstrip("/")
