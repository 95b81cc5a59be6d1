"""A dismissal taken back ("restore"): training, eligibility and retention read it the same way."""

from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import RecommendationEvent, utcnow
from app.recs import events, pipeline
from app.recs.data import excluded_pairs, read_database
from app.recs.eligibility import load_user_history
from tests.helpers import make_challenge, make_event, make_user

WEIGHTS = {"join": 3.0, "complete": 4.0, "click": 1.0, "dismiss": -2.0}


def training_rows():
    data = read_database(WEIGHTS)
    return sorted(
        zip(data.user_ids.tolist(), data.item_ids.tolist(), data.events.tolist(), strict=True)
    )


def test_a_restored_dismissal_is_not_trained_on_nor_excluded(app):
    student = make_user()
    restored, standing, again = make_challenge(), make_challenge(), make_challenge()
    start = utcnow() - timedelta(hours=1)
    for minutes, challenge, kind in (
        (0, restored, "dismiss"),
        (1, restored, "restore"),
        (2, standing, "dismiss"),
        (3, again, "dismiss"),
        (4, again, "restore"),
        (5, again, "dismiss"),  # marked "not interested" once more: it stands again
    ):
        make_event(student, challenge, kind, created_at=start + timedelta(minutes=minutes))
    assert training_rows() == sorted(
        [(student.id, standing.id, "dismiss"), (student.id, again.id, "dismiss")]
    )
    users, items = excluded_pairs()
    assert sorted(zip(users.tolist(), items.tolist(), strict=True)) == sorted(
        [(student.id, standing.id), (student.id, again.id)]
    )
    history = load_user_history(student.id)
    assert history.dismissed_ids == {standing.id, again.id}
    assert [(c, kind) for c, kind, _, _ in history.interactions] == sorted(
        [(standing.id, "dismiss"), (again.id, "dismiss")]
    )


def test_a_restore_is_a_change_of_the_students_row(app):
    """Fold-in re-scores a student whose row changed since the version's data was read: the
    restore is that change (the dismissal it took back has left the row)."""
    student, challenge = make_user(), make_challenge()
    dismissed_at = utcnow() - timedelta(days=2)
    make_event(student, challenge, "dismiss", created_at=dismissed_at)
    restored_at = utcnow() - timedelta(days=1)
    make_event(student, challenge, "restore", created_at=restored_at)
    history = load_user_history(student.id)
    assert history.changed_at == restored_at and not history.dismissed_ids


def test_record_restore_keeps_the_dismiss_and_is_idempotent(app):
    student, other, challenge = make_user(), make_user(), make_challenge()
    assert not events.record_restore(student.id, challenge.id)  # nothing to take back
    assert events.record_dismiss(student.id, challenge.id)
    assert not events.record_restore(other.id, challenge.id)  # not theirs to take back
    assert events.record_restore(student.id, challenge.id)
    assert not events.record_restore(student.id, challenge.id)
    assert events.record_dismiss(student.id, challenge.id)
    assert not events.record_dismiss(student.id, challenge.id)
    rows = db.session.execute(
        select(RecommendationEvent.type, RecommendationEvent.created_at).order_by(
            RecommendationEvent.id
        )
    ).all()
    assert [kind for kind, _ in rows] == ["dismiss", "restore", "dismiss"]
    # Each comes after the one before it, which is how eligibility tells which is last.
    assert rows[0].created_at <= rows[1].created_at < rows[2].created_at
    assert load_user_history(student.id).dismissed_ids == {challenge.id}


def test_a_restore_is_kept_as_long_as_the_dismissal_it_took_back(app):
    student, challenge = make_user(), make_challenge()
    long_ago = utcnow() - timedelta(days=400)
    make_event(student, challenge, "dismiss", created_at=long_ago)
    make_event(student, challenge, "restore", created_at=long_ago + timedelta(minutes=1))
    make_event(student, challenge, "impression", created_at=long_ago)
    assert pipeline.purge_events(365) == 1
    kept = db.session.scalars(select(RecommendationEvent.type).order_by(RecommendationEvent.id))
    assert kept.all() == ["dismiss", "restore"]
    assert not load_user_history(student.id).dismissed_ids


def test_export_leaves_out_restored_dismissals(app, tmp_path):
    student, challenge = make_user(), make_challenge()
    make_event(student, challenge, "dismiss", created_at=utcnow() - timedelta(minutes=2))
    make_event(student, challenge, "restore", created_at=utcnow() - timedelta(minutes=1))
    output = tmp_path / "interactions.csv"
    assert pipeline.export_interactions(output) == 0
    assert output.read_text().splitlines() == ["user_id,challenge_id,event,weight,timestamp"]


def test_whether_a_dismissal_stands_is_looked_up_among_restores_only(app):
    """The check runs once per dismiss the training reads: SQLite (no statistics kept) must find
    a student's restores of the challenge by the restores' index, not by reading every event the
    student had since the dismiss."""
    import pytest
    from sqlalchemy import text

    from app.recs.eligibility import dismissal_stands

    if db.session.get_bind().dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans from its statistics (an anti-join on a large table)")
    dismissed = select(RecommendationEvent.user_id).where(
        RecommendationEvent.type == "dismiss", dismissal_stands()
    )
    sql = str(dismissed.compile(db.engine, compile_kwargs={"literal_binds": True}))
    plan = " ".join(row[-1] for row in db.session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    assert "SEARCH restore USING INDEX ix_recommendation_events_restores" in plan


def test_a_dismissal_after_a_purge_is_stored_and_stands(app, monkeypatch):
    """The purge deletes an old dismiss-and-restore pair of a challenge long over and keeps a
    later dismissal; a restore and a dismissal after that must each get an id of their own."""
    now = utcnow()
    student = make_user()
    challenge = make_challenge(
        starts_at=now - timedelta(days=420), ends_at=now - timedelta(days=380)
    )
    moments = iter(
        [
            now - timedelta(days=400),  # dismiss
            now - timedelta(days=400, minutes=-1),  # restore
            now - timedelta(days=1),  # dismiss again: kept by the purge
            now - timedelta(minutes=2),  # restore
            now - timedelta(minutes=1),  # dismiss once more
        ]
    )
    monkeypatch.setattr(events, "utcnow", lambda: next(moments))
    assert events.record_dismiss(student.id, challenge.id)
    assert events.record_restore(student.id, challenge.id)
    assert events.record_dismiss(student.id, challenge.id)
    assert pipeline.purge_events(365, now=now) == 2
    assert events.record_restore(student.id, challenge.id)
    assert events.record_dismiss(student.id, challenge.id)
    assert challenge.id in load_user_history(student.id).dismissed_ids
