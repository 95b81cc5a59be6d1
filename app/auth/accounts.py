"""Changing what an account may do, and handing a professor's challenges to another: the one set
of rules the admin *Users* page and `flask users role | activate | deactivate | hand-over | delete`
share."""

from __future__ import annotations

import logging

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.exc import InvalidRequestError

from app.extensions import db
from app.models import ROLES, Challenge, Role, User

log = logging.getLogger(__name__)

MOVE_CHUNK = 10_000
# PostgreSQL's advisory lock key for account changes: any fixed 64-bit number, unlike the
# scheduler's (app/recs/scheduler.py).
ACCOUNTS_LOCK_KEY = 0x43414D5055534143


# Who may own challenges: an active professor or admin. The one rule the hand-over, the edit
# form's Owner list and its check at save time share.
OWNER_ROLES = (Role.PROFESSOR.value, Role.ADMIN.value)


def can_own_challenges(user: User) -> bool:
    return user.role in OWNER_ROLES and user.active


def can_own_challenges_clause():
    """``can_own_challenges`` as an SQL condition on ``User``."""
    return and_(User.role.in_(OWNER_ROLES), User.active.is_(True))


class RoleChangeRefused(ValueError):
    """A role change that would strand challenges or the campus without a manager."""


class HandOverRefused(ValueError):
    """A hand-over to an account that cannot manage challenges."""


def change_role(user: User, role: str, by: User | None = None) -> bool:
    """Give ``user`` the ``role``; False when they already have it. Refused: a role that does not
    exist, an admin changing their own role (they would lock themselves out of this very page),
    the last active admin, and a professor or admin who still owns challenges becoming a student
    (students cannot manage them; ``hand_over_challenges`` moves them first)."""
    lock_accounts()
    db.session.refresh(user)  # as it is now that no other account change can interleave
    if role not in ROLES:
        raise RoleChangeRefused(f"“{role[:20]}” is not a role; choose one of {', '.join(ROLES)}.")
    if user.role == role:
        return False
    if by is not None and by.id == user.id:
        raise RoleChangeRefused("You cannot change your own role.")
    if is_last_active_admin(user):
        raise RoleChangeRefused(f"{user.email} is the only active admin.")
    owned = db.session.scalar(select(func.count(Challenge.id)).where(Challenge.owner_id == user.id))
    if role == Role.STUDENT.value and owned:
        raise RoleChangeRefused(
            f"{user.email} owns {owned} challenge{'' if owned == 1 else 's'}, which a student "
            "cannot manage; hand them over to a professor or admin first."
        )
    previous, user.role = user.role, role
    db.session.commit()
    log.info(
        "role of user_id=%s changed from %s to %s by %s",
        user.id,
        previous,
        role,
        f"user_id={by.id}" if by is not None else "the command line",
    )
    return True


class ActivationRefused(ValueError):
    """A deactivation that would lock out the one deactivating, or the campus's last admin."""


def set_active(user: User, active: bool, by: User | None = None) -> bool:
    """Activate or deactivate ``user``; False when they already are. Either way every session of
    theirs ends (a new session token), so a deactivated account is logged out at once. Refused:
    an admin deactivating their own account, and the last active admin."""
    lock_accounts()
    db.session.refresh(user)
    if not active and by is not None and by.id == user.id:
        raise ActivationRefused("You cannot deactivate your own account.")
    if not active and is_last_active_admin(user):
        raise ActivationRefused(f"{user.email} is the only active admin.")
    if user.active == active:
        return False
    user.active = active
    user.rotate_session_token()
    db.session.commit()
    log.info(
        "user %s user_id=%s by %s",
        "activated" if active else "deactivated",
        user.id,
        f"admin user_id={by.id}" if by is not None else "the command line",
    )
    return True


def lock_accounts() -> None:
    """Take the accounts' write lock before reading what a change depends on, so two admins
    acting at once (each demoting or deactivating the other, or one handing challenges to an
    account the other demotes) are checked one after the other. Held until the transaction
    ends. On PostgreSQL a transaction advisory lock: it locks no row, so writes that merely
    refer to an account (a challenge given to one, an event) go on meanwhile. On SQLite a no-op
    write takes the database's write lock; pysqlite reads outside a transaction until then, so
    what follows reads the latest state."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ACCOUNTS_LOCK_KEY})
    else:
        db.session.execute(text("UPDATE users SET id = id WHERE role = 'admin'"))


def is_last_active_admin(user: User) -> bool:
    """Call under ``lock_accounts``."""
    if user.role != Role.ADMIN.value or not user.active:
        return False
    others = db.session.scalar(
        select(func.count(User.id)).where(
            User.role == Role.ADMIN.value, User.active.is_(True), User.id != user.id
        )
    )
    return not others


def hand_over_challenges(
    owner: User, heir: User, by: User | None = None, only: list[int] | None = None
) -> list[int]:
    """Make ``heir`` the owner of every challenge ``owner`` has (drafts and archived ones too),
    or of those of ``only`` that ``owner`` still has (a hand-over taken back); students'
    participations stay. Returns the ids moved. Refused unless ``heir`` is another, active
    professor or admin."""
    # Under the accounts' lock, as role changes are: a demotion of the heir waits, and cannot
    # leave a student owning what was just handed over.
    lock_accounts()
    try:
        for account in (owner, heir):
            db.session.refresh(account)
    except InvalidRequestError:  # deleted meanwhile (flask users delete)
        db.session.rollback()
        raise HandOverRefused("That account no longer exists.") from None
    problem = heir_problem(owner, heir)
    if problem:
        raise HandOverRefused(problem)
    moved = move_challenges(owner.id, heir.id, only)
    db.session.commit()
    # The ids: what it takes to hand exactly these back (flask users hand-over --only).
    log.info(
        "%s challenge(s) of user_id=%s handed to user_id=%s by %s: ids %s",
        len(moved),
        owner.id,
        heir.id,
        f"user_id={by.id}" if by is not None else "the command line",
        ",".join(map(str, moved)),
    )
    return moved


def heir_problem(owner: User, heir: User) -> str | None:
    """Why ``heir`` cannot take over ``owner``'s challenges, or None."""
    if heir.id == owner.id:
        return "Choose another account to hand the challenges to."
    if not can_own_challenges(heir):
        return f"{heir.email} is not an active professor or admin."
    return None


def move_challenges(owner_id: int, heir_id: int, only: list[int] | None = None) -> list[int]:
    """One SQL update, in the caller's transaction: it cannot trip over an edit saved meanwhile,
    and the version bump tells any edit form still open on these challenges that the owner
    changed. ``only``: just these ids, those ``owner_id`` still has. Returns the ids moved."""
    moving = (
        update(Challenge)
        .where(Challenge.owner_id == owner_id)
        .values(owner_id=heir_id, version=Challenge.version + 1)
        .returning(Challenge.id)
        .execution_options(synchronize_session=False)
    )
    if only is None:
        return sorted(db.session.execute(moving).scalars())
    moved: list[int] = []
    # In parts: PostgreSQL takes at most 65,535 parameters in one statement.
    for start in range(0, len(only), MOVE_CHUNK):
        part = only[start : start + MOVE_CHUNK]
        moved += db.session.execute(moving.where(Challenge.id.in_(part))).scalars()
    return sorted(moved)
