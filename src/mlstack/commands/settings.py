"""`mlstack config`, `init` and `render`: the config and the files derived from it, nothing run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlstack import credentials
from mlstack.compose.render import IN_NETWORK, render_compose, render_init, write_rendered
from mlstack.config import LoadedConfig, StackConfig, config_as_dict
from mlstack.errors import UsageError
from mlstack.project import certificates
from mlstack.project.reporting import Result
from mlstack.state import ProjectState


@dataclass(frozen=True)
class ConfigResult(Result):
    data: dict[str, Any]  # the effective config, credentials masked
    source: Path | None
    state: Path

    @property
    def output(self) -> str:
        source = str(self.source) if self.source else "defaults (no mlstack.yaml)"
        header = f"# effective config; file: {source}; state: {self.state}\n"
        return header + yaml.safe_dump(self.data, sort_keys=False)

    def json_value(self) -> object:
        return self.data


def show_config(loaded: LoadedConfig) -> ConfigResult:
    """The effective config and where the state lives; credentials masked (user names shown)."""
    data = config_as_dict(loaded.config)
    state = ProjectState.for_project(loaded.config.project)
    creds = credentials.load(state)
    data["credentials"] = (
        {k: ("****" if "USER" not in k else v) for k, v in creds.as_env().items()}
        if creds
        else "not generated yet (made on the first `mlstack up`)"
    )
    return ConfigResult(data, loaded.path, state.root)


@dataclass(frozen=True)
class WroteResult(Result):
    paths: list[Path]


def init(path: Path, *, force: bool = False) -> WroteResult:
    """Write a commented mlstack.yaml with every key and its default."""
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "add --force to overwrite it")
    path.write_text(render_init(StackConfig()), encoding="utf-8")
    return WroteResult([path])


def render(config: StackConfig, directory: Path) -> WroteResult:
    """Write docker-compose.yml and .env (0600) for `config`, making the secrets (and with
    tls the certificate) if need be."""
    state = ProjectState.for_project(config.project)
    external = credentials.external_secrets(config)  # managed services' secrets, for .env
    tls = certificates.server_tls(config, state, create=True)  # a bad tls.cert: nothing written
    creds, _ = credentials.ensure(state)
    certificates.save(state, tls)
    name = tls.name if tls else IN_NETWORK
    compose, env_file = write_rendered(
        directory,
        config,
        creds,
        compose=render_compose(config, name),
        extra=tls.variables() if tls else None,
        external=external,
    )
    return WroteResult([compose, env_file])
