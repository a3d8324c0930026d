"""The CLI among the tools around it: shells completing it, NO_COLOR, pipes, the browser, --help.

Completion runs the real console script with the variables typer's completion scripts set
(bash: COMP_WORDS/COMP_CWORD; zsh and fish: _TYPER_COMPLETE_ARGS). What needs an engine (served
model names) is completed in-process, against a FakeEngine. No Docker daemon is needed.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import webbrowser
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest
import typer

import mlstack.engine
from mlstack import labels
from mlstack.choices import EnvFormat, PullPolicy
from mlstack.cli import app, completion, data, models, options, run, setup, stack
from mlstack.cli.options import Options
from mlstack.cli.views import render
from mlstack.commands import status as status_command
from mlstack.commands import ui as ui_command
from mlstack.commands import up as up_command
from mlstack.commands.status import Overall, Row, StatusResult
from mlstack.config import load_config
from mlstack.errors import EngineUnavailable, ExitCode
from mlstack.health import ProbeResult
from tests.fakes import FakeBackends, FakeContainer, FakeEngine

MLSTACK = Path(sys.executable).with_name("mlstack")  # the console script of this virtualenv
BASH = shutil.which("bash")
SHELLS = ("bash", "zsh", "fish")
# the commands, and the groups of subcommands (`export helm`)
COMMANDS = {name for group in (stack, setup, models, data) for name in group.COMMANDS} | {"export"}
SERVICES = ["postgres", "storage", "mlflow", "minio", "seaweedfs", "s3"]  # `logs` takes these
ESC = "\x1b["
BOX = re.compile("[\u2500-\u257f]")  # box-drawing characters

LONG_PROJECT = "piped-output-keeps-every-long-name-whole"
LONG_DATABASE = "tracking_" + "d" * 54  # 63, the longest PostgreSQL name: its URL is > 80 columns


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No colour forced by the runner (CI services set FORCE_COLOR), an 80-column terminal."""
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERM", "xterm-256color")  # not "dumb": FORCE_COLOR then means colour


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command tries to connect."""

    def refuse() -> FakeEngine:
        pytest.fail("the engine was touched")

    monkeypatch.setattr(options, "engine", refuse)


# --- shell completion through the console script ---------------------------------------------


@pytest.fixture
def shell_env() -> dict[str, str]:
    """The environment of a shell that has the console script on its PATH and no engine."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("_MLSTACK_", "_TYPER_", "COMP_"))
    }
    assert MLSTACK.is_file(), f"no console script at {MLSTACK}: pip install -e ."
    env["PATH"] = f"{MLSTACK.parent}{os.pathsep}{env.get('PATH', '')}"
    # completion asks the engine for served models: none answers here, hermetically
    env["DOCKER_HOST"] = "unix:///nonexistent/mlstack-test/docker.sock"
    return env


def complete(
    env: dict[str, str], shell: str, line: str, action: str = "get-args"
) -> subprocess.CompletedProcess[str]:
    """Run the console script as `shell`'s completion function does, for the command `line`
    with the cursor at its end."""
    env = {**env, "_MLSTACK_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        # COMP_WORDS="${COMP_WORDS[*]}" under IFS=$'\n': the words joined by newlines, the last
        # one the word being completed ("" after a space); COMP_CWORD its index
        words = line.split(" ")
        env["COMP_WORDS"] = "\n".join(words)
        env["COMP_CWORD"] = str(len(words) - 1)
    else:
        # zsh: "${words[1,$CURRENT]}"; fish: (commandline -cp); both the line up to the cursor
        env["_TYPER_COMPLETE_ARGS"] = line
        if shell == "fish":
            env["_TYPER_COMPLETE_FISH_ACTION"] = action
    return subprocess.run(
        [str(MLSTACK)], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def offered(shell: str, stdout: str) -> list[str]:
    """The values a shell's completion output offers."""
    if shell == "bash":  # COMPREPLY=( $(...) ) under IFS=$'\n': the non-empty lines
        return [line for line in stdout.split("\n") if line]
    if shell == "fish":  # value<TAB>help, a line each
        return [line.split("\t", 1)[0] for line in stdout.splitlines()]
    # zsh: _arguments '*: :(("value":"help"\n"value"...))' to eval, or _files for none
    if stdout.strip() == "_files":
        return []
    body = re.fullmatch(r"_arguments '\*: :\(\((.*)\)\)'\n?", stdout, flags=re.DOTALL)
    assert body is not None, f"not zsh completion output: {stdout!r}"
    values = []
    for item in body.group(1).split("\n"):
        value = re.match(r'"((?:[^"]|"")*)"', item)
        assert value is not None, item
        values.append(value.group(1).replace('""', '"'))
    return values


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("mlstack ", sorted(COMMANDS)),
        ("mlstack st", ["status"]),
        ("mlstack logs ", SERVICES),
        ("mlstack logs s", ["storage", "seaweedfs", "s3"]),
        ("mlstack up --pull ", ["always", "missing", "never"]),
    ],
    ids=["command", "command-prefix", "logs", "logs-prefix", "pull-choices"],
)
def test_the_console_script_completes_for_each_shell(
    shell_env: dict[str, str], shell: str, line: str, expected: list[str]
) -> None:
    result = complete(shell_env, shell, line)
    assert result.returncode == 0, result.stderr
    values = offered(shell, result.stdout)
    if line == "mlstack ":
        assert len(values) == len(set(values))
        assert {"up", "status", "down", "logs", "ui", "env", "serve"} <= set(values)
        values = sorted(values)
    assert values == expected
    assert result.stderr == ""


def test_fish_offers_files_only_where_mlstack_completes_nothing(
    shell_env: dict[str, str],
) -> None:
    # the script's --condition: exit 0 means "complete these arguments", 1 "let fish offer files"
    assert complete(shell_env, "fish", "mlstack logs ", action="is-args").returncode == 0
    assert complete(shell_env, "fish", "mlstack init ", action="is-args").returncode == 1


SCRIPT_MARKS = {
    "bash": [
        'COMP_WORDS="${COMP_WORDS[*]}"',
        "COMP_CWORD=$COMP_CWORD",
        "_MLSTACK_COMPLETE=complete_bash",
        "complete -o default -F _mlstack_completion mlstack",
    ],
    "zsh": [
        "#compdef mlstack",
        '_TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _MLSTACK_COMPLETE=complete_zsh mlstack',
        "compdef _mlstack_completion mlstack",
    ],
    "fish": [
        "complete --command mlstack --no-files",
        "_MLSTACK_COMPLETE=complete_fish _TYPER_COMPLETE_FISH_ACTION=get-args "
        "_TYPER_COMPLETE_ARGS=(commandline -cp) mlstack",
        "_TYPER_COMPLETE_FISH_ACTION=is-args",
    ],
}


@pytest.mark.skipif(BASH is None, reason="needs bash")
@pytest.mark.parametrize("shell", SHELLS)
def test_show_completion_prints_the_script_of_the_shell_it_runs_in(
    shell_env: dict[str, str], tmp_path: Path, shell: str
) -> None:
    """typer 0.29's --show-completion takes no value: it detects the shell it runs in from the
    parent process's name. Run it under a shell of each name (bash standing in for zsh and fish:
    only the name is read), in a subshell so that the shell is its parent."""
    assert BASH is not None
    parent = tmp_path / shell
    parent.symlink_to(BASH)
    result = subprocess.run(
        [
            str(parent),
            "-c",
            'script=$(mlstack --show-completion) || exit; printf "%s\\n" "$script"',
        ],
        env=shell_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert "_MLSTACK_COMPLETE" in script
    for mark in SCRIPT_MARKS[shell]:
        assert mark in script, f"{shell} script lacks {mark!r}:\n{script}"
    for other in SHELLS:
        if other != shell:
            assert f"complete_{other}" not in script


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_bash_completes_through_the_script_it_is_shown(shell_env: dict[str, str]) -> None:
    """End to end in a real bash: source the script, then do what <TAB> does."""
    assert BASH is not None
    program = "\n".join(
        [
            'eval "$(mlstack --show-completion)"',
            "complete -p mlstack",
            'COMP_WORDS=(mlstack logs ""); COMP_CWORD=2',
            "_mlstack_completion mlstack",
            'printf "logs:%s\\n" "${COMPREPLY[@]}"',
            "COMP_WORDS=(mlstack re); COMP_CWORD=1",
            "_mlstack_completion mlstack",
            'printf "re:%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    result = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", program],
        env=shell_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "complete -o default -F _mlstack_completion mlstack"
    assert [line[5:] for line in lines if line.startswith("logs:")] == SERVICES
    assert sorted(line[3:] for line in lines if line.startswith("re:")) == ["render", "restore"]


# --- completion of what only the engine knows ------------------------------------------------

PROJECT = "wineproj"


def _container(project: str, service: str, name: str = "") -> FakeContainer:
    found = {labels.PROJECT: project, labels.SERVICE: service}
    if name:
        found[labels.SERVE_NAME] = name
    return FakeContainer(
        id=f"id-{project}-{service}-{name}",
        name=f"{project}-{service}-{name}" if name else f"{project}-{service}",
        image="ghcr.io/mlflow/mlflow",
        image_id="sha256:mlflow",
        labels=found,
        network=project,
        aliases=[],
        ports={},
        state="running",
    )


@dataclass
class Connections:
    engine: FakeEngine
    made: int = 0


@pytest.fixture
def served_engine(monkeypatch: pytest.MonkeyPatch) -> Connections:
    """An engine serving `wine` in PROJECT; `decoy` in the default project; a stack service."""
    engine = FakeEngine()
    for container in (
        _container(PROJECT, "serve", "wine"),
        _container("mlstack", "serve", "decoy"),
        _container(PROJECT, "mlflow"),
    ):
        engine.by_name[container.name] = container
    connections = Connections(engine)

    def connect(timeout: float = 60) -> FakeEngine:
        connections.made += 1
        return engine

    monkeypatch.setattr(mlstack.engine, "connect", connect)
    return connections


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    attempts: list[float] = []

    def connect(timeout: float = 60) -> FakeEngine:
        attempts.append(timeout)
        raise EngineUnavailable("cannot connect to the Docker engine", "start Docker")

    monkeypatch.setattr(mlstack.engine, "connect", connect)
    return attempts


def _context(project: str | None = PROJECT) -> typer.Context:
    return typer.Context(typer.main.get_command(app), obj=Options(project=project))


def test_served_names_come_from_the_engine(served_engine: Connections) -> None:
    ctx = _context()
    assert completion.served(ctx, "") == ["wine"]
    assert completion.served(ctx, "w") == ["wine"]
    assert completion.served(ctx, "x") == []
    assert completion.services(ctx, "") == [*SERVICES, "serve-wine"]
    assert completion.services(ctx, "serve") == ["serve-wine"]
    assert completion.services(ctx, "s") == ["storage", "seaweedfs", "s3", "serve-wine"]
    assert served_engine.made == 6
    assert served_engine.engine.closed  # completion closes what it opened


def test_served_names_are_those_of_the_project_asked_for(served_engine: Connections) -> None:
    assert completion.served(_context(None), "") == ["decoy"]  # the default project, mlstack


def test_without_an_engine_completion_offers_what_it_knows(unreachable: list[float]) -> None:
    ctx = _context()
    assert completion.services(ctx, "") == SERVICES
    assert completion.services(ctx, "m") == ["mlflow", "minio"]
    assert completion.served(ctx, "") == []
    assert len(unreachable) == 3  # it did try


def test_with_a_broken_config_completion_offers_what_it_knows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Path("mlstack.yaml").write_text("project: Not A Valid Name\n")

    def connect(timeout: float = 60) -> FakeEngine:
        pytest.fail("connected without a config")

    monkeypatch.setattr(mlstack.engine, "connect", connect)
    ctx = _context(None)
    assert completion.services(ctx, "") == SERVICES
    assert completion.served(ctx, "") == []


def complete_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], line: str
) -> list[str]:
    """The bash protocol against `run`, where the engine can be faked."""
    words = line.split(" ")
    monkeypatch.setenv("_MLSTACK_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "\n".join(words))
    monkeypatch.setenv("COMP_CWORD", str(len(words) - 1))
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as exited:
            run([])
    finally:
        monkeypatch.delenv("_MLSTACK_COMPLETE")
    assert exited.value.code == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return offered("bash", captured.out)


def test_serve_stop_completes_served_names_of_the_project_on_the_line(
    served_engine: Connections,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # while completing, no callback ran: --project is read from the parsed command line
    assert complete_in_process(monkeypatch, capsys, f"mlstack -p {PROJECT} serve --stop ") == [
        "wine"
    ]
    assert complete_in_process(monkeypatch, capsys, "mlstack serve --stop ") == ["decoy"]
    assert complete_in_process(monkeypatch, capsys, f"mlstack --project {PROJECT} logs se") == [
        "seaweedfs",
        "serve-wine",
    ]


def test_completion_without_an_engine_exits_0_with_the_static_names(
    unreachable: list[float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert complete_in_process(monkeypatch, capsys, "mlstack logs ") == SERVICES
    assert complete_in_process(monkeypatch, capsys, "mlstack serve --stop ") == []
    assert unreachable


# --- a fake running stack, for status ---------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class FakeStack:
    engine: FakeEngine
    containers: list[str]
    urls: list[str]
    up_err: str


@pytest.fixture
def fake_stack(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> FakeStack:
    """`mlstack up` of a project with a 40-character name, on a FakeEngine whose services answer."""
    pg, s3, console, mlflow = _free_ports(4)
    Path("mlstack.yaml").write_text(
        f"project: {LONG_PROJECT}\n"
        f"postgres: {{port: {pg}, database: {LONG_DATABASE}}}\n"
        f"storage: {{port: {s3}, console_port: {console}}}\n"
        f"mlflow: {{port: {mlflow}}}\n"
    )
    config = load_config().config
    engine = FakeEngine(
        images={
            config.postgres.image: "sha256:postgres",
            config.storage.image: "sha256:storage",
            config.mlflow.image: "sha256:mlflow",
        }
    )
    monkeypatch.setattr(options, "engine", lambda: engine)

    def backends(project: object) -> FakeBackends:
        return FakeBackends(engine, LONG_PROJECT)

    monkeypatch.setattr(up_command, "HostBackends", backends)
    monkeypatch.setattr(status_command, "HostBackends", backends)
    code, _, err = cli(capsys, "up", "--timeout", "60")
    assert code == 0, err
    return FakeStack(
        engine,
        [f"{LONG_PROJECT}-{s}" for s in ("postgres", "storage", "mlflow")],
        [
            f"postgresql://127.0.0.1:{pg}/{LONG_DATABASE}",
            f"http://127.0.0.1:{s3}",
            f"http://127.0.0.1:{mlflow}",
        ],
        err,
    )


def _rows_whole(text: str, stack: FakeStack) -> None:
    """Each service's row is one line holding its container name and URL in full."""
    for container, url in zip(stack.containers, stack.urls, strict=True):
        rows = [line for line in text.splitlines() if container in line]
        assert len(rows) == 1, f"{container} not on exactly one line:\n{text}"
        assert re.search(rf"(^|\s){re.escape(url)}(\s|$)", rows[0]), (
            f"{url} is not whole on the line of {container}:\n{text}"
        )
    assert "…" not in text  # rich's mark of a cut cell


# --- NO_COLOR --------------------------------------------------------------------------------

COLOUR_CASES = [
    pytest.param({"FORCE_COLOR": "1"}, True, id="FORCE_COLOR"),
    pytest.param({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, id="FORCE_COLOR+NO_COLOR"),
    pytest.param({"FORCE_COLOR": "1", "NO_COLOR": ""}, True, id="NO_COLOR-empty-is-unset"),
]


def _healthy_status() -> StatusResult:
    rows = [
        Row(s, s, f"p-{s}", "running", "healthy", url, ProbeResult(s, True, 0.01, "ok"))
        for s, url in (
            ("postgres", "postgresql://127.0.0.1:5432/mlflow"),
            ("storage", "http://127.0.0.1:9000"),
            ("mlflow", "http://127.0.0.1:5050"),
        )
    ]
    return StatusResult("p", Overall.HEALTHY, rows, "http://127.0.0.1:5050")


@pytest.mark.parametrize(("environment", "coloured"), COLOUR_CASES)
def test_the_status_view_is_coloured_unless_no_color(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: dict[str, str],
    coloured: bool,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert render(_healthy_status()) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "healthy" in text and "p-postgres" in text
    assert (ESC in text) is coloured, repr(text)


@pytest.mark.parametrize(("environment", "coloured"), COLOUR_CASES)
def test_mlstack_status_is_coloured_unless_no_color(
    fake_stack: FakeStack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: dict[str, str],
    coloured: bool,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    code, out, err = cli(capsys, "status")
    assert code == 0, err
    assert f"mlstack {LONG_PROJECT}: healthy" in re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert (ESC in out + err) is coloured, repr(out + err)


def test_the_colour_of_mlstack_status_follows_its_state(
    fake_stack: FakeStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A degraded stack is shown in colour too, and without under NO_COLOR (exit 10 both)."""
    fake_stack.engine.stop(fake_stack.containers[1], 10.0)
    monkeypatch.setenv("FORCE_COLOR", "1")
    code, out, _ = cli(capsys, "status")
    assert code == ExitCode.DEGRADED and ESC in out
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, err = cli(capsys, "status")
    assert code == ExitCode.DEGRADED
    assert ESC not in out + err
    assert "storage: exited (exit code 0)" in out


# --- piped output -----------------------------------------------------------------------------


def test_piped_status_shows_long_names_and_urls_whole_without_a_box(
    fake_stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(LONG_PROJECT) == 40
    assert len(fake_stack.urls[0]) > 80
    assert not sys.stdout.isatty() and not sys.stderr.isatty()
    code, out, err = cli(capsys, "status")
    assert code == 0, err
    _rows_whole(out, fake_stack)
    assert not BOX.search(out), out
    assert ESC not in out + err
    assert f"mlstack {LONG_PROJECT}: healthy" in out


def test_piped_up_shows_long_names_and_urls_whole_without_a_box(fake_stack: FakeStack) -> None:
    _rows_whole(fake_stack.up_err, fake_stack)
    assert not BOX.search(fake_stack.up_err), fake_stack.up_err


def test_a_forced_terminal_draws_the_box(
    fake_stack: FakeStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other side of the rule: the plain table above is chosen, not the only one drawn."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, _ = cli(capsys, "status")
    assert code == 0
    assert BOX.search(out), out


# --- mlstack ui -------------------------------------------------------------------------------

URI = "http://127.0.0.1:5123"


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """BROWSER: a script that appends the URL it is given to a file (returned)."""
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{opened}"\n')
    script.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(script))
    # webbrowser reads BROWSER once per process, when it first looks for browsers: look again
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    return opened


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A stack whose tracking server answers (the commands asking for it are returned)."""
    asked: list[str] = []

    def require_running(config: object, engine: object, command: str) -> None:
        asked.append(command)

    monkeypatch.setattr(ui_command, "require_running", require_running)
    monkeypatch.setattr(options, "engine", FakeEngine)
    return asked


def test_ui_opens_the_tracking_uri_in_the_browser(
    browser: Path, running: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "--set", "mlflow.port=5123", "ui")
    assert code == 0, err
    assert running == ["ui"]
    assert browser.read_text() == f"{URI}\n"
    assert out == f"{URI}\n"
    assert "opened the MLflow UI in your browser" in err


def test_ui_without_a_browser_still_prints_the_uri(
    browser: Path,
    running: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tried: list[str] = []

    def no_browser(url: str) -> bool:
        tried.append(url)
        return False

    monkeypatch.setattr(ui_command, "ui", functools.partial(ui_command.ui, open_url=no_browser))
    code, out, err = cli(capsys, "--set", "mlflow.port=5123", "ui")
    assert code == 0, err
    assert tried == [URI]
    assert out == f"{URI}\n"
    assert "no browser" in err and "opened" not in err
    assert not browser.exists()


@pytest.mark.parametrize(
    "before", [[], ["render", "-o", "rendered"]], ids=["never-up", "no-containers"]
)
def test_ui_on_a_stack_that_is_not_running_exits_11(
    browser: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    before: list[str],
) -> None:
    if before:
        assert run(before) == 0  # secrets exist, as after an `up`; no container runs
    monkeypatch.setattr(options, "engine", FakeEngine)
    capsys.readouterr()
    code, out, err = cli(capsys, "ui")
    assert code == 11  # ExitCode.NOT_RUNNING
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the stack 'mlstack' is not running")
    assert "hint: start it with `mlstack up`" in lines[0]
    assert not browser.exists()


# --- --help shows the choices; a bad choice is one line --------------------------------------


@pytest.mark.parametrize(
    ("command", "flag", "choices", "shown"),
    [
        ("up", "--pull", PullPolicy, "always|missing|never"),
        ("env", "--format", EnvFormat, "sh|dotenv|json"),
    ],
)
def test_help_shows_the_choices_of_an_enum_option(
    capsys: pytest.CaptureFixture[str],
    no_engine: None,
    command: str,
    flag: str,
    choices: type[Enum],
    shown: str,
) -> None:
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0
    line = next(line for line in out.splitlines() if line.strip().startswith(flag))
    assert shown in line
    assert "|".join(str(c.value) for c in choices) in line  # every member, in order


def test_root_help_shows_the_set_metavar(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    assert re.search(r"^\s+--set KEY=VALUE\s", out, flags=re.MULTILINE), out


BAD_CHOICES = [
    (["up", "--pull", "sometimes"], "--pull", "sometimes", PullPolicy),
    (["up", "--pull=sometimes"], "--pull", "sometimes", PullPolicy),
    (["env", "--format", "xml"], "--format", "xml", EnvFormat),
    (["env", "--format=xml"], "--format", "xml", EnvFormat),
]


@pytest.mark.parametrize(("argv", "flag", "value", "choices"), BAD_CHOICES)
def test_a_bad_choice_is_one_error_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    no_engine: None,
    isolated_state: Path,
    argv: list[str],
    flag: str,
    value: str,
    choices: type[Enum],
) -> None:
    code, out, err = cli(capsys, *argv)
    assert code == 2  # ExitCode.USAGE
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    names = ", ".join(str(c.value) for c in choices)
    found = re.fullmatch(rf"error: {flag} '{value}' is not one of {names}; hint: (.+)", lines[0])
    assert found is not None, lines[0]
    assert any(f"{flag} {c.value}" in found.group(1) for c in choices), found.group(1)
    assert not isolated_state.exists()  # refused before anything was written


def test_the_console_script_prints_a_bad_choice_as_one_line(shell_env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(MLSTACK), "up", "--pull", "sometimes"],
        env=shell_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        "error: --pull 'sometimes' is not one of always, missing, never; hint: "
    )
    assert len(result.stderr.splitlines()) == 1


# --- --timeout must be positive --------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--timeout", "0"],
        ["restore", "backup.tar.gz", "--timeout", "0"],
        ["serve", "models:/wine@champion", "--timeout", "0"],
        ["up", "--timeout=-1"],
    ],
    ids=["up", "restore", "serve", "up-negative"],
)
def test_a_timeout_that_is_not_positive_exits_2(
    capsys: pytest.CaptureFixture[str], no_engine: None, isolated_state: Path, argv: list[str]
) -> None:
    code, out, err = cli(capsys, *argv)
    assert code == 2  # ExitCode.USAGE
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: --timeout must be positive, got ")
    assert not isolated_state.exists()


def test_a_positive_timeout_reaches_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check refuses only what it should: 0.5 s is passed on to `up`."""
    seen: list[float] = []

    def fake_up(project: object, engine: object, *, timeout: float, **_: object) -> None:
        seen.append(timeout)
        raise typer.Exit(0)

    monkeypatch.setattr(up_command, "up", fake_up)
    monkeypatch.setattr(options, "engine", FakeEngine)
    code, _, err = cli(capsys, "up", "--timeout", "0.5")
    assert code == 0, err
    assert seen == [0.5]
