"""MLflow's tracking server over plain HTTP (urllib): what probes and status need, without
importing mlflow (seconds) into a command that only asks whether the server answers."""

from __future__ import annotations

import base64
import http.client
import urllib.error
import urllib.request
from collections.abc import Mapping

from mlstack.errors import NotReady, StateError

API_CHECK = "/api/2.0/mlflow/experiments/search?max_results=1"  # MLflow -> its database
# The artifact proxy lists the bucket's root: MLflow -> S3, with the stack's keys, bucket there.
STORAGE_CHECK = "/api/2.0/mlflow-artifacts/artifacts?path="


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    """HTTP basic auth, as MLflow's basic-auth app expects it."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def get(
    url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 3.0, service: str = ""
) -> str:
    """GET `url`; its body. A 401 with credentials is a StateError (the password will not change
    by waiting); a refusal, a reset, a timeout or any other HTTP error is NotReady."""
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 (http/https only)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
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
        reason = getattr(e, "reason", None) or e
        raise NotReady(f"GET {url}: {reason}", service=service or None) from e


def check_tracking_server(
    base_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 3.0,
    storage: bool = False,
) -> None:
    """/health and a real API call: /health is exempt from MLflow's Host check, so on its own it
    passes while every real client gets 403. With `storage`, also a listing through the artifact
    proxy: then this one probe vouches for the database and the bucket as MLflow uses them."""
    body = get(base_url + "/health", headers=headers, timeout=timeout, service="mlflow")
    if body.strip() != "OK":
        raise NotReady(f"GET /health answered {body[:80]!r}, expected 'OK'", service="mlflow")
    get(base_url + API_CHECK, headers=headers, timeout=timeout, service="mlflow")
    if storage:
        get(base_url + STORAGE_CHECK, headers=headers, timeout=timeout, service="mlflow")
