"""The migrations and the models describe the same schema (what ``flask db check`` verifies)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select

from app.extensions import db

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def test_test_database_is_at_the_single_head(app):
    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    assert len(heads) == 1, f"migration history has branched: {heads}"
    with db.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_heads() == tuple(heads)


def test_models_match_the_migrated_schema(app):
    # The same options `flask db migrate` uses (create_app passes compare_type=True).
    options = app.extensions["migrate"].configure_args
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": options.get("compare_type", True),
                "target_metadata": db.metadata,
            },
        )
        differences = compare_metadata(context, db.metadata)
    assert differences == [], (
        "models and migrations disagree; write a migration for:\n"
        + "\n".join(map(str, differences))
    )


def test_compare_would_notice_a_missing_column(app):
    """Guard against a vacuous pass: a column the database lacks must show up as a difference."""
    from sqlalchemy import Column, Integer, MetaData, Table

    metadata = MetaData()
    for table in db.metadata.sorted_tables:
        table.to_metadata(metadata)
    Table("users", metadata, Column("shoe_size", Integer), extend_existing=True)
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert any(diff[0] == "add_column" and diff[2] == "users" for diff in differences)


def test_0003_keeps_look_alike_categories_and_stops_all_but_the_newest_experiment(tmp_path):
    """Data only a race could have left behind before 0003 survives it: look-alike category names
    stay (their keys made distinct), and of two running experiments the newest, the one serving
    already followed, keeps running. Downgrading keeps every row."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect, text

    from app import create_app
    from tests.conftest import _test_config

    url = "sqlite:///" + str(tmp_path / "migrate.db")
    app = create_app(_test_config(url, tmp_path))
    with app.app_context():
        upgrade(directory=str(MIGRATIONS), revision="0002_serving_indexes")
        with db.engine.begin() as connection:
            for name in ("Robotics", "ROBOTICS", "Ro\u200bbotics", "Design", "Robotics#3"):
                connection.execute(text("INSERT INTO categories (name) VALUES (:n)"), {"n": name})
            for name in ("older", "newer"):
                connection.execute(
                    text(
                        "INSERT INTO experiments (name, salt, allocation_percent, control_arm,"
                        " treatment_arm, status, started_at) VALUES (:n, :n, 50, 'heuristic',"
                        " 'model', 'running', '2026-11-01 00:00:00')"
                    ),
                    {"n": name},
                )
        upgrade(directory=str(MIGRATIONS))
        with db.engine.connect() as connection:
            keys = connection.execute(text("SELECT name, name_key FROM categories ORDER BY id"))
            # The later look-alikes' keys carry their id after U+2063, which no name's key can
            # contain: a category really named "Robotics#3" keeps its own key.
            assert keys.all() == [
                ("Robotics", "robotics"),
                ("ROBOTICS", "robotics\u20632"),
                ("Ro\u200bbotics", "robotics\u20633"),
                ("Design", "design"),
                ("Robotics#3", "robotics#3"),
            ]
            experiments = connection.execute(
                text("SELECT name, status, stopped_at IS NOT NULL FROM experiments ORDER BY id")
            )
            assert experiments.all() == [("older", "stopped", 1), ("newer", "running", 0)]
        downgrade(directory=str(MIGRATIONS), revision="0002_serving_indexes")
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM categories")).scalar() == 5
            assert connection.execute(text("SELECT count(*) FROM experiments")).scalar() == 2
        schema = inspect(db.engine)
        assert "name_key" not in {c["name"] for c in schema.get_columns("categories")}
        assert not {"version", "creation_token"} & {
            c["name"] for c in schema.get_columns("challenges")
        }
        indexes = {
            i["name"]
            for t in ("categories", "challenges", "experiments")
            for i in schema.get_indexes(t)
        }
        assert not indexes & {
            "uq_categories_name_key",
            "uq_challenges_creation_token",
            "uq_experiments_one_running",
        }
        db.engine.dispose()


def test_0005_ends_the_rule_of_winners_a_newer_experiment_replaced(tmp_path):
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    from app import create_app
    from tests.conftest import _test_config

    url = "sqlite:///" + str(tmp_path / "migrate.db")
    app = create_app(_test_config(url, tmp_path))
    with app.app_context():
        upgrade(directory=str(MIGRATIONS), revision="0004_slate_cards")
        with db.engine.begin() as connection:
            for name, winner, day in (
                ("first", "heuristic", 1),
                ("second", None, 8),
                ("third", "heuristic", 15),
            ):
                connection.execute(
                    text(
                        "INSERT INTO experiments (name, salt, allocation_percent, control_arm,"
                        " treatment_arm, status, winner, started_at, stopped_at) VALUES (:n, :n,"
                        " 50, 'heuristic', 'model', 'stopped', :w, :start, :start)"
                    ),
                    {"n": name, "w": winner, "start": f"2026-11-{day:02d} 00:00:00"},
                )
        upgrade(directory=str(MIGRATIONS))
        with db.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT name, winner_until FROM experiments ORDER BY id")
            )
            # The first winner ruled until the second experiment started; the newest still rules.
            assert [(name, str(until)[:10] if until else None) for name, until in rows] == [
                ("first", "2026-11-08"),
                ("second", None),  # no winner: nothing ruled
                ("third", None),
            ]
        from app.recs.experiment import ruling_experiment

        assert ruling_experiment().name == "third"
        downgrade(directory=str(MIGRATIONS), revision="0004_slate_cards")
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM experiments")).scalar() == 3
        db.engine.dispose()


def test_0003_finishes_an_attempt_that_stopped_halfway_on_sqlite(tmp_path):
    """SQLite keeps the DDL of a migration that failed midway; a second run must go on."""
    from flask_migrate import upgrade
    from sqlalchemy import inspect, text

    from app import create_app
    from tests.conftest import _test_config

    url = "sqlite:///" + str(tmp_path / "halfway.db")
    app = create_app(_test_config(url, tmp_path))
    with app.app_context():
        upgrade(directory=str(MIGRATIONS), revision="0002_serving_indexes")
        with db.engine.begin() as connection:  # what the first attempt had done
            connection.execute(
                text("ALTER TABLE challenges ADD COLUMN version INTEGER DEFAULT '1' NOT NULL")
            )
            connection.execute(text("ALTER TABLE categories ADD COLUMN name_key VARCHAR(320)"))
        upgrade(directory=str(MIGRATIONS))
        schema = inspect(db.engine)
        assert "creation_token" in {c["name"] for c in schema.get_columns("challenges")}
        assert "uq_experiments_one_running" in {
            i["name"] for i in schema.get_indexes("experiments")
        }
        db.engine.dispose()


def test_0007_counts_attempts_stored_before_it_as_registrations(tmp_path):
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    from app import create_app
    from app.auth import attempts
    from app.models import utcnow
    from tests.conftest import _test_config

    url = "sqlite:///" + str(tmp_path / "migrate.db")
    app = create_app({**_test_config(url, tmp_path), "REGISTRATION_RATE_LIMIT": 2})
    with app.app_context():
        upgrade(directory=str(MIGRATIONS), revision="0006_id_high_water")
        with db.engine.begin() as connection:
            for _ in range(2):
                connection.execute(
                    text("INSERT INTO login_attempts (address, attempted_at) VALUES (:a, :at)"),
                    {"a": "10.0.0.1", "at": utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")},
                )
        upgrade(directory=str(MIGRATIONS))
        with app.test_request_context():
            key = attempts.account_key("someone@uni.test")
            # Failures or registrations, they named no account: the conservative reading.
            assert attempts.refusal("10.0.0.1", None) is attempts.Refusal.ADDRESS
            assert attempts.refusal("10.0.0.2", None) is None
            assert attempts.refusal("10.0.0.1", key) is None
            db.session.rollback()
        downgrade(directory=str(MIGRATIONS), revision="0006_id_high_water")
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM login_attempts")).scalar() == 2
        db.engine.dispose()


def test_0008_composes_stored_emails_and_leaves_look_alikes_as_they_are(tmp_path, capfd):
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app import create_app
    from app.models import User
    from tests.conftest import _test_config

    url = "sqlite:///" + str(tmp_path / "migrate.db")
    app = create_app(_test_config(url, tmp_path))
    decomposed, twin, composed = "mu\u0308ller@uni.test", "a\u0308@uni.test", "\u00e4@uni.test"
    with app.app_context():
        upgrade(directory=str(MIGRATIONS), revision="0007_login_attempt_accounts")
        with db.engine.begin() as connection:
            for email in (decomposed, twin, composed):
                connection.execute(
                    text(
                        "INSERT INTO users (email, display_name, password_hash, role, active,"
                        " session_token, created_at) VALUES (:e, 'X', 'x', 'student', 1, 't',"
                        " '2026-11-01 00:00:00')"
                    ),
                    {"e": email},
                )
        upgrade(directory=str(MIGRATIONS))
        with db.engine.connect() as connection:
            stored = [
                row[0] for row in connection.execute(text("SELECT email FROM users ORDER BY id"))
            ]
        assert stored == ["m\u00fcller@uni.test", twin, composed]
        # Alembic's logging setup writes warnings to the console, where the operator sees them.
        assert "its composed form" in capfd.readouterr().err
        # Typed either way, the first is found.
        for typed in (decomposed, "M\u00dcLLER@uni.test"):
            found = db.session.scalar(select(User).where(User.email == User.normalize_email(typed)))
            assert found is not None
        db.engine.dispose()


def _scratch_database(tmp_path, name: str) -> str:
    """A database of its own: SQLite in tmp_path, or a fresh one on the PostgreSQL server the
    suite runs against (TEST_DATABASE_URL), so a migration is tried on both."""
    import os

    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        return "sqlite:///" + str(tmp_path / f"{name}.db")
    from tests.conftest import _postgres_database

    return _postgres_database(base, name)


def test_0010_takes_restores_and_downgrading_keeps_what_each_student_chose(tmp_path):
    """After 0010 a restore can be stored and nothing else new; downgrading deletes each
    restore with the dismissals it took back, so no restored challenge is hidden again, and
    keeps a dismissal that came after."""
    import pytest
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from app import create_app
    from tests.conftest import _test_config

    app = create_app(_test_config(_scratch_database(tmp_path, "migrate_0010"), tmp_path))
    insert = text(
        "INSERT INTO recommendation_events (event_id, user_id, challenge_id, type, created_at)"
        " VALUES (:e, 1, :c, :t, :at)"
    )
    with app.app_context():
        upgrade(directory=str(MIGRATIONS), revision="0009_slate_day_index")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (id, email, display_name, password_hash, role, active,"
                    " session_token, created_at) VALUES (1, 's@uni.test', 'S', 'x', 'student',"
                    " true, 't', '2026-11-01 00:00:00')"
                )
            )
            connection.execute(text("INSERT INTO categories (id, name) VALUES (1, 'C')"))
            for challenge in (1, 2):
                connection.execute(
                    text(
                        "INSERT INTO challenges (id, title, description, category_id, owner_id,"
                        " reward_points, status, starts_at, created_at, updated_at, version,"
                        " participations_count) VALUES (:c, :t, '', 1, 1, 1, 'published',"
                        " '2026-11-01 00:00:00', '2026-11-01 00:00:00', '2026-11-01 00:00:00',"
                        " 1, 0)"
                    ),
                    {"c": challenge, "t": f"C{challenge}"},
                )
            connection.execute(insert, {"e": "d1", "c": 1, "t": "dismiss", "at": "2026-11-02"})
            connection.execute(insert, {"e": "d2", "c": 2, "t": "dismiss", "at": "2026-11-02"})
        upgrade(directory=str(MIGRATIONS))
        with db.engine.begin() as connection:
            connection.execute(insert, {"e": "r1", "c": 1, "t": "restore", "at": "2026-11-03"})
            connection.execute(insert, {"e": "r2", "c": 2, "t": "restore", "at": "2026-11-03"})
            connection.execute(insert, {"e": "d3", "c": 2, "t": "dismiss", "at": "2026-11-04"})
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(insert, {"e": "x", "c": 1, "t": "undismiss", "at": "2026-11-05"})
        downgrade(directory=str(MIGRATIONS), revision="0009_slate_day_index")
        with db.engine.connect() as connection:
            kept = connection.execute(
                text("SELECT event_id FROM recommendation_events ORDER BY id")
            ).scalars()
            # Challenge 1 stays restored (nothing hides it); challenge 2's later dismissal stands.
            assert kept.all() == ["d3"]
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(insert, {"e": "r3", "c": 1, "t": "restore", "at": "2026-11-05"})
        upgrade(directory=str(MIGRATIONS))
        db.engine.dispose()


def test_0010_validates_the_wider_check_on_postgresql_after_committing_it(tmp_path, capsys):
    """Alembic runs a migration in one transaction: validated inside it, the check of every
    stored event would run under the ACCESS EXCLUSIVE lock its ALTERs took, and every page's
    events would wait for it. The offline script shows where the transactions end."""
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from tests.conftest import _test_config

    # Offline: nothing connects to this server.
    app = create_app(_test_config("postgresql+psycopg://nobody@/offline", tmp_path))
    with app.app_context():
        upgrade(str(MIGRATIONS), "0009_slate_day_index:0010_restore_events", sql=True)
        upgrading = capsys.readouterr().out
        downgrade(str(MIGRATIONS), "0010_restore_events:0009_slate_day_index", sql=True)
        downgrading = capsys.readouterr().out
    for script in (upgrading, downgrading):
        added = script.index("NOT VALID;")
        validated = script.index("VALIDATE CONSTRAINT")
        assert "COMMIT;" in script[added:validated]
