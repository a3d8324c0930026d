"""Typing and checking config values: the checker that collects every problem, and shared rules.

Each check reports a `Problem` (the dotted key and what is wrong with it, to be told with the
value's source); all of them are collected, so one error line names every mistake at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
PORT_RANGE = (1, 65535)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the config: `key` (dotted) and a text that starts with the key, or
    `unknown` for a key the config does not have (loading suggests the closest one)."""

    key: str
    text: str
    unknown: bool = False


class ConfigProblems(ValueError):
    """What `check` found wrong; loading tells each with the source of its value."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.text for p in problems))
        self.problems = problems


class Checker:
    """Collects problems while typing the values of one mapping."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, key: str, text: str, *, unknown: bool = False) -> None:
        self.problems.append(Problem(key, text, unknown))

    def integer(self, key: str, value: Any, bounds: tuple[int, int]) -> int | None:
        if isinstance(value, float) and value % 1 == 0:  # 9000.0 from YAML
            value = int(value)
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)  # "5051" written in quotes: what the user meant
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"{key} must be a whole number, got {value!r}")
            return None
        low, high = bounds
        if not low <= value <= high:
            self.fail(key, f"{key} must be between {low} and {high}, got {value!r}")
            return None
        return value

    def text(
        self, key: str, value: Any, rule: Callable[[str], str | None] | None = None
    ) -> str | None:
        if not isinstance(value, str):
            self.fail(key, f"{key} must be text, got {value!r}")
            return None
        problem = rule(value) if rule else None
        if problem:
            self.fail(key, f"{key}: {problem}")
            return None
        return value

    def boolean(self, key: str, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        words = {
            "true": True,
            "yes": True,
            "on": True,
            "1": True,
            "false": False,
            "no": False,
            "off": False,
            "0": False,
        }
        if isinstance(value, (str, int)) and str(value).strip().lower() in words:
            return words[str(value).strip().lower()]
        self.fail(key, f"{key} must be true or false, got {value!r}")
        return None

    def choice(self, key: str, value: Any, allowed: tuple[str, ...]) -> str | None:
        if value not in allowed:
            names = " or ".join(repr(a) for a in allowed)
            self.fail(key, f"{key} must be one of {names}, got {value!r}")
            return None
        return str(value)

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigProblems(self.problems)


def image_problem(value: str) -> str | None:
    if not value.strip():
        return "must not be empty: name an image such as postgres:17"
    if not _IMAGE_RE.match(value.strip()):
        return f"{value!r} is not a valid image reference (like registry/name:tag)"
    return None


def bucket_name_problem(name: str) -> str | None:
    """Why `name` breaks S3's bucket naming rules, or None when it is valid."""
    rule = (
        "use 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter "
        "or digit"
    )
    if not _BUCKET_RE.match(name):
        return f"{name!r} is not a valid S3 bucket name: {rule}"
    if ".." in name or ".-" in name or "-." in name:
        return f"{name!r} is not a valid S3 bucket name: no '..', '.-' or '-.'"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return f"{name!r} is not a valid S3 bucket name: it must not look like an IP address"
    if name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        return f"{name!r} is not a valid S3 bucket name: reserved prefix or suffix"
    return None


def unknown_keys(check: Checker, prefix: str, data: Mapping[str, Any], cls: type) -> None:
    known = {f.name for f in fields(cls) if not f.name.startswith("_")}
    for key in data:
        if key not in known:
            check.fail(f"{prefix}{key}", "unknown key", unknown=True)
