"""The demo campus (``flask demo seed``) and large synthetic campuses for benchmarks.

Both come from one generator: students belong to a few latent taste clusters that like neighbouring
categories, challenge popularity is skewed, and every join falls inside its challenge's running
window. The plan is drawn from a seeded RNG as offsets from "now", so one seed gives the same campus
whatever day it is built; the writer turns it into rows with chunked bulk inserts.
"""

from __future__ import annotations

import logging
import math
import secrets
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Boolean, Integer, String, func, insert, select
from werkzeug.security import generate_password_hash

from app.demo_text import CATEGORY_TEXTS, compose_description, compose_title, person_name
from app.extensions import db
from app.models import (
    Category,
    Challenge,
    ChallengeStatus,
    Participation,
    ParticipationStatus,
    RecommendationEvent,
    RecommendationSlate,
    Role,
    User,
    UTCDateTime,
    utcnow,
)
from app.recs.events import natural_event_id

log = logging.getLogger(__name__)

DEMO_PASSWORD = "demo1234"
EMAIL_DOMAIN = "example.edu"
DEMO_PROFESSORS = 3
DEMO_CHALLENGES = 150
# 600 students x 13.3 = ~8,000 participations on 150 challenges. Smaller campuses keep this density
# per challenge, so a student's joins still fit inside their favourite categories.
DEMO_JOINS_PER_STUDENT = 8000 / 600
CHALLENGES_PER_PROFESSOR = 50
CHUNK_SIZE = 10_000
BULK_LOAD_CACHE_KIB = 512 * 1024  # an upper bound; SQLite only allocates what it uses

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
HOME_CLUSTER_BOOST = 5.0  # within a category, each challenge appeals most to one cluster
# Joins per student are gamma-Poisson (negative binomial): a few very active students, many light.
ACTIVITY_SHAPE = 3.0
RAMP_UP_DAYS = 21  # a challenge that has run for less than this has gathered fewer joins

SLATE_SIZE = 6
BASE_CLICK_RATE = 0.03
INTEREST_CLICK_RATE = 0.3


class DatabaseNotEmpty(RuntimeError):
    """The demo or synthetic campus is only ever written into an empty database."""


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


@dataclass(frozen=True)
class CampusSummary:
    seed: int
    categories: int
    challenges_by_state: dict[str, int]
    professors: int
    students: int
    participations: int
    slates: int = 0
    events: int = 0

    @property
    def challenges(self) -> int:
        return sum(self.challenges_by_state.values())

    def describe(self) -> str:
        states = ", ".join(f"{n} {state}" for state, n in self.challenges_by_state.items())
        lines = [
            f"Seeded the campus (seed {self.seed}): {self.categories} categories, "
            f"{self.challenges} challenges ({states}), {self.students} students, "
            f"{self.professors} professors, 1 admin, {self.participations} participations.",
        ]
        if self.slates:
            lines.append(f"Recommendation history: {self.slates} slates, {self.events} events.")
        lines += [
            f"Demo accounts (password {DEMO_PASSWORD}):",
            f"  admin       {admin_email()}",
            f"  professors  {professor_email(1)} .. {professor_email(self.professors)}",
            f"  students    {student_email(1)} .. {student_email(self.students)}",
        ]
        return "\n".join(lines)


def admin_email() -> str:
    return f"admin@{EMAIL_DOMAIN}"


def professor_email(number: int) -> str:
    return f"prof{number}@{EMAIL_DOMAIN}"


def student_email(number: int) -> str:
    return f"student{number}@{EMAIL_DOMAIN}"


# --- Public entry points ------------------------------------------------------------------------


def seed_demo_campus(
    seed: int = 42, students: int = 600, challenges: int = DEMO_CHALLENGES
) -> CampusSummary:
    """Fill an empty database with the demo campus; raises DatabaseNotEmpty otherwise."""
    shape = CampusShape(
        students=students,
        challenges=challenges,
        professors=DEMO_PROFESSORS,
        joins_per_student=DEMO_JOINS_PER_STUDENT * min(1.0, challenges / DEMO_CHALLENGES),
    )
    return build_campus(shape, seed)


def generate_synthetic_campus(
    students: int = 100_000,
    challenges: int = 5_000,
    participations_per_student: float = 20,
    events_per_student: int = 0,
    seed: int = 0,
    chunk_size: int = CHUNK_SIZE,
) -> CampusSummary:
    """A benchmark-sized campus with the demo's structure, plus (optionally) about
    ``events_per_student`` impression and click events per student, grouped in slates."""
    shape = CampusShape(
        students=students,
        challenges=challenges,
        professors=max(DEMO_PROFESSORS, math.ceil(challenges / CHALLENGES_PER_PROFESSOR)),
        joins_per_student=participations_per_student,
        events_per_student=events_per_student,
    )
    return build_campus(shape, seed, chunk_size)


def existing_rows() -> dict[str, int]:
    """Rows in the tables a campus is built from; all zero means the database is empty."""
    return {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model)) or 0
        for model in (User, Category, Challenge)
    }


def build_campus(shape: CampusShape, seed: int, chunk_size: int = CHUNK_SIZE) -> CampusSummary:
    shape.validate()
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    found = {table: n for table, n in existing_rows().items() if n}
    if found:
        described = ", ".join(f"{n} {table}" for table, n in found.items())
        raise DatabaseNotEmpty(
            f"the database already has data ({described}); seed only an empty one"
        )
    plan = plan_campus(shape, seed)
    now = utcnow().replace(microsecond=0)
    try:
        _write_campus(plan, now, chunk_size)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    summary = _summarize(plan, seed)
    log.info(
        "seeded campus: seed=%s students=%s challenges=%s participations=%s events=%s",
        seed,
        summary.students,
        summary.challenges,
        summary.participations,
        summary.events,
    )
    return summary


# --- The plan: pure numbers, no database ---------------------------------------------------------


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
        # Gumbel top-k: the k largest log-weight + Gumbel noise keys are a weighted draw without
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


# --- The writer ---------------------------------------------------------------------------------


def _write_campus(plan: CampusPlan, now: datetime, chunk_size: int) -> None:
    with _bulk_load_cache():
        _write_rows(plan, _Clock(now), chunk_size)


@contextmanager
def _bulk_load_cache():
    """On SQLite, a page cache big enough for the indexes being filled, for this transaction only.

    With the default 2 MB cache one large transaction spills index pages into the WAL and then
    rewrites them again and again; on a 100k-student campus that costs minutes.
    """
    if db.engine.dialect.name != "sqlite":
        yield
        return
    connection = db.session.connection()
    previous = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql(f"PRAGMA cache_size=-{BULK_LOAD_CACHE_KIB}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size={int(previous)}")


def _write_rows(plan: CampusPlan, clock: _Clock, chunk_size: int) -> None:
    category_ids = _insert_returning_ids(
        Category, {"name": [t.name for t in CATEGORY_TEXTS]}, chunk_size
    )
    user_ids = _insert_users(plan, clock, chunk_size)
    professor_ids = user_ids[1 : 1 + plan.shape.professors]
    student_ids = user_ids[1 + plan.shape.professors :]
    challenge_ids = _insert_challenges(plan, clock, category_ids, professor_ids, chunk_size)
    p = plan.participations
    _insert(
        Participation,
        {
            "user_id": student_ids[p.student],
            "challenge_id": challenge_ids[p.challenge],
            "status": p.status,
            "joined_at": clock.at(p.joined),
            "updated_at": clock.at(p.updated),
        },
        chunk_size,
    )
    if plan.slates is not None:
        _insert_slates(plan.slates, clock, student_ids, challenge_ids, chunk_size)


class _Clock:
    """Turns the plan's second offsets into datetimes (NaN -> None) relative to one fixed now."""

    def __init__(self, now: datetime) -> None:
        self.now = np.datetime64(now.astimezone(UTC).replace(tzinfo=None), "s")

    def at(self, offsets: np.ndarray) -> np.ndarray:
        out = np.full(offsets.shape, np.datetime64("NaT"), dtype="datetime64[s]")
        known = ~np.isnan(offsets)
        out[known] = self.now + offsets[known].astype(np.int64).astype("timedelta64[s]")
        return out


def _insert_users(plan: CampusPlan, clock: _Clock, chunk_size: int) -> np.ndarray:
    """Admin, professors, then students, in that order; returns their ids in the same order."""
    professors, students = plan.shape.professors, plan.shape.students
    count = 1 + professors + students
    # Hashing is deliberately slow; every demo account shares the one password, so hash it once.
    password_hash = generate_password_hash(DEMO_PASSWORD)
    # Accounts exist before the oldest challenge, so no join predates its student.
    created = np.full(count, -(HISTORY_DAYS + 40) * DAY)
    created[1 + professors :] += np.floor(np.arange(students) * (30 * DAY / max(students, 1)))
    emails = (
        [admin_email()]
        + [professor_email(i) for i in range(1, professors + 1)]
        + [student_email(i) for i in range(1, students + 1)]
    )
    _insert(
        User,
        {
            "email": emails,
            "display_name": ["Campus Admin"] + plan.professor_names + plan.students.names,
            "role": [Role.ADMIN.value]
            + [Role.PROFESSOR.value] * professors
            + [Role.STUDENT.value] * students,
            "password_hash": [password_hash] * count,
            "session_token": [secrets.token_hex(16) for _ in range(count)],
            "active": [True] * count,
            "created_at": clock.at(created),
        },
        chunk_size,
    )
    # Mapped back by email: RETURNING in parameter order runs row by row on SQLite.
    id_by_email = {
        email: user_id for email, user_id in db.session.execute(select(User.email, User.id))
    }
    return np.array([id_by_email[email] for email in emails], dtype=np.int64)


def _insert_challenges(
    plan: CampusPlan,
    clock: _Clock,
    category_ids: np.ndarray,
    professor_ids: np.ndarray,
    chunk_size: int,
) -> np.ndarray:
    c = plan.challenges
    active = plan.participations.status != ParticipationStatus.LEFT.value
    counts = np.bincount(plan.participations.challenge[active], minlength=c.category.size)
    created = clock.at(c.created)
    return _insert_returning_ids(
        Challenge,
        {
            "title": c.titles,
            "description": c.descriptions,
            "category_id": category_ids[c.category],
            "reward_points": c.reward,
            "starts_at": clock.at(c.starts),
            "ends_at": clock.at(c.ends),
            "status": c.status,
            "owner_id": professor_ids[c.owner],
            "created_at": created,
            "updated_at": created,
            "participations_count": counts,
        },
        chunk_size,
    )


def _insert_slates(
    slates: SlatePlan,
    clock: _Clock,
    student_ids: np.ndarray,
    challenge_ids: np.ndarray,
    chunk_size: int,
) -> None:
    source = "heuristic"
    _insert(
        RecommendationSlate,
        {
            "id": slates.ids,
            "user_id": student_ids[slates.student],
            "source": [source] * len(slates.ids),
            "created_at": clock.at(slates.created),
        },
        chunk_size,
    )
    events = slates.events
    slate_ids = np.array(slates.ids, dtype=object)[events.slate]
    event_challenge_ids = challenge_ids[events.challenge].tolist()
    _insert(
        RecommendationEvent,
        {
            # The ids the app itself gives impressions and clicks, so replayed events dedupe.
            "event_id": [
                natural_event_id(kind, slate_id, challenge_id)
                for kind, slate_id, challenge_id in zip(
                    events.type, slate_ids, event_challenge_ids, strict=True
                )
            ],
            "user_id": student_ids[slates.student[events.slate]],
            "challenge_id": event_challenge_ids,
            "type": events.type,
            "slate_id": slate_ids,
            "position": events.position,
            "source": [source] * events.slate.size,
            "created_at": clock.at(events.created),
        },
        chunk_size,
    )


def _chunks(columns: dict[str, Sequence], chunk_size: int):
    """Rows as dicts, ``chunk_size`` at a time; numpy columns become plain Python values."""
    names = list(columns)
    total = len(columns[names[0]])
    for start in range(0, total, chunk_size):
        values = [_as_list(columns[name][start : start + chunk_size]) for name in names]
        yield [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def _as_list(values: Sequence) -> list:
    # sqlite3 rejects numpy scalars; tolist() also turns datetime64 into datetime and NaT into None.
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _insert(model: type[db.Model], columns: dict[str, Sequence], chunk_size: int) -> None:
    table = model.__table__
    converters = _sqlite_converters(table, columns)
    if converters is None:
        for rows in _chunks(columns, chunk_size):
            db.session.execute(insert(table), rows)
        return
    # Millions of rows: per-value type processing would cost more than SQLite itself, so send the
    # driver the values SQLAlchemy would have sent, converted a whole column at a time.
    names = ", ".join(f'"{name}"' for name in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    connection = db.session.connection()
    total = len(next(iter(columns.values())))
    for start in range(0, total, chunk_size):
        values = [
            convert(columns[name][start : start + chunk_size])
            for name, convert in converters.items()
        ]
        connection.exec_driver_sql(sql, list(zip(*values, strict=True)))


def _sqlite_converters(table, columns: dict[str, Sequence]) -> dict | None:
    """Per-column converters to SQLite driver values, or None when any column needs SQLAlchemy's
    own type processing (another backend, or a timestamp format this module cannot reproduce)."""
    if db.engine.dialect.name != "sqlite":
        return None
    converters = {}
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, UTCDateTime):
            if not _timestamps_match_sqlalchemy(column_type):
                return None
            converters[name] = _sqlite_timestamps
        elif isinstance(column_type, Boolean | Integer | String):
            converters[name] = _as_list
        else:
            return None
    return converters


def _sqlite_timestamps(values: np.ndarray) -> list[str | None]:
    rendered = np.char.replace(np.datetime_as_string(values, unit="us"), "T", " ").astype(object)
    rendered[np.isnat(values)] = None
    return rendered.tolist()


def _timestamps_match_sqlalchemy(column_type: UTCDateTime) -> bool:
    probe = np.array(["2001-02-03T04:05:06.000007"], dtype="datetime64[us]")
    dialect = db.engine.dialect
    expected = column_type.dialect_impl(dialect).bind_processor(dialect)(probe.tolist()[0])
    return _sqlite_timestamps(probe) == [expected]


def _insert_returning_ids(
    model: type[db.Model], columns: dict[str, Sequence], chunk_size: int
) -> np.ndarray:
    """Insert and return the new ids in row order; for tables of thousands of rows, not millions."""
    statement = insert(model).returning(model.id, sort_by_parameter_order=True)
    ids: list[int] = []
    for rows in _chunks(columns, chunk_size):
        ids.extend(db.session.scalars(statement, rows))
    return np.array(ids, dtype=np.int64)


def _summarize(plan: CampusPlan, seed: int) -> CampusSummary:
    c = plan.challenges
    published = c.status == ChallengeStatus.PUBLISHED.value
    ended = np.nan_to_num(c.ends, nan=np.inf) <= 0
    states = {
        "running": published & (c.starts <= 0) & ~ended,
        "upcoming": published & (c.starts > 0),
        "ended": published & ended,
        "drafts": c.status == ChallengeStatus.DRAFT.value,
        "archived": c.status == ChallengeStatus.ARCHIVED.value,
    }
    return CampusSummary(
        seed=seed,
        categories=len(CATEGORY_TEXTS),
        challenges_by_state={state: int(mask.sum()) for state, mask in states.items()},
        professors=plan.shape.professors,
        students=plan.shape.students,
        participations=int(plan.participations.student.size),
        slates=len(plan.slates.ids) if plan.slates else 0,
        events=int(plan.slates.events.slate.size) if plan.slates else 0,
    )
