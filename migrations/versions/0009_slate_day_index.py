"""an index on when slates were shown

Online metrics count every impression, click and join on the day its slate was first shown, so a
click after midnight no longer lands on a day without its impression. Their queries pick the
range's slates by ``recommendation_slates.created_at``, then the slates' events by their index.

On PostgreSQL the index is built CONCURRENTLY, outside a transaction: every page with the
recommendations block inserts a slate, and a plain CREATE INDEX would hold those inserts for as
long as the build takes on a large table. A build that failed or was cancelled halfway leaves an
invalid index of that name behind; upgrading again drops it and builds it anew.

Revision ID: 0009_slate_day_index
Revises: 0008_composed_emails
Create Date: 2026-11-27 00:00:00

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0009_slate_day_index'
down_revision = '0008_composed_emails'
branch_labels = None
depends_on = None

INDEX = 'ix_recommendation_slates_created'


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
                op.drop_index(INDEX, table_name='recommendation_slates', postgresql_concurrently=True)
            op.create_index(
                INDEX,
                'recommendation_slates',
                ['created_at'],
                unique=False,
                postgresql_concurrently=True,
            )
        return
    with op.batch_alter_table('recommendation_slates', schema=None) as batch_op:
        batch_op.create_index(INDEX, ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('recommendation_slates', schema=None) as batch_op:
        batch_op.drop_index(INDEX)
