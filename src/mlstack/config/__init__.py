"""The stack's configuration: one typed model (model.py) and its loading from every source."""

from mlstack.config.checks import bucket_name_problem
from mlstack.config.exposure import TlsConfig
from mlstack.config.external import ExternalPostgres, ExternalStorage
from mlstack.config.loading import (
    CONFIG_FILENAME,
    ENV_PREFIX,
    LoadedConfig,
    config_as_dict,
    default_config_path,
    load_config,
    read_config_file,
    valid_keys,
)
from mlstack.config.model import (
    DEFAULT_IMAGES,
    STORAGE_CONTAINER_PORT,
    MlflowConfig,
    PostgresConfig,
    StackConfig,
    StorageConfig,
)

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_IMAGES",
    "ENV_PREFIX",
    "STORAGE_CONTAINER_PORT",
    "ExternalPostgres",
    "ExternalStorage",
    "LoadedConfig",
    "MlflowConfig",
    "PostgresConfig",
    "StackConfig",
    "StorageConfig",
    "TlsConfig",
    "bucket_name_problem",
    "config_as_dict",
    "default_config_path",
    "load_config",
    "read_config_file",
    "valid_keys",
]
