"""Crashes and faults while a version is being made: ``kill -9`` of ``flask recs import`` in the
middle of writing rows and of ``flask recs pipeline`` mid-run, a locked database and a full disk
while publishing. Each must leave the previous version published and served, the database intact,
and nothing for the next run to trip over: it marks the dead run failed and drops its rows."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, insert, select

from app.extensions import db
from app.models import ModelRun, User
from app.recs import pipeline, publish
from tests.faults.conftest import (
    assert_database_intact,
    assert_still_serving,
    poll,
    run_of,
    start_flask,
)
from tests.recs.planted_data import seed_planted_campus

# Enough rows that writing them takes many INSERT batches, so a kill lands between two of them.
EXTRA_STUDENTS = 3000


@pytest.fixture
def campus(app):
    """The planted campus with a trained model published: the version every fault must keep."""
    campus = seed_planted_campus()
    result = pipeline.train()
    assert result.status == "published", result.reason
    campus.update(
        version=result.version,
        student_id=campus["students"][0].id,
        student_ids=[s.id for s in campus["students"]],
        challenge_ids=[c.id for c in campus["challenges"]],
    )
    return campus


def write_import_file(path: Path, student_ids: list[int], challenge_ids: list[int]) -> int:
    lines = [
        f"{user},{challenge},{1.0 / (rank + 1)}"
        for user in student_ids
        for rank, challenge in enumerate(challenge_ids)
    ]
    path.write_text("\n".join(["user_id,challenge_id,score", *lines]) + "\n")
    return len(lines)


def add_students(count: int) -> list[int]:
    db.session.execute(
        insert(User),
        [
            {
                "email": f"bulk{n}@uni.test",
                "display_name": f"Bulk {n}",
                "role": "student",
                "password_hash": "unusable",
                "session_token": f"{n:032x}",
            }
            for n in range(count)
        ],
    )
    db.session.commit()
    return list(db.session.scalars(select(User.id).where(User.email.like("bulk%"))))


def running_run(kind: str) -> ModelRun | None:
    return db.session.scalar(
        select(ModelRun).where(ModelRun.kind == kind, ModelRun.status == "running")
    )


def kill(process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL


def assert_cleaned_by_next_run(runner, dead: str, args: list[str]) -> None:
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    run = run_of(dead)
    assert run.status == "failed" and "interrupted" in run.error
    assert publish.count_rows(run.id) == 0


def campus_ids(campus) -> tuple[list[int], list[int]]:
    return campus["student_ids"], campus["challenge_ids"]


@pytest.mark.slow
def test_kill_9_while_an_import_writes_rows(app, campus, tmp_path):
    students, challenges = campus_ids(campus)
    students = students + add_students(EXTRA_STUDENTS)
    expected = write_import_file(tmp_path / "big.csv", students, challenges)
    importing = start_flask(app, "recs", "import", "--path", str(tmp_path / "big.csv"))

    def some_rows_written():
        run = running_run("import")
        rows = publish.count_rows(run.id) if run is not None else 0
        return (run.version, rows) if rows else None

    dead, _ = poll(some_rows_written, alive=importing)
    kill(importing)

    run = run_of(dead)
    assert run.status == "running" and 0 < publish.count_rows(run.id) < expected
    assert_still_serving(campus["version"], campus["student_id"])
    assert_database_intact(app)
    small = tmp_path / "small.csv"
    write_import_file(small, *campus_ids(campus))
    assert_cleaned_by_next_run(
        app.test_cli_runner(), dead, ["recs", "import", "--path", str(small)]
    )
    assert publish.published_run().kind == "import"


@pytest.mark.slow
def test_kill_9_of_a_retrain_mid_run(app, campus):
    retraining = start_flask(app, "recs", "pipeline")

    def evaluating():
        run = running_run("train")
        stage = (run.report or {}).get("stage", "") if run is not None else ""
        return run.version if stage.startswith("evaluating") else None

    dead = poll(evaluating, alive=retraining)
    kill(retraining)

    assert run_of(dead).status == "running"
    assert_still_serving(campus["version"], campus["student_id"])
    assert_database_intact(app)
    assert_cleaned_by_next_run(app.test_cli_runner(), dead, ["recs", "pipeline"])
    assert_only_servable_artifacts(app)


def assert_only_servable_artifacts(app) -> None:
    """No half-written or orphaned model folder stays on disk."""
    kept = {
        Path(path).name
        for path in db.session.scalars(
            select(ModelRun.artifact_path).where(ModelRun.artifact_path.is_not(None))
        )
    }
    on_disk = {p.name for p in Path(app.config["RECS_MODEL_DIR"]).iterdir()}
    assert on_disk == kept


def sqlite_only(app) -> str:
    if db.engine.url.get_backend_name() != "sqlite":
        pytest.skip("SQLite's locking and page limit; PostgreSQL waits for locks instead")
    return db.engine.url.database


def assert_clear_failure(result, *words: str) -> None:
    """A non-zero exit with a one-line reason, not a traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Error:" in result.output and "Traceback" not in result.output
    for word in words:
        assert word in result.output


def test_locked_database_while_publishing(app, campus, tmp_path, monkeypatch):
    path = sqlite_only(app)
    app.config["SQLITE_BUSY_TIMEOUT_MS"] = 100
    db.engine.dispose()  # new connections pick up the short busy timeout
    holder = sqlite3.connect(path, isolation_level=None)
    real_publish = pipeline.publish

    def publish_while_locked(run):
        holder.execute("BEGIN EXCLUSIVE")
        real_publish(run)

    monkeypatch.setattr(pipeline, "publish", publish_while_locked)
    output = tmp_path / "out.csv"
    write_import_file(output, *campus_ids(campus))
    result = app.test_cli_runner().invoke(args=["recs", "import", "--path", str(output)])
    holder.rollback()
    holder.close()
    monkeypatch.setattr(pipeline, "publish", real_publish)

    assert_clear_failure(result, "database is locked")
    assert_still_serving(campus["version"], campus["student_id"])
    assert_database_intact(app)
    dead = db.session.scalar(select(ModelRun).where(ModelRun.kind == "import"))
    result = app.test_cli_runner().invoke(args=["recs", "import", "--path", str(output)])
    assert result.exit_code == 0, result.output
    assert run_of(dead.version).status == "failed" and publish.count_rows(dead.id) == 0


def test_full_database_disk_while_writing_rows(app, campus, tmp_path):
    sqlite_only(app)

    def no_room_to_grow(connection, record):
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        # A few pages of room: the run is recorded, then its rows hit the ceiling.
        connection.execute(f"PRAGMA max_page_count = {pages + 3}")

    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM")  # no free pages left over from earlier tests
    db.engine.dispose()
    event.listen(db.engine, "connect", no_room_to_grow)
    output = tmp_path / "out.csv"
    write_import_file(output, *campus_ids(campus))
    try:
        result = app.test_cli_runner().invoke(args=["recs", "import", "--path", str(output)])
    finally:
        db.session.remove()
        event.remove(db.engine, "connect", no_room_to_grow)
        db.engine.dispose()

    assert_clear_failure(result, "full")
    assert_still_serving(campus["version"], campus["student_id"])
    assert_database_intact(app)
    result = app.test_cli_runner().invoke(args=["recs", "import", "--path", str(output)])
    assert result.exit_code == 0, result.output
    failed = db.session.scalars(select(ModelRun).where(ModelRun.status == "failed")).all()
    assert all(publish.count_rows(run.id) == 0 for run in failed)
    assert db.session.scalar(select(ModelRun).where(ModelRun.status == "running")) is None


def test_full_disk_while_saving_the_model(app, campus, monkeypatch):
    def disk_full(file, **arrays):
        Path(file).write_bytes(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    result = app.test_cli_runner().invoke(args=["recs", "pipeline"])

    assert_clear_failure(result, "No space left on device", "Serving is unchanged")
    failed = db.session.scalar(select(ModelRun).where(ModelRun.status == "failed"))
    assert "No space left on device" in failed.error and publish.count_rows(failed.id) == 0
    assert_still_serving(campus["version"], campus["student_id"])
    assert_database_intact(app)
    assert_only_servable_artifacts(app)
