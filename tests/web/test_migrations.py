"""The migrations and the models describe the same schema (what ``flask db check`` verifies)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

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
