"""Which Docker engine to talk to, resolved as the docker CLI resolves it.

DOCKER_HOST (with DOCKER_TLS_VERIFY, DOCKER_TLS and DOCKER_CERT_PATH) wins; else the context
named by DOCKER_CONTEXT, else `currentContext` in config.json (under DOCKER_CONFIG, default
~/.docker), read from the CLI's context store: `contexts/meta/<sha256 of name>/meta.json` for
the endpoint and `contexts/tls/<sha256 of name>/docker/{ca,cert,key}.pem` for its TLS files.
Pure: no docker import, only files and the environment, so the config can ask where the engine
is (a remote engine's host name is where clients find the stack) before anything connects.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlstack.errors import ConfigError

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_CONTEXT = "default"
SOCKET_SCHEMES = ("unix", "npipe")  # the engine is on this machine
SCHEMES = (*SOCKET_SCHEMES, "tcp", "ssh")
_HOST_HINT = "use unix:///var/run/docker.sock, tcp://HOST:2376 (with TLS) or ssh://USER@HOST"


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of a TLS connection; a missing client pair means no client certificate."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class Endpoint:
    """A Docker engine's address and how to reach it."""

    url: str  # normalised: tcp:// always carries its port
    source: str = DEFAULT_CONTEXT  # "DOCKER_HOST", "docker context NAME" or "default"
    context: str | None = None  # the context it came from
    tls: TlsFiles | None = None  # None: no TLS (always None for sockets and ssh)
    verify: bool = False  # check the server's certificate (against tls.ca when given)
    ignored_context: str | None = None  # a context DOCKER_HOST overrode (the CLI warns too)

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def ssh(self) -> bool:
        return self.scheme == "ssh"

    @property
    def remote(self) -> bool:
        """True when the engine's published ports are not this machine's: a socket is here,
        and so is tcp to a loopback address."""
        if self.scheme in SOCKET_SCHEMES:
            return False
        return not (self.scheme == "tcp" and _loopback(self.hostname or ""))

    @property
    def hostname(self) -> str | None:
        """The server's name or address for tcp and ssh; None for a socket."""
        return None if self.scheme in SOCKET_SCHEMES else urlsplit(self.url).hostname

    def describe(self) -> str:
        """The URL and where it came from, for messages: "ssh://bob@server (context team)"."""
        if self.context:
            return f"{self.url} (context {self.context})"
        if self.source == "DOCKER_HOST":
            return f"{self.url} (DOCKER_HOST)"
        return self.url

    @property
    def warning(self) -> str | None:
        if not self.ignored_context:
            return None
        return (
            f"DOCKER_HOST overrides the docker context {self.ignored_context!r}; "
            "unset DOCKER_HOST to use the context"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def context_id(name: str) -> str:
    """The directory a context is stored under: the sha256 of its name, as the CLI does."""
    return hashlib.sha256(name.encode()).hexdigest()


def docker_config_dir(env: Mapping[str, str]) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]).expanduser()
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".docker"


def resolve_endpoint(env: Mapping[str, str] | None = None) -> Endpoint:
    """The engine the environment names; ConfigError (one line) when it names none usable."""
    env = os.environ if env is None else env
    config_dir = docker_config_dir(env)
    host = env.get("DOCKER_HOST", "").strip()
    named = env.get("DOCKER_CONTEXT", "").strip()
    current = named or _current_context(config_dir)
    if host:
        url = _normalised(host, "DOCKER_HOST", tls=_env_tls_on(env))
        endpoint = _with_env_tls(Endpoint(url, "DOCKER_HOST"), env, config_dir)
        ignored = current if current and current != DEFAULT_CONTEXT else None
        return replace(endpoint, ignored_context=ignored)
    if current and current != DEFAULT_CONTEXT:
        origin = "DOCKER_CONTEXT" if named else f"currentContext in {config_dir / 'config.json'}"
        return _from_context(config_dir, current, origin)
    return Endpoint(DEFAULT_HOST)


def _current_context(config_dir: Path) -> str | None:
    path = config_dir / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"cannot read the docker CLI's config {path}: {e}",
            "fix or remove the file (docker reads it too), or set DOCKER_HOST",
        ) from None
    name = data.get("currentContext") if isinstance(data, dict) else None
    return name.strip() if isinstance(name, str) and name.strip() else None


def _masked(url: str) -> str:
    """The URL as messages show it: a password in it (refused anyway) is never printed."""
    return re.sub(r"^([a-z]+://[^/@:]*):[^/@]*@", r"\1:***@", url)


def _normalised(raw: str, origin: str, *, tls: bool) -> str:
    """The URL with its scheme checked and tcp's port filled in, as `docker -H` takes it."""
    url = raw if "://" in raw else f"tcp://{raw}"
    scheme, _, rest = url.partition("://")
    shown = f"{origin} {_masked(raw)!r}"
    if scheme not in SCHEMES:
        raise ConfigError(
            f"{shown} has the unknown scheme {scheme!r}; mlstack knows {', '.join(SCHEMES)}",
            _HOST_HINT,
        )
    if scheme in SOCKET_SCHEMES:
        return url if rest else DEFAULT_HOST
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{shown} is not a valid address: {e}", _HOST_HINT) from None
    if not parts.hostname:
        raise ConfigError(f"{shown} names no host", _HOST_HINT)
    if parts.path.strip("/") or parts.query:
        raise ConfigError(f"{shown}: a path after the host is not supported", _HOST_HINT)
    if parts.password is not None:
        raise ConfigError(
            f"{shown} holds a password",
            "use an ssh key (ssh-agent or IdentityFile in ~/.ssh/config), never a password "
            "in the URL",
        )
    if scheme == "ssh":
        return f"ssh://{parts.netloc}"
    if parts.username is not None:
        raise ConfigError(f"{shown}: tcp:// takes no user name", _HOST_HINT)
    return f"tcp://{parts.netloc}" if port else f"tcp://{parts.netloc}:{2376 if tls else 2375}"


def _env_tls_on(env: Mapping[str, str]) -> bool:
    # Any non-empty value turns TLS on, as the CLI reads them (DOCKER_TLS_VERIFY=0 included).
    return bool(env.get("DOCKER_TLS_VERIFY") or env.get("DOCKER_TLS"))


def _with_env_tls(endpoint: Endpoint, env: Mapping[str, str], config_dir: Path) -> Endpoint:
    """TLS from DOCKER_TLS_VERIFY / DOCKER_TLS and the files in DOCKER_CERT_PATH (a tcp
    endpoint only: a socket and ssh carry no TLS of Docker's)."""
    if endpoint.scheme != "tcp" or not _env_tls_on(env):
        return endpoint
    verify = bool(env.get("DOCKER_TLS_VERIFY"))
    cert_dir = Path(env["DOCKER_CERT_PATH"]).expanduser() if env.get("DOCKER_CERT_PATH") else None
    directory = cert_dir or config_dir
    where = (
        f"DOCKER_CERT_PATH ({directory})" if cert_dir else f"{directory} (DOCKER_CERT_PATH unset)"
    )
    files = _tls_files(directory, where, need_ca=verify)
    return Endpoint(endpoint.url, endpoint.source, tls=files, verify=verify)


def _tls_files(directory: Path, where: str, *, need_ca: bool) -> TlsFiles:
    found = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    present = {name: path for name, path in found.items() if path.is_file()}
    hint = f"put ca.pem, cert.pem and key.pem of the server's CA and your client into {where}"
    if need_ca and "ca" not in present:
        raise ConfigError(f"TLS verification is on but {found['ca']} does not exist", hint)
    if ("cert" in present) != ("key" in present):
        missing = "key" if "cert" in present else "cert"
        raise ConfigError(
            f"{found[missing]} does not exist beside {present['cert' if missing == 'key' else 'key']}",
            hint,
        )
    return TlsFiles(present.get("ca"), present.get("cert"), present.get("key"))


def _known_contexts(config_dir: Path) -> list[str]:
    names = [DEFAULT_CONTEXT]
    for meta in sorted((config_dir / "contexts" / "meta").glob("*/meta.json")):
        name = _field(_read_meta(meta, "?"), "name")
        if isinstance(name, str):
            names.append(name)
    return names


def _read_meta(path: Path, name: str) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"cannot read docker context {name!r} ({path}): {e}",
            f"recreate it with `docker context rm {name}` and `docker context create`",
        ) from None
    return data if isinstance(data, dict) else {}


def _field(data: Any, key: str) -> Any:
    """A JSON field by name whatever its case, as Go's decoder reads the context store."""
    if not isinstance(data, Mapping):
        return None
    return next((v for k, v in data.items() if str(k).lower() == key), None)


def _from_context(config_dir: Path, name: str, origin: str) -> Endpoint:
    meta = config_dir / "contexts" / "meta" / context_id(name) / "meta.json"
    if not meta.is_file():
        known = ", ".join(_known_contexts(config_dir))
        raise ConfigError(
            f"docker context {name!r} (from {origin}) does not exist: no {meta}",
            f"name an existing context ({known}), `docker context create {name}` it, "
            "or set DOCKER_HOST",
        )
    docker = _field(_field(_read_meta(meta, name), "endpoints"), "docker")
    host = _field(docker, "host")
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(
            f"docker context {name!r} has no Docker endpoint ({meta})",
            f"recreate it: docker context create {name} --docker host=ssh://USER@HOST",
        )
    skip_verify = _field(docker, "skiptlsverify") is True
    tls_dir = config_dir / "contexts" / "tls" / context_id(name) / "docker"
    files = _tls_files(tls_dir, str(tls_dir), need_ca=False)
    has_tls = files != TlsFiles() or skip_verify
    source = f"docker context {name}"
    url = _normalised(host.strip(), source, tls=has_tls)
    if url.startswith("tcp://") and has_tls:
        return Endpoint(url, source, name, tls=files, verify=not skip_verify)
    return Endpoint(url, source, name)
