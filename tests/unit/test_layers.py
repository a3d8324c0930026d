"""The shape of the source: one-way layers (import-linter, as scripts/test runs it), imports
inside functions only for start-up cost and saying so, and no module or function past its size."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "mlstack"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _contracts() -> str:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    return text[text.index("[tool.importlinter]") :]


def _lint(tmp_path: Path, change: tuple[str, str] | None) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts over a copy of the package, `change` being
    (module path, a line added to it)."""
    package = tmp_path / "src" / "mlstack"
    shutil.copytree(SRC, package, ignore=shutil.ignore_patterns("__pycache__"))
    if change is not None:
        path, line = change
        target = package / path
        target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(_contracts(), encoding="utf-8")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_layer_contracts_hold(tmp_path: Path) -> None:
    done = _lint(tmp_path, None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("path", "line", "contract"),
    [
        ("errors.py", "import mlstack.cli  # noqa", "Layers run one way"),
        ("engine/models.py", "from mlstack.project import context  # noqa", "Layers run one way"),
        ("commands/status.py", "from mlstack.commands import up  # noqa", "never imports another"),
        (
            "health.py",
            "import docker  # noqa",
            "Only engine/docker.py and its ssh transport import docker",
        ),
        ("project/watch.py", "import rich  # noqa", "Only the CLI imports typer and rich"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, path: str, line: str, contract: str
) -> None:
    done = _lint(tmp_path, (path, line))
    assert done.returncode != 0, done.stdout
    broken = [row for row in done.stdout.splitlines() if " BROKEN" in row]
    assert any(contract in row for row in broken), done.stdout


def _function_imports(tree: ast.AST) -> list[ast.stmt]:
    found: list[ast.stmt] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [
                n
                for n in ast.walk(node)
                if isinstance(n, (ast.Import, ast.ImportFrom)) and n.lineno > node.lineno
            ]
    return found


def test_imports_inside_functions_say_why() -> None:
    """An import inside a function is for start-up cost only: a `# deferred` comment on it or
    above it (or above the block of imports it belongs to) says so."""
    unexplained = []
    for path in _modules():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in _function_imports(ast.parse("\n".join(lines))):
            row = node.lineno - 1
            while row > 0 and lines[row - 1].strip().startswith(("import ", "from ")):
                row -= 1  # the first import of a block carries the comment for the block
            said = "# deferred" in lines[node.lineno - 1] or "# deferred" in lines[row - 1]
            if not said:
                unexplained.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not unexplained, f"imports inside functions without a `# deferred` reason: {unexplained}"


def test_no_module_or_function_is_too_long() -> None:
    too_long = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(REPO))
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - start + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, too_long
