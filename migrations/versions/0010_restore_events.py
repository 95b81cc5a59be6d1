"""a student can take back "Not interested"

``recommendation_events.type`` may now be ``restore``: the student's "Undo" or "Recommend again"
of an earlier ``dismiss`` of the same challenge. Nothing is deleted when a student changes their
mind: a dismiss stands unless a restore of the same student and challenge came at or after it
(``app/recs/eligibility.py``), so serving and training read the same history both ways.

On PostgreSQL the wider CHECK constraint is added NOT VALID, committed, and then validated: the
check of existing rows then takes no lock that holds back the events every page writes (and cannot
fail: every type allowed before is allowed after). SQLite rebuilds the table (batch mode).

Downgrading cannot keep restores under the narrower constraint. So that no student has a
challenge hidden again that they asked to see, each restore is deleted with the dismissals it
took back (a dismiss after it stays); the number deleted is logged.

Revision ID: 0010_restore_events
Revises: 0009_slate_day_index
Create Date: 2026-11-27 12:00:00

"""
import logging

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010_restore_events'
down_revision = '0009_slate_day_index'
branch_labels = None
depends_on = None

log = logging.getLogger("app.migrations")

TABLE = 'recommendation_events'
CONSTRAINT = 'ck_recommendation_events_type'
BEFORE = ('impression', 'click', 'dismiss', 'join')
AFTER = (*BEFORE, 'restore')


def _condition(types):
    return "type IN (" + ", ".join(f"'{t}'" for t in types) + ")"


def _replace_check(types):
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint(op.f(CONSTRAINT), TABLE, type_='check')
        op.execute(
            f"ALTER TABLE {TABLE} ADD CONSTRAINT {CONSTRAINT} CHECK ({_condition(types)}) NOT VALID"
        )
        # Alembic runs a migration in one transaction, and the ALTERs above hold ACCESS
        # EXCLUSIVE until it ends: validating inside it would hold back every event written
        # meanwhile. Committed first, the check takes only VALIDATE's own lock (SHARE UPDATE
        # EXCLUSIVE), which lets rows be written, and new rows are checked from the commit on.
        with op.get_context().autocommit_block():
            op.execute(f"ALTER TABLE {TABLE} VALIDATE CONSTRAINT {CONSTRAINT}")
        return
    with op.batch_alter_table(TABLE, schema=None, recreate='always') as batch_op:
        batch_op.drop_constraint(op.f(CONSTRAINT), type_='check')
        batch_op.create_check_constraint(op.f(CONSTRAINT), _condition(types))


def upgrade():
    _replace_check(AFTER)


def downgrade():
    # The dismissals a restore took back: one of the same student and challenge at or before it.
    taken_back = (
        f"DELETE FROM {TABLE} WHERE type = 'dismiss' AND EXISTS (SELECT 1 FROM {TABLE} AS r"
        f" WHERE r.type = 'restore' AND r.user_id = {TABLE}.user_id"
        f" AND r.challenge_id = {TABLE}.challenge_id AND r.created_at >= {TABLE}.created_at)"
    )
    restore_rows = f"DELETE FROM {TABLE} WHERE type = 'restore'"
    if op.get_context().as_sql:  # a script (--sql): no counts to log
        op.execute(taken_back)
        op.execute(restore_rows)
    else:
        bind = op.get_bind()
        dismissals = bind.execute(sa.text(taken_back)).rowcount
        restores = bind.execute(sa.text(restore_rows)).rowcount
        if restores:
            log.warning(
                "downgrade deleted %s restore events and the %s dismissals they took back: the"
                " schema before 0010_restore_events cannot hold them",
                restores,
                dismissals,
            )
    _replace_check(BEFORE)
