"""indexes for serving's per-request reads

Every recommendation request asks for the catalogue's fingerprint (challenge count, latest
``challenges.updated_at``) to know whether its per-process caches still hold, and loads the
student's clicks and dismissals from ``recommendation_events``. Without these indexes the first is
a scan of the challenges table, and the second reads every event of the student, impressions
included (six more per page they load).

Revision ID: 0002_serving_indexes
Revises: 0001_initial
Create Date: 2026-11-26 08:40:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0002_serving_indexes'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        batch_op.create_index('ix_challenges_updated_at', ['updated_at'], unique=False)
    with op.batch_alter_table('recommendation_events', schema=None) as batch_op:
        batch_op.create_index('ix_recommendation_events_user_type', ['user_id', 'type'], unique=False)


def downgrade():
    with op.batch_alter_table('recommendation_events', schema=None) as batch_op:
        batch_op.drop_index('ix_recommendation_events_user_type')
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        batch_op.drop_index('ix_challenges_updated_at')
