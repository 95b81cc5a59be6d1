"""What may be recommended to whom: eligible challenges and a student's joined / dismissed history.

Serving, the heuristic and the training pipeline all read eligibility from here, so "never recommend
a joined, dismissed, ended, archived or draft challenge" is decided in one place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, func, literal, null, or_, select, union_all
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.models import (
    Challenge,
    ChallengeStatus,
    Participation,
    ParticipationStatus,
    RecommendationEvent,
)

DISMISSED = "dismissed"


@dataclass(frozen=True)
class UserHistory:
    """A student's active participations and dismissals, loaded in one query."""

    joined_ids: frozenset[int] = frozenset()
    dismissed_ids: frozenset[int] = frozenset()
    category_counts: dict[int, int] = field(default_factory=dict)

    @property
    def excluded_ids(self) -> frozenset[int]:
        return self.joined_ids | self.dismissed_ids


def load_user_history(user_id: int) -> UserHistory:
    participations = (
        select(Participation.challenge_id, Challenge.category_id, Participation.status)
        .join(Challenge, Challenge.id == Participation.challenge_id)
        .where(
            Participation.user_id == user_id, Participation.status != ParticipationStatus.LEFT.value
        )
    )
    dismissals = select(RecommendationEvent.challenge_id, null(), literal(DISMISSED)).where(
        RecommendationEvent.user_id == user_id, RecommendationEvent.type == "dismiss"
    )
    joined, dismissed, categories = set(), set(), Counter()
    for challenge_id, category_id, status in db.session.execute(
        union_all(participations, dismissals)
    ):
        if status == DISMISSED:
            dismissed.add(challenge_id)
        else:
            joined.add(challenge_id)
            categories[category_id] += 1
    return UserHistory(frozenset(joined), frozenset(dismissed), dict(categories))


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
