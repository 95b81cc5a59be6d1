"""Online metrics read from the event table: impressions, click-through and join rates per source
and day, position bias, per-challenge counts for professors, and the model's coverage of active
students.

Every impression, click and join counts on the day its slate was first shown, however much later
the click or join came: a rate is then what the slates shown that day led to, and a click or a join
never lands in a range (a day) where its card's impression did not, which would push a rate past
100%."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, and_, case, cast, distinct, exists, func, select, union
from sqlalchemy.orm import aliased

from app.extensions import db
from app.models import (
    SOURCES,
    Challenge,
    Participation,
    RecommendationEvent,
    RecommendationSlate,
    User,
    UserRecommendation,
)

DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 366
# No event predates the epoch; the last day leaves room for the day after a range's end.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)
COUNTED_TYPES = ("impression", "click", "join")


@dataclass(frozen=True)
class DateRange:
    """Whole UTC days from ``start`` to ``end``, both included."""

    start: date
    end: date

    @property
    def starts_at(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def ends_before(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


def default_range(today: date, days: int = DEFAULT_RANGE_DAYS) -> DateRange:
    return DateRange(today - timedelta(days=days - 1), today)


def parse_date_range(raw_from: str | None, raw_to: str | None, today: date) -> DateRange:
    """The range named by ``from``/``to`` (YYYY-MM-DD) query values; missing ends default to the
    last 30 days. Raises ValueError with a message fit to show the user."""
    raw_from, raw_to = (raw_from or "").strip(), (raw_to or "").strip()
    end = _parse_day(raw_to, "to") if raw_to else today
    start = (
        _parse_day(raw_from, "from")
        if raw_from
        # A range defaulted back from an end near FIRST_DAY starts there, as a typed one must.
        else max(FIRST_DAY, end - timedelta(days=DEFAULT_RANGE_DAYS - 1))
    )
    if start > end:
        raise ValueError("The start date must not be after the end date.")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ValueError(f"Choose at most {MAX_RANGE_DAYS} days.")
    return DateRange(start, end)


def range_or_default(
    raw_from: str | None, raw_to: str | None, today: date
) -> tuple[DateRange, str | None]:
    """``parse_date_range``, falling back to the default range with the reason it was refused."""
    try:
        return parse_date_range(raw_from, raw_to, today), None
    except ValueError as exc:
        return default_range(today), str(exc)


# The range form's labels: a message names the field as the page shows it.
DAY_FIELDS = {"from": "From (UTC day)", "to": "To (UTC day)"}


def _parse_day(raw: str, name: str) -> date:
    # fromisoformat also takes "20240105" and week dates; the form only ever sends YYYY-MM-DD.
    label = DAY_FIELDS.get(name, name)
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):  # \d would take other scripts' digits
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"{label}: {raw} is not a day of the calendar.") from None
        else:
            if FIRST_DAY <= day <= LAST_DAY:
                return day
            raise ValueError(f"{label}: must be between {FIRST_DAY} and {LAST_DAY}.")
    raise ValueError(f"{label}: must be a date written as YYYY-MM-DD.")


@dataclass(frozen=True)
class Counts:
    impressions: int = 0
    clicks: int = 0
    joins: int = 0

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def join_rate(self) -> float:
        return self.joins / self.impressions if self.impressions else 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.joins + other.joins,
        )


def _type_sums(event=RecommendationEvent) -> list:
    return [func.sum(case((event.type == kind, 1), else_=0)) for kind in COUNTED_TYPES]


def _counts(row: Iterable) -> Counts:
    return Counts(*(int(value or 0) for value in row))


def _shown_in(period: DateRange, slate=RecommendationSlate):
    """Slates first shown in the range: the events of a slate count on its day."""
    return and_(slate.created_at >= period.starts_at, slate.created_at < period.ends_before)


def _of_slates(event=RecommendationEvent, slate=RecommendationSlate):
    return slate.id == event.slate_id


def _utc_day(column):
    # SQLite keeps naive UTC text, where date() is the day; PostgreSQL must be told the zone.
    if db.session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def daily_by_source(period: DateRange) -> dict[str, dict[date, Counts]]:
    """Counts per source per day; every source and every day of the range is present."""
    day = _utc_day(RecommendationSlate.created_at)
    rows = db.session.execute(
        select(RecommendationEvent.source, day, *_type_sums())
        .select_from(RecommendationSlate)
        .join(RecommendationEvent, _of_slates())
        .where(_shown_in(period), RecommendationEvent.source.in_(SOURCES))
        .group_by(RecommendationEvent.source, day)
    ).all()
    table = {source: dict.fromkeys(period.days, Counts()) for source in SOURCES}
    for source, raw_day, *sums in rows:
        table[source][_as_date(raw_day)] = _counts(sums)
    return table


def totals_by_source(daily: dict[str, dict[date, Counts]]) -> dict[str, Counts]:
    return {source: sum(days.values(), Counts()) for source, days in daily.items()}


def by_position(period: DateRange) -> dict[int, Counts]:
    """Counts per slate position, to show position bias. Join events carry no position, so a join
    takes the position at which its slate showed that challenge."""
    shown = db.session.execute(
        select(RecommendationEvent.position, *_type_sums()[:2])
        .select_from(RecommendationSlate)
        .join(RecommendationEvent, _of_slates())
        .where(
            _shown_in(period),
            RecommendationEvent.position.is_not(None),
            RecommendationEvent.type.in_(("impression", "click")),
        )
        .group_by(RecommendationEvent.position)
    ).all()
    joined = _joins_by_position(period)
    positions = sorted({row[0] for row in shown} | set(joined))
    counted = {row[0]: row[1:] for row in shown}
    return {
        position: Counts(
            *(int(v or 0) for v in counted.get(position, (0, 0))), joined.get(position, 0)
        )
        for position in positions
    }


def _joins_by_position(period: DateRange) -> dict[int, int]:
    join, impression = RecommendationEvent, aliased(RecommendationEvent)
    rows = db.session.execute(
        select(impression.position, func.count(distinct(join.id)))
        .select_from(RecommendationSlate)
        .join(join, _of_slates(join))
        .join(
            impression,
            and_(
                impression.slate_id == join.slate_id,
                impression.challenge_id == join.challenge_id,
                impression.type == "impression",
            ),
        )
        .where(join.type == "join", _shown_in(period), impression.position.is_not(None))
        .group_by(impression.position)
    ).all()
    return {int(position): int(n) for position, n in rows}


@dataclass(frozen=True)
class ChallengeCounts:
    challenge_id: int
    title: str
    status: str
    counts: Counts


def challenge_counts(owner_id: int, period: DateRange) -> list[ChallengeCounts]:
    """Per challenge of one owner: impressions, clicks and joins that came from recommendations."""
    counted = (
        select(
            RecommendationEvent.challenge_id,
            *(total.label(kind) for total, kind in zip(_type_sums(), COUNTED_TYPES, strict=True)),
        )
        .select_from(RecommendationSlate)
        .join(RecommendationEvent, _of_slates())
        .join(Challenge, Challenge.id == RecommendationEvent.challenge_id)
        .where(
            Challenge.owner_id == owner_id,
            RecommendationEvent.source.is_not(None),
            _shown_in(period),
        )
        .group_by(RecommendationEvent.challenge_id)
        .subquery()
    )
    sums = [counted.c[kind] for kind in COUNTED_TYPES]
    rows = db.session.execute(
        select(Challenge.id, Challenge.title, Challenge.status, *sums)
        .outerjoin(counted, counted.c.challenge_id == Challenge.id)
        .where(Challenge.owner_id == owner_id)
        .order_by(Challenge.created_at.desc(), Challenge.id.desc())
    ).all()
    return [
        ChallengeCounts(cid, title, status, _counts(values)) for cid, title, status, *values in rows
    ]


@dataclass(frozen=True)
class Coverage:
    active_students: int
    covered: int

    @property
    def share(self) -> float:
        return self.covered / self.active_students if self.active_students else 0.0


def coverage(run_id: int | None, now: datetime, days: int = 30) -> Coverage:
    """Share of students active in the last ``days`` (a recommendation event or a participation
    change) who have rows in run ``run_id``."""
    since = now - timedelta(days=days)
    recent = union(
        select(RecommendationEvent.user_id).where(RecommendationEvent.created_at >= since),
        select(Participation.user_id).where(Participation.updated_at >= since),
    ).subquery()
    active = select(User.id).where(
        User.role == "student", User.active.is_(True), User.id.in_(select(recent))
    )
    total = db.session.scalar(select(func.count()).select_from(active.subquery())) or 0
    if run_id is None or total == 0:
        return Coverage(total, 0)
    has_rows = exists().where(
        UserRecommendation.model_run_id == run_id, UserRecommendation.user_id == User.id
    )
    covered = db.session.scalar(select(func.count()).select_from(active.where(has_rows).subquery()))
    return Coverage(total, covered or 0)
