"""`tls` and exposure on the real engine: MLflow over HTTPS with the local CA or the user's own
certificate, clients that verify it with only what `mlstack env` printed, the stack's own
containers (healthcheck, serve, gc) over https inside the network, and a stack published beyond
loopback where only MLflow's port leaves this machine's loopback.

The "team server" is this machine reached by its docker0 address (the project's own test host).
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import socket
import ssl
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mlstack.adapters.mlflow_http import basic_auth_header
from mlstack.engine.docker import DockerEngine
from mlstack.project import pki
from mlstack.project.backends import in_network_check
from mlstack.project.context import Project as StackProject

from .conftest import Project, client_process_env, docker0, free_ports, run_client

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"

# A user's train.py: a run with a metric and an artifact, with only what `mlstack env` printed.
CLIENT = textwrap.dedent(
    """
    import json, os, sys
    import mlflow
    out = sys.argv[1]
    mlflow.set_experiment("tls")
    path = os.path.join(out, "notes.txt")
    with open(path, "w") as f:
        f.write("over https")
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.5)
        mlflow.log_artifact(path)
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="notes.txt", dst_path=os.path.join(out, "dl")
    )
    print(json.dumps({"run_id": run.info.run_id, "notes": open(back).read()}))
    """
)
SEARCH_CLIENT = "import mlflow; print(len(mlflow.search_experiments()))"


def get(
    url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def client(out: str, tmp: Path, code: str = CLIENT, extra: dict[str, str] | None = None) -> dict:
    """Run the client with the environment `mlstack env --format json` printed (plus `extra`)."""
    env = client_process_env({**json.loads(out), **(extra or {})})
    done = run_client(["-c", code, str(tmp)], env, 240)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"stdout": done.stdout, "stderr": done.stderr}


def client_fails(out: str, tmp: Path, extra: dict[str, str]) -> str:
    env = client_process_env({**json.loads(out), **extra})
    done = run_client(["-c", SEARCH_CLIENT, str(tmp)], env, 240)
    assert done.returncode != 0, done.stdout
    return done.stderr


def wait_healthy(engine: DockerEngine, container: str) -> str:
    """Docker's verdict on the container's healthcheck once it has one (it runs every 3 s)."""
    deadline = time.monotonic() + 120
    health = None
    while time.monotonic() < deadline:
        info = engine.inspect(container)
        health = info.health if info else None
        if health in ("healthy", "unhealthy"):
            return health
        time.sleep(1)
    return str(health)


def published(engine: DockerEngine, container: str) -> dict[str, list[str]]:
    """`docker inspect`'s port bindings: container port -> host addresses."""
    info = engine.inspect(container)
    assert info is not None
    return {port: sorted(ip for ip, _ in binds) for port, binds in info.ports.items() if binds}


def test_tls_with_the_local_ca_on_an_exposed_stack(
    seaweed_project: Project,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    mlflow_env: None,
    engine: DockerEngine,
) -> None:
    project = seaweed_project
    host = docker0(engine)
    project.write_config(bind="0.0.0.0", host=host, auth=True, tls=True)
    config = project.config
    assert config.tracking_uri == f"https://{host}:{config.mlflow.port}"

    code, out, err = project.cli(capsys, "up")
    assert code == 0, err
    assert out.strip() == config.tracking_uri
    assert "warning" not in err  # a login over https: nothing to warn about
    tls = project.state_dir / project.name / "tls"
    assert sorted(p.name for p in tls.iterdir()) == ["ca.key", "ca.pem", "server.key", "server.pem"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in tls.iterdir())
    ca = (tls / "ca.pem").read_bytes()

    # Only MLflow's port leaves the loopback; the others are on 127.0.0.1 of the server.
    prefix = project.name
    assert published(engine, f"{prefix}-mlflow") == {"5000/tcp": ["0.0.0.0"]}
    assert published(engine, f"{prefix}-postgres") == {"5432/tcp": ["127.0.0.1"]}
    assert published(engine, f"{prefix}-storage") == {"8333/tcp": ["127.0.0.1"]}

    # MLflow answers https on the docker0 address, verified by the CA: with a login only.
    verified = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    password = project.secrets.MLFLOW_AUTH_ADMIN_PASSWORD
    assert get(config.tracking_uri + SEARCH, context=verified)[0] == 401
    login = basic_auth_header("admin", password)
    assert get(config.tracking_uri + SEARCH, login, verified)[0] == 200
    # ... only https: plain http on the same port gets no MLflow answer
    with pytest.raises((OSError, http.client.HTTPException)):
        get(f"http://{host}:{config.mlflow.port}{SEARCH}", login)
    # ... and never an unverified connection: the system's trust refuses the local CA
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(config.tracking_uri + SEARCH, login, ssl.create_default_context())

    # A client with only `mlstack env --show-secrets` logs a run and an artifact over https.
    code, out, err = project.cli(capsys, "env", "--show-secrets", "--format", "json")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["MLFLOW_TRACKING_SERVER_CERT_PATH"] == str(tls / "ca.pem")
    logged = json.loads(client(out, tmp_path)["stdout"].strip().splitlines()[-1])
    assert logged["notes"] == "over https"

    # Another CA fails verification: no silent fallback to an unverified connection.
    _, other_ca = pki.make_ca("someone-else")
    wrong = tmp_path / "wrong-ca.pem"
    wrong.write_bytes(pki.cert_pem(other_ca))
    stderr = client_fails(out, tmp_path, {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(wrong)})
    assert "CERTIFICATE_VERIFY_FAILED" in stderr or "certificate verify failed" in stderr

    # Inside the network: Docker's healthcheck and mlstack's own check, https by the CA.
    assert wait_healthy(engine, f"{prefix}-mlflow") == "healthy"
    opened = StackProject.open(config)
    assert opened is not None
    code_in, output = engine.exec(f"{prefix}-mlflow", in_network_check(opened))
    assert code_in == 0, output
    code, out, err = project.cli(capsys, "status", "--json")
    assert code == 0, out
    assert json.loads(out)["overall"] == "healthy"

    # A served model downloads from https://mlflow:5000; gc deletes through it.
    code, out, err = project.cli(capsys, "demo", "--runs", "1", "--json")
    assert code == 0, err
    port = free_ports(1)[0]
    code, out, err = project.cli(
        capsys, "serve", "models:/mlstack-demo@champion", "--port", str(port), "--json"
    )
    assert code == 0, err
    served = json.loads(out)
    assert served["url"] == f"http://127.0.0.1:{port}"  # a model server has no login: loopback
    assert published(engine, served["container"]) == {"8080/tcp": ["127.0.0.1"]}
    request = urllib.request.Request(
        served["url"] + "/invocations",
        data=json.dumps(served["payload"]).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert len(json.loads(response.read())["predictions"]) >= 1
    code, out, err = project.cli(capsys, "env", "--show-secrets", "--format", "json")
    client(out, tmp_path, f"import mlflow; mlflow.MlflowClient().delete_run({logged['run_id']!r})")
    code, out, err = project.cli(capsys, "gc", "--json")
    assert code == 0, err
    assert [r["id"] for r in json.loads(out)["runs"]] == [logged["run_id"]]

    # down and up keep the CA: the path clients were given stays valid.
    code, _, err = project.cli(capsys, "down")
    assert code == 0, err
    code, _, err = project.cli(capsys, "up")
    assert code == 0, err
    assert (tls / "ca.pem").read_bytes() == ca
    code, out, err = project.cli(capsys, "env", "--show-secrets", "--format", "json")
    assert int(client(out, tmp_path, SEARCH_CLIENT)["stdout"].strip()) >= 2  # tls, mlstack-demo


def self_signed(tmp: Path, names: list[str], ips: list[str]) -> tuple[Path, Path]:
    """A user's own certificate and key, as `openssl req -x509` would make them."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "own.pem", tmp / "own.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_tls_with_an_own_certificate(
    seaweed_project: Project,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    mlflow_env: None,
    engine: DockerEngine,
) -> None:
    project = seaweed_project
    cert, key = self_signed(tmp_path, ["mlflow.own-cert.test", "localhost"], ["127.0.0.1"])
    project.write_config(tls={"cert": str(cert), "key": str(key)})
    config = project.config

    code, out, err = project.cli(capsys, "up")
    assert code == 0, err
    assert out.strip() == f"https://127.0.0.1:{config.mlflow.port}"
    assert not (project.state_dir / project.name / "tls").exists()  # nothing made: the user's
    # MLflow serves exactly the user's certificate.
    served = ssl.get_server_certificate(("127.0.0.1", config.mlflow.port))
    assert x509.load_pem_x509_certificate(served.encode()) == x509.load_pem_x509_certificate(
        cert.read_bytes()
    )

    # `env` exports the self-signed certificate file itself; a client verifies by it.
    code, out, err = project.cli(capsys, "env", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["MLFLOW_TRACKING_SERVER_CERT_PATH"] == str(cert)
    logged = json.loads(client(out, tmp_path)["stdout"].strip().splitlines()[-1])
    assert logged["notes"] == "over https"

    # In the network MLflow is reached by the certificate's name, an alias of its container.
    info = engine._api.inspect_container(f"{project.name}-mlflow")
    aliases = info["NetworkSettings"]["Networks"][f"{project.name}-net"]["Aliases"]
    assert "mlflow.own-cert.test" in aliases
    assert wait_healthy(engine, f"{project.name}-mlflow") == "healthy"
    code, out, err = project.cli(capsys, "status", "--json")
    assert code == 0, out


def test_an_exposed_stack_without_tls_warns_and_publishes_only_mlflow(
    seaweed_project: Project,
    capsys: pytest.CaptureFixture[str],
    engine: DockerEngine,
) -> None:
    project = seaweed_project
    project.write_config(bind="0.0.0.0", auth=True)
    config = project.config
    code, out, err = project.cli(capsys, "up")
    assert code == 0, err
    assert err.count("warning:") == 1, err  # once
    assert "password travels in clear" in " ".join(err.split()), err

    prefix = project.name
    assert published(engine, f"{prefix}-mlflow") == {"5000/tcp": ["0.0.0.0"]}
    assert published(engine, f"{prefix}-postgres") == {"5432/tcp": ["127.0.0.1"]}
    assert published(engine, f"{prefix}-storage") == {"8333/tcp": ["127.0.0.1"]}

    # From "another host" (this machine by its docker0 address): MLflow with a login only,
    # PostgreSQL and S3 not at all.
    host = docker0(engine)
    base = f"http://{host}:{config.mlflow.port}"
    assert get(base + SEARCH)[0] == 401
    login = basic_auth_header("admin", project.secrets.MLFLOW_AUTH_ADMIN_PASSWORD)
    assert get(base + SEARCH, login)[0] == 200
    for port in (config.postgres.port, config.storage.port):
        with pytest.raises(OSError), socket.create_connection((host, port), timeout=5):
            pass
    code, out, err = project.cli(capsys, "status", "--json")
    assert code == 0, out
