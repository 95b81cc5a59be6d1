"""failed logins are counted per account as well as per address

``login_attempts.account`` names the account a failure was for, as a keyed hash of the email
typed (``app/auth/attempts.py``), so the budget that stops password guessing is per account and
address, and a campus behind one NAT address no longer shares it. Attempts stored before this
revision name no account: they count against their address's registrations only, and expire
within ten windows.

Revision ID: 0007_login_attempt_accounts
Revises: 0006_id_high_water
Create Date: 2026-11-26 21:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0007_login_attempt_accounts'
down_revision = '0006_id_high_water'
branch_labels = None
depends_on = None


def upgrade():
    # ALTER TABLE ... ADD COLUMN in place: SQLite rebuilds no table.
    op.add_column('login_attempts', sa.Column('account', sa.String(length=64), nullable=True))
    op.create_index(
        'ix_login_attempts_account_at', 'login_attempts', ['account', 'attempted_at'], unique=False
    )


def downgrade():
    op.drop_index('ix_login_attempts_account_at', table_name='login_attempts')
    op.drop_column('login_attempts', 'account')
