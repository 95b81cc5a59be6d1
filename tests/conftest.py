"""Fixtures: ``app`` on a migrated database (SQLite file, or PostgreSQL when TEST_DATABASE_URL is
set), ``client``, ``runner``, and role-specific logged-in clients."""

from __future__ import annotations

import os
from functools import partial

import pytest
from flask import g, request_started
from sqlalchemy import text
from werkzeug.security import generate_password_hash

from app import create_app
from app.config import TestConfig
from app.extensions import db
from tests.helpers import login, make_user


def _test_config(database_url: str, tmp_path) -> dict:
    config = {k: v for k, v in vars(TestConfig).items() if k.isupper()}
    config.update(SQLALCHEMY_DATABASE_URI=database_url, RECS_MODEL_DIR=str(tmp_path / "models"))
    return config


def _postgres_database(base_url: str, worker: str) -> str:
    """A fresh database per xdist worker on the server TEST_DATABASE_URL points at."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    name = f"{url.database or 'campus'}_test_{worker}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory, worker_id) -> str:
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        url = _postgres_database(base, worker_id)
    else:
        url = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.db")
    # Build the schema once per session through the migrations, as production does.
    from flask_migrate import upgrade

    app = create_app(_test_config(url, tmp_path_factory.mktemp("models")))
    with app.app_context():
        upgrade(directory=os.path.join(os.path.dirname(__file__), "..", "migrations"))
        db.engine.dispose()
    return url


@pytest.fixture(scope="session")
def worker_id(request) -> str:
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


def _empty_all_tables() -> None:
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    else:
        for table in tables:
            db.session.execute(text(f'DELETE FROM "{table}"'))
    db.session.commit()


def _fresh_g_per_request(sender, **extra) -> None:
    """Test requests reuse the fixture's app context, and with it ``g``, where Flask-Login caches
    the request's user: without this, a second client would be served the first client's user."""
    for name in list(vars(g)):
        delattr(g, name)


@pytest.fixture
def app(database_url, tmp_path):
    app = create_app(_test_config(database_url, tmp_path))
    request_started.connect(_fresh_g_per_request, app)
    with app.app_context():
        _empty_all_tables()
        yield app
        db.session.remove()
        _empty_all_tables()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    """Almost every web test logs someone in; scrypt's ~80 ms per hash would dominate the run.
    Verification reads the method from the stored hash, so login code paths are unchanged."""
    from app import models

    monkeypatch.setattr(
        models, "generate_password_hash", partial(generate_password_hash, method="pbkdf2:sha256:1")
    )


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def _logged_in(app, role: str):
    user = make_user(role)
    client = app.test_client()
    response = login(client, user)
    assert response.status_code == 302, response.data[:500]
    client.user = user
    return client


@pytest.fixture
def student_client(app):
    return _logged_in(app, "student")


@pytest.fixture
def professor_client(app):
    return _logged_in(app, "professor")


@pytest.fixture
def admin_client(app):
    return _logged_in(app, "admin")
