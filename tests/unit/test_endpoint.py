"""Which engine: DOCKER_HOST and its TLS variables, DOCKER_CONTEXT, the current context of the
docker CLI's config, the context store's files; and the config's `host` filled from a remote
engine. Every source, their precedence and every bad input, on files made here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlstack.config import load_config
from mlstack.config.endpoint import (
    DEFAULT_HOST,
    Endpoint,
    TlsFiles,
    context_id,
    resolve_endpoint,
)
from mlstack.errors import ConfigError, ExitCode


def write_context(
    config_dir: Path,
    name: str,
    host: str,
    *,
    skip_verify: bool = False,
    tls: tuple[str, ...] = (),
    current: bool = False,
) -> Path:
    """A context as `docker context create NAME --docker host=HOST,...` stores it."""
    meta = config_dir / "contexts" / "meta" / context_id(name)
    meta.mkdir(parents=True)
    docker = {"Host": host, "SkipTLSVerify": skip_verify}
    body = {"Name": name, "Metadata": {}, "Endpoints": {"docker": docker}}
    (meta / "meta.json").write_text(json.dumps(body))
    tls_dir = config_dir / "contexts" / "tls" / context_id(name) / "docker"
    for file in tls:
        tls_dir.mkdir(parents=True, exist_ok=True)
        (tls_dir / f"{file}.pem").write_text("PEM")
    if current:
        (config_dir / "config.json").write_text(json.dumps({"currentContext": name}))
    return tls_dir


def cert_dir(root: Path, *files: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for file in files:
        (root / f"{file}.pem").write_text("PEM")
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".docker").mkdir()
    return tmp_path


def test_context_ids_are_the_clis_sha256_of_the_name() -> None:
    # as a context named "local" is stored by the docker CLI
    assert context_id("local") == "25bf8e1a2393f1108d37029b3df5593236c755742ec93465bbafa9b290bddcf6"


def test_nothing_set_is_the_local_socket(home: Path) -> None:
    endpoint = resolve_endpoint({"HOME": str(home)})
    assert endpoint == Endpoint(DEFAULT_HOST)
    assert not endpoint.remote
    assert endpoint.hostname is None
    assert endpoint.describe() == DEFAULT_HOST


@pytest.mark.parametrize(
    ("docker_host", "url", "remote", "hostname"),
    [
        ("unix:///run/user/1000/docker.sock", "unix:///run/user/1000/docker.sock", False, None),
        ("unix://", DEFAULT_HOST, False, None),
        ("tcp://10.1.2.3:2376", "tcp://10.1.2.3:2376", True, "10.1.2.3"),
        ("tcp://127.0.0.1:2375", "tcp://127.0.0.1:2375", False, "127.0.0.1"),  # ports are ours
        ("tcp://localhost:2375", "tcp://localhost:2375", False, "localhost"),
        ("tcp://[::1]:2375", "tcp://[::1]:2375", False, "::1"),
        ("ssh://localhost", "ssh://localhost", True, "localhost"),
        ("tcp://server.example", "tcp://server.example:2375", True, "server.example"),
        ("server.example:1234", "tcp://server.example:1234", True, "server.example"),
        ("tcp://[fd00::5]:2376", "tcp://[fd00::5]:2376", True, "fd00::5"),
        ("ssh://bob@server", "ssh://bob@server", True, "server"),
        ("ssh://bob@server:2222", "ssh://bob@server:2222", True, "server"),
        ("ssh://server/", "ssh://server", True, "server"),
        ("  ssh://server  ", "ssh://server", True, "server"),
    ],
)
def test_docker_host(
    home: Path, docker_host: str, url: str, remote: bool, hostname: str | None
) -> None:
    endpoint = resolve_endpoint({"HOME": str(home), "DOCKER_HOST": docker_host})
    assert (endpoint.url, endpoint.remote, endpoint.hostname) == (url, remote, hostname)
    assert endpoint.source == "DOCKER_HOST"
    assert endpoint.ssh == url.startswith("ssh://")
    assert endpoint.tls is None
    assert endpoint.describe() == f"{url} (DOCKER_HOST)"


def test_tls_verify_takes_the_three_files_of_docker_cert_path(home: Path) -> None:
    certs = cert_dir(home / "certs", "ca", "cert", "key")
    env = {
        "HOME": str(home),
        "DOCKER_HOST": "tcp://10.1.2.3",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(certs),
    }
    endpoint = resolve_endpoint(env)
    assert endpoint.url == "tcp://10.1.2.3:2376"  # TLS's port when none is given
    assert endpoint.verify
    assert endpoint.tls == TlsFiles(certs / "ca.pem", certs / "cert.pem", certs / "key.pem")


def test_tls_files_default_to_the_docker_config_dir(home: Path) -> None:
    cert_dir(home / ".docker", "ca", "cert", "key")
    env = {"HOME": str(home), "DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "yes"}
    assert resolve_endpoint(env).tls == TlsFiles(
        home / ".docker" / "ca.pem", home / ".docker" / "cert.pem", home / ".docker" / "key.pem"
    )
    other = cert_dir(home / "elsewhere", "ca")
    env["DOCKER_CONFIG"] = str(other)
    assert resolve_endpoint(env).tls == TlsFiles(other / "ca.pem")  # no client pair: none sent


def test_docker_tls_without_verify_encrypts_without_checking(home: Path) -> None:
    env = {"HOME": str(home), "DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS": "1"}
    endpoint = resolve_endpoint(env)
    assert endpoint.tls == TlsFiles()
    assert not endpoint.verify


@pytest.mark.parametrize("value", ["", None])
def test_an_empty_or_unset_tls_verify_is_off(home: Path, value: str | None) -> None:
    env = {"HOME": str(home), "DOCKER_HOST": "tcp://h:2375"}
    if value is not None:
        env["DOCKER_TLS_VERIFY"] = value
    assert resolve_endpoint(env).tls is None


@pytest.mark.parametrize("host", ["unix:///x.sock", "ssh://bob@server"])
def test_sockets_and_ssh_carry_no_tls(home: Path, host: str) -> None:
    env = {"HOME": str(home), "DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1"}
    assert resolve_endpoint(env).tls is None  # not even a missing ca.pem matters


def test_the_current_context_of_the_clis_config(home: Path) -> None:
    write_context(home / ".docker", "team", "ssh://bob@server", current=True)
    endpoint = resolve_endpoint({"HOME": str(home)})
    assert endpoint.url == "ssh://bob@server"
    assert (endpoint.context, endpoint.source) == ("team", "docker context team")
    assert endpoint.describe() == "ssh://bob@server (context team)"
    assert endpoint.remote
    assert endpoint.ignored_context is None


def test_docker_context_wins_over_the_current_one(home: Path) -> None:
    write_context(home / ".docker", "team", "ssh://bob@server", current=True)
    write_context(home / ".docker", "lab", "tcp://lab:2375")
    endpoint = resolve_endpoint({"HOME": str(home), "DOCKER_CONTEXT": "lab"})
    assert (endpoint.url, endpoint.context) == ("tcp://lab:2375", "lab")
    assert resolve_endpoint({"HOME": str(home), "DOCKER_CONTEXT": "default"}).url == DEFAULT_HOST


def test_docker_host_wins_over_contexts_and_says_so(home: Path) -> None:
    write_context(home / ".docker", "team", "ssh://bob@server", current=True)
    endpoint = resolve_endpoint({"HOME": str(home), "DOCKER_HOST": "unix:///x.sock"})
    assert endpoint.url == "unix:///x.sock"
    assert endpoint.ignored_context == "team"
    assert (
        endpoint.warning is not None and "overrides the docker context 'team'" in endpoint.warning
    )
    both = {"HOME": str(home), "DOCKER_HOST": "tcp://h:1", "DOCKER_CONTEXT": "nowhere"}
    assert resolve_endpoint(both).url == "tcp://h:1"  # the named context is not even read


def test_docker_config_moves_the_whole_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    write_context(store, "team", "ssh://server", current=True)
    endpoint = resolve_endpoint({"HOME": str(tmp_path / "nohome"), "DOCKER_CONFIG": str(store)})
    assert endpoint.context == "team"


def test_a_contexts_tls_files(home: Path) -> None:
    tls = write_context(home / ".docker", "tls", "tcp://10.1.2.3", tls=("ca", "cert", "key"))
    endpoint = resolve_endpoint({"HOME": str(home), "DOCKER_CONTEXT": "tls"})
    assert endpoint.url == "tcp://10.1.2.3:2376"
    assert endpoint.verify
    assert endpoint.tls == TlsFiles(tls / "ca.pem", tls / "cert.pem", tls / "key.pem")


def test_a_context_that_skips_verification(home: Path) -> None:
    write_context(home / ".docker", "lax", "tcp://10.1.2.3:2376", skip_verify=True)
    endpoint = resolve_endpoint({"HOME": str(home), "DOCKER_CONTEXT": "lax"})
    assert endpoint.tls == TlsFiles()
    assert not endpoint.verify


def test_a_context_without_tls_is_plain_tcp(home: Path) -> None:
    write_context(home / ".docker", "plain", "tcp://10.1.2.3:2375")
    assert resolve_endpoint({"HOME": str(home), "DOCKER_CONTEXT": "plain"}).tls is None


def test_context_fields_are_read_whatever_their_case(home: Path) -> None:
    meta = home / ".docker" / "contexts" / "meta" / context_id("low")
    meta.mkdir(parents=True)
    body = {"name": "low", "endpoints": {"docker": {"host": "ssh://low", "skipTLSVerify": False}}}
    (meta / "meta.json").write_text(json.dumps(body))
    assert resolve_endpoint({"HOME": str(home), "DOCKER_CONTEXT": "low"}).url == "ssh://low"


# --- bad inputs: one ConfigError each (exit 2), naming the source and the fix ------------------


def refused(home: Path, env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        resolve_endpoint({"HOME": str(home), **env})
    error = raised.value
    assert error.exit_code == ExitCode.USAGE
    assert "\n" not in error.message and "\n" not in error.hint
    assert error.hint
    return error


@pytest.mark.parametrize(
    ("docker_host", "words"),
    [
        ("http://server:2375", ["DOCKER_HOST 'http://server:2375'", "unknown scheme 'http'"]),
        ("fd://", ["unknown scheme 'fd'"]),
        ("tcp://", ["names no host"]),
        ("tcp://server:port", ["not a valid address"]),
        ("tcp://bob@server:2376", ["takes no user name"]),
        ("ssh://bob:secret@server", ["'ssh://bob:***@server' holds a password"]),
        ("tcp://bob:secret@server:2376", ["holds a password"]),
        ("ssh://server/var/run/docker.sock", ["a path after the host"]),
    ],
)
def test_a_docker_host_mlstack_cannot_use(home: Path, docker_host: str, words: list[str]) -> None:
    error = refused(home, {"DOCKER_HOST": docker_host})
    for word in words:
        assert word in error.message
    assert "secret" not in error.message + error.hint  # a password in the URL is never shown


def test_a_context_that_does_not_exist_names_those_that_do(home: Path) -> None:
    write_context(home / ".docker", "team", "ssh://server")
    error = refused(home, {"DOCKER_CONTEXT": "tema"})
    assert "docker context 'tema' (from DOCKER_CONTEXT) does not exist" in error.message
    assert "default, team" in error.hint
    (home / ".docker" / "config.json").write_text('{"currentContext": "gone"}')
    error = refused(home, {})
    assert "docker context 'gone' (from currentContext in" in error.message


def test_a_damaged_context_store(home: Path) -> None:
    write_context(home / ".docker", "bad", "ssh://server")
    (home / ".docker" / "contexts" / "meta" / context_id("bad") / "meta.json").write_text("{")
    assert "cannot read docker context 'bad'" in refused(home, {"DOCKER_CONTEXT": "bad"}).message
    write_context(home / ".docker", "empty", "")
    error = refused(home, {"DOCKER_CONTEXT": "empty"})
    assert "docker context 'empty' has no Docker endpoint" in error.message
    write_context(home / ".docker", "odd", "http://server")
    assert "docker context odd 'http://server'" in refused(home, {"DOCKER_CONTEXT": "odd"}).message


def test_a_damaged_cli_config(home: Path) -> None:
    (home / ".docker" / "config.json").write_text("{not json")
    assert "cannot read the docker CLI's config" in refused(home, {}).message


def test_tls_verification_without_a_ca(home: Path) -> None:
    certs = cert_dir(home / "certs", "cert", "key")
    env = {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
    error = refused(home, env)
    assert f"TLS verification is on but {certs / 'ca.pem'} does not exist" in error.message
    assert f"DOCKER_CERT_PATH ({certs})" in error.hint


@pytest.mark.parametrize(("present", "missing"), [("cert", "key"), ("key", "cert")])
def test_half_a_client_pair(home: Path, present: str, missing: str) -> None:
    certs = cert_dir(home / "certs", "ca", present)
    env = {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
    error = refused(home, env)
    assert f"{certs / (missing + '.pem')} does not exist beside" in error.message


# --- the config's `host` from the engine -------------------------------------------------------


def test_a_remote_engine_is_where_clients_find_the_stack(home: Path) -> None:
    loaded = load_config(env={"HOME": str(home), "DOCKER_HOST": "ssh://bob@server.example"})
    assert loaded.config.host == "server.example"
    assert loaded.config.tracking_uri == "http://server.example:5050"
    assert loaded.origins["host"] == "DOCKER_HOST"
    write_context(home / ".docker", "team", "tcp://10.1.2.3:2375", current=True)
    loaded = load_config(env={"HOME": str(home)})
    assert (loaded.config.host, loaded.origins["host"]) == ("10.1.2.3", "docker context team")


def test_a_local_engine_leaves_host_unset(home: Path) -> None:
    assert load_config(env={"HOME": str(home)}).config.host is None
    local = {"HOME": str(home), "DOCKER_HOST": "unix:///x.sock"}
    assert load_config(env=local).config.tracking_uri == "http://127.0.0.1:5050"


def test_an_explicit_host_wins_and_needs_no_engine(home: Path) -> None:
    env = {"HOME": str(home), "DOCKER_CONTEXT": "missing", "MLSTACK_HOST": "mlflow.example"}
    assert load_config(env=env).config.host == "mlflow.example"


def test_an_engine_that_names_no_usable_host(home: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(env={"HOME": str(home), "DOCKER_CONTEXT": "missing"})
    with pytest.raises(ConfigError, match=r"'bad_name' is not a host name.*\(from DOCKER_HOST\)"):
        load_config(env={"HOME": str(home), "DOCKER_HOST": "ssh://bad_name"})
