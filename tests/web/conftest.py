"""Web-test fixtures: cheap password hashing, and ``make_app`` for an app with other settings."""

from __future__ import annotations

from functools import partial

import pytest
from werkzeug.security import generate_password_hash

from app import create_app
from app.extensions import db
from tests.conftest import _test_config


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    """Almost every web test logs someone in; scrypt's ~80 ms per hash would dominate the run.
    Verification reads the method from the stored hash, so login code paths are unchanged."""
    from app import models

    monkeypatch.setattr(
        models, "generate_password_hash", partial(generate_password_hash, method="pbkdf2:sha256:1")
    )


@pytest.fixture
def make_app(app, database_url, tmp_path):
    """``make_app(LOGIN_RATE_LIMIT=3)``: an app like ``app`` but with some settings changed."""
    made = []

    def build(**overrides):
        extra = create_app({**_test_config(database_url, tmp_path), **overrides})
        made.append(extra)
        return extra

    yield build
    for extra in made:
        with extra.app_context():
            db.session.remove()
            db.engine.dispose()
