"""Joining and leaving challenges, with ``participations_count`` kept in the same transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Challenge, Participation, ParticipationStatus, utcnow

log = logging.getLogger(__name__)


class ParticipationError(Exception):
    """A join or leave that the challenge's state does not allow; the message is for the student."""


@dataclass(frozen=True)
class Outcome:
    changed: bool
    participation: Participation | None


def _bump_count(challenge_id: int, delta: int) -> None:
    # An SQL-side increment: concurrent joins cannot overwrite each other's count.
    db.session.execute(
        update(Challenge)
        .where(Challenge.id == challenge_id)
        .values(participations_count=Challenge.participations_count + delta)
        .execution_options(synchronize_session=False)
    )


def _count_join(challenge_id: int) -> bool:
    """``_bump_count`` for a join, only while the challenge is open: checked again in the
    statement that takes the row's write lock, so a professor archiving it (or an edit ending
    it) between the page's check and this write cannot leave a student joined to a closed
    challenge. Whether the row was counted."""
    now = utcnow()
    result = db.session.execute(
        update(Challenge)
        .where(
            Challenge.id == challenge_id,
            Challenge.status == "published",
            or_(Challenge.ends_at.is_(None), Challenge.ends_at > now),
        )
        .values(participations_count=Challenge.participations_count + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def join(
    user_id: int, challenge: Challenge, *, slate_id: str | None = None, source: str | None = None
) -> Outcome:
    """Join (or re-join after leaving). Idempotent: joining twice changes nothing the second time."""
    existing = db.session.scalar(
        select(Participation).where(
            Participation.user_id == user_id, Participation.challenge_id == challenge.id
        )
    )
    # A student already in it is told so, whatever became of the challenge since.
    if existing is not None and existing.status != ParticipationStatus.LEFT.value:
        return Outcome(False, existing)
    if challenge.status != "published":
        raise ParticipationError("This challenge is not open for joining.")
    if challenge.has_ended():
        raise ParticipationError("This challenge has already ended.")
    if existing is None:
        participation = Participation(
            user_id=user_id, challenge_id=challenge.id, slate_id=slate_id, source=source
        )
        db.session.add(participation)
        try:
            db.session.flush()
        except IntegrityError:
            # A concurrent request inserted the same (user, challenge) first: that join counts.
            db.session.rollback()
            return Outcome(
                False,
                db.session.scalar(
                    select(Participation).where(
                        Participation.user_id == user_id, Participation.challenge_id == challenge.id
                    )
                ),
            )
    else:
        # Only the request that flips the status counts the re-join.
        result = db.session.execute(
            update(Participation)
            .where(
                Participation.id == existing.id,
                Participation.status == ParticipationStatus.LEFT.value,
            )
            .values(
                status=ParticipationStatus.JOINED.value,
                joined_at=utcnow(),
                updated_at=utcnow(),
                slate_id=slate_id,
                source=source,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 0:
            db.session.rollback()
            return Outcome(False, existing)
        participation = existing
    if not _count_join(challenge.id):
        db.session.rollback()
        raise ParticipationError("This challenge is not open for joining.")
    db.session.commit()
    db.session.refresh(participation)
    log.info("join user_id=%s challenge_id=%s slate=%s", user_id, challenge.id, slate_id)
    return Outcome(True, participation)


def leave(user_id: int, challenge: Challenge) -> Outcome:
    """Leave a joined challenge. Idempotent; a completed participation stays completed."""
    existing = db.session.scalar(
        select(Participation).where(
            Participation.user_id == user_id, Participation.challenge_id == challenge.id
        )
    )
    if existing is None or existing.status == ParticipationStatus.LEFT.value:
        return Outcome(False, existing)
    if existing.status == ParticipationStatus.COMPLETED.value:
        raise ParticipationError("You already completed this challenge; it stays on your record.")
    if challenge.has_ended():
        raise ParticipationError("This challenge has ended; your participation is final.")
    if challenge.status == "archived":
        # Rejoining an archived challenge is refused, so leaving one could not be undone.
        raise ParticipationError(
            "This challenge is archived; your participation stays on your record."
        )
    result = db.session.execute(
        update(Participation)
        .where(
            Participation.id == existing.id,
            Participation.status == ParticipationStatus.JOINED.value,
        )
        .values(status=ParticipationStatus.LEFT.value, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        db.session.rollback()
        return Outcome(False, existing)
    _bump_count(challenge.id, -1)
    db.session.commit()
    db.session.refresh(existing)
    log.info("leave user_id=%s challenge_id=%s", user_id, challenge.id)
    return Outcome(True, existing)


def delete_participations_of(user_id: int) -> None:
    """Remove a user's participations and take them out of the challenges' counts (no commit)."""
    rows = (
        db.session.execute(
            select(Participation.challenge_id).where(
                Participation.user_id == user_id,
                Participation.status != ParticipationStatus.LEFT.value,
            )
        )
        .scalars()
        .all()
    )
    for challenge_id in rows:
        _bump_count(challenge_id, -1)
    db.session.execute(delete(Participation).where(Participation.user_id == user_id))


@dataclass(frozen=True)
class Marked:
    """What marking participants (not) completed did: user ids by what became of them."""

    changed: list[int]
    unchanged: list[int]  # already in the asked state
    refused: list[int]  # left the challenge, or never joined it


def mark_completed(challenge: Challenge, user_ids: list[int], completed: bool) -> Marked:
    """Mark the participations of ``user_ids`` in ``challenge`` completed (or back to joined).

    Only a current participant's status changes: one who left stays left, and a concurrent leave
    wins or loses as a whole because the update is conditional on the status it starts from.
    ``participations_count`` counts joined and completed alike, so it does not change."""
    to_status, from_status = (
        (ParticipationStatus.COMPLETED.value, ParticipationStatus.JOINED.value)
        if completed
        else (ParticipationStatus.JOINED.value, ParticipationStatus.COMPLETED.value)
    )
    wanted = sorted(set(user_ids))
    changed = list(
        db.session.scalars(
            update(Participation)
            .where(
                Participation.challenge_id == challenge.id,
                Participation.user_id.in_(wanted),
                Participation.status == from_status,
            )
            .values(status=to_status, updated_at=utcnow())
            .returning(Participation.user_id)
            .execution_options(synchronize_session=False)
        )
    )
    db.session.commit()
    statuses = dict(
        db.session.execute(
            select(Participation.user_id, Participation.status).where(
                Participation.challenge_id == challenge.id, Participation.user_id.in_(wanted)
            )
        ).all()
    )
    done = set(changed)
    unchanged = [u for u in wanted if u not in done and statuses.get(u) == to_status]
    refused = [u for u in wanted if u not in done and statuses.get(u) != to_status]
    return Marked(sorted(done), unchanged, refused)
