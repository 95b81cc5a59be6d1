"""guards against concurrent writes

Challenge versions, create-form tokens, category name keys, one running experiment:

- ``challenges.version``: bumped by every edit, so a save made from an older copy of the edit form
  is refused instead of silently overwriting someone else's change.
- ``challenges.creation_token``: the create form's one-time token, unique, so a form submitted
  twice (a double click, a resubmit) creates one challenge.
- ``categories.name_key``: the name as duplicates are judged (case-folded, compatibility forms,
  invisible format characters left out, spaces squashed), unique, so two look-alike names created
  at the same moment cannot both be stored. Existing names that this stricter rule finds alike
  (e.g. one with a zero-width space) are kept as they are: the later ones get their id appended
  to the key after an invisible separator no name's key can contain, and so does a key too long
  for the column.
- ``uq_experiments_one_running``: at most one running experiment. Where two were started at the
  same moment, the older is stopped without a winner; serving already followed the newest.

Revision ID: 0003_edit_conflicts
Revises: 0002_serving_indexes
Create Date: 2026-11-26 14:00:00

"""

import unicodedata
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003_edit_conflicts"
down_revision = "0002_serving_indexes"
branch_labels = None
depends_on = None

RUNNING = sa.text("status = 'running'")


def _name_key(name):
    # The rule of app.models.category_name_key as of this revision (a migration must not change
    # when the application's code does).
    visible = "".join(
        c for c in unicodedata.normalize("NFKC", name) if unicodedata.category(c) != "Cf"
    )
    return " ".join(visible.casefold().split())


def _add_column(table, column):
    # SQLite does not roll back DDL: after an attempt that stopped halfway, a second run goes on
    # from where the first stopped instead of failing on what already exists.
    if column.name not in {c['name'] for c in sa.inspect(op.get_bind()).get_columns(table)}:
        op.add_column(table, column)


def _create_index(table, name, columns, **kw):
    if name not in {i['name'] for i in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, columns, **kw)


def upgrade():
    # Only what SQLite can do in place (ADD COLUMN, CREATE INDEX): rebuilding a table that other
    # tables reference is what its batch mode would do otherwise.
    _add_column('challenges', sa.Column('version', sa.Integer(), server_default='1', nullable=False))
    _add_column('challenges', sa.Column('creation_token', sa.String(length=36), nullable=True))
    _create_index('challenges', 'uq_challenges_creation_token', ['creation_token'], unique=True)

    # Nullable, with no default: the previous release, still serving while this runs, writes new
    # categories without a key, and the category pages fill those in (app/admin/routes.py).
    _add_column('categories', sa.Column('name_key', sa.String(length=320), nullable=True))
    connection = op.get_bind()
    categories = sa.table('categories', sa.column('id', sa.Integer), sa.column('name', sa.String),
                          sa.column('name_key', sa.String))
    taken = set()
    for category_id, name in connection.execute(
        sa.select(categories.c.id, categories.c.name).order_by(categories.c.id)
    ).all():
        key = _name_key(name)
        if key in taken or len(key) > 320:
            # U+2063 is a format character, which no name's key contains: no collision possible.
            key = f"{key[:308]}\u2063{category_id}"
        taken.add(key)
        connection.execute(
            categories.update().where(categories.c.id == category_id).values(name_key=key)
        )
    _create_index('categories', 'uq_categories_name_key', ['name_key'], unique=True)

    experiments = sa.table('experiments', sa.column('id', sa.Integer),
                           sa.column('status', sa.String), sa.column('stopped_at', sa.DateTime))
    newest = connection.execute(
        sa.select(sa.func.max(experiments.c.id)).where(experiments.c.status == 'running')
    ).scalar()
    if newest is not None:
        now = datetime.now(UTC)
        if connection.dialect.name == 'sqlite':
            now = now.replace(tzinfo=None)
        connection.execute(
            experiments.update()
            .where(experiments.c.status == 'running', experiments.c.id < newest)
            .values(status='stopped', stopped_at=now)
        )
    _create_index('experiments', 'uq_experiments_one_running', ['status'], unique=True,
                  sqlite_where=RUNNING, postgresql_where=RUNNING)


def downgrade():
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+), for the same reason as above.
    op.drop_index('uq_experiments_one_running', table_name='experiments')
    op.drop_index('uq_categories_name_key', table_name='categories')
    op.drop_column('categories', 'name_key')
    op.drop_index('uq_challenges_creation_token', table_name='challenges')
    op.drop_column('challenges', 'creation_token')
    op.drop_column('challenges', 'version')
