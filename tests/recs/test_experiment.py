import math
from collections import Counter
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import RecommendationEvent, RecommendationSlate, utcnow
from app.recs.experiment import (
    Proportion,
    arm_stats,
    assign_arm,
    bucket,
    start_experiment,
    stop_experiment,
    two_proportion_test,
)
from tests.helpers import make_challenge, make_user


def test_bucket_is_stable_and_roughly_uniform():
    assert bucket("salt", 7) == bucket("salt", 7)
    counts = Counter(bucket("salt", uid) < 30 for uid in range(10_000))
    assert 2_800 < counts[True] < 3_200


def test_assignment_follows_allocation_and_stop(app):
    assert assign_arm(1) is None
    experiment = start_experiment("m vs h", 50, salt="fixed")
    arms = Counter(assign_arm(uid) for uid in range(2_000))
    assert set(arms) == {"model", "heuristic"}
    assert 900 < arms["model"] < 1_100
    assert assign_arm(42) == assign_arm(42)
    with pytest.raises(ValueError):
        start_experiment("second", 10)
    stop_experiment(experiment, "model")
    assert {assign_arm(uid) for uid in range(50)} == {"model"}




def test_wilson_interval_matches_reference_values():
    low, high = Proportion(10, 100).wilson_interval()
    # Reference: Wilson 95% interval for 10/100 is [0.0552, 0.1744].
    assert low == pytest.approx(0.0552, abs=1e-4)
    assert high == pytest.approx(0.1744, abs=1e-4)
    assert Proportion(0, 0).wilson_interval() == (0.0, 0.0)


def test_two_proportion_test_reference():
    z, p = two_proportion_test(Proportion(60, 500), Proportion(40, 500))
    # pooled p = 0.1; se = sqrt(0.1*0.9*(2/500)) = 0.018974; z = 0.04/0.018974 = 2.108
    assert z == pytest.approx(2.108, abs=1e-3)
    assert p == pytest.approx(math.erfc(2.108 / math.sqrt(2)), abs=1e-3)
    assert two_proportion_test(Proportion(0, 0), Proportion(1, 2)) == (0.0, 1.0)


def test_arm_stats_counts_events_per_arm(app):
    experiment = start_experiment("m vs h", 50, salt="s")
    student = make_user()
    challenge = make_challenge()
    now = utcnow()
    slates = {
        when: RecommendationSlate(id=f"slate-{when}", user_id=student.id, source="model",
                                  created_at=created)
        for when, created in (("during", now), ("before", experiment.started_at - timedelta(hours=1)))
    }
    db.session.add_all(slates.values())

    def event(kind, arm, n, slate="during"):
        for i in range(n):
            db.session.add(RecommendationEvent(
                event_id=f"{kind}-{arm}-{slate}-{i}", user_id=student.id, challenge_id=challenge.id,
                type=kind, arm=arm, source=arm, slate_id=slates[slate].id, created_at=now))
    event("impression", "model", 10)
    event("click", "model", 3)
    event("join", "model", 1)
    event("impression", "heuristic", 8)
    event("click", "heuristic", 1)
    # "Show more" on a slate begun before the experiment: its arm is of another time.
    event("impression", "model", 6, slate="before")
    event("click", "model", 2, slate="before")
    db.session.commit()
    stats = arm_stats(experiment)
    assert (stats["model"].impressions, stats["model"].clicks, stats["model"].joins) == (10, 3, 1)
    assert (stats["heuristic"].impressions, stats["heuristic"].clicks, stats["heuristic"].joins) == (8, 1, 0)
    assert stats["model"].ctr.rate == pytest.approx(0.3)


def test_a_join_after_the_stop_on_a_slate_shown_during_counts(app):
    from app.recs.experiment import stop_experiment

    experiment = start_experiment("m vs h", 50, salt="s")
    student, challenge = make_user(), make_challenge()
    shown = RecommendationSlate(
        id="shown-during", user_id=student.id, source="model", created_at=utcnow()
    )
    db.session.add(shown)
    for kind in ("impression", "click"):
        db.session.add(RecommendationEvent(
            event_id=f"{kind}-during", user_id=student.id, challenge_id=challenge.id, type=kind,
            arm="model", source="model", slate_id=shown.id, created_at=utcnow()))
    db.session.commit()
    stop_experiment(experiment, None)
    later = utcnow() + timedelta(minutes=5)
    db.session.add(RecommendationEvent(
        event_id="join-after", user_id=student.id, challenge_id=challenge.id, type="join",
        arm="model", source="model", slate_id=shown.id, created_at=later))
    after_stop = RecommendationSlate(
        id="shown-after", user_id=student.id, source="model", created_at=later
    )
    db.session.add(after_stop)
    db.session.add(RecommendationEvent(
        event_id="impression-after", user_id=student.id, challenge_id=challenge.id,
        type="impression", arm="model", source="model", slate_id=after_stop.id, created_at=later))
    db.session.commit()
    db.session.refresh(experiment)
    stats = arm_stats(experiment)["model"]
    assert (stats.impressions, stats.clicks, stats.joins) == (1, 1, 1)


def test_more_successes_than_trials_do_not_break_the_statistics():
    odd = Proportion(6, 1)
    assert odd.rate == 1.0 and odd.wilson_interval()[1] <= 1.0
    assert two_proportion_test(odd, Proportion(1, 10))[1] <= 1.0
