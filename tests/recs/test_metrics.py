from datetime import UTC, date, datetime, timedelta

import pytest

from app.extensions import db
from app.models import ModelRun, UserRecommendation, utcnow
from app.recs.metrics import (
    Counts,
    DateRange,
    by_position,
    challenge_counts,
    coverage,
    daily_by_source,
    parse_date_range,
    totals_by_source,
)
from tests.helpers import make_challenge, make_event, make_participation, make_user

DAY1 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def event(user, challenge, kind, source="model", at=DAY1, slate="s1", position=None):
    make_event(
        user, challenge, kind, source=source, created_at=at, slate_id=slate, position=position
    )


@pytest.fixture
def world(app):
    return make_user(), make_challenge(), make_challenge()


def test_parse_date_range_defaults_and_validation():
    today = date(2024, 3, 31)
    assert parse_date_range(None, None, today) == DateRange(date(2024, 3, 2), today)
    assert parse_date_range("2024-03-01", "2024-03-05", today).days[-1] == date(2024, 3, 5)
    assert parse_date_range("", "2024-02-10", today).start == date(2024, 1, 12)
    for raw_from, raw_to in [
        ("2024-3-1", None),
        ("20240301", None),
        ("2024-02-30", None),
        ("2024-03-05", "2024-03-01"),
        ("2020-01-01", "2024-01-01"),
        ("x", "y"),
        (None, "9999-12-31"),
        (None, "0001-01-01"),
        ("1969-12-31", None),
    ]:
        with pytest.raises(ValueError):
            parse_date_range(raw_from, raw_to, today)


def test_a_range_defaulted_back_from_an_early_end_starts_no_earlier_than_the_first_day():
    period = parse_date_range(None, "1970-01-05", date(2024, 3, 31))
    assert period.start == date(1970, 1, 1) and period.end == date(1970, 1, 5)
    with pytest.raises(ValueError, match="must be a date written as YYYY-MM-DD"):
        parse_date_range("\uff12\uff10\uff12\uff14-01-01", None, date(2024, 3, 31))


def test_a_well_written_day_that_is_not_in_the_calendar_is_called_that():
    with pytest.raises(
        ValueError, match=r"From \(UTC day\): 2024-02-30 is not a day of the calendar"
    ):
        parse_date_range("2024-02-30", None, date(2024, 3, 31))


def test_counts_rates_handle_zero_impressions():
    assert Counts().ctr == 0.0 and Counts(0, 2, 1).join_rate == 0.0
    assert Counts(4, 1, 1).ctr == 0.25
    assert Counts(1, 2, 3) + Counts(10, 20, 30) == Counts(11, 22, 33)


def test_daily_by_source_counts_per_day_and_source(world):
    student, a, b = world
    for _ in range(4):
        event(student, a, "impression", "model")
    event(student, a, "click", "model")
    event(student, a, "join", "model")
    event(student, b, "impression", "heuristic", at=DAY2, slate="s2")
    night = DAY2 + timedelta(hours=15)  # 01:00 the next day
    event(student, b, "impression", "heuristic", at=night, slate="s3")
    event(student, b, "click", "heuristic", at=DAY2, slate="s2")
    event(student, b, "join", None, at=DAY2, slate="s2")  # a join not from a recommendation
    before = DAY1 - timedelta(days=3)  # outside the range
    event(student, b, "impression", "model", at=before, slate="s0")
    db.session.commit()

    period = DateRange(date(2024, 3, 1), date(2024, 3, 3))
    daily = daily_by_source(period)
    assert set(daily) == {"model", "fresh", "content", "heuristic"}
    assert daily["model"][date(2024, 3, 1)] == Counts(4, 1, 1)
    assert daily["model"][date(2024, 3, 1)].ctr == 0.25
    assert daily["model"][date(2024, 3, 2)] == Counts()
    assert daily["heuristic"][date(2024, 3, 2)] == Counts(1, 1, 0)
    assert daily["heuristic"][date(2024, 3, 3)] == Counts(1, 0, 0)
    totals = totals_by_source(daily)
    assert totals["heuristic"] == Counts(2, 1, 0)
    assert totals["fresh"] == Counts()


def test_clicks_and_joins_count_on_the_day_their_slate_was_shown(world):
    """A slate shown just before midnight and clicked just after: the next day would have a
    click and a join without their impression, a CTR over 100%."""
    student, a, b = world
    late = datetime(2024, 3, 1, 23, 58, tzinfo=UTC)
    after_midnight = late + timedelta(minutes=4)
    event(student, a, "impression", at=late, slate="night", position=0)
    event(student, a, "click", at=after_midnight, slate="night", position=0)
    event(student, a, "join", at=after_midnight, slate="night")
    event(student, b, "impression", at=DAY2, slate="morning", position=0)
    db.session.commit()

    first, second = date(2024, 3, 1), date(2024, 3, 2)
    daily = daily_by_source(DateRange(first, second))
    assert daily["model"][first] == Counts(1, 1, 1)
    assert daily["model"][second] == Counts(1, 0, 0)
    assert totals_by_source(daily_by_source(DateRange(second, second)))["model"] == Counts(1, 0, 0)
    assert by_position(DateRange(second, second)) == {0: Counts(1, 0, 0)}
    assert by_position(DateRange(first, first)) == {0: Counts(1, 1, 1)}
    rows = {
        r.challenge_id: r.counts for r in challenge_counts(a.owner_id, DateRange(second, second))
    }
    assert rows == {a.id: Counts()}


def test_by_position_takes_join_position_from_the_impression(world):
    student, a, b = world
    event(student, a, "impression", position=0, slate="s1")
    event(student, b, "impression", position=1, slate="s1")
    event(student, a, "impression", position=0, slate="s2")
    event(student, a, "click", position=0, slate="s1")
    event(student, b, "click", position=1, slate="s1")
    event(student, a, "click", position=0, slate="s2")
    event(student, b, "join", slate="s1")
    db.session.commit()

    positions = by_position(DateRange(date(2024, 3, 1), date(2024, 3, 1)))
    assert positions == {0: Counts(2, 2, 0), 1: Counts(1, 1, 1)}


def test_challenge_counts_only_own_challenges_and_recommended_events(world):
    student, a, _ = world
    professor = a.owner
    quiet = make_challenge(owner=professor)
    other = make_challenge()
    event(student, a, "impression", at=utcnow())
    event(student, a, "click", at=utcnow())
    event(student, a, "join", at=utcnow())
    event(student, a, "join", source=None, at=utcnow())
    event(student, other, "impression", at=utcnow())
    db.session.commit()

    today = utcnow().date()
    rows = {
        row.challenge_id: row.counts
        for row in challenge_counts(professor.id, DateRange(today, today))
    }
    assert rows == {a.id: Counts(1, 1, 1), quiet.id: Counts()}


def test_coverage_counts_active_students_with_rows(app):
    now = utcnow()
    covered, uncovered, stale = make_user(), make_user(), make_user()
    make_user()  # never active
    challenge = make_challenge()
    make_participation(covered, challenge)
    make_participation(uncovered, challenge)
    make_participation(
        stale, challenge, joined_at=now - timedelta(days=90), updated_at=now - timedelta(days=90)
    )
    run = ModelRun(version="v1", status="published")
    db.session.add(run)
    db.session.flush()
    for user in (covered, stale):
        db.session.add(
            UserRecommendation(
                model_run_id=run.id, user_id=user.id, challenge_id=challenge.id, score=1.0, rank=1
            )
        )
    db.session.commit()

    result = coverage(run.id, now)
    assert (result.active_students, result.covered) == (2, 1)
    assert result.share == 0.5
    assert coverage(None, now).covered == 0
