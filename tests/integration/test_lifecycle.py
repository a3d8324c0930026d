"""The whole life of a stack on the real engine, for both storage engines."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import psycopg2
import pytest

from mlstack.adapters.s3 import client as s3_client
from mlstack.adapters.targets import S3Target

from .conftest import Project, client_json, client_process_env

# Logs a run the way a user's train.py would, with nothing but what `mlstack env` prints.
CLIENT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import mlflow
    import numpy as np
    from sklearn.linear_model import LinearRegression

    out = sys.argv[1]
    mlflow.set_experiment("lifecycle")
    big = os.path.join(out, "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(12 * 1024 * 1024))  # above the multipart thresholds set below
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("hello from mlstack")
    X = np.arange(20, dtype=float).reshape(-1, 1)
    model = LinearRegression().fit(X, 3 * X[:, 0] + 1)
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        for step in range(3):
            mlflow.log_metric("rmse", 1.0 / (step + 1), step=step)
        mlflow.log_artifact(os.path.join(out, "notes.txt"))
        mlflow.log_artifact(big)
        info = mlflow.sklearn.log_model(model, name="model", input_example=X[:2])
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="big.bin", dst_path=os.path.join(out, "dl")
    )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    print(json.dumps({
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "big_sha": hashlib.sha256(open(big, "rb").read()).hexdigest(),
        "back_sha": hashlib.sha256(open(back, "rb").read()).hexdigest(),
        "prediction": float(loaded.predict(X[:1])[0]),
    }))
    """
)

READER = textwrap.dedent(
    """
    import json, os, sys
    import mlflow
    run_id, out = sys.argv[1], sys.argv[2]
    run = mlflow.get_run(run_id)
    notes = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="notes.txt", dst_path=out)
    print(json.dumps({
        "params": run.data.params,
        "metrics": run.data.metrics,
        "notes": open(notes).read(),
    }))
    """
)


def client_env(project: Project, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Only what `mlstack env` prints, with multipart thresholds lowered to exercise them."""
    env = client_process_env(project.printed_env(capsys))
    assert not any(k.startswith("AWS_") for k in env), "the client must not need S3 keys"
    env.update(
        MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE=str(5 * 1024 * 1024),
        MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE=str(5 * 1024 * 1024),
        MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE=str(5 * 1024 * 1024),
    )
    return env


def python(code: str, args: list[str], env: dict[str, str]) -> dict[str, object]:
    result: dict[str, object] = client_json(["-c", code, *args], env, 240)
    return result


def test_up_track_down_up_purge(
    any_project: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    project = any_project
    config = project.config

    # up: the tracking URI on stdout, the summary on stderr
    code, out, err = project.cli(capsys, "up")
    assert code == 0, err
    assert out.strip() == config.tracking_uri
    assert "mlflow" in err and "ready" in err

    code, out, _ = project.cli(capsys, "status", "--json")
    status = json.loads(out)
    assert code == 0, out
    assert status["overall"] == "healthy"
    assert [s["service"] for s in status["services"]] == ["postgres", "storage", "mlflow"]
    assert all(s["probe"]["ok"] for s in status["services"])

    # a client with only the tracking URI logs params, metrics, artifacts and a model
    env = client_env(project, capsys)
    logged = python(CLIENT, [str(tmp_path)], env)
    assert logged["big_sha"] == logged["back_sha"]
    assert logged["prediction"] == pytest.approx(1.0)
    assert str(logged["model_uri"]).startswith("models:/m-")
    run_id = str(logged["run_id"])

    # the artifact object is in the bucket, the run row in PostgreSQL
    secrets = project.secrets
    s3 = s3_client(S3Target(config.s3_endpoint, secrets.S3_ACCESS_KEY, secrets.S3_SECRET_KEY))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=config.storage.bucket)["Contents"]]  # type: ignore[attr-defined]
    notes_key = next(k for k in keys if k.endswith(f"{run_id}/artifacts/notes.txt"))
    body = s3.get_object(Bucket=config.storage.bucket, Key=notes_key)["Body"].read()  # type: ignore[attr-defined]
    assert body == b"hello from mlstack"
    with (
        psycopg2.connect(
            host="127.0.0.1",
            port=config.postgres.port,
            user=secrets.POSTGRES_USER,
            password=secrets.POSTGRES_PASSWORD,
            dbname=config.postgres.database,
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
        assert cur.fetchone() == ("FINISHED",)

    # down keeps data
    code, _, err = project.cli(capsys, "down")
    assert code == 0, err
    left = project.leftovers()
    assert left["containers"] == [] and left["networks"] == []
    assert sorted(left["volumes"]) == [
        f"{project.name}-postgres-data",
        f"{project.name}-storage-data",
    ]
    code, _, _ = project.cli(capsys, "status")
    assert code == 11

    # up again: same run, same artifact
    code, out, err = project.cli(capsys, "up")
    assert code == 0, err
    read = python(READER, [run_id, str(tmp_path / "again")], env)
    assert read["params"] == {"alpha": "0.5"}
    assert read["metrics"] == {"rmse": pytest.approx(1.0 / 3)}
    assert read["notes"] == "hello from mlstack"

    # purge: nothing with the project's label remains, nor its state
    code, _, err = project.cli(capsys, "down", "--purge", "--yes")
    assert code == 0, err
    assert project.leftovers() == {"containers": [], "networks": [], "volumes": []}
    assert not (project.state_dir / project.name).exists()
    code, _, err = project.cli(capsys, "down")
    assert code == 0 and "nothing to do" in err
