from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlstack.compose.render import render_init
from mlstack.config import (
    DEFAULT_IMAGES,
    StackConfig,
    bucket_name_problem,
    load_config,
    valid_keys,
)
from mlstack.errors import ConfigError, ExitCode


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mlstack.yaml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    config = load_config(env={}).config
    assert config == StackConfig()
    assert config.bind == "127.0.0.1"
    assert config.mlflow.port == 5050
    assert config.storage.image == DEFAULT_IMAGES["minio"]
    assert config.tracking_uri == "http://127.0.0.1:5050"


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "project: fromfile\nmlflow:\n  port: 6000\npostgres:\n  port: 6001\n")
    loaded = load_config(
        path,
        env={"MLSTACK_MLFLOW_PORT": "6100", "MLSTACK_POSTGRES_PORT": "6101"},
        sets=["postgres.port=6201"],
    )
    config = loaded.config
    assert config.project == "fromfile"
    assert config.mlflow.port == 6100  # env beats file
    assert config.postgres.port == 6201  # flag beats env
    assert loaded.origins["postgres.port"] == "--set postgres.port"
    assert loaded.origins["mlflow.port"] == "MLSTACK_MLFLOW_PORT"


def test_mlstack_yaml_in_cwd_is_read(tmp_path: Path) -> None:
    write(tmp_path, "project: here\n")
    assert load_config(env={}, cwd=tmp_path).config.project == "here"


def test_mlstack_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "project: named\n")
    assert load_config(env={"MLSTACK_CONFIG": str(path)}).config.project == "named"


def test_env_keys_with_underscores_map_to_sections() -> None:
    config = load_config(env={"MLSTACK_STORAGE_CONSOLE_PORT": "9101"}).config
    assert config.storage.console_port == 9101


def test_engine_picks_its_default_image() -> None:
    config = load_config(env={}, sets=["storage.engine=seaweedfs"]).config
    assert config.storage.image == DEFAULT_IMAGES["seaweedfs"]
    assert config.storage.container_port == 8333
    # seaweedfs has no console: its port is not published, so it cannot clash
    assert "storage.console_port" not in config.published_ports()


def test_explicit_image_wins_over_engine_default() -> None:
    config = load_config(
        env={}, sets=["storage.engine=seaweedfs", "storage.image=my/weed:1"]
    ).config
    assert config.storage.image == "my/weed:1"


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), env={}).config == StackConfig()


@pytest.mark.parametrize(
    "name", ["ab", "a" * 64, "-abc", "abc-", "a..b", "192.168.1.1", "xn--abc", "abc-s3alias", "ABC"]
)
def test_invalid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name)


@pytest.mark.parametrize("name", ["mlflow", "abc", "my.bucket-1", "a" * 63])
def test_valid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name) is None


def test_exposed_bind_is_flagged() -> None:
    assert load_config(env={}, sets=["bind=0.0.0.0", "auth=true"]).config.exposed
    assert load_config(env={}, sets=["bind=0.0.0.0", "allow_unauthenticated=yes"]).config.exposed
    assert not load_config(env={}).config.exposed


def test_valid_keys_cover_the_contract() -> None:
    assert {
        "project",
        "bind",
        "auth",
        "storage.engine",
        "storage.image",
        "storage.port",
        "storage.console_port",
        "storage.bucket",
        "postgres.image",
        "postgres.port",
        "postgres.database",
        "mlflow.image",
        "mlflow.port",
    } <= set(valid_keys())


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
_keys = st.sampled_from([*valid_keys(), "storage", "postgres", "mlflow", "junk", "port"]) | st.text(
    max_size=8
)
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(_keys, _values, max_size=6))
def test_any_mapping_loads_or_raises_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: dict
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "mlstack.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_config(path, env={})
    except ConfigError as e:
        assert e.message and "\n" not in e.message


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_loads_or_raises_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "mlstack.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path, env={}).config
    except ConfigError as e:
        assert e.message and "\n" not in e.message and e.exit_code == ExitCode.USAGE
        return
    # what loaded is a config: written out as `mlstack init` writes it, it loads back the same
    path.write_text(render_init(config), encoding="utf-8")
    assert load_config(path, env={}).config == config


_env_keys = st.sampled_from([*valid_keys(), "mlflow_prot", "x"]).map(
    lambda k: "MLSTACK_" + k.upper().replace(".", "_")
)


@settings(max_examples=300, deadline=None)
@given(
    env=st.dictionaries(_env_keys, st.text(max_size=12), max_size=4),
    sets=st.lists(st.text(max_size=24), max_size=4),
)
def test_any_env_and_flags_load_or_raise_config_error(env: dict[str, str], sets: list[str]) -> None:
    """MLSTACK_* variables and --set flags, like the file: a config or one ConfigError line."""
    try:
        load_config(env=env, sets=sets)
    except ConfigError as e:
        assert e.message and "\n" not in e.message


def test_auth_is_off_by_default_and_set_by_file_env_or_flag(tmp_path: Path) -> None:
    assert load_config(env={}).config.auth is False
    assert load_config(write(tmp_path, "auth: true\n"), env={}).config.auth is True
    loaded = load_config(env={"MLSTACK_AUTH": "true"})
    assert loaded.config.auth is True and loaded.origins["auth"] == "MLSTACK_AUTH"
    assert load_config(env={"MLSTACK_AUTH": "true"}, sets=["auth=false"]).config.auth is False
    assert load_config(env={}, sets=["auth=true"]).config.auth is True


def test_auth_database_sits_beside_the_tracking_database() -> None:
    assert StackConfig().auth_database == "mlflow_auth"
    long = load_config(env={}, sets=["postgres.database=" + "d" * 63]).config
    assert len(long.auth_database) == 63 and long.auth_database.endswith("_auth")
