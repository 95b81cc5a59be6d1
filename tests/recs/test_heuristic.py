"""The heuristic: the numpy core on crafted arrays, and one student's slate from the database."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import scipy.sparse as sp

from app.extensions import db
from app.models import RecommendationEvent, utcnow
from app.recs.heuristic import heuristic_scores, rank_order, recommend_heuristic, timeframe_scores
from tests.helpers import make_category, make_challenge, make_participation, make_user

WEIGHTS = {
    "affinity": 3.0,
    "popularity": 1.0,
    "recent_popularity": 1.0,
    "reward": 0.5,
    "timeframe": 1.0,
    "urgency": 0.3,
}
NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _scores(counts, **overrides):
    items = dict(
        item_category=[0, 1, 0],
        item_popularity=[5, 5, 0],
        item_recent_popularity=[0, 0, 0],
        item_reward=[10, 10, 10],
        item_timeframe=[0.5, 0.5, 0.5],
    )
    items.update(overrides)
    return heuristic_scores(counts, weights=WEIGHTS, **items)


def test_affinity_ranks_the_students_category_first():
    scores = _scores(np.array([[4, 0], [0, 4]]))
    assert scores.shape == (2, 3)
    assert scores[0, 0] > scores[0, 1]
    assert scores[1, 1] > scores[1, 0]


def test_cold_start_ranks_by_popularity_recency_and_reward_only():
    cold = _scores(np.zeros((1, 2)), item_recent_popularity=[0, 3, 0], item_reward=[0, 50, 100])[0]
    without_affinity = heuristic_scores(
        np.zeros((1, 2)),
        [0, 1, 0],
        [5, 5, 0],
        [0, 3, 0],
        [0, 50, 100],
        [0.5] * 3,
        {**WEIGHTS, "affinity": 0.0},
    )[0]
    # Affinity is the uniform share for every item, so it shifts all scores by one constant.
    assert np.allclose(cold - without_affinity, WEIGHTS["affinity"] / 2)
    assert list(rank_order(cold, [1, 2, 3])) == [1, 0, 2]


def test_sparse_and_dense_counts_agree():
    counts = np.array([[2, 0], [0, 1], [0, 0]])
    assert np.allclose(_scores(counts), _scores(sp.csr_matrix(counts)))


def test_popularity_is_log_scaled():
    scores = _scores(np.zeros((1, 2)), item_category=[0, 0, 0], item_popularity=[0, 10, 1000])[0]
    gain_low, gain_high = scores[1] - scores[0], scores[2] - scores[1]
    assert (
        0 < gain_high < 2 * gain_low
    )  # a hundred times the joins is not a hundred times the score


@pytest.mark.parametrize(
    "bad",
    [
        {"item_popularity": [1, 2]},
        {"item_category": [0, 5, 0]},
        {"item_reward": [1, float("nan"), 1]},
    ],
)
def test_inconsistent_inputs_are_rejected(bad):
    with pytest.raises(ValueError):
        _scores(np.zeros((1, 2)), **bad)


def test_unknown_weight_is_rejected():
    with pytest.raises(ValueError, match="unknown heuristic weight"):
        heuristic_scores(np.zeros((1, 1)), [0], [0], [0], [0], [0.5], {"affinty": 1.0})


def test_timeframe_prefers_running_and_soon_and_urgency_grows_near_the_end():
    starts = [
        NOW - timedelta(days=1),
        NOW + timedelta(days=1),
        NOW + timedelta(days=60),
        NOW - timedelta(days=9),
        NOW - timedelta(days=9),
    ]
    ends = [
        None,
        NOW + timedelta(days=9),
        NOW + timedelta(days=90),
        NOW + timedelta(days=1),
        NOW - timedelta(days=1),
    ]
    timeframe, urgency = timeframe_scores(starts, ends, NOW)
    assert timeframe[0] == 1.0 and timeframe[3] == 1.0
    assert 1.0 > timeframe[1] > timeframe[2] > 0.0
    assert timeframe[4] == 0.0  # ended
    assert urgency[0] == 0.0 and urgency[1] == 0.0  # open-ended, not started
    assert urgency[3] == pytest.approx(1 - 1 / 7)


def test_ties_break_by_challenge_id():
    assert list(rank_order(np.array([1.0, 2.0, 1.0, 2.0]), [9, 7, 3, 5])) == [3, 1, 2, 0]


# --- recommend_heuristic on the database --------------------------------------------------------


@pytest.fixture
def new_challenge(app):
    """``new_challenge(**kw)``: one owner and default category for all (hashing is slow)."""
    owner, category = make_user("professor"), make_category()
    return lambda **kw: make_challenge(owner=owner, category=kw.pop("category", category), **kw)


def _ids(items):
    return [item.challenge.id for item in items]


def test_recommend_prefers_the_category_the_student_joins(new_challenge):
    student, data, art = make_user(), make_category("Data Science"), make_category("Art")
    for _ in range(3):
        make_participation(student, new_challenge(category=data))
    art_pick = new_challenge(category=art, reward_points=10)
    data_pick = new_challenge(category=data, reward_points=10)
    ranked = recommend_heuristic(student.id, 10)
    assert _ids(ranked) == [data_pick.id, art_pick.id]
    assert ranked[0].reason == "Because you joined 3 Data Science challenges"


def test_never_recommends_joined_dismissed_ended_archived_or_draft(new_challenge):
    student = make_user()
    joined, left, dismissed = new_challenge(), new_challenge(), new_challenge()
    make_participation(student, joined)
    make_participation(student, left, status="left")
    db.session.add(
        RecommendationEvent(
            event_id="d-1", user_id=student.id, challenge_id=dismissed.id, type="dismiss"
        )
    )
    db.session.commit()
    new_challenge(ends_at=utcnow() - timedelta(hours=1), starts_at=utcnow() - timedelta(days=3))
    new_challenge(status="archived")
    new_challenge(status="draft")
    upcoming = new_challenge(
        starts_at=utcnow() + timedelta(days=2), ends_at=utcnow() + timedelta(days=9)
    )
    assert set(_ids(recommend_heuristic(student.id, 50))) == {left.id, upcoming.id}


def test_cold_start_follows_recent_popularity_with_reasons(new_challenge):
    student, others = make_user(), [make_user() for _ in range(3)]
    quiet, busy = new_challenge(reward_points=0), new_challenge(reward_points=0)
    for other in others:
        make_participation(other, busy)
    in_two_days = (utcnow() + timedelta(days=2)).replace(hour=12, minute=0)  # the calendar's
    ending = new_challenge(reward_points=0, ends_at=in_two_days)
    ranked = recommend_heuristic(student.id, 3)
    assert _ids(ranked)[0] == busy.id
    assert ranked[0].reason == "Popular this week"
    assert {i.challenge.id: i.reason for i in ranked}[ending.id] == "Ends in 2 days"
    assert quiet.id in _ids(ranked)


def test_equal_scores_break_ties_by_id_and_exclude_ids_apply(new_challenge):
    first, second, third = (new_challenge(reward_points=5) for _ in range(3))
    student = make_user()
    assert _ids(recommend_heuristic(student.id, 3)) == [first.id, second.id, third.id]
    assert _ids(recommend_heuristic(student.id, 1, exclude_ids={first.id})) == [second.id]


@pytest.mark.parametrize(
    ("now", "moment", "phrase"),
    [
        ("2026-11-26 23:20", "2026-11-27 19:19", "tomorrow"),  # 20 hours away, the next day
        ("2026-11-26 23:20", "2026-11-27 22:19", "tomorrow"),
        ("2026-11-26 23:20", "2026-11-28 21:51", "in 2 days"),
        ("2026-11-26 08:00", "2026-11-26 23:59", "today"),
        ("2026-11-26 23:59", "2026-11-27 00:01", "tomorrow"),
        ("2026-11-26 00:01", "2026-11-30 00:00", "in 4 days"),
    ],
)
def test_day_phrases_count_calendar_days_in_utc(now, moment, phrase):
    from app.recs.heuristic import _days_phrase

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    assert _days_phrase("Starts", at(moment), at(now)) == f"Starts {phrase}"
