"""Default settings. Each can be overridden by ``instance/config.py`` or a ``FLASK_<NAME>`` variable."""

import os
from datetime import timedelta


class DefaultConfig:
    # The root logger's level when nothing else set up logging: DEBUG ... CRITICAL or 10 ... 50.
    LOG_LEVEL = "INFO"

    # Database: DATABASE_URL wins (see create_app); otherwise SQLite in instance/.
    SQLALCHEMY_DATABASE_URI = None
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    SQLITE_BUSY_TIMEOUT_MS = 15000

    # Sessions and cookies.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    PERMANENT_SESSION_LIFETIME = timedelta(days=7)
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session
    MAX_CONTENT_LENGTH = 256 * 1024

    # Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted.
    TRUSTED_PROXIES = 0

    # Accounts.
    REGISTRATION_ENABLED = True
    # Budgets per LOGIN_RATE_WINDOW_SECONDS (app/auth/attempts.py): failed logins and wrong current
    # passwords naming one account from one address, the same from any address, every failure from
    # one address (a campus behind one NAT address shares that one), and registrations from one.
    LOGIN_RATE_LIMIT = 10
    LOGIN_ACCOUNT_RATE_LIMIT = 50
    LOGIN_ADDRESS_RATE_LIMIT = 200
    REGISTRATION_RATE_LIMIT = 20
    LOGIN_RATE_WINDOW_SECONDS = 60

    # Pages.
    CHALLENGES_PER_PAGE = 12

    # Front end: htmx from a CDN, version pinned, checked by SRI.
    HTMX_URL = "https://unpkg.com/htmx.org@2.0.4/dist/htmx.min.js"
    HTMX_SRI = "sha384-HGfztofotfshcF7+8n44JQL2oJmowVChPTg48S+jvZoztPfvwD79OC/LTtG6dMp+"

    # Recommendations (see docs/architecture.md for what each weight does).
    RECS_SLATE_SIZE = 6
    RECS_HEURISTIC_WEIGHTS = {
        "affinity": 3.0,
        "popularity": 1.0,
        "recent_popularity": 1.0,
        "reward": 0.5,
        "timeframe": 1.0,
        "urgency": 0.3,
    }
    RECS_AFFINITY_SMOOTHING = 1.0
    RECS_POPULAR_WINDOW_DAYS = 7
    RECS_EVENT_BATCH_LIMIT = 100
    # Requests per student and minute to the fragment, "Not interested", the event endpoint and
    # the API, counted per worker process (app/recs/throttle.py); 0 turns the budget off.
    RECS_REQUESTS_PER_MINUTE = 120
    RECS_INTERACTION_WEIGHTS = {"join": 3.0, "complete": 4.0, "click": 1.0, "dismiss": -2.0}
    RECS_MIN_STUDENTS = 20
    RECS_MIN_INTERACTIONS = 200
    RECS_GATE_MARGIN = 0.0  # model NDCG@10 must beat the heuristic's by more than this
    RECS_TOP_N = 30
    RECS_KEEP_VERSIONS = 5
    RECS_IMPORT_MAX_BAD_SHARE = 0.01
    # `flask recs import` refuses a file covering fewer students than this share of those the
    # published version covers (a file cut short, or still being written) unless told otherwise.
    RECS_IMPORT_MIN_STUDENT_SHARE = 0.5
    RECS_EASE_MAX_ITEMS = 20000
    RECS_HOLDOUT_FRACTION = 0.2  # share of the most recent interactions held out by the gate
    # Students ranked when evaluating (held-out split) and tuning (validation split); beyond
    # these, a seeded uniform sample, recorded in the run's metrics.
    RECS_EVAL_MAX_USERS = 10_000
    RECS_VALIDATION_MAX_USERS = 5_000
    RECS_MODEL_DIR = None  # defaults to instance/models
    RECS_SCHEDULER_ENABLED = True
    RECS_RETRAIN_CRON = "0 3 * * *"
    RECS_MISFIRE_GRACE_SECONDS = 3600
    RECS_STALE_AFTER_HOURS = 48
    RECS_EVENT_RETENTION_DAYS = 365
    RECS_PURGE_CRON = "30 3 * * *"  # when events older than the retention are deleted
    RECS_PSEUDONYM_KEY = None
    # Cold start (app/recs/content.py, serving.py): a challenge with fewer participations than
    # RECS_COLD_PARTICIPATIONS is placed by the content model; such a card takes one of the slate
    # positions RECS_CONTENT_POSITIONS (0-based) when its similarity to one of the student's
    # joined challenges reaches RECS_CONTENT_MIN_SIMILARITY.
    RECS_COLD_PARTICIPATIONS = 5
    RECS_CONTENT_POSITIONS = (2, 5)
    RECS_CONTENT_MIN_SIMILARITY = 0.3
    RECS_CONTENT_CATEGORY_WEIGHT = 0.5
    RECS_CONTENT_REWARD_WEIGHT = 0.2
    RECS_CONTENT_NEW_DAYS = 7  # a content card this young says "New in <category>"



class TestConfig:
    TESTING = True
    SECRET_KEY = "test-secret-key"
    WTF_CSRF_ENABLED = False
    RECS_SCHEDULER_ENABLED = False
    LOGIN_RATE_LIMIT = 1000
    LOGIN_ACCOUNT_RATE_LIMIT = 1000
    LOGIN_ADDRESS_RATE_LIMIT = 1000
    REGISTRATION_RATE_LIMIT = 1000
    RECS_REQUESTS_PER_MINUTE = 0  # tests/web/test_throttle.py turns it on
    SQLITE_BUSY_TIMEOUT_MS = 30000


def database_url_from_env() -> str | None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        return None
    # Heroku-style URLs name the dialect "postgres"; SQLAlchemy wants psycopg 3 spelled out.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
