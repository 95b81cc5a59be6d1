"""What may be recommended to whom: eligible challenges and a student's joined / dismissed history.

Serving, the heuristic and the training pipeline all read eligibility from here, so "never recommend
a joined, dismissed, ended, archived or draft challenge" is decided in one place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, func, or_, select, union_all
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.models import (
    Challenge,
    ChallengeStatus,
    Participation,
    ParticipationStatus,
    RecommendationEvent,
)

# The training's event names (``data.read_database``): a participation is a "join", plus a
# "complete" once completed; clicks and dismisses come from the event log.
FEEDBACK_EVENTS = ("click", "dismiss")


@dataclass(frozen=True)
class UserHistory:
    """A student's participations, clicks and dismissals, loaded in one query.

    ``interactions`` holds (challenge_id, event, epoch seconds) in the training's vocabulary, so
    serving can rebuild the student's row of the interaction matrix (fold-in); ``changed_at`` is
    the student's latest join, leave, completion, click or dismiss.
    """

    joined_ids: frozenset[int] = frozenset()
    dismissed_ids: frozenset[int] = frozenset()
    category_counts: dict[int, int] = field(default_factory=dict)
    interactions: tuple[tuple[int, str, float], ...] = ()
    titles: dict[int, str] = field(default_factory=dict)
    changed_at: datetime | None = None

    @property
    def excluded_ids(self) -> frozenset[int]:
        return self.joined_ids | self.dismissed_ids


def load_user_history(user_id: int) -> UserHistory:
    participations = (
        select(
            Participation.challenge_id,
            Challenge.category_id,
            Challenge.title,
            Participation.status,
            Participation.joined_at,
            Participation.updated_at,
        )
        .join(Challenge, Challenge.id == Participation.challenge_id)
        .where(Participation.user_id == user_id)
    )
    feedback = (
        select(
            RecommendationEvent.challenge_id,
            Challenge.category_id,
            Challenge.title,
            RecommendationEvent.type,
            RecommendationEvent.created_at,
            RecommendationEvent.created_at,
        )
        .join(Challenge, Challenge.id == RecommendationEvent.challenge_id)
        .where(
            RecommendationEvent.user_id == user_id,
            RecommendationEvent.type.in_(FEEDBACK_EVENTS),
        )
    )
    return _history(db.session.execute(union_all(participations, feedback)))


def _history(rows: Iterable[tuple]) -> UserHistory:
    joined, dismissed, categories = set(), set(), Counter()
    interactions, titles, moments = [], {}, []
    for challenge_id, category_id, title, kind, happened_at, updated_at in rows:
        # Each change is dated as the training dates it (``data.read_database``), so a student
        # whose data the training read in full is never taken for one who acted since.
        if kind == ParticipationStatus.LEFT.value:
            moments.append(updated_at)
            continue
        moments.append(happened_at)
        if kind == "dismiss":
            dismissed.add(challenge_id)
            interactions.append((challenge_id, "dismiss", happened_at.timestamp()))
            continue
        titles[challenge_id] = title
        if kind == "click":
            interactions.append((challenge_id, "click", happened_at.timestamp()))
            continue
        joined.add(challenge_id)
        categories[category_id] += 1
        interactions.append((challenge_id, "join", happened_at.timestamp()))
        if kind == ParticipationStatus.COMPLETED.value:
            completed_at = max(happened_at, updated_at)
            moments.append(completed_at)
            interactions.append((challenge_id, "complete", completed_at.timestamp()))
    return UserHistory(
        frozenset(joined),
        frozenset(dismissed),
        dict(categories),
        tuple(sorted(interactions)),
        titles,
        max(moments, default=None),
    )


def excluded_challenge_ids(user_id: int) -> frozenset[int]:
    """Challenges never to recommend to this student: joined (not left) or dismissed."""
    return load_user_history(user_id).excluded_ids


def eligible_challenges(now: datetime, exclude_ids: Iterable[int] = ()) -> Select:
    """``select(Challenge)`` of published challenges that have not ended, minus ``exclude_ids``."""
    stmt = select(Challenge).where(
        Challenge.status == ChallengeStatus.PUBLISHED.value,
        or_(Challenge.ends_at.is_(None), Challenge.ends_at > now),
    )
    excluded = sorted(set(exclude_ids))
    return stmt.where(Challenge.id.not_in(excluded)) if excluded else stmt


def is_eligible(challenge: Challenge, now: datetime) -> bool:
    """The in-memory twin of ``eligible_challenges`` for rows loaded by another query."""
    return challenge.status == ChallengeStatus.PUBLISHED.value and not challenge.has_ended(now)


def candidates_with_recent_joins(
    now: datetime, exclude_ids: Iterable[int], window: timedelta
) -> list[tuple[Challenge, int]]:
    """Eligible challenges (category loaded) and their joins within ``window``; one query."""
    recent = (
        select(Participation.challenge_id, func.count().label("joins"))
        .where(
            Participation.joined_at >= now - window,
            Participation.status != ParticipationStatus.LEFT.value,
        )
        .group_by(Participation.challenge_id)
        .subquery()
    )
    stmt = (
        eligible_challenges(now, exclude_ids)
        .add_columns(func.coalesce(recent.c.joins, 0))
        .outerjoin(recent, recent.c.challenge_id == Challenge.id)
        .options(joinedload(Challenge.category))
    )
    return [(challenge, int(joins)) for challenge, joins in db.session.execute(stmt)]
