"""The synthetic campus as pure numbers, no database: students in a few latent taste clusters
that like neighbouring categories, challenges with skewed popularity, joins timed inside each
challenge's running window, and (optionally) recommendation slates with impressions and clicks.

Everything is drawn from one seeded RNG, and times are seconds relative to "now", so a seed gives
the same campus whatever day it is written (see app/demo.py for the writer).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from app.demo_text import CATEGORY_TEXTS, compose_description, compose_title, person_name
from app.models import ChallengeStatus, ParticipationStatus

DAY = 86_400.0
HISTORY_DAYS = 180
FUTURE_DAYS = 60
DURATION_DAYS = np.array([7, 14, 21, 28, 42, 56])
DURATION_WEIGHTS = np.array([0.15, 0.25, 0.2, 0.2, 0.1, 0.1])

# Taste model: each cluster likes three neighbouring categories (CATEGORY_TEXTS is a ring), so
# neighbouring clusters share one and interests correlate across categories.
CORE_WEIGHTS = np.array([0.45, 0.35, 0.2])
OFF_CORE_WEIGHT = 0.01
INTEREST_COUNT_P = np.array([0.3, 0.45, 0.25])  # 1, 2 or 3 interest categories
INTEREST_STRENGTH = np.array([1.0, 0.6, 0.35])
EXPLORE_WEIGHT = 0.01  # appeal of categories outside a student's interests
POPULARITY_SIGMA = 1.8
# Within a category each challenge appeals most to one cluster (a theory-minded group vs a hands-on
# one): structure that category affinity cannot see and collaborative filtering can.
HOME_CLUSTER_BOOST = 20.0
# Joins per student are gamma-Poisson (negative binomial): a few very active students, many light.
ACTIVITY_SHAPE = 3.0
RAMP_UP_DAYS = 21  # a challenge that has run for less than this has gathered fewer joins

SLATE_SIZE = 6
BASE_CLICK_RATE = 0.03
INTEREST_CLICK_RATE = 0.3


@dataclass(frozen=True)
class CampusShape:
    students: int
    challenges: int
    professors: int
    joins_per_student: float
    events_per_student: int = 0

    def validate(self) -> None:
        for name in ("students", "challenges", "professors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.joins_per_student < 0 or self.events_per_student < 0:
            raise ValueError("participations and events per student cannot be negative")


@dataclass(frozen=True)
class StudentPlan:
    cluster: np.ndarray  # (n,) taste cluster
    interest: np.ndarray  # (n, categories) strength; 0 outside the student's 1-3 categories
    names: list[str]


@dataclass(frozen=True)
class ChallengePlan:
    """Times are seconds relative to "now"; ``ends`` is NaN for an open-ended challenge."""

    category: np.ndarray
    owner: np.ndarray  # professor index
    status: np.ndarray  # ChallengeStatus values
    starts: np.ndarray
    ends: np.ndarray
    created: np.ndarray
    reward: np.ndarray
    appeal: np.ndarray  # (clusters, n): popularity x how much each cluster likes it
    titles: list[str]
    descriptions: list[str]

    @property
    def joinable_history(self) -> np.ndarray:
        """Challenges that were open to students at some point before now."""
        return (self.status != ChallengeStatus.DRAFT.value) & (self.starts < 0)

    @property
    def window_end(self) -> np.ndarray:
        return np.fmin(self.ends, 0.0)  # fmin: an open-ended challenge runs until now


@dataclass(frozen=True)
class ParticipationPlan:
    student: np.ndarray
    challenge: np.ndarray
    joined: np.ndarray
    updated: np.ndarray
    status: np.ndarray


@dataclass(frozen=True)
class EventPlan:
    slate: np.ndarray  # index into the slates
    challenge: np.ndarray
    type: np.ndarray
    position: np.ndarray
    created: np.ndarray


@dataclass(frozen=True)
class SlatePlan:
    student: np.ndarray
    created: np.ndarray
    ids: list[str]
    events: EventPlan


@dataclass(frozen=True)
class CampusPlan:
    shape: CampusShape
    students: StudentPlan
    professor_names: list[str]
    challenges: ChallengePlan
    participations: ParticipationPlan
    slates: SlatePlan | None


def plan_campus(shape: CampusShape, seed: int) -> CampusPlan:
    rng = np.random.default_rng(seed)
    tastes = taste_clusters(len(CATEGORY_TEXTS))
    challenges = _plan_challenges(rng, shape, tastes)
    students = _plan_students(rng, shape.students, tastes)
    participations = _plan_participations(rng, students, challenges, shape.joins_per_student)
    professor_names = [f"Prof. {person_name(rng)}" for _ in range(shape.professors)]
    slates = (
        _plan_slates(rng, students, challenges, shape.events_per_student)
        if shape.events_per_student
        else None
    )
    return CampusPlan(shape, students, professor_names, challenges, participations, slates)


def taste_clusters(categories: int) -> np.ndarray:
    """(clusters, categories) preference weights; each row sums to 1."""
    clusters = max(1, categories // 2)
    weights = np.full((clusters, categories), OFF_CORE_WEIGHT)
    for k in range(clusters):
        for offset, weight in enumerate(CORE_WEIGHTS):
            weights[k, (2 * k + offset) % categories] += weight
    return weights / weights.sum(axis=1, keepdims=True)


def _plan_challenges(
    rng: np.random.Generator, shape: CampusShape, tastes: np.ndarray
) -> ChallengePlan:
    n, n_categories = shape.challenges, tastes.shape[1]
    starts = np.floor(rng.uniform(-HISTORY_DAYS, FUTURE_DAYS, size=n) * DAY)
    created = np.minimum(
        starts - np.floor(rng.uniform(2, 21, size=n) * DAY),
        -np.floor(rng.uniform(0.5, 10, size=n) * DAY),
    )
    # Ids follow creation time, as they do in a live database.
    order = np.argsort(created, kind="stable")
    starts, created = starts[order], created[order]
    category = rng.integers(n_categories, size=n)
    duration = rng.choice(DURATION_DAYS, size=n, p=DURATION_WEIGHTS)
    ends = np.where(rng.random(n) < 0.05, np.nan, starts + duration * DAY)
    titles, descriptions = _challenge_texts(rng, category)
    return ChallengePlan(
        category=category,
        owner=_owners(rng, category, n_categories, shape.professors),
        status=_challenge_status(rng, starts, ends),
        starts=starts,
        ends=ends,
        created=created,
        reward=10 * (rng.integers(2, 9, size=n) + duration // 14),
        appeal=_appeal(rng, category, tastes),
        titles=titles,
        descriptions=descriptions,
    )


def _challenge_status(rng: np.random.Generator, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    draw = rng.random(starts.size)
    # Drafts are mostly challenges still being prepared; archives are ones that ended a while ago.
    draft = np.where(starts > 0, draw < 0.2, draw < 0.02)
    archived = (
        ~draft & (np.nan_to_num(ends, nan=0.0) < -30 * DAY) & (rng.random(starts.size) < 0.15)
    )
    status = np.full(starts.size, ChallengeStatus.PUBLISHED.value, dtype=object)
    status[draft] = ChallengeStatus.DRAFT.value
    status[archived] = ChallengeStatus.ARCHIVED.value
    return status


def _owners(
    rng: np.random.Generator, category: np.ndarray, categories: int, professors: int
) -> np.ndarray:
    # Each professor mostly teaches a band of neighbouring categories, with some guest challenges.
    owner = category * professors // categories
    guest = rng.random(category.size) < 0.15
    owner[guest] = rng.integers(professors, size=int(guest.sum()))
    return owner


def _appeal(rng: np.random.Generator, category: np.ndarray, tastes: np.ndarray) -> np.ndarray:
    clusters = tastes.shape[0]
    popularity = rng.lognormal(0.0, POPULARITY_SIGMA, size=category.size)
    home_p = tastes[:, category] / tastes[:, category].sum(axis=0)
    home = (rng.random(category.size) > np.cumsum(home_p, axis=0)).sum(axis=0)
    home = np.minimum(home, clusters - 1)  # guards the cumsum's last value rounding below 1
    boost = np.where(np.arange(clusters)[:, None] == home[None, :], HOME_CLUSTER_BOOST, 1.0)
    return popularity * boost * rng.lognormal(0.0, 0.3, size=(clusters, category.size))


def _challenge_texts(rng: np.random.Generator, category: np.ndarray) -> tuple[list[str], list[str]]:
    titles: list[str] = []
    descriptions: list[str] = []
    seen: set[str] = set()
    for index in category.tolist():
        text = CATEGORY_TEXTS[index]
        for _attempt in range(5):  # a few re-draws keep titles distinct on demo-sized campuses
            topic = text.topics[int(rng.integers(len(text.topics)))]
            title = compose_title(rng, text, topic)
            if title not in seen:
                break
        seen.add(title)
        titles.append(title)
        descriptions.append(compose_description(rng, text, topic))
    return titles, descriptions


def _plan_students(rng: np.random.Generator, count: int, tastes: np.ndarray) -> StudentPlan:
    clusters, categories = tastes.shape
    cluster_share = rng.dirichlet(np.full(clusters, 8.0))
    cluster = rng.choice(clusters, size=count, p=cluster_share)
    # Gumbel top-k: ranking log-weights plus Gumbel noise samples categories without replacement.
    keys = np.log(tastes[cluster]) + rng.gumbel(size=(count, categories))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    wanted = rng.choice(np.arange(1, INTEREST_COUNT_P.size + 1), size=count, p=INTEREST_COUNT_P)
    strength = np.append(INTEREST_STRENGTH, 0.0)[np.minimum(rank, INTEREST_STRENGTH.size)]
    interest = np.where(rank < wanted[:, None], strength, 0.0)
    return StudentPlan(
        cluster=cluster, interest=interest, names=[person_name(rng) for _ in range(count)]
    )


def _plan_participations(
    rng: np.random.Generator, students: StudentPlan, challenges: ChallengePlan, per_student: float
) -> ParticipationPlan:
    eligible = np.flatnonzero(challenges.joinable_history)
    n_students = students.cluster.size
    counts = rng.poisson(rng.gamma(ACTIVITY_SHAPE, per_student / ACTIVITY_SHAPE, size=n_students))
    # Nobody joins more than half of what was ever open, which keeps tastes visible in the joins.
    counts = np.minimum(counts, max(1, eligible.size // 2))
    if eligible.size == 0 or counts.sum() == 0:
        return _empty_participations()
    window_start = challenges.starts[eligible]
    window_end = challenges.window_end[eligible]
    ramp = np.clip((window_end - window_start) / (RAMP_UP_DAYS * DAY), 0.05, 1.0)
    cluster_weights = challenges.appeal[:, eligible] * ramp
    category = challenges.category[eligible]
    local = np.concatenate(
        [
            rng.choice(
                eligible.size,
                size=k,
                replace=False,
                p=_join_odds(students, s, cluster_weights, category),
            )
            for s, k in enumerate(counts.tolist())
            if k
        ]
    )
    student = np.repeat(np.arange(n_students), counts)
    challenge = eligible[local]
    return _participation_timeline(
        rng, student, challenge, window_start[local], window_end[local], challenges
    )


def _participation_timeline(
    rng: np.random.Generator,
    student: np.ndarray,
    challenge: np.ndarray,
    window_start: np.ndarray,
    window_end: np.ndarray,
    challenges: ChallengePlan,
) -> ParticipationPlan:
    n = student.size
    # Most students join early in a challenge's life; u**1.5 skews the join time towards the start.
    joined = window_start + np.floor((window_end - window_start) * rng.random(n) ** 1.5)
    ended = challenges.ends[challenge] <= 0  # NaN (open-ended) compares False
    draw = rng.random(n)
    completed = draw < np.where(ended, 0.55, 0.12)
    left = ~completed & (draw < np.where(ended, 0.65, 0.18))
    status = np.full(n, ParticipationStatus.JOINED.value, dtype=object)
    status[completed] = ParticipationStatus.COMPLETED.value
    status[left] = ParticipationStatus.LEFT.value
    changed = completed | left
    updated = np.where(changed, joined + np.floor((window_end - joined) * rng.random(n)), joined)
    order = np.argsort(joined, kind="stable")  # rows land in the order students joined
    return ParticipationPlan(
        student=student[order],
        challenge=challenge[order],
        joined=joined[order],
        updated=updated[order],
        status=status[order],
    )


def _empty_participations() -> ParticipationPlan:
    none = np.zeros(0, dtype=np.int64)
    return ParticipationPlan(
        none, none, none.astype(float), none.astype(float), none.astype(object)
    )


def _join_odds(
    students: StudentPlan, s: int, cluster_weights: np.ndarray, category: np.ndarray
) -> np.ndarray:
    """How likely student ``s`` is to pick each eligible challenge: their cluster's taste, boosted
    inside their own interest categories."""
    weights = cluster_weights[students.cluster[s]] * (
        students.interest[s, category] + EXPLORE_WEIGHT
    )
    return weights / weights.sum()


def _plan_slates(
    rng: np.random.Generator,
    students: StudentPlan,
    challenges: ChallengePlan,
    events_per_student: int,
) -> SlatePlan:
    running, day_starts = _running_by_day(challenges)
    days_with_items = np.flatnonzero(running.any(axis=1))
    if days_with_items.size == 0:
        return _empty_slates()
    # A shown challenge matches about a third of a student's interest on average: sets the clicks.
    clicks_per_slate = SLATE_SIZE * (BASE_CLICK_RATE + INTEREST_CLICK_RATE / 3)
    per_student = max(1, round(events_per_student / (SLATE_SIZE + clicks_per_slate)))
    n_slates = students.cluster.size * per_student
    slate_day = days_with_items[rng.integers(days_with_items.size, size=n_slates)]
    created = day_starts[slate_day] + np.floor(rng.random(n_slates) * (DAY - 3600))
    order = np.argsort(created, kind="stable")
    slate_day, created = slate_day[order], created[order]
    student = np.repeat(np.arange(students.cluster.size), per_student)[order]
    slate, challenge = _slate_items(rng, running, challenges.appeal.mean(axis=0), slate_day)
    return SlatePlan(
        student=student,
        created=created,
        ids=_uuids(rng, n_slates),
        events=_slate_events(
            rng, students.interest[student], challenges.category, created, slate, challenge
        ),
    )


def _slate_events(
    rng: np.random.Generator,
    interest: np.ndarray,
    category: np.ndarray,
    slate_created: np.ndarray,
    slate: np.ndarray,
    challenge: np.ndarray,
) -> EventPlan:
    """An impression per shown challenge, and clicks that favour the student's interests and the
    top of the slate; ``interest`` holds each slate's student's interest row."""
    position = np.arange(slate.size) - np.searchsorted(slate, slate)  # rank within its slate
    click_p = (BASE_CLICK_RATE + INTEREST_CLICK_RATE * interest[slate, category[challenge]]) / (
        1 + 0.25 * position
    )
    clicked = rng.random(slate.size) < click_p
    shown_at = slate_created[slate]
    clicked_at = shown_at[clicked] + np.floor(rng.uniform(5, 600, size=int(clicked.sum())))
    kind = np.array(["impression"] * slate.size + ["click"] * int(clicked.sum()), dtype=object)
    created = np.concatenate([shown_at, clicked_at])
    order = np.argsort(created, kind="stable")
    return EventPlan(
        slate=np.concatenate([slate, slate[clicked]])[order],
        challenge=np.concatenate([challenge, challenge[clicked]])[order],
        type=kind[order],
        position=np.concatenate([position, position[clicked]])[order],
        created=created[order],
    )


def _running_by_day(challenges: ChallengePlan) -> tuple[np.ndarray, np.ndarray]:
    """(days, challenges) mask of challenges open for the whole of each past day, and day starts."""
    day_starts = np.arange(-HISTORY_DAYS, 0) * DAY
    ends = np.nan_to_num(challenges.ends, nan=np.inf)
    running = (
        challenges.joinable_history[None, :]
        & (challenges.starts[None, :] <= day_starts[:, None])
        & (ends[None, :] >= day_starts[:, None] + DAY)
    )
    return running, day_starts


def _slate_items(
    rng: np.random.Generator, running: np.ndarray, popularity: np.ndarray, slate_day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Up to SLATE_SIZE distinct challenges per slate, drawn by popularity among those running on
    its day. Returns the shown (slate, challenge) pairs as two arrays, in slate-position order."""
    slates, challenges = [], []
    for day in np.unique(slate_day):
        on_day = np.flatnonzero(slate_day == day)
        candidates = np.flatnonzero(running[day])
        size = min(SLATE_SIZE, candidates.size)
        # Gumbel top-k: the k largest (log weight + Gumbel noise) are a weighted draw without
        # replacement.
        keys = np.log(popularity[candidates]) + rng.gumbel(size=(on_day.size, candidates.size))
        top = np.argpartition(-keys, size - 1, axis=1)[:, :size]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, 1), 1), 1)
        slates.append(np.repeat(on_day, size))
        challenges.append(candidates[top].ravel())
    slate, challenge = np.concatenate(slates), np.concatenate(challenges)
    order = np.argsort(slate, kind="stable")
    return slate[order], challenge[order]


def _empty_slates() -> SlatePlan:
    none = np.zeros(0, dtype=np.int64)
    events = EventPlan(none, none, none.astype(object), none, none.astype(float))
    return SlatePlan(none, none.astype(float), [], events)


def _uuids(rng: np.random.Generator, count: int) -> list[str]:
    """Version-4 UUID strings drawn from the seeded RNG, so a seed also fixes the slate ids."""
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return [str(uuid.UUID(bytes=row.tobytes())) for row in raw]
