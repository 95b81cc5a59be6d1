"""emails are stored composed (NFC)

``User.normalize_email`` now also composes an address (NFC), so one typed with "u" and a combining
mark is the same as one typed with "ü". Stored addresses are composed here, so their owners still
log in. An address whose composed form another account already has is left as it is and
reported with both ids: its account can no longer log in (every lookup composes what is typed,
and finds the other), and should be deactivated on the admin Users page.

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
    rows = connection.execute(sa.select(users.c.id, users.c.email).order_by(users.c.id)).all()
    taken = {email: user_id for user_id, email in rows}
    for user_id, email in rows:
        composed = unicodedata.normalize("NFC", email).lower()
        if composed == email:
            continue
        if composed in taken:
            log.warning(
                "email of user id %s left as it is: its composed form %r is the email of user "
                "id %s, so user id %s can no longer log in; deactivate it on the admin Users "
                "page (flask users commands would find user id %s by that address)",
                user_id,
                composed,
                taken[composed],
                user_id,
                taken[composed],
            )
            continue
        connection.execute(users.update().where(users.c.id == user_id).values(email=composed))
        del taken[email]
        taken[composed] = user_id


def downgrade():
    pass
