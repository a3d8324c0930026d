"""The MLflow UI in a real browser (headless Chromium) shows what `mlstack demo` logged.

Chromium renders the single-page app and dumps the resulting DOM (`--dump-dom`); the test reads
its text. With UPDATE_DOCS_SCREENSHOT=1 the runs page (metric charts) is also saved as
docs/mlflow-ui-demo.png, the screenshot the README shows. With `tls: true` Chromium trusts the
stack's local CA, and only it, by its key (`--ignore-certificate-errors-spki-list`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .conftest import REPO, Project

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "docs" / "mlflow-ui-demo.png"
FLAGS = [
    "--headless",
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",  # let the app fetch and render before the dump
]


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    return CHROMIUM


def chromium_run(
    chromium: Path, profile: Path, url: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(chromium), *FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def browse(chromium: Path, profile: Path, url: str, *extra: str) -> str:
    """Load `url` in headless Chromium; its stdout (the DOM with --dump-dom)."""
    return chromium_run(chromium, profile, url, *extra).stdout


def page_text(dom: str) -> str:
    """The visible text of a dumped DOM, whitespace collapsed."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(html.unescape(text).split())


def test_mlflow_ui_shows_the_demo(
    seaweed_project: Project,
    capsys: pytest.CaptureFixture[str],
    chromium: Path,
    mlflow_env: None,
    tmp_path: Path,
) -> None:
    project = seaweed_project
    code, _, err = project.cli(capsys, "up")
    assert code == 0, err
    code, out, err = project.cli(capsys, "demo", "--json")  # the default: 4 runs
    assert code == 0, err
    demo = json.loads(out)
    base = project.config.tracking_uri
    profile = tmp_path / "chromium-profile"

    # the experiments list names the demo's experiment
    text = page_text(browse(chromium, profile, f"{base}/#/experiments", "--dump-dom"))
    assert "Experiments" in text and "mlstack-demo" in text, text[:2000]

    # its runs page lists every run by name
    runs_page = demo["experiment_url"]
    assert runs_page == f"{base}/#/experiments/{demo['experiment_id']}/runs"
    text = page_text(browse(chromium, profile, runs_page, "--dump-dom"))
    for run in demo["runs"]:
        assert run["run_name"] in text, text[:2000]
    assert f"{len(demo['runs'])} matching runs" in text

    # a run's page shows its parameters, metrics and the registered model
    best = next(r for r in demo["runs"] if r["run_id"] == demo["best_run_id"])
    text = page_text(browse(chromium, profile, best["url"], "--dump-dom"))
    for word in (best["run_name"], best["run_id"], "accuracy", "log_loss", "class_weight"):
        assert word in text, (word, text[:2000])
    assert "mlstack-demo" in text

    # a screenshot of the runs page with its metric charts: a real image of the requested size
    shot = tmp_path / "runs.png"
    charts = f"{runs_page}?compareRunsMode=CHART"
    browse(chromium, profile, charts, f"--screenshot={shot}", "--window-size=1400,900")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 900) and len(data) > 30_000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)


def spki_hash(cert_pem: bytes) -> str:
    """base64(sha256(SubjectPublicKeyInfo)): how Chromium names a key it is told to trust."""
    key = x509.load_pem_x509_certificate(cert_pem).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_mlflow_ui_over_https_trusting_the_local_ca(
    seaweed_project: Project,
    capsys: pytest.CaptureFixture[str],
    chromium: Path,
    tmp_path: Path,
) -> None:
    project = seaweed_project
    project.write_config(tls=True)
    code, _, err = project.cli(capsys, "up")
    assert code == 0, err
    base = project.config.tracking_uri
    assert base.startswith("https://")
    ca = project.state_dir / project.name / "tls" / "ca.pem"
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/experiments/create",
        data=json.dumps({"name": "seen-over-https"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        assert response.status == 200

    # Trusting the CA's key: the UI loads over https and lists the experiment.
    pin = f"--ignore-certificate-errors-spki-list={spki_hash(ca.read_bytes())}"
    dom = browse(chromium, tmp_path / "trusting", f"{base}/#/experiments", "--dump-dom", pin)
    text = page_text(dom)
    assert "Experiments" in text and "seen-over-https" in text, text[:2000]

    # Without it Chromium refuses the certificate: the app never loads.
    refused = chromium_run(chromium, tmp_path / "plain", f"{base}/#/experiments", "--dump-dom")
    assert "net::ERR_CERT_AUTHORITY_INVALID" in refused.stderr, refused.stderr[-2000:]
    assert "seen-over-https" not in page_text(refused.stdout)
