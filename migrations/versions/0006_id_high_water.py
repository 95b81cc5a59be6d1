"""no account id is ever given twice on SQLite

SQLite numbers a new row one past the highest id in its table, so deleting the newest account
handed its id to the next one; model artifacts and exported files still naming that id then named
a different person. ``id_high_water`` keeps the highest id ever given out once an account has been
deleted, and new accounts are numbered past it (``app/models.py``). Deletions made before this
revision are not known, so nothing is backfilled.

Revision ID: 0006_id_high_water
Revises: 0005_experiment_winner_until
Create Date: 2026-11-26 20:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006_id_high_water'
down_revision = '0005_experiment_winner_until'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'id_high_water',
        sa.Column('table_name', sa.String(length=64), nullable=False),
        sa.Column('value', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('table_name', name=op.f('pk_id_high_water')),
    )


def downgrade():
    op.drop_table('id_high_water')
