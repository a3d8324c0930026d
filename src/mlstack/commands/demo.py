"""`mlstack demo`: train, track and register a small scikit-learn model on the running stack.

It talks to the stack the way any user's script does, with the tracking URI alone (artifacts go
through MLflow's proxy, no S3 keys on this machine). The data set ships inside scikit-learn
(wine: 178 samples, 13 features, 3 classes), so nothing is downloaded. Each run of a small grid
logs its parameters, metrics on a held-out test split, the model with a signature and an input
example, and a confusion-matrix image; the best run's model is registered and the alias
`champion` points at that version.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from mlstack.adapters.mlflow_env import activate
from mlstack.config import StackConfig
from mlstack.engine import EngineAPI, SwarmAPI
from mlstack.errors import MlstackError, UsageError
from mlstack.project.context import Project, open_existing, require_running
from mlstack.project.reporting import Event, Reporter, Result, quiet
from mlstack.project.swarm_ops import reachable_mlflow

DEMO_EXPERIMENT = "mlstack-demo"
DEMO_MODEL = "mlstack-demo"
CHAMPION = "champion"
DATASET = "wine"
TEST_SIZE = 0.25
SEED = 0
MAX_ITER = 2000

# Inverse regularisation strength x class weighting: 12 candidates, C-major so that an evenly
# spaced pick of a few of them still varies both.
GRID: tuple[dict[str, Any], ...] = tuple(
    {"C": c, "class_weight": weight}
    for c in (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    for weight in ("none", "balanced")
)
DEFAULT_RUNS = 4
# Packages the model needs at serving time, pinned to this machine's versions (the list MLflow
# would infer, without the seconds its inference subprocess takes per run).
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops")


@dataclass(frozen=True)
class DemoRun:
    run_id: str
    run_name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    model_uri: str  # models:/m-<id>, what log_model returned
    url: str


@dataclass(frozen=True)
class DemoResult(Result):
    tracking_uri: str
    experiment: str
    experiment_id: str
    experiment_url: str
    dataset: str
    runs: list[DemoRun]
    best_run_id: str
    registered_model: str
    version: str
    alias: str
    model_uri: str  # models:/<name>@<alias>
    model_url: str
    serve_command: str
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return f"models:/{self.registered_model}/{self.version}"


def grid_for(runs: int) -> list[dict[str, Any]]:
    """`runs` candidates from GRID, evenly spaced over it (all of it when runs == len(GRID))."""
    if not 1 <= runs <= len(GRID):
        raise UsageError(
            f"--runs must be between 1 and {len(GRID)}, got {runs}",
            f"the grid has {len(GRID)} candidates; e.g. --runs {DEFAULT_RUNS}",
        )
    if runs == 1:
        return [dict(GRID[len(GRID) // 2])]
    picks = [int(i * (len(GRID) - 1) / (runs - 1) + 0.5) for i in range(runs)]
    return [dict(GRID[i]) for i in picks]


def best_run(runs: Sequence[DemoRun]) -> DemoRun:
    """Highest test accuracy, then macro F1, then lowest log loss; the earliest on a full tie."""
    return max(
        runs,
        key=lambda r: (r.metrics["accuracy"], r.metrics["f1_macro"], -r.metrics["log_loss"]),
    )


def run_name(params: Mapping[str, Any]) -> str:
    return f"logreg-C{params['C']:g}-{params['class_weight']}"


def require_sklearn() -> None:
    """scikit-learn is an optional extra: say what to install when it is missing."""
    try:
        # deferred: scikit-learn is the optional demo extra, and costs seconds to import
        import sklearn  # noqa: F401
    except ImportError:
        raise UsageError(
            "`mlstack demo` needs scikit-learn, which is not installed",
            "install the demo extra: pip install 'mlstack-cli[demo]'",
        ) from None


def load_split() -> tuple[Any, Any, Any, Any]:
    """The wine data set split into train and test (stratified, fixed seed): X_train, X_test,
    y_train, y_test. Tests use it to send the same held-out rows to a served model."""
    # deferred: scikit-learn is the optional demo extra, and costs seconds to import
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    features, target = load_wine(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=TEST_SIZE, random_state=SEED, stratify=target
    )
    return x_train, x_test, y_train, y_test


def _model(params: Mapping[str, Any]) -> Any:
    # deferred: scikit-learn is the optional demo extra, and costs seconds to import
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    weight = None if params["class_weight"] == "none" else params["class_weight"]
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=params["C"], class_weight=weight, max_iter=MAX_ITER),
    )


def confusion_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> Any:
    """A confusion-matrix image drawn with matplotlib's Agg canvas (no display, no pyplot)."""
    # deferred: matplotlib loads only for the demo's plot
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.8, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = list(range(len(labels)))
    axes.set_xticks(ticks, labels)
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title, fontsize=10)
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=colour)
    figure.tight_layout()
    return figure


@contextmanager
def _mlflow_logs_quiet() -> Iterator[None]:
    """MLflow logs each experiment and model version it creates at INFO; keep warnings only."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return str(client.create_experiment(name, tags={"mlstack.demo": "true"}))
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return str(experiment.experiment_id)


def run_message(run: DemoRun, done: int, total: int) -> str:
    m = run.metrics
    return (
        f"run {done}/{total} {run.run_name}: accuracy {m['accuracy']:.3f}, "
        f"f1 {m['f1_macro']:.3f}, log loss {m['log_loss']:.3f}"
    )


def _train_all(
    mlflow: Any,
    experiment_id: str,
    candidates: Sequence[dict[str, Any]],
    base: str,
    report: Reporter,
) -> list[DemoRun]:
    """One run per candidate, each logged as it finishes."""
    split = f"{1 - TEST_SIZE:.0%} train, {TEST_SIZE:.0%} held-out test"
    report(Event("step", message=f"data set {DATASET}: {split}"))
    x_train, x_test, y_train, y_test = load_split()
    done: list[DemoRun] = []
    report(Event("run", message="training", done=0, total=len(candidates)))
    for params in candidates:
        logged = _train_and_log(mlflow, experiment_id, params, x_train, x_test, y_train, y_test)
        run = DemoRun(
            logged["run_id"],
            logged["run_name"],
            logged["params"],
            logged["metrics"],
            logged["model_uri"],
            f"{base}/#/experiments/{experiment_id}/runs/{logged['run_id']}",
        )
        done.append(run)
        message = run_message(run, len(done), len(candidates))
        report(Event("run", message=message, done=len(done), total=len(candidates)))
    return done


def _tracking_server(config: StackConfig, engine: EngineAPI) -> tuple[Project, str]:
    """The running stack and MLflow's URL for the demo's client: the tracking URI, or on a
    swarm the first published port that answers (`host` may name a node without a replica)."""
    if config.swarm_target and isinstance(engine, SwarmAPI):
        project = open_existing(config, "demo", engine)
        return project, reachable_mlflow(project, engine, engine, "demo")
    return require_running(config, engine, "demo"), config.tracking_uri


def run_demo(
    config: StackConfig,
    engine: EngineAPI,
    *,
    runs: int = DEFAULT_RUNS,
    experiment: str = DEMO_EXPERIMENT,
    report: Reporter = quiet,
) -> DemoResult:
    """Train `runs` models on the stack, register the best as mlstack-demo@champion."""
    started = time.monotonic()
    require_sklearn()
    candidates = grid_for(runs)
    if not experiment.strip():
        raise UsageError("--experiment must not be empty", f"e.g. --experiment {DEMO_EXPERIMENT}")
    project, base = _tracking_server(config, engine)
    # before mlflow is imported: it reads some settings once
    activate(config, project.secrets, project.ca_file)

    report(Event("step", message="loading scikit-learn and MLflow"))
    # deferred: importing mlflow takes seconds, and must follow activate
    import mlflow
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(base)
    client = mlflow.MlflowClient(base)
    try:
        with _mlflow_logs_quiet():
            experiment_id = _experiment_id(client, experiment)
            done = _train_all(mlflow, experiment_id, candidates, base, report)
            best = best_run(done)
            report(Event("step", message=f"registering {best.run_name} as {DEMO_MODEL}@{CHAMPION}"))
            version = _register(client, best, experiment)
    except MlflowException as e:
        raise MlstackError(
            f"MLflow at {base} refused the demo: {' '.join(str(e).split())[:300]}",
            "see `mlstack status` and `mlstack logs mlflow --tail 50`",
        ) from e
    return DemoResult(
        tracking_uri=base,
        experiment=experiment,
        experiment_id=experiment_id,
        experiment_url=f"{base}/#/experiments/{experiment_id}/runs",
        dataset=DATASET,
        runs=done,
        best_run_id=best.run_id,
        registered_model=DEMO_MODEL,
        version=version,
        alias=CHAMPION,
        model_uri=f"models:/{DEMO_MODEL}@{CHAMPION}",
        model_url=f"{base}/#/models/{DEMO_MODEL}/versions/{version}",
        serve_command=f"mlstack serve models:/{DEMO_MODEL}@{CHAMPION}",
        seconds=time.monotonic() - started,
    )


def _train_and_log(
    mlflow: Any,
    experiment_id: str,
    params: Mapping[str, Any],
    x_train: Any,  # pandas DataFrames and Series
    x_test: Any,
    y_train: Any,
    y_test: Any,
) -> dict[str, Any]:
    # deferred: mlflow and scikit-learn cost seconds to import; run_demo imported them already
    from mlflow.models import infer_signature
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss

    model = _model(params).fit(x_train, y_train)
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1_macro": float(f1_score(y_test, predicted, average="macro")),
        "log_loss": float(log_loss(y_test, model.predict_proba(x_test))),
    }
    if not all(math.isfinite(v) for v in metrics.values()):
        raise MlstackError(f"training gave non-finite metrics {metrics}", "report this as a bug")
    all_params = {
        **params,
        "max_iter": MAX_ITER,
        "model": "StandardScaler+LogisticRegression",
        "dataset": DATASET,
        "test_size": TEST_SIZE,
        "seed": SEED,
    }
    requirements = []
    for package in MODEL_REQUIREMENTS:
        try:
            requirements.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    name = run_name(params)
    labels = [str(c) for c in sorted(set(y_train))]
    matrix = confusion_matrix(y_test, predicted).tolist()
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.set_tag("mlstack.demo", "true")
        mlflow.log_params(all_params)
        mlflow.log_metrics(metrics)
        figure = confusion_figure(matrix, labels, f"{name}: accuracy {metrics['accuracy']:.3f}")
        mlflow.log_figure(figure, "confusion_matrix.png")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_train, model.predict(x_train)),
            input_example=x_test.head(3),
            pip_requirements=requirements,
        )
    return {
        "run_id": run.info.run_id,
        "run_name": name,
        "params": all_params,
        "metrics": metrics,
        "model_uri": info.model_uri,
    }


def _register(client: Any, best: DemoRun, experiment: str) -> str:
    """Register the best run's model and point the champion alias at the new version."""
    # deferred: importing mlflow takes seconds, and must follow mlflow_env.activate
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(DEMO_MODEL)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(
            DEMO_MODEL,
            description=f"Logistic regression on scikit-learn's {DATASET} data set, "
            f"trained by `mlstack demo` (experiment {experiment}).",
        )
    version = client.create_model_version(
        DEMO_MODEL,
        best.model_uri,
        run_id=best.run_id,
        model_id=best.model_uri.removeprefix("models:/"),
        tags={k: f"{v:.4f}" for k, v in best.metrics.items()},
        description=f"best of the demo grid: {best.run_name}",
    )
    client.set_registered_model_alias(DEMO_MODEL, CHAMPION, version.version)
    return str(version.version)
