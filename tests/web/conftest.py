"""Web-test fixtures: ``make_app`` for an app with other settings."""

from __future__ import annotations

import pytest

from app import create_app
from app.extensions import db
from tests.conftest import _test_config


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
