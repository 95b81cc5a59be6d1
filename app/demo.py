"""The demo campus (``flask demo seed``) and large synthetic campuses for benchmarks.

Both are planned by app/demo_plan.py (same structure, different sizes); this module checks the
database is empty and writes the plan with chunked bulk inserts in one transaction.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Boolean, Integer, String, func, insert, select
from werkzeug.security import generate_password_hash

from app.demo_plan import DAY, HISTORY_DAYS, CampusPlan, CampusShape, SlatePlan, plan_campus
from app.demo_text import CATEGORY_TEXTS
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
    category_name_key,
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


class DatabaseNotEmpty(RuntimeError):
    """The demo or synthetic campus is only ever written into an empty database."""


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


# --- The writer ---------------------------------------------------------------------------------


def _write_campus(plan: CampusPlan, now: datetime, chunk_size: int) -> None:
    with _bulk_load_cache():
        _write_rows(plan, _Clock(now), chunk_size)


@contextmanager
def _bulk_load_cache():
    """On SQLite, a page cache big enough for the indexes being filled, for this transaction only.

    With the default 2 MB cache a large transaction keeps spilling index pages into the WAL and
    writing them again as they change; with room for them, each page is written once, at commit.
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
    names = [t.name for t in CATEGORY_TEXTS]
    category_ids = _insert_returning_ids(
        Category, {"name": names, "name_key": [category_name_key(n) for n in names]}, chunk_size
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
    event_challenge_ids = challenge_ids[events.challenge]
    _insert(
        RecommendationEvent,
        {
            "event_id": _NaturalEventIds(events.type, slate_ids, event_challenge_ids),
            "user_id": student_ids[slates.student[events.slate]],
            "challenge_id": event_challenge_ids,
            "type": events.type,
            "slate_id": slate_ids,
            "position": events.position,
            "source": np.full(events.slate.size, source, dtype=object),
            "created_at": clock.at(events.created),
        },
        chunk_size,
    )


class _NaturalEventIds:
    """The ids the app itself gives impressions and clicks (so replayed events dedupe), computed a
    chunk at a time: millions of them would otherwise sit in memory at once."""

    def __init__(self, kinds: np.ndarray, slate_ids: np.ndarray, challenge_ids: np.ndarray) -> None:
        self.kinds, self.slate_ids, self.challenge_ids = kinds, slate_ids, challenge_ids

    def __len__(self) -> int:
        return len(self.kinds)

    def __getitem__(self, rows: slice) -> list[str]:
        return [
            natural_event_id(kind, slate_id, challenge_id)
            for kind, slate_id, challenge_id in zip(
                self.kinds[rows].tolist(),
                self.slate_ids[rows].tolist(),
                self.challenge_ids[rows].tolist(),
                strict=True,
            )
        ]


def _column_chunks(columns: dict[str, Sequence], converters: dict, chunk_size: int):
    """Each column's values, ``chunk_size`` rows at a time, passed through its converter."""
    total = len(next(iter(columns.values())))
    for start in range(0, total, chunk_size):
        yield [
            convert(columns[name][start : start + chunk_size])
            for name, convert in converters.items()
        ]


def _row_dicts(columns: dict[str, Sequence], chunk_size: int):
    """Rows as dicts for SQLAlchemy's typed executemany, ``chunk_size`` at a time."""
    for values in _column_chunks(columns, dict.fromkeys(columns, _as_list), chunk_size):
        yield [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def _as_list(values: Sequence) -> list:
    # sqlite3 rejects numpy scalars; tolist() also turns datetime64 into datetime and NaT into None.
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _insert(model: type[db.Model], columns: dict[str, Sequence], chunk_size: int) -> None:
    table = model.__table__
    driver_converters = _sqlite_converters(table, columns)
    if driver_converters is None:
        for rows in _row_dicts(columns, chunk_size):
            db.session.execute(insert(table), rows)
        return
    # Millions of rows: per-value type processing would cost more than SQLite itself, so send the
    # driver the values SQLAlchemy would have sent, converted a whole column at a time.
    names = ", ".join(f'"{name}"' for name in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    connection = db.session.connection()
    for values in _column_chunks(columns, driver_converters, chunk_size):
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
    for rows in _row_dicts(columns, chunk_size):
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
