"""an index on restores, for whether a dismissal stands

Every dismiss the training, ``flask recs export`` and the pipeline's exclusions read is checked
for a later restore of the same student and challenge (``eligibility.dismissal_stands``). Without
an index for that check SQLite, which keeps no statistics here, looks through the student's events
since the dismiss (impressions mostly): reading 3 million events took 7 s instead of 0.8 s. The
index holds restores only, so the events every page writes cost nothing more.

On PostgreSQL the index is built CONCURRENTLY, outside a transaction, as 0009's is: a plain CREATE
INDEX would hold back the events every page writes while it scans the table. A build that failed
or was cancelled halfway leaves an invalid index of that name behind; upgrading again drops it and
builds it anew.

Revision ID: 0011_restore_index
Revises: 0010_restore_events
Create Date: 2026-11-27 13:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0011_restore_index'
down_revision = '0010_restore_events'
branch_labels = None
depends_on = None

TABLE = 'recommendation_events'
INDEX = 'ix_recommendation_events_restores'
COLUMNS = ['user_id', 'challenge_id', 'created_at']
RESTORES = sa.text("type = 'restore'")


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        context = op.get_context()
        with context.autocommit_block():
            # Offline (``--sql``) there is no database to ask: the script just builds the index.
            valid = None if context.as_sql else bind.execute(
                sa.text(
                    "SELECT i.indisvalid FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE c.relname = :name AND pg_table_is_visible(c.oid)"
                ),
                {"name": INDEX},
            ).scalar()
            if valid:
                return
            if valid is not None:  # left invalid by an interrupted build
                op.drop_index(INDEX, table_name=TABLE, postgresql_concurrently=True)
            op.create_index(
                INDEX, TABLE, COLUMNS, postgresql_where=RESTORES, postgresql_concurrently=True
            )
        return
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(INDEX, COLUMNS, sqlite_where=RESTORES)


def downgrade():
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index(INDEX)
