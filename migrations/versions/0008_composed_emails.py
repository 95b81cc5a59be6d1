"""emails are stored composed (NFC)

``User.normalize_email`` now also composes an address (NFC), so one typed with "u" and a combining
mark is the same as one typed with "ü". Stored addresses are composed here, so their owners still
log in. An address whose composed form another account already has is left as it is, and
reported: two accounts then look alike, and an admin should merge or rename one of them.

Downgrading changes nothing: composed addresses are valid under the older rule too.

Revision ID: 0008_composed_emails
Revises: 0007_login_attempt_accounts
Create Date: 2026-11-26 22:00:00

"""
import logging
import unicodedata

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0008_composed_emails'
down_revision = '0007_login_attempt_accounts'
branch_labels = None
depends_on = None

log = logging.getLogger("app.migrations")


def upgrade():
    connection = op.get_bind()
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('email', sa.String))
    rows = connection.execute(sa.select(users.c.id, users.c.email)).all()
    taken = {email for _, email in rows}
    for user_id, email in rows:
        composed = unicodedata.normalize("NFC", email).lower()
        if composed == email:
            continue
        if composed in taken:
            log.warning(
                "email of user id %s left as it is: its composed form %r belongs to another "
                "account",
                user_id,
                composed,
            )
            continue
        connection.execute(users.update().where(users.c.id == user_id).values(email=composed))
        taken.discard(email)
        taken.add(composed)


def downgrade():
    pass
