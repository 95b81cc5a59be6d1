"""What may be recommended to whom: eligible challenges and a student's joined / dismissed history.

Serving, the heuristic and the training pipeline all read eligibility from here, so "never recommend
a joined, dismissed, ended, archived or draft challenge" is decided in one place.
``scoring_catalogue`` keeps the heuristic's inputs for every published challenge per process.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

import numpy as np
from flask import current_app
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import aliased, joinedload

from app.extensions import db
from app.models import (
    Challenge,
    ChallengeStatus,
    Participation,
    ParticipationStatus,
    RecommendationEvent,
)

# The training's event names (``data.read_database``): a participation is a "join", plus a
# "complete" once completed; clicks and dismisses come from the event log. A "restore" is no
# signal of its own: it takes back the dismisses before it (``dismissal_stands``).
FEEDBACK_EVENTS = ("click", "dismiss")
EXTENSION_KEY = "recs_scoring_catalogue"
# The fingerprint sees every change to a challenge (a join bumps its counter and so updated_at);
# this bound covers what it cannot see: joins sliding out of the recent window as time passes,
# and a commit that lands after a later-stamped one. Scores lag by at most this much, never
# eligibility, which the page's own query checks again.
CATALOGUE_MAX_AGE = timedelta(seconds=10)


def dismissal_stands(dismiss=RecommendationEvent) -> ColumnElement[bool]:
    """True for a ``dismiss`` row no restore of the same student and challenge came at or after.

    "Not interested" is taken back by storing a ``restore``, never by deleting the dismiss, so the
    history stays whole; serving, training and the event endpoint all read a dismissal through
    this condition (a later dismiss stands again)."""
    restore = aliased(RecommendationEvent, name="restore")
    return ~exists().where(
        restore.user_id == dismiss.user_id,
        restore.challenge_id == dismiss.challenge_id,
        restore.type == "restore",
        restore.created_at >= dismiss.created_at,
    )


@dataclass(frozen=True)
class UserHistory:
    """A student's participations, clicks and dismissals, loaded in one query.

    ``interactions`` holds (challenge_id, event, epoch seconds, times it happened) in the
    training's vocabulary, so serving can rebuild the student's row of the interaction matrix
    (fold-in): repeated clicks on one challenge are one entry with their count and the latest
    moment, so the history stays one row per challenge and event however often a student
    clicks. ``changed_at`` is the student's latest join, leave, completion, click, dismiss or
    restore; ``dismissed_ids`` holds only the dismissals no restore took back.
    """

    joined_ids: frozenset[int] = frozenset()
    dismissed_ids: frozenset[int] = frozenset()
    category_counts: dict[int, int] = field(default_factory=dict)
    interactions: tuple[tuple[int, str, float, int], ...] = ()
    titles: dict[int, str] = field(default_factory=dict)
    changed_at: datetime | None = None

    @property
    def excluded_ids(self) -> frozenset[int]:
        return self.joined_ids | self.dismissed_ids


def load_user_history(user_id: int) -> UserHistory:
    return _history(db.session.execute(_history_statement(), {"user_id": user_id}))


@cache
def _history_statement():
    # Built once: composing the union costs more than running it for one student.
    participations = (
        select(
            Participation.challenge_id,
            Challenge.category_id,
            Challenge.title,
            Challenge.status,
            Participation.status,
            Participation.joined_at,
            Participation.updated_at,
            literal(1, Integer),
        )
        .join(Challenge, Challenge.id == Participation.challenge_id)
        .where(Participation.user_id == bindparam("user_id"))
    )
    latest = func.max(RecommendationEvent.created_at)
    feedback = (
        select(
            RecommendationEvent.challenge_id,
            Challenge.category_id,
            Challenge.title,
            Challenge.status,
            RecommendationEvent.type,
            latest,
            latest,
            func.count(),
        )
        .join(Challenge, Challenge.id == RecommendationEvent.challenge_id)
        .where(
            RecommendationEvent.user_id == bindparam("user_id"),
            RecommendationEvent.type.in_((*FEEDBACK_EVENTS, "restore")),
            or_(RecommendationEvent.type != "dismiss", dismissal_stands()),
        )
        .group_by(
            RecommendationEvent.challenge_id,
            Challenge.category_id,
            Challenge.title,
            Challenge.status,
            RecommendationEvent.type,
        )
    )
    return union_all(participations, feedback)


def _history(rows: Iterable[tuple]) -> UserHistory:
    joined, dismissed, categories = set(), set(), Counter()
    interactions, titles, moments = [], {}, []
    for challenge_id, category_id, title, status, kind, happened_at, updated_at, count in rows:
        # Each change is dated as the training dates it (``data.read_database``), so a student
        # whose data the training read in full is never taken for one who acted since.
        if kind == ParticipationStatus.LEFT.value:
            moments.append(updated_at)
            continue
        moments.append(happened_at)
        if kind == "restore":  # the student's row changed: the dismissal it took back is gone
            continue
        if kind == "dismiss":
            dismissed.add(challenge_id)
            interactions.append((challenge_id, "dismiss", happened_at.timestamp(), count))
            continue
        # The reasons quote these titles: a challenge taken back to draft (and perhaps renamed)
        # since is not public, and its reason falls back to the category's phrase.
        if status != ChallengeStatus.DRAFT.value:
            titles[challenge_id] = title
        if kind == "click":
            interactions.append((challenge_id, "click", happened_at.timestamp(), count))
            continue
        joined.add(challenge_id)
        categories[category_id] += 1
        interactions.append((challenge_id, "join", happened_at.timestamp(), 1))
        if kind == ParticipationStatus.COMPLETED.value:
            completed_at = max(happened_at, updated_at)
            moments.append(completed_at)
            interactions.append((challenge_id, "complete", completed_at.timestamp(), 1))
    return UserHistory(
        frozenset(joined),
        frozenset(dismissed),
        dict(categories),
        tuple(sorted(interactions)),
        titles,
        max(moments, default=None),
    )


def excluded_challenge_ids(user_id: int) -> frozenset[int]:
    """Challenges never to recommend to this student: joined (not left) or dismissed (and not
    restored since)."""
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
    return is_open(challenge.status, challenge.ends_at, now)


def is_open(status: str, ends_at: datetime | None, now: datetime) -> bool:
    """``is_eligible`` on a challenge's columns, for rows read as plain tuples."""
    return status == ChallengeStatus.PUBLISHED.value and (ends_at is None or ends_at > now)


def load_open_challenges(ids: Iterable[int], now: datetime) -> dict[int, Challenge]:
    """id -> challenge (category loaded) of those ``ids`` still eligible at ``now``; one query."""
    return {i: c for i, c in load_challenges(ids).items() if is_eligible(c, now)}


def open_challenge_ids(ids: Iterable[int], now: datetime) -> set[int]:
    """Those of ``ids`` still eligible at ``now``, without loading the challenges; one query."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    rows = db.session.execute(_open_ids_statement(), {"ids": wanted})
    return {challenge_id for challenge_id, status, ends_at in rows if is_open(status, ends_at, now)}


def load_challenges(ids: Iterable[int]) -> dict[int, Challenge]:
    """id -> challenge (category loaded) for ``ids``, by primary key; one query."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    found = db.session.scalars(_challenges_by_id_statement(), {"ids": wanted})
    return {challenge.id: challenge for challenge in found}


@cache
def _open_ids_statement():
    # As in ``_challenges_by_id_statement``: by primary key, eligibility checked in Python.
    return select(Challenge.id, Challenge.status, Challenge.ends_at).where(
        Challenge.id.in_(bindparam("ids", expanding=True))
    )


@cache
def _challenges_by_id_statement():
    # Eligibility is checked on the loaded rows, not in SQL: given the status too, SQLite picks
    # the (status, starts_at) index and reads every published challenge instead of a few by id.
    # Built once: building the statement would cost about what running it does.
    return (
        select(Challenge)
        .where(Challenge.id.in_(bindparam("ids", expanding=True)))
        .options(joinedload(Challenge.category))
    )


def candidates_with_recent_joins(
    now: datetime, exclude_ids: Iterable[int], window: timedelta
) -> list[tuple[Challenge, int]]:
    """Eligible challenges (category loaded) and their joins within ``window``, in id order."""
    catalogue = scoring_catalogue(now, window)
    rows = catalogue.open_rows(now, exclude_ids)
    loaded = load_open_challenges(catalogue.ids[rows].tolist(), now)
    return [
        (loaded[challenge_id], int(joins))
        for challenge_id, joins in zip(
            catalogue.ids[rows].tolist(), catalogue.recent_joins[rows].tolist(), strict=True
        )
        if challenge_id in loaded
    ]


# --- the heuristic's inputs, kept per process -----------------------------------------------------

Fingerprint = tuple[int, datetime | None]


def catalogue_fingerprint() -> Fingerprint:
    """(number of challenges, latest ``updated_at``): moves when a challenge is added, deleted,
    edited, joined or left. Cheap enough to ask on every request."""
    count, latest = db.session.execute(_fingerprint_statement()).one()
    return int(count), latest


@cache
def _fingerprint_statement():
    # Two scalar subqueries, not one aggregate: each is then answered from an index.
    return select(
        select(func.count()).select_from(Challenge).scalar_subquery(),
        select(func.max(Challenge.updated_at)).scalar_subquery(),
    )


@dataclass(frozen=True)
class ScoringCatalogue:
    """Every published challenge's scoring inputs as parallel arrays, in id order; dates are epoch
    seconds (``ends_at`` +inf when open-ended); ``recent_joins`` counts the joins (not left) within
    ``window`` before ``counted_at``."""

    fingerprint: Fingerprint
    counted_at: datetime
    window: timedelta
    ids: np.ndarray
    category_ids: np.ndarray
    rewards: np.ndarray
    participations: np.ndarray
    starts_at: np.ndarray
    ends_at: np.ndarray
    recent_joins: np.ndarray

    def open_rows(self, now: datetime, exclude_ids: Iterable[int] = ()) -> np.ndarray:
        """Indices of the challenges that have not ended at ``now``, minus ``exclude_ids``."""
        keep = self.ends_at > now.timestamp()
        excluded = np.fromiter(exclude_ids, dtype=np.int64)
        if len(excluded):
            keep &= ~np.isin(self.ids, excluded)
        return np.flatnonzero(keep)

    def serves(self, fingerprint: Fingerprint, now: datetime, window: timedelta) -> bool:
        return (
            self.fingerprint == fingerprint
            and self.window == window
            and abs(now - self.counted_at) <= CATALOGUE_MAX_AGE
        )


def scoring_catalogue(
    now: datetime, window: timedelta, fingerprint: Fingerprint | None = None
) -> ScoringCatalogue:
    """The process's catalogue, reread when ``fingerprint`` (asked when not given) moved or it
    is older than ``CATALOGUE_MAX_AGE``."""
    current = catalogue_fingerprint() if fingerprint is None else fingerprint
    cache_ = _cache()
    cached = cache_.catalogue
    if cached is not None and cached.serves(current, now, window):
        return cached
    # One thread reloads; the server's other threads wait for it rather than load it again.
    with cache_.lock:
        cached = cache_.catalogue
        if cached is None or not cached.serves(current, now, window):
            cache_.catalogue = _load_catalogue(current, now, window)
        return cache_.catalogue


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.catalogue: ScoringCatalogue | None = None


def _cache() -> _Cache:
    # Per app, not per module: a process serves one app, while tests build many on one database.
    return current_app.extensions.setdefault(EXTENSION_KEY, _Cache())


def _load_catalogue(current: Fingerprint, now: datetime, window: timedelta) -> ScoringCatalogue:
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
        select(
            Challenge.id,
            Challenge.category_id,
            Challenge.reward_points,
            Challenge.participations_count,
            Challenge.starts_at,
            Challenge.ends_at,
            func.coalesce(recent.c.joins, 0),
        )
        .outerjoin(recent, recent.c.challenge_id == Challenge.id)
        .where(Challenge.status == ChallengeStatus.PUBLISHED.value)
        .order_by(Challenge.id)
    )
    columns = list(zip(*db.session.execute(stmt), strict=True)) or [()] * 7
    ids, categories, rewards, counts, starts, ends, joins = columns
    return ScoringCatalogue(
        fingerprint=current,
        counted_at=now,
        window=window,
        ids=np.asarray(ids, dtype=np.int64),
        category_ids=np.asarray(categories, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float64),
        participations=np.asarray(counts, dtype=np.float64),
        starts_at=np.asarray([s.timestamp() for s in starts], dtype=np.float64),
        ends_at=np.asarray(
            [np.inf if e is None else e.timestamp() for e in ends], dtype=np.float64
        ),
        recent_joins=np.asarray(joins, dtype=np.float64),
    )
