"""cards the JSON API served

The API records no impressions: its clients report what they display. Storing the cards each API
page served lets the event endpoint refuse events about cards a slate never had, and take a card's
position and source from the server rather than from the client.

Revision ID: 0004_slate_cards
Revises: 0003_edit_conflicts
Create Date: 2026-11-26 14:40:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0004_slate_cards'
down_revision = '0003_edit_conflicts'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'recommendation_slate_cards',
        sa.Column('slate_id', sa.String(length=36), nullable=False),
        sa.Column('challenge_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ['challenge_id'], ['challenges.id'],
            name=op.f('fk_recommendation_slate_cards_challenge_id_challenges'), ondelete='CASCADE'
        ),
        sa.ForeignKeyConstraint(
            ['slate_id'], ['recommendation_slates.id'],
            name=op.f('fk_recommendation_slate_cards_slate_id_recommendation_slates'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint(
            'slate_id', 'challenge_id', name=op.f('pk_recommendation_slate_cards')
        ),
    )
    op.create_index(
        'uq_recommendation_slate_cards_position',
        'recommendation_slate_cards',
        ['slate_id', 'position'],
        unique=True,
    )


def downgrade():
    op.drop_index('uq_recommendation_slate_cards_position', table_name='recommendation_slate_cards')
    op.drop_table('recommendation_slate_cards')
