"""`tls` and exposure without an engine: the local CA and its server certificate (names,
regeneration, modes), a user's own certificate and its bad inputs, the render, `mlstack env`,
verification by mlstack's own HTTP calls, and what is published where."""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import ipaddress
import json
import re
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mlstack.adapters import mlflow_http
from mlstack.cli import options, run
from mlstack.commands.gc import gc_environment
from mlstack.commands.serve import serve_spec
from mlstack.commands.up import exposed_warning
from mlstack.compose.render import allowed_hosts, render_compose
from mlstack.compose.services import from_compose
from mlstack.config import StackConfig, load_config
from mlstack.config.exposure import TlsConfig
from mlstack.credentials import StackSecrets
from mlstack.errors import ConfigError, ExitCode, StateError
from mlstack.health import MlflowProbe, wait_ready
from mlstack.project import certificates, pki
from mlstack.project.context import Project
from mlstack.project.oneshot import _server_environment
from mlstack.project.ports import published_on
from mlstack.state import ProjectState
from tests.fakes import FakeEngine

SECRETS = StackSecrets(
    "mlflow", "pw" * 16, "AKEY" * 5, "s" * 40, "admin", "adminpw" * 5, "flaskkey" * 6
)


def leaf(chain: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain)[0]


def names(cert: x509.Certificate) -> set[str]:
    dns, ips = pki.names_of(cert)
    return set(dns) | {str(ip) for ip in ips}


def made(config: StackConfig) -> certificates.ServerTls:
    """The material `up` makes for `config`, stored as `up` stores it."""
    state = ProjectState.for_project(config.project)
    tls = certificates.server_tls(config, state, create=True)
    assert tls is not None
    certificates.save(state, tls)
    return tls


# --- the local CA ----------------------------------------------------------------------------


def test_the_local_ca_signs_a_server_certificate_for_every_name_clients_use(
    isolated_state: Path,
) -> None:
    config = StackConfig(
        project="p", bind="10.1.2.3", host="mlflow.example.com", auth=True, tls=True
    )
    tls = made(config)
    directory = isolated_state / "p" / "tls"
    assert sorted(p.name for p in directory.iterdir()) == [
        "ca.key",
        "ca.pem",
        "server.key",
        "server.pem",
    ]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in directory.iterdir())
    assert directory.parent.stat().st_mode & 0o777 == 0o700
    cert = leaf(tls.chain)
    assert names(cert) == {
        "localhost", "mlflow", "p-mlflow", "mlflow.example.com", "127.0.0.1", "::1", "10.1.2.3",
    }  # fmt: skip
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # the chain MLflow serves ends with the CA (what Chromium's key pin matches), and the
    # containers trust exactly that CA
    assert x509.load_pem_x509_certificates(tls.chain)[-1] == ca
    assert tls.trust == (directory / "ca.pem").read_bytes()
    assert tls.ca_file == str(directory / "ca.pem") and tls.name == "mlflow"
    # a wildcard bind is no name; a bind of 0.0.0.0 adds nothing
    wildcard = StackConfig(project="q", bind="0.0.0.0", auth=True, tls=True)
    assert names(leaf(made(wildcard).chain)) == {
        "localhost",
        "mlflow",
        "q-mlflow",
        "127.0.0.1",
        "::1",
    }


def test_the_ca_is_kept_and_the_server_certificate_made_again_when_names_change(
    isolated_state: Path,
) -> None:
    first = made(StackConfig(project="p", tls=True))
    ca_file = isolated_state / "p" / "tls" / "ca.pem"
    ca = ca_file.read_bytes()
    # the same config: nothing is made again
    again = certificates.server_tls(
        StackConfig(project="p", tls=True), ProjectState.for_project("p"), create=True
    )
    assert again is not None and dict(again.unsaved) == {} and again.chain == first.chain
    # a new host: a new server certificate, the same CA (clients keep their CA file)
    moved = made(StackConfig(project="p", tls=True, host="mlflow.example.com"))
    assert set(moved.unsaved) == {"server.pem", "server.key"}
    assert ca_file.read_bytes() == ca and moved.chain != first.chain
    assert "mlflow.example.com" in names(leaf(moved.chain))
    leaf(moved.chain).verify_directly_issued_by(x509.load_pem_x509_certificate(ca))


def test_a_server_certificate_near_its_end_or_not_the_cas_is_made_again(
    isolated_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    days = pki.SERVER_DAYS
    monkeypatch.setattr(pki, "SERVER_DAYS", 20)  # within RENEW_DAYS of its end at once
    made(StackConfig(project="p", tls=True))
    monkeypatch.setattr(pki, "SERVER_DAYS", days)
    renewed = made(StackConfig(project="p", tls=True))
    assert set(renewed.unsaved) == {"server.pem", "server.key"}
    assert leaf(renewed.chain).not_valid_after_utc - pki._now() > datetime.timedelta(days=300)
    # a server key that is not the certificate's: both made again, the CA kept
    (isolated_state / "p" / "tls" / "server.key").write_bytes(
        pki.key_pem(ec.generate_private_key(ec.SECP256R1()))
    )
    assert set(made(StackConfig(project="p", tls=True)).unsaved) == {"server.pem", "server.key"}
    # a CA whose key went missing: a new CA, and a server certificate of that CA
    (isolated_state / "p" / "tls" / "ca.key").unlink()
    fresh = made(StackConfig(project="p", tls=True))
    assert set(fresh.unsaved) == {"ca.pem", "ca.key", "server.pem", "server.key"}


def test_reading_commands_never_make_a_certificate(isolated_state: Path) -> None:
    config = StackConfig(project="p", tls=True)
    assert certificates.server_tls(config, ProjectState.for_project("p"), create=False) is None
    assert not (isolated_state / "p").exists()
    assert (
        certificates.server_tls(
            StackConfig(project="p"), ProjectState.for_project("p"), create=True
        )
        is None
    )


# --- a user's own certificate ----------------------------------------------------------------


def own_files(
    tmp: Path,
    dns: list[str],
    ips: list[str],
    *,
    days: int = 30,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None,
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns or ips)[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    signer, issuer_name = (issuer[0], issuer[1].subject) if issuer else (key, subject)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=60))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(signer, hashes.SHA256())
    )
    cert_path, key_path = tmp / "server.pem", tmp / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(pki.key_pem(key))
    return cert_path, key_path


def own(cert: Path, key: Path, **extra: object) -> StackConfig:
    return StackConfig(project="p", tls={"cert": str(cert), "key": str(key)}, **extra)  # type: ignore[arg-type]


def test_an_own_self_signed_certificate_is_served_and_trusted_as_it_is(tmp_path: Path) -> None:
    cert, key = own_files(tmp_path, ["mlflow.corp.test", "localhost"], ["127.0.0.1"])
    tls = made(own(cert, key))
    assert tls.chain == cert.read_bytes() and tls.key == key.read_bytes()
    assert tls.ca_file == str(cert) and tls.trust == cert.read_bytes()
    assert tls.name == "mlflow.corp.test" and dict(tls.unsaved) == {}
    assert not (tmp_path / "state" / "p").exists()  # nothing made for the user's own


def test_an_own_certificate_from_a_ca_relies_on_the_system_trust(tmp_path: Path) -> None:
    issuer = pki.make_ca("corp")
    cert, key = own_files(tmp_path, ["*.corp.test"], ["127.0.0.1"], issuer=issuer)
    tls = made(own(cert, key))
    assert tls.ca_file is None and tls.trust == b""
    assert tls.name == "mlflow.corp.test"  # a wildcard's name for the network alias
    # ... unless the file ends with the CA: then that CA is what clients verify by
    cert.write_bytes(cert.read_bytes() + pki.cert_pem(issuer[1]))
    tls = made(own(cert, key))
    assert tls.ca_file == str(cert) and tls.trust == pki.cert_pem(issuer[1])


def test_the_in_network_name_prefers_host_when_the_certificate_holds_it(tmp_path: Path) -> None:
    cert, key = own_files(tmp_path, ["a.corp.test", "mlflow.corp.test"], [])
    assert made(own(cert, key, host="mlflow.corp.test")).name == "mlflow.corp.test"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing cert", r"tls\.cert: .*missing\.pem does not exist"),
        ("missing key", r"tls\.key: .*nokey\.pem does not exist"),
        ("not pem", r"tls\.cert: .*server\.pem is not a PEM certificate"),
        ("key not pem", r"tls\.key: .*server\.key is not a PEM private key"),
        (
            "key of another",
            r"tls\.key .*server\.key is not the key of the certificate in tls\.cert",
        ),
        ("encrypted key", r"tls\.key: .*server\.key is encrypted with a passphrase"),
        ("expired", r"tls\.cert .*server\.pem expired on \d{4}-\d\d-\d\d"),
        ("wrong host", r"tls\.cert .*server\.pem is for mlflow\.corp\.test, not 127\.0\.0\.1"),
        ("no dns name", r"tls\.cert .*server\.pem holds no DNS name"),
    ],
)
def test_bad_certificate_files_are_one_line_and_leave_nothing(
    case: str,
    expected: str,
    tmp_path: Path,
    isolated_state: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    cert, key = own_files(files, ["mlflow.corp.test"], ["127.0.0.1"])
    if case == "missing cert":
        cert = files / "missing.pem"
    elif case == "missing key":
        key = files / "nokey.pem"
    elif case == "not pem":
        cert.write_bytes(
            x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
                serialization.Encoding.DER
            )
        )
    elif case == "key not pem":
        key.write_text("not a key\n")
    elif case == "key of another":
        key.write_bytes(pki.key_pem(ec.generate_private_key(ec.SECP256R1())))
    elif case == "encrypted key":
        loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
        key.write_bytes(
            loaded.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"passphrase"),
            )
        )
    elif case == "expired":
        cert, key = own_files(files, ["mlflow.corp.test"], ["127.0.0.1"], days=-1)
    elif case == "wrong host":
        cert, key = own_files(files, ["mlflow.corp.test"], [])
    elif case == "no dns name":
        cert, key = own_files(files, ["localhost"], ["127.0.0.1"])
    Path("mlstack.yaml").write_text(yaml.safe_dump({"tls": {"cert": str(cert), "key": str(key)}}))
    engine = FakeEngine()
    monkeypatch.setattr(options, "engine", lambda: engine)
    for command in (["up"], ["render", "-o", "out"], ["env"]):
        code, out, err = cli(capsys, *command)
        assert code == ExitCode.USAGE, (command, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "; hint: " in lines[0], err
        assert re.search(expected, " ".join(err.split())), err
        assert out == "" and "Traceback" not in err
    assert engine.names() == [] and not isolated_state.exists() and not Path("out").exists()


# --- the render, the containers and the client environment -----------------------------------


def test_the_render_serves_https_and_checks_it_in_the_network(isolated_state: Path) -> None:
    config = StackConfig(project="p", auth=True, tls=True)
    project = Project.open(config, create_secrets=True)
    assert project is not None and project.tls is not None
    mlflow = project.service("mlflow")
    command = list(mlflow.command or ())
    opts = command[command.index("--uvicorn-opts") + 1]
    assert (
        opts
        == "--ssl-certfile /tmp/mlstack-tls/server.pem --ssl-keyfile /tmp/mlstack-tls/server.key"
    )
    # the certificate and key reach the container in its environment (base64), not by a mount
    assert mlflow.volumes == ()
    for name, value in project.tls.variables().items():
        assert mlflow.environment[name] == value
    # the healthcheck verifies https://mlflow:5000 by that CA
    assert mlflow.healthcheck is not None
    check = mlflow.healthcheck.test[-1]
    assert "https://mlflow:5000/api/2.0/mlflow/experiments/search" in check
    assert "ssl.create_default_context(cadata=" in check and "MLSTACK_TLS_CA" in check
    # the compose file only names them; .env (0600) holds them
    assert (
        "${MLSTACK_TLS_KEY" in project.compose
        and project.tls.variables()["MLSTACK_TLS_KEY"] not in project.compose
    )
    env_file = isolated_state / "p" / ".env"
    assert not env_file.exists()
    # without tls: none of it
    plain = Project.open(StackConfig(project="plain", auth=True), create_secrets=True)
    assert plain is not None and "--uvicorn-opts" not in (plain.service("mlflow").command or ())
    assert "MLSTACK_TLS_CERT" not in plain.service("mlflow").environment


def test_an_own_certificates_name_is_an_alias_and_an_allowed_host(tmp_path: Path) -> None:
    cert, key = own_files(tmp_path, ["mlflow.corp.test"], ["127.0.0.1"])
    project = Project.open(own(cert, key), create_secrets=True)
    assert project is not None
    assert project.aliases("mlflow") == ["mlflow", "p-mlflow", "mlflow.corp.test"]
    assert project.aliases("postgres") == ["postgres", "p-postgres"]
    assert project.in_network_url == "https://mlflow.corp.test:5000"
    hosts = allowed_hosts(project.config, "mlflow.corp.test")
    assert "mlflow.corp.test:5000" in hosts and "mlflow:5000" in hosts
    assert "'https://mlflow.corp.test:5000/api" in (project.service("mlflow").healthcheck.test[-1])  # type: ignore[union-attr]


def test_serve_and_gc_reach_mlflow_over_https_with_the_ca_and_never_the_key(
    isolated_state: Path,
) -> None:
    from mlstack.adapters.registry import ResolvedModel

    config = StackConfig(project="p", bind="0.0.0.0", auth=True, tls=True)
    project = Project.open(config, create_secrets=True)
    assert project is not None and project.tls is not None
    model = ResolvedModel("models:/m/1", "models:/m/1", "mlflow-artifacts:/1/m", "m", "1")
    spec = serve_spec(project, "m", 5070, model)
    assert spec.environment["MLFLOW_TRACKING_URI"] == "https://mlflow:5000"
    assert spec.environment["MLSTACK_TLS_CA"] == project.tls.variables()["MLSTACK_TLS_CA"]
    assert "MLSTACK_TLS_KEY" not in spec.environment
    assert [(p.host_ip, p.host_port) for p in spec.ports] == [("127.0.0.1", 5070)]  # no login
    assert gc_environment(project)["MLFLOW_TRACKING_URI"] == "https://mlflow:5000"
    oneshot = _server_environment(project)
    assert "MLSTACK_TLS_KEY" not in oneshot and "MLSTACK_TLS_CERT" not in oneshot
    assert oneshot["MLSTACK_TLS_CA"]


def test_env_exports_the_ca_file_with_tls(
    tmp_path: Path, isolated_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "--set", "tls=true", "env", "--format", "json")
    assert code == 0
    printed = json.loads(out)
    assert printed["MLFLOW_TRACKING_URI"] == "https://127.0.0.1:5050"
    assert printed["MLFLOW_TRACKING_SERVER_CERT_PATH"] == str(
        isolated_state / "mlstack" / "tls" / "ca.pem"
    )
    code, out, _ = cli(capsys, "env", "--format", "json")
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" not in json.loads(out)
    # a user's self-signed certificate: its own file; one from a CA: nothing (system trust)
    cert, key = own_files(tmp_path, ["mlflow.corp.test"], ["127.0.0.1"])
    sets = ["--set", f"tls.cert={cert}", "--set", f"tls.key={key}"]
    code, out, _ = cli(capsys, *sets, "env", "--format", "json")
    assert json.loads(out)["MLFLOW_TRACKING_SERVER_CERT_PATH"] == str(cert)
    cert, key = own_files(tmp_path, ["mlflow.corp.test"], ["127.0.0.1"], issuer=pki.make_ca("corp"))
    code, out, _ = cli(capsys, *sets, "env", "--format", "json")
    assert code == 0 and "MLFLOW_TRACKING_SERVER_CERT_PATH" not in json.loads(out)


# --- mlstack's own calls verify the certificate ----------------------------------------------


class _Mlflow(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"OK" if self.path == "/health" else b'{"experiments": []}'
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_server(isolated_state: Path) -> Iterator[tuple[str, str]]:
    """A stand-in MLflow over https with the local CA's certificate: (base URL, CA file)."""
    tls = made(StackConfig(project="p", tls=True))
    directory = isolated_state / "p" / "tls"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mlflow)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", str(tls.ca_file)
    server.shutdown()
    server.server_close()


def test_probes_verify_by_the_ca_and_refuse_another_at_once(
    https_server: tuple[str, str], tmp_path: Path
) -> None:
    base, ca_file = https_server
    mlflow_http.check_tracking_server(base, cafile=ca_file)
    mlflow_http.check_tracking_server(base.replace("127.0.0.1", "localhost"), cafile=ca_file)
    assert mlflow_http.TrackingApi(base, cafile=ca_file).get("/experiments/search") == {
        "experiments": []
    }
    other = tmp_path / "other.pem"
    other.write_bytes(pki.cert_pem(pki.make_ca("other")[1]))
    for cafile in (str(other), None):  # another CA, or the system's trust: refused
        with pytest.raises(StateError, match="certificate is not trusted"):
            mlflow_http.check_tracking_server(base, cafile=cafile)
        with pytest.raises(StateError, match="certificate is not trusted"):
            mlflow_http.TrackingApi(base, cafile=cafile).get("/experiments/search")
    # waiting cannot fix it: the readiness loop fails on the first try, not at its deadline
    probe = MlflowProbe("mlflow", base, cafile=str(other))
    with pytest.raises(StateError):
        wait_ready([probe], timeout=600, sleep=lambda _: pytest.fail("it waited"))
    with pytest.raises(StateError, match="cannot read the CA certificate"):
        mlflow_http.check_tracking_server(base, cafile=str(tmp_path / "gone.pem"))


# --- exposure --------------------------------------------------------------------------------


def test_exposed_only_mlflow_leaves_the_loopback() -> None:
    config = load_config(env={}, sets=["bind=0.0.0.0", "auth=true"]).config
    assert config.private_bind == "127.0.0.1" and config.private_host == "127.0.0.1"
    assert published_on(config, "mlflow.port") == "0.0.0.0"
    assert published_on(config, "postgres.port") == "127.0.0.1"
    spec = from_compose(render_compose(config), SECRETS.as_env())
    hosts = {name: {p.host_ip for p in s.ports} for name, s in spec.services.items()}
    assert hosts == {"mlflow": {"0.0.0.0"}, "postgres": {"127.0.0.1"}, "storage": {"127.0.0.1"}}
    assert config.s3_endpoint == "http://127.0.0.1:9000"
    six = load_config(env={}, sets=["bind=::", "auth=true"]).config
    assert six.private_bind == "::1" and six.private_host == "[::1]"
    # not exposed: everything where it was
    local = StackConfig(bind="127.0.0.1")
    assert local.private_bind == "127.0.0.1" and not local.exposed
    spec = from_compose(render_compose(StackConfig(bind="::1")), SECRETS.as_env())
    assert {p.host_ip for s in spec.services.values() for p in s.ports} == {"::1"}


def test_up_warns_once_about_passwords_in_clear_and_not_over_https() -> None:
    clear = exposed_warning(StackConfig(bind="0.0.0.0", auth=True))
    assert clear is not None and "password travels in clear" in clear and "tls: true" in clear
    assert "127.0.0.1 only" in clear
    assert exposed_warning(StackConfig(bind="0.0.0.0", auth=True, tls=True)) is None
    open_ = exposed_warning(StackConfig(bind="0.0.0.0", allow_unauthenticated=True))
    assert open_ is not None and "without a login" in open_
    assert exposed_warning(StackConfig(auth=True)) is None


def test_a_bind_beyond_loopback_without_a_login_is_refused_on_the_command_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, isolated_state: Path
) -> None:
    monkeypatch.setattr(options, "engine", lambda: pytest.fail("the engine was touched"))
    for command in (["up"], ["status"], ["env"]):
        code, out, err = cli(capsys, "--set", "bind=0.0.0.0", *command)
        assert code == ExitCode.USAGE, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        text = " ".join(err.split())
        assert (
            "without a login" in text and "auth: true" in text and "allow_unauthenticated" in text
        )
        assert out == ""
    assert not isolated_state.exists()


def test_config_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        load_config(env={}, sets=["bind=0.0.0.0"])


def test_up_gives_mlflow_its_certificate_and_keeps_the_ca(tmp_path: Path) -> None:
    from mlstack.commands.up import up
    from tests.fakes import FakeBackends
    from tests.unit.test_commands import free_ports, images_of, make_config

    cert, key = own_files(tmp_path, ["mlflow.corp.test"], ["127.0.0.1"])
    local = dataclasses.replace(make_config("p", free_ports(4)), tls=TlsConfig(enabled=True))
    for config in (local, dataclasses.replace(local, tls=TlsConfig(True, str(cert), str(key)))):
        engine = FakeEngine(images=images_of(config))
        project = Project.open(config, create_secrets=True, save=False)
        assert project is not None and project.tls is not None
        result = up(project, engine, backends=FakeBackends(engine, "p"))
        assert result.tracking_uri.startswith("https://127.0.0.1:")
        mlflow = engine.container("p-mlflow")
        assert mlflow.aliases == project.aliases("mlflow")
        assert (
            mlflow.spec.environment["MLSTACK_TLS_KEY"] == project.tls.variables()["MLSTACK_TLS_KEY"]
        )
        # what `up` rendered beside the state holds them for plain `docker compose` too
        env_file = project.state.root / ".env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert (
            f"MLSTACK_TLS_CERT={project.tls.variables()['MLSTACK_TLS_CERT']}"
            in env_file.read_text()
        )
        # a reading command sees the same container spec: nothing to recreate
        again = Project.open(config)
        assert (
            again is not None
            and again.service("mlflow").spec_hash == project.service("mlflow").spec_hash
        )
        down_all = [engine.remove(n) for n in engine.names()]
        assert len(down_all) == 3
    assert "mlflow.corp.test" in mlflow.aliases


def test_a_renewed_certificate_changes_mlflows_spec_only(tmp_path: Path) -> None:
    """`up` recreates the MLflow container when its certificate changes (the container gets it
    at creation), and nothing else."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    specs = []
    for directory in (first, second):
        cert, key = own_files(directory, ["mlflow.corp.test"], ["127.0.0.1"])
        project = Project.open(own(cert, key), create_secrets=True)
        assert project is not None
        specs.append({n: s.spec_hash for n, s in project.spec.services.items()})
    assert specs[0]["mlflow"] != specs[1]["mlflow"]
    assert {n: h for n, h in specs[0].items() if n != "mlflow"} == {
        n: h for n, h in specs[1].items() if n != "mlflow"
    }


def test_plain_docker_compose_reads_the_tls_render_as_mlstack_does(
    isolated_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mlstack render` with tls (and an exposed bind): the file and its .env run as they are
    with `docker compose`, certificate and key from .env, ports where mlstack puts them."""
    import subprocess

    from tests.unit.test_render_services import compose_binary

    sets = ["--set", "tls=true", "--set", "auth=true", "--set", "bind=0.0.0.0"]
    code, _, err = cli(capsys, *sets, "render", "-o", "out")
    assert code == 0, err
    result = subprocess.run(
        [compose_binary(), "config", "--format", "json"],
        cwd="out",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)["services"]
    project = Project.open(load_config(env={}, sets=sets[1::2]).config)
    assert project is not None and project.tls is not None
    mlflow = project.service("mlflow")
    assert theirs["mlflow"]["environment"] == dict(mlflow.environment)
    assert (
        theirs["mlflow"]["environment"]["MLSTACK_TLS_KEY"]
        == project.tls.variables()["MLSTACK_TLS_KEY"]
    )
    published = {n: {p["host_ip"] for p in s["ports"]} for n, s in theirs.items()}
    assert published == {"mlflow": {"0.0.0.0"}, "postgres": {"127.0.0.1"}, "storage": {"127.0.0.1"}}
    assert (isolated_state / "mlstack" / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
