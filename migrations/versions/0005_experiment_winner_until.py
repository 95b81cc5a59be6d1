"""when a stopped experiment's winner stopped being served to everyone

An experiment stopped with a winner serves that arm to every student. ``experiments.winner_until``
records when that ended: an admin handed serving back to the default (the model where it has
rows), or a newer experiment started. The winner stays on record instead of being cleared.
Experiments already followed by a newer one are stamped with that one's start.

Downgrading drops the column: the newest experiment's winner, handed back or not, then serves
everyone again, as it did before this revision.

Revision ID: 0005_experiment_winner_until
Revises: 0004_slate_cards
Create Date: 2026-11-26 19:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0005_experiment_winner_until'
down_revision = '0004_slate_cards'
branch_labels = None
depends_on = None


def upgrade():
    # ALTER TABLE ... ADD COLUMN in place: SQLite rebuilds no table.
    op.add_column(
        'experiments', sa.Column('winner_until', sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE experiments SET winner_until = ("
        " SELECT MIN(later.started_at) FROM experiments AS later WHERE later.id > experiments.id"
        ") WHERE winner IS NOT NULL AND id < (SELECT MAX(id) FROM experiments)"
    )


def downgrade():
    op.drop_column('experiments', 'winner_until')
