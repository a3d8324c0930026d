"""The closed sets of values command-line flags take, as enums: the CLI shows them in --help
(`--pull [always|missing|never]`) and the commands take them typed. Light on purpose: the CLI
imports it at start-up."""

from __future__ import annotations

from enum import Enum


class PullPolicy(str, Enum):
    """When `up` pulls an image."""

    ALWAYS = "always"
    MISSING = "missing"
    NEVER = "never"


class EnvFormat(str, Enum):
    """How `mlstack env` writes the client environment."""

    SH = "sh"
    DOTENV = "dotenv"
    JSON = "json"
