"""The MLflow server's launcher: `python -c LAUNCHER server ARGS...` in the MLflow container
(and the model server's, `python -c SERVE_LAUNCHER models serve ARGS...`, for `mlstack serve`).

The stock `mlflow server` imports MLflow (3 s of CPU here), runs the migrations, then spawns
`python -m uvicorn`, which imports it all again. The launcher imports once, *before* waiting for
its database (so the container can start together with PostgreSQL), then runs MLflow's own CLI
in the same process with one change: where `mlflow.server._run_server` would spawn uvicorn
(`mlflow.server._exec_cmd`, the same in MLflow 3.5 and 3.17), uvicorn runs in this process.
Everything else (options, environment, migrations, the basic-auth bootstrap) is MLflow's own.
An MLflow without that hook, or one that does not import, is started the stock way, and the
launcher says so on its first log line (`up` reports it).

Written to the log, one line each: `mlstack launcher <seconds>s: <what>`. No `$` in the source:
compose would read it as a variable.
"""

from __future__ import annotations

LOG_PREFIX = "mlstack launcher "
ONE_PROCESS = "serving in this process"  # the line that says the fast path was taken
STOCK = "starting the stock way"

# Environment variables the launcher reads (set in the compose file):
WAIT_DATABASES = "MLSTACK_WAIT_DATABASES"  # comma-separated: the databases to wait for
WAIT_SECONDS = "MLSTACK_WAIT_SECONDS"  # how long to wait for them before giving up
AUTH_CONFIG = "MLSTACK_AUTH_CONFIG"  # basic-auth ini text (no secret): written before start
# TLS (`tls`), base64 PEM (one line, so that .env holds it): the server's certificate chain and
# key (the MLflow container only), and the CA the stack's own clients trust (empty: the image's
# own trust store). The launchers write them to files under TLS_DIR before anything starts.
TLS_CERT = "MLSTACK_TLS_CERT"
TLS_KEY = "MLSTACK_TLS_KEY"
TLS_CA = "MLSTACK_TLS_CA"
TLS_DIR = "/tmp/mlstack-tls"  # inside the container
TLS_CERT_FILE = f"{TLS_DIR}/server.pem"
TLS_KEY_FILE = f"{TLS_DIR}/server.key"
TLS_CA_FILE = f"{TLS_DIR}/ca.pem"

# What both launchers start with: a log line helper, the stock fallback, a finished "process".
_COMMON = f'''\
import os, sys, time
t0 = time.monotonic()
def say(text):
    print("{LOG_PREFIX}%.2fs: %s" % (time.monotonic() - t0, text), file=sys.stderr, flush=True)
def stock(why):
    say("{STOCK}: " + why)
    os.execvp("mlflow", ["mlflow"] + sys.argv[1:])
def tls_file(var, path):
    value = os.environ.get(var)
    if not value:
        return None
    import base64
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(base64.b64decode(value))
    return path
class Done:
    def __init__(self, code):
        self.returncode, self.pid = code, os.getpid()
    def wait(self, timeout=None):
        return self.returncode
    def poll(self):
        return self.returncode
    def send_signal(self, signum):
        pass
def serve_here(args, text):
    say(text)
    import uvicorn.main
    try:
        uvicorn.main.main(args, standalone_mode=False)
        return Done(0)
    except SystemExit as e:
        return Done(e.code or 0)
'''

# `mlflow server ...`: uvicorn in this process where mlflow.server would spawn it.
LAUNCHER = (
    _COMMON
    + f'''\
# HTTPS: uvicorn reads the certificate and key from files (--uvicorn-opts); the key leaves the
# environment before MLflow starts, so that no process of the server inherits it.
tls_file("{TLS_CERT}", "{TLS_CERT_FILE}")
tls_file("{TLS_KEY}", "{TLS_KEY_FILE}")
os.environ.pop("{TLS_KEY}", None)
ini = os.environ.get("{AUTH_CONFIG}")
if ini:
    # MLflow reads its basic-auth settings from a file only; the admin login comes from the
    # environment (older MLflow reads it from the file too), never from the command line.
    os.umask(0o077)
    login = "".join("%s = %s\\n" % (k, os.environ[v]) for k, v in (
        ("admin_username", "MLFLOW_AUTH_ADMIN_USERNAME"),
        ("admin_password", "MLFLOW_AUTH_ADMIN_PASSWORD")))
    with open(os.environ["MLFLOW_AUTH_CONFIG_PATH"], "w") as f:
        f.write(ini + "\\n" + login)
try:
    import mlflow.cli, mlflow.server, sqlalchemy
    from sqlalchemy.pool import NullPool
except Exception as e:
    stock("the server does not import here (%s)" % e)
hook = getattr(mlflow.server, "_exec_cmd", None)
if not callable(hook):
    stock("MLflow %s has no mlflow.server._exec_cmd" % mlflow.__version__)
say("imported MLflow %s" % mlflow.__version__)
url = sqlalchemy.engine.make_url(os.environ["MLFLOW_BACKEND_STORE_URI"])
deadline = time.monotonic() + float(os.environ.get("{WAIT_SECONDS}", "120"))
for name in [n for n in os.environ.get("{WAIT_DATABASES}", "").split(",") if n] or [url.database]:
    engine = sqlalchemy.create_engine(url.set(database=name), poolclass=NullPool)
    while True:
        try:
            engine.connect().close()
            break
        except Exception as e:
            last = " ".join(str(getattr(e, "orig", e)).split())
            if "password authentication failed" in last or time.monotonic() > deadline:
                say("database %s: %s" % (name, last))
                sys.exit(3)
            time.sleep(0.1)
    say("database %s accepts the stack's login" % name)
def in_process(cmd, extra_env=None, **kwargs):
    if not (isinstance(cmd, list) and cmd[1:3] == ["-m", "uvicorn"]):
        return hook(cmd, extra_env=extra_env, **kwargs)
    os.environ.update(extra_env or {{}})
    return serve_here(cmd[3:], "migrations done; {ONE_PROCESS}")
mlflow.server._exec_cmd = in_process
mlflow.cli.cli(sys.argv[1:], prog_name="mlflow")
'''
)

# `mlflow models serve ... --env-manager local`: the scoring server (uvicorn) in this process
# where mlflow.pyfunc.backend would start `bash -c "exec uvicorn ..."`, the model downloaded
# and loaded once.
SERVE_LAUNCHER = (
    _COMMON
    + f"""\
# The tracking server over HTTPS: MLflow's client verifies it against the stack's CA.
if tls_file("{TLS_CA}", "{TLS_CA_FILE}"):
    os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = "{TLS_CA_FILE}"
import shlex, subprocess
try:
    import mlflow.cli, mlflow.pyfunc.backend as backend
except Exception as e:
    stock("the model server does not import here (%s)" % e)
if getattr(backend, "subprocess", None) is not subprocess:
    stock("MLflow %s does not start its scoring server with subprocess" % mlflow.__version__)
say("imported MLflow %s" % mlflow.__version__)
class InProcess:
    def __getattr__(self, name):
        return getattr(subprocess, name)
    def Popen(self, command, env=None, **kwargs):
        words = shlex.split(command[-1] if isinstance(command, list) else command)
        if words[:2] != ["exec", "uvicorn"]:
            return subprocess.Popen(command, env=env, **kwargs)
        os.environ.clear()
        os.environ.update(env or {{}})
        return serve_here(words[2:], "model downloaded; {ONE_PROCESS}")
backend.subprocess = InProcess()
mlflow.cli.cli(sys.argv[1:], prog_name="mlflow")
"""
)


# For one-shot `sh -c` scripts (`mlflow gc`): the CA file MLflow's client verifies the server by.
TRUST_CA_SH = (
    f'if [ -n "${TLS_CA}" ]; then mkdir -p {TLS_DIR} && '
    f'printf %s "${TLS_CA}" | base64 -d > {TLS_CA_FILE} && '
    f"export MLFLOW_TRACKING_SERVER_CERT_PATH={TLS_CA_FILE}; fi; "
)


def launch(server_args: list[str]) -> list[str]:
    """The container command that runs `mlflow server_args...` through the launcher."""
    return ["python", "-c", LAUNCHER, *server_args]


def launch_serving(serve_args: list[str]) -> list[str]:
    """The container command that runs `mlflow serve_args...` (`models serve ...`) through the
    model server's launcher."""
    return ["python", "-c", SERVE_LAUNCHER, *serve_args]


def how_it_started(log: str) -> str | None:
    """From the server's log: "one process", "stock: <why>", or None before it said."""
    for line in log.splitlines():
        _, found, rest = line.partition(LOG_PREFIX)
        if not found:
            continue
        if ONE_PROCESS in rest:
            return "one process"
        if STOCK in rest:
            return "stock: " + rest.split(STOCK + ": ", 1)[-1].strip()
    return None
