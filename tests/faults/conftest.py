"""Fault-test helpers: the app's commands and servers as real processes on the test database, and
the checks every fault must leave true (old version still served, database intact)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ModelRun
from app.recs import publish, serving

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def process_env(app, **extra: str) -> dict[str, str]:
    """The environment that points ``flask``/gunicorn at the test app's database and settings."""
    env = {
        k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("FLASK_")
    }
    env.update(
        FLASK_APP="wsgi",
        FLASK_SQLALCHEMY_DATABASE_URI=app.config["SQLALCHEMY_DATABASE_URI"],
        FLASK_SECRET_KEY=app.config["SECRET_KEY"],
        FLASK_RECS_MODEL_DIR=app.config["RECS_MODEL_DIR"],
        FLASK_RECS_SCHEDULER_ENABLED="false",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def start_flask(app, *args: str, **env: str) -> subprocess.Popen:
    """``flask ARGS`` in its own process, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "flask", *args],
        cwd=ROOT,
        env=process_env(app, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def poll(find: Callable[[], T | None], alive: subprocess.Popen | None = None, limit: float = 60):
    """Call ``find`` in a fresh transaction until it returns something; fail if ``alive`` ends
    first (the moment to act on was missed) or after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        db.session.rollback()
        found = find()
        if found is not None:
            return found
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"the process ended first:\n{alive.stdout.read()[-3000:]}")
        time.sleep(0.005)
    pytest.fail(f"nothing found within {limit} s")


def run_of(version: str) -> ModelRun:
    db.session.rollback()
    return db.session.scalar(select(ModelRun).where(ModelRun.version == version))


def assert_still_serving(version: str, student_id: int) -> None:
    """The published pointer and what a student is served both still come from ``version``."""
    db.session.rollback()
    assert publish.published_run().version == version
    slate = serving.get_recommendations(student_id)
    assert slate.model_version == version and slate.items
    assert {item.source for item in slate.items} & {"model", "fresh"}


def assert_database_intact(app) -> None:
    """SQLite's own integrity check (PostgreSQL's WAL leaves nothing comparable to check)."""
    db.session.rollback()
    url = db.engine.url
    if url.get_backend_name() != "sqlite":
        return
    with sqlite3.connect(url.database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
