"""index challenges.updated_at

Serving asks for the catalogue's fingerprint (challenge count, latest ``updated_at``) on every
recommendation request to know whether its per-process caches still hold; without this index the
latest ``updated_at`` is a scan of the whole challenges table.

Revision ID: 0002_challenges_updated_at
Revises: 0001_initial
Create Date: 2026-11-26 08:40:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0002_challenges_updated_at'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        batch_op.create_index('ix_challenges_updated_at', ['updated_at'], unique=False)


def downgrade():
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        batch_op.drop_index('ix_challenges_updated_at')
