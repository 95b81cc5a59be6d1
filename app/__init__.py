"""Application factory: defaults -> instance/config.py -> FLASK_* variables -> the caller's
config."""

from __future__ import annotations

import copy
import logging
import math
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError

from app.config import DefaultConfig, database_url_from_env
from app.extensions import csrf, db, login_manager, migrate

log = logging.getLogger(__name__)


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(DefaultConfig)
    # Each app its own copy: FLASK_RECS_HEURISTIC_WEIGHTS__affinity=2 sets one key in place,
    # which would otherwise change the class's dict for every app made after in this process.
    app.config.update(copy.deepcopy({k: v for k, v in app.config.items() if isinstance(v, dict)}))
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env()
    _read_flags(app)
    _check_types(app)
    if database_url_from_env() and not os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = database_url_from_env()
    if config:
        app.config.update(config)
    _check_ranges(app)

    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + str(
            Path(app.instance_path) / "campus.db"
        )
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret_key(Path(app.instance_path))
    if not app.config.get("RECS_MODEL_DIR"):
        app.config["RECS_MODEL_DIR"] = str(Path(app.instance_path) / "models")

    _configure_logging(app)
    if app.config.get("TRUSTED_PROXIES"):
        # Behind N reverse proxies, the client address (rate limits, logs) comes from X-Forwarded-*.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    try:
        db.init_app(app)
    except (ArgumentError, ValueError, ImportError) as exc:
        # SQLAlchemy's own words ("Could not parse SQLAlchemy URL ...", a driver's missing
        # module) named no setting; they never include the password.
        raise ValueError(
            f"{_database_url_setting(config)} is not a database URL this app can use: {exc}"
        ) from None
    migrate.init_app(app, db, compare_type=True, render_as_batch=True)
    login_manager.init_app(app)
    csrf.init_app(app)

    from app import admin, auth, challenges, cli, errors, professor, web
    from app.recs import api as recs_api
    from app.recs import cli as recs_cli
    from app.recs import routes as recs_routes
    from app.recs import scheduler as recs_scheduler
    from app.recs import throttle as recs_throttle

    # Ids in URLs fit every backend's integer column: a larger one is a 404, not an overflow.
    app.url_map.converters["int"] = web.BoundedIntConverter
    web.init_app(app)
    errors.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(challenges.bp)
    app.register_blueprint(professor.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(recs_routes.bp)
    app.register_blueprint(recs_api.bp)
    cli.init_app(app)
    recs_cli.init_app(app)
    recs_scheduler.init_app(app)
    recs_throttle.init_app(app)
    return app


def _database_url_setting(config: dict | None) -> str:
    """Where the database URL came from, in create_app's order."""
    if (config and "SQLALCHEMY_DATABASE_URI" in config) or not (
        database_url_from_env() and not os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI")
    ):
        return "SQLALCHEMY_DATABASE_URI"
    return "DATABASE_URL"


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


# Flags of the extensions, which have no default in the config until the extension reads it.
_EXTENSION_FLAGS = (
    "WTF_CSRF_ENABLED",
    "WTF_CSRF_CHECK_DEFAULT",
    "WTF_CSRF_SSL_STRICT",
    "REMEMBER_COOKIE_SECURE",
    "REMEMBER_COOKIE_HTTPONLY",
    "REMEMBER_COOKIE_REFRESH_EACH_REQUEST",
    "SQLALCHEMY_ECHO",
    "SQLALCHEMY_RECORD_QUERIES",
)


def _flag_names() -> set[str]:
    """Ours, Flask's (``FLASK_TESTING=False`` turned testing on) and the extensions'."""
    defaults = {**Flask.default_config, **vars(DefaultConfig)}
    return {name for name, value in defaults.items() if isinstance(value, bool)} | set(
        _EXTENSION_FLAGS
    )


def _read_flags(app: Flask) -> None:
    """``FLASK_*`` variables are read as JSON, where only ``true`` and ``false`` are flags:
    ``FLASK_REGISTRATION_ENABLED=False`` stayed the text "False", which counts as true, and left
    registration open. A flag takes the usual spellings in any case; anything else fails at
    startup with the setting's name."""
    for name in _flag_names():
        value = app.config.get(name)
        if name not in app.config or value is None or isinstance(value, bool):
            continue
        word = str(value).strip().lower()
        if word not in _TRUE + _FALSE:
            raise ValueError(f"{name} must be true or false, not {value!r}")
        app.config[name] = word in _TRUE


# Whole-number defaults that are durations passed to timedelta, where a fraction means something.
_FRACTIONS_ALLOWED = {"LOGIN_RATE_WINDOW_SECONDS", "RECS_STALE_AFTER_HOURS"}


def _check_types(app: Flask) -> None:
    """A number, list or mapping set as something else (``FLASK_LOGIN_RATE_LIMIT=ten`` stays the
    text "ten") failed on every request that read it; it fails at startup instead, naming the
    setting. Text settings and those without a default take anything."""
    for name, default in vars(DefaultConfig).items():
        value = app.config.get(name)
        expected = _expected_type(name, value, default)
        if expected:
            raise ValueError(f"{name} must be {expected}, not {value!r}")


def _expected_type(name: str, value, default) -> str | None:
    """What ``value`` should be to stand in for ``default``, or None when it is that."""
    if isinstance(default, bool):
        return None  # _read_flags
    if isinstance(default, timedelta):  # Flask also takes a number of seconds
        return None if _is_number(value) or isinstance(value, timedelta) else "a number of seconds"
    if isinstance(default, float) or name in _FRACTIONS_ALLOWED:
        return None if _is_number(value) else "a number"
    if isinstance(default, int):
        return None if _is_number(value) and isinstance(value, int) else "a whole number"
    if isinstance(default, tuple):  # None: no such positions at all
        whole = isinstance(value, list | tuple) and all(
            _is_number(item) and isinstance(item, int) for item in value
        )
        return None if value is None or whole else "a list of whole numbers"
    if isinstance(default, dict):
        if not isinstance(value, dict):
            return "a JSON object"
        weights = all(_is_number(item) for item in default.values())
        if weights and not all(_is_number(item) for item in value.values()):
            return "a JSON object of numbers"
    return None


def _at_least(low: float) -> tuple[Callable[[float], bool], str]:
    return (lambda value: value >= low), f"{low:g} or more"


def _between(low: float, high: float) -> tuple[Callable[[float], bool], str]:
    return (lambda value: low <= value <= high), f"from {low:g} to {high:g}"


_POSITIVE = ((lambda value: value > 0), "more than 0")
# Values of the right type that mean nothing sensible, or worse: a retention of 0 days would have
# the nightly purge delete every event, and a login budget of 0 would refuse every login.
_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "SQLITE_BUSY_TIMEOUT_MS": _at_least(0),
    "MAX_CONTENT_LENGTH": _at_least(1),
    "TRUSTED_PROXIES": _at_least(0),
    "LOGIN_RATE_LIMIT": _at_least(1),
    "LOGIN_ACCOUNT_RATE_LIMIT": _at_least(1),
    "LOGIN_ADDRESS_RATE_LIMIT": _at_least(1),
    "REGISTRATION_RATE_LIMIT": _at_least(1),
    "LOGIN_RATE_WINDOW_SECONDS": _POSITIVE,
    "CHALLENGES_PER_PAGE": _at_least(1),
    "RECS_SLATE_SIZE": _at_least(1),
    "RECS_AFFINITY_SMOOTHING": _at_least(0),
    "RECS_POPULAR_WINDOW_DAYS": _at_least(1),
    "RECS_EVENT_BATCH_LIMIT": _at_least(1),
    "RECS_MIN_STUDENTS": _at_least(0),
    "RECS_MIN_INTERACTIONS": _at_least(0),
    "RECS_TOP_N": _at_least(1),
    "RECS_KEEP_VERSIONS": _at_least(1),
    "RECS_IMPORT_MAX_BAD_SHARE": _between(0, 1),
    "RECS_IMPORT_MIN_STUDENT_SHARE": _between(0, 1),
    "RECS_EASE_MAX_ITEMS": _at_least(0),
    "RECS_HOLDOUT_FRACTION": ((lambda value: 0 < value < 1), "between 0 and 1"),
    "RECS_EVAL_MAX_USERS": _at_least(1),
    "RECS_VALIDATION_MAX_USERS": _at_least(1),
    "RECS_MISFIRE_GRACE_SECONDS": _at_least(1),
    "RECS_STALE_AFTER_HOURS": _POSITIVE,
    "RECS_EVENT_RETENTION_DAYS": _at_least(1),
    "RECS_COLD_PARTICIPATIONS": _at_least(0),
    "RECS_CONTENT_MIN_SIMILARITY": _between(0, 1),
    "RECS_CONTENT_NEW_DAYS": _at_least(0),
}


def _check_ranges(app: Flask) -> None:
    """A number of the right type but out of its range fails at startup, naming the setting."""
    for name, (allowed, wanted) in _RANGES.items():
        value = app.config.get(name)
        if _is_number(value) and not allowed(value):
            raise ValueError(f"{name} must be {wanted}, not {value!r}")
    positions = app.config.get("RECS_CONTENT_POSITIONS") or ()
    if any(_is_number(place) and place < 0 for place in positions):
        raise ValueError(f"RECS_CONTENT_POSITIONS must be places from 0 up, not {positions!r}")
    lifetime = app.config.get("PERMANENT_SESSION_LIFETIME")
    seconds = lifetime.total_seconds() if isinstance(lifetime, timedelta) else lifetime
    if _is_number(seconds) and seconds <= 0:
        raise ValueError(f"PERMANENT_SESSION_LIFETIME must be more than 0, not {lifetime!r}")


def _is_number(value) -> bool:
    # JSON reads NaN and Infinity as floats.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _instance_secret_key(instance: Path) -> str:
    """A per-installation key kept in instance/, so sessions survive restarts without a literal."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker wrote it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _configure_logging(app: Flask) -> None:
    """The root logger at LOG_LEVEL when nothing (gunicorn's --log-config, a test runner) has set
    it up; a level of another name stops the app at startup, naming the setting."""
    raw = app.config.get("LOG_LEVEL") or "INFO"
    # A level number (LOG_LEVEL = logging.WARNING) or an alias logging reads (WARN, FATAL) by
    # the name it stands for.
    name = raw if _is_number(raw) else str(raw).strip().upper()
    level = logging.getLevelName(logging.getLevelNamesMapping().get(name, name))
    if level not in LOG_LEVELS:
        raise ValueError(
            f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {app.config['LOG_LEVEL']!r}"
        )
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _unicode_lower(value):
    return value.casefold() if isinstance(value, str) else value


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    from flask import current_app

    try:
        timeout = int(current_app.config.get("SQLITE_BUSY_TIMEOUT_MS", 15000))
    except RuntimeError:  # outside an app context (e.g. a bare engine in a benchmark)
        timeout = 15000
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={timeout}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # SQLite's own lower() folds ASCII letters only, so ilike searches (which compile to lower()
    # on both sides) missed "Émile" for "émile". Python's casefold folds every script (and final
    # sigma, and ß as ss), so such searches match whatever the case.
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
    # pysqlite opens its (deferred) transaction right before the first write statement, so a
    # writer takes SQLite's write lock at that statement and waits for it under busy_timeout
    # instead of failing on a read-to-write upgrade.
    cursor.close()
