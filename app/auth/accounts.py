"""Changing what an account may do: the one set of rules the admin page and `flask users role`
share."""

from __future__ import annotations

import logging

from sqlalchemy import func, select, text

from app.extensions import db
from app.models import ROLES, Challenge, Role, User

log = logging.getLogger(__name__)


class RoleChangeRefused(ValueError):
    """A role change that would strand challenges or the campus without a manager."""


def change_role(user: User, role: str, by: User | None = None) -> bool:
    """Give ``user`` the ``role``; False when they already have it. Refused: a role that does not
    exist, an admin changing their own role (they would lock themselves out of this very page),
    the last active admin, and a professor or admin who still owns challenges becoming a student
    (students cannot manage them; ``flask users delete --reassign-to`` hands them over)."""
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
            f"{user.email} owns {owned} challenge(s), which a student cannot manage; give each "
            "another owner first (the Owner field of its edit form)."
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


def lock_accounts() -> None:
    """Take the accounts' write lock before reading what a change depends on, so two admins
    acting at once (each demoting or deactivating the other) are checked one after the other
    and cannot leave the campus without an admin. On SQLite a no-op write takes the database's
    write lock; pysqlite reads outside a transaction until then, so what follows reads the
    latest state."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(
            select(User.id).where(User.role == Role.ADMIN.value).with_for_update()
        ).all()
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
