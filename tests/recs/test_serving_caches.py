"""Serving's per-process catalogue and its single-transaction writes: cached arrays rank like the
rows they came from, move with the catalogue, and never serve a challenge that closed since."""

from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, update

from app.challenges.service import join
from app.extensions import db
from app.models import Challenge, RecommendationEvent, RecommendationSlate, utcnow
from app.recs import eligibility, events, heuristic, serving
from app.recs.eligibility import load_user_history, scoring_catalogue
from tests.helpers import (
    make_category,
    make_challenge,
    make_participation,
    make_user,
    recorded_slate,
)

WINDOW = timedelta(days=7)


@pytest.fixture
def campus(app):
    owner, art, data = make_user("professor"), make_category("Art"), make_category("Data")
    challenges = [
        make_challenge(
            owner=owner,
            category=(art, data)[i % 2],
            reward_points=5 * i,
            ends_at=utcnow() + timedelta(days=2 + 5 * i),
        )
        for i in range(8)
    ]
    student = make_user()
    for challenge in challenges[:2]:
        make_participation(student, challenge)
    for other in (make_user() for _ in range(3)):
        make_participation(other, challenges[5])
    return {"student": student, "challenges": challenges}


def test_the_arrays_rank_like_the_loaded_challenges(app, campus):
    student, now = campus["student"], utcnow()
    history = load_user_history(student.id)
    config = app.config
    from_rows = heuristic.score_candidates(
        eligibility.candidates_with_recent_joins(now, history.excluded_ids, WINDOW),
        history.category_counts,
        config["RECS_HEURISTIC_WEIGHTS"],
        config["RECS_AFFINITY_SMOOTHING"],
        7,
        now,
    )
    served = heuristic.recommend_heuristic(student.id, 4, now=now, history=history)
    assert [(s.challenge.id, s.score, s.reason) for s in served] == [
        (s.challenge.id, s.score, s.reason) for s in from_rows[:4]
    ]


def test_the_catalogue_is_kept_until_the_challenges_change_or_it_ages(campus):
    now = utcnow()
    first = scoring_catalogue(now, WINDOW)
    assert scoring_catalogue(now + timedelta(seconds=1), WINDOW) is first
    join(make_user().id, campus["challenges"][3])
    joined = scoring_catalogue(now, WINDOW)
    assert joined is not first
    at = int(joined.ids.searchsorted(campus["challenges"][3].id))
    assert joined.recent_joins[at] == first.recent_joins[at] + 1
    later = now + eligibility.CATALOGUE_MAX_AGE + timedelta(seconds=1)
    assert scoring_catalogue(later, WINDOW) is not joined


def test_a_challenge_closed_behind_the_caches_back_is_never_served(campus):
    student, challenges = campus["student"], campus["challenges"]
    before = serving.get_recommendations(student, k=3)
    closed = before.items[0].challenge_id
    # updated_at kept as it was (a commit that landed out of order): the fingerprint holds still.
    db.session.execute(
        update(Challenge.__table__)
        .where(Challenge.id == closed)
        .values(status="archived", updated_at=Challenge.updated_at)
    )
    db.session.commit()
    after = serving.get_recommendations(student, k=3)
    assert closed not in [item.challenge_id for item in after.items]
    assert len(after.items) == 3
    assert {item.challenge_id for item in after.items} <= {c.id for c in challenges[2:]}


def test_a_page_is_recorded_in_one_commit_and_a_reload_adds_nothing(campus):
    student = campus["student"]
    slate = serving.get_recommendations(student, k=3)
    commits = []

    def count(conn):
        commits.append(conn)

    event.listen(db.engine, "commit", count)
    try:
        assert events.record_page(student.id, slate, new_slate=True) == 3
    finally:
        event.remove(db.engine, "commit", count)
    assert len(commits) == 1
    assert db.session.get(RecommendationSlate, slate.slate_id).source == slate.source
    assert events.record_page(student.id, slate, new_slate=False) == 0
    assert db.session.scalar(select(func.count(RecommendationEvent.id))) == 3


def test_an_event_id_stored_by_another_writer_is_a_duplicate(campus):
    student = campus["student"]
    slate = recorded_slate(student, k=2)
    ids = ["0b5a3f3e-8a55-4a39-9d4c-6a1f7a1b2c3d", "5c1d2e3f-0a1b-4c2d-8e3f-4a5b6c7d8e9f"]
    incoming = events.parse_events(
        {
            "events": [
                {
                    "event_id": event_id,
                    "type": "click",
                    "challenge_id": item.challenge_id,
                    "slate_id": slate.slate_id,
                }
                for event_id, item in zip(ids, slate.items, strict=True)
            ]
        },
        limit=10,
    )
    # Stored between this request's duplicate check and its insert: the unique key decides, and
    # the rest of the batch is stored.
    db.session.add(
        RecommendationEvent(
            event_id=ids[0],
            user_id=student.id,
            challenge_id=slate.items[0].challenge_id,
            type="join",
        )
    )
    db.session.commit()
    assert events.store_events(student.id, incoming) == (1, 1)
    stored = db.session.scalars(
        select(RecommendationEvent.event_id).where(RecommendationEvent.type != "impression")
    ).all()
    assert sorted(stored) == sorted(ids)
    # The clicked cards' impressions were never reported: the clicks imply them.
    impressions = db.session.scalar(
        select(func.count()).where(RecommendationEvent.type == "impression")
    )
    assert impressions == len(slate.items)
