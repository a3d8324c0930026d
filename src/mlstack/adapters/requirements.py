"""What a model needs against what an image has: its recorded requirements.txt, MLflow and
Python versions, compared package by package (PEP 440 specifiers, canonical names)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


def requirement_mismatches(
    requirements: Sequence[str], installed: Mapping[str, str | None]
) -> list[str]:
    """Requirements (requirements.txt lines) the installed versions do not satisfy, explained."""
    found = {canonicalize_name(k): v for k, v in installed.items()}
    problems: list[str] = []
    for line in requirements:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            problems.append(f"{text} (cannot be checked)")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        have = found.get(canonicalize_name(requirement.name))
        if have is None:
            problems.append(f"{text} (not in the image)")
        elif requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
            problems.append(f"{text} (the image has {have})")
    return problems


def requirement_names(requirements: Sequence[str]) -> list[str]:
    names = []
    for line in requirements:
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
        if match and not line.lstrip().startswith("-"):
            names.append(match.group(1))
    return names


def versions_script(names: Sequence[str]) -> str:
    return (
        "import json, sys, importlib.metadata as m\n"
        "def v(n):\n"
        "    try:\n"
        "        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        f"print(json.dumps({{'python': '%d.%d' % sys.version_info[:2], "
        f"'packages': {{n: v(n) for n in {list(names)!r}}}}}))\n"
    )


def environment_warnings(
    requirements: Sequence[str],
    mlflow_version: str | None,
    python_version: str | None,
    installed: Mapping[str, str | None],
    python: str | None,
    image: str,
) -> list[str]:
    """Warnings where a model's recorded environment differs from the image's."""
    warnings: list[str] = []
    mismatches = requirement_mismatches(requirements, installed)
    if mismatches:
        warnings.append(
            f"the model's requirements differ from {image}: {'; '.join(mismatches)}; it may "
            "load and predict differently: set mlflow.image to an image with those versions"
        )
    have = installed.get("mlflow")
    if mlflow_version and have and mlflow_version != have:
        warnings.append(f"the model was logged with MLflow {mlflow_version}, {image} has {have}")
    if python_version and python:
        wanted = ".".join(python_version.split(".")[:2])
        if wanted != python:
            warnings.append(
                f"the model was logged with Python {python_version}, {image} runs {python}"
            )
    return warnings
