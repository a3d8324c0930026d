from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlstack.config import (
    DEFAULT_IMAGES,
    StackConfig,
    bucket_name_problem,
    load_config,
    valid_keys,
)
from mlstack.errors import ConfigError


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


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(env={"MLSTACK_CONFIG": str(tmp_path / "nope.yaml")})


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("storage:\n  prot: 1\n", r"unknown key 'storage.prot'.*did you mean 'storage.port'"),
        ("projcet: x\n", r"unknown key 'projcet'.*did you mean 'project'"),
        ("mlflow:\n  port: abc\n", r"mlflow.port must be a whole number, got 'abc'"),
        ("mlflow:\n  port: 70000\n", r"mlflow.port must be between 1 and 65535, got 70000"),
        ("postgres:\n  port: 0\n", r"postgres.port must be between 1 and 65535"),
        ("storage:\n  engine: s3\n", r"storage.engine must be one of 'minio' or 'seaweedfs'"),
        ("mlflow:\n  port: 9000\n", r"mlflow.port and storage.port are both 9000"),
        ("storage:\n  bucket: My_Bucket\n", r"not a valid S3 bucket name"),
        ("postgres:\n  database: 'drop table'\n", r"not a valid database name"),
        ("project: 'My Project'\n", r"not a valid project name"),
        ("postgres:\n  image: ''\n", r"postgres.image: must not be empty"),
        ("bind: localhost\n", r"not an IP address"),
        ("storage: 5\n", r"storage must be a mapping"),
        ("mlflow:\n  workers: 0\n", r"mlflow.workers must be between 1 and 16"),
        ("auth: maybe\n", r"auth must be true or false, got 'maybe'"),
    ],
)
def test_bad_config_is_explained(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text), env={})


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mlstack.yaml:3: malformed YAML"):
        load_config(write(tmp_path, "project: a\nmlflow: x\n  port: 1\n"), env={})


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a mapping of keys"):
        load_config(write(tmp_path, "- a\n- b\n"), env={})


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), env={}).config == StackConfig()


def test_env_error_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"\(from MLSTACK_STORAGE_PORT\)"):
        load_config(env={"MLSTACK_STORAGE_PORT": "x"})


def test_unknown_env_variable_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'mlflow.prot'.*'mlflow.port'"):
        load_config(env={"MLSTACK_MLFLOW_PROT": "1"})


def test_set_needs_key_value() -> None:
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        load_config(env={}, sets=["mlflow.port"])


@pytest.mark.parametrize(
    "name", ["ab", "a" * 64, "-abc", "abc-", "a..b", "192.168.1.1", "xn--abc", "abc-s3alias", "ABC"]
)
def test_invalid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name)


@pytest.mark.parametrize("name", ["mlflow", "abc", "my.bucket-1", "a" * 63])
def test_valid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name) is None


def test_exposed_bind_is_flagged() -> None:
    assert load_config(env={}, sets=["bind=0.0.0.0"]).config.exposed
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
        load_config(path, env={})
    except ConfigError:
        pass


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
