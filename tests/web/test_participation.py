"""Joining and leaving: idempotent, and ``participations_count`` always equals the active rows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, update

from app.challenges.service import join
from app.extensions import db
from app.models import Challenge, Participation, count_active_participations
from tests.helpers import make_challenge, make_user

THREADS = 8


def count_of(challenge: Challenge) -> int:
    db.session.expire_all()
    stored = db.session.get(Challenge, challenge.id).participations_count
    assert stored == count_active_participations(challenge.id), "counter drifted from the rows"
    return stored


def rows_of(challenge: Challenge) -> list[Participation]:
    return db.session.scalars(
        select(Participation).where(Participation.challenge_id == challenge.id)
    ).all()


def test_repeated_joins_count_once(student_client):
    challenge = make_challenge()
    for _ in range(3):
        assert student_client.post(f"/challenges/{challenge.id}/join").status_code == 303
    assert count_of(challenge) == 1
    assert len(rows_of(challenge)) == 1
    page = student_client.post(f"/challenges/{challenge.id}/join", follow_redirects=True)
    assert "You are already in this challenge." in page.get_data(as_text=True)


def test_leave_is_idempotent_and_rejoin_reuses_the_row(student_client):
    challenge = make_challenge()
    student_client.post(f"/challenges/{challenge.id}/join")
    for _ in range(2):
        assert student_client.post(f"/challenges/{challenge.id}/leave").status_code == 303
        assert count_of(challenge) == 0
    assert [p.status for p in rows_of(challenge)] == ["left"]

    student_client.post(f"/challenges/{challenge.id}/join")
    student_client.post(f"/challenges/{challenge.id}/join")
    assert count_of(challenge) == 1
    assert [p.status for p in rows_of(challenge)] == ["joined"]


def test_leaving_a_challenge_never_joined_changes_nothing(student_client):
    challenge = make_challenge()
    page = student_client.post(f"/challenges/{challenge.id}/leave", follow_redirects=True)
    assert "You are not in this challenge." in page.get_data(as_text=True)
    assert count_of(challenge) == 0


def test_closed_challenges_refuse_joins(student_client):
    from app.models import utcnow

    archived = make_challenge(status="archived")
    ended = make_challenge(
        starts_at=utcnow().replace(year=2020), ends_at=utcnow().replace(year=2021)
    )
    for challenge in (archived, ended):
        page = student_client.post(f"/challenges/{challenge.id}/join", follow_redirects=True)
        assert page.status_code == 200
        assert count_of(challenge) == 0
    assert "not open for joining" in student_client.post(
        f"/challenges/{archived.id}/join", follow_redirects=True
    ).get_data(as_text=True)


def test_an_archived_challenge_cannot_be_left_as_it_could_not_be_rejoined(student_client, caplog):
    from tests.helpers import make_participation

    challenge = make_challenge(status="published")
    make_participation(student_client.user, challenge)
    challenge.status = "archived"
    db.session.commit()
    page = student_client.get(f"/challenges/{challenge.id}").get_data(as_text=True)
    assert "This challenge is archived." in page and "Leave challenge" not in page
    caplog.set_level("INFO", logger="app.challenges.routes")
    response = student_client.post(f"/challenges/{challenge.id}/leave", follow_redirects=True)
    assert "your participation stays on your record" in response.get_data(as_text=True)
    assert "leave refused" in caplog.text
    assert count_of(challenge) == 1
    mine = student_client.get("/me/challenges").get_data(as_text=True)
    assert '<span class="badge archived">archived</span>' in mine


def test_an_archived_challenge_is_readable_only_by_those_who_took_part(student_client):
    from tests.helpers import make_participation

    # Archived straight from draft: never published, so never meant for students' eyes.
    shelved = make_challenge(status="archived", title="Never published")
    assert student_client.get(f"/challenges/{shelved.id}").status_code == 404
    page = student_client.post(f"/challenges/{shelved.id}/join", follow_redirects=True)
    assert page.request.path == "/challenges" and "not open for joining" in page.get_data(
        as_text=True
    )
    assert "Never published" not in page.get_data(as_text=True)
    taken = make_challenge(status="published")
    make_participation(student_client.user, taken, status="left")
    taken.status = "archived"
    db.session.commit()
    assert student_client.get(f"/challenges/{taken.id}").status_code == 200


def _join_in_own_context(app, barrier: threading.Barrier, user_id: int, challenge_id: int) -> bool:
    """One request's worth of work: its own app context, hence its own session and connection."""
    with app.app_context():
        try:
            challenge = db.session.get(Challenge, challenge_id)
            barrier.wait(timeout=30)
            return join(user_id, challenge).changed
        finally:
            db.session.remove()


def _join_concurrently(app, user_ids: list[int], challenge: Challenge) -> list[bool]:
    db.session.commit()  # nothing of ours may hold the database while the threads write
    barrier = threading.Barrier(len(user_ids))
    with ThreadPoolExecutor(max_workers=len(user_ids)) as pool:
        futures = [
            pool.submit(_join_in_own_context, app, barrier, user_id, challenge.id)
            for user_id in user_ids
        ]
        return [future.result(timeout=60) for future in futures]


def test_concurrent_joins_by_different_students_all_count(app):
    challenge = make_challenge()
    students = [make_user("student").id for _ in range(THREADS)]
    assert _join_concurrently(app, students, challenge) == [True] * THREADS
    assert count_of(challenge) == THREADS


def test_concurrent_joins_by_one_student_count_once(app):
    challenge = make_challenge()
    student = make_user("student").id
    outcomes = _join_concurrently(app, [student] * THREADS, challenge)
    assert outcomes.count(True) == 1
    assert count_of(challenge) == 1
    assert db.session.scalar(select(func.count(Participation.id))) == 1


def test_a_next_with_a_newline_falls_back_to_the_challenge_page(student_client):
    challenge = make_challenge()
    response = student_client.post(
        f"/challenges/{challenge.id}/join", data={"next": "/challenges\r\nX-Injected: y"}
    )
    assert response.status_code == 303
    assert response.location == f"/challenges/{challenge.id}"
    assert "X-Injected" not in response.headers
    assert count_of(challenge) == 1


def test_joining_again_an_archived_challenge_one_is_in_says_so(student_client):
    from tests.helpers import make_participation

    challenge = make_challenge(status="published")
    make_participation(student_client.user, challenge)
    challenge.status = "archived"
    db.session.commit()
    page = student_client.post(f"/challenges/{challenge.id}/join", follow_redirects=True)
    text = page.get_data(as_text=True)
    assert "You are already in this challenge." in text
    assert "not open for joining" not in text
    assert count_of(challenge) == 1


def test_the_detail_page_gives_the_join_date_and_a_completion(student_client):
    from datetime import UTC, datetime

    from app.models import utcnow
    from tests.helpers import make_participation

    challenge = make_challenge()
    make_participation(
        student_client.user,
        challenge,
        status="completed",
        joined_at=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
        updated_at=utcnow(),
    )
    page = student_client.get(f"/challenges/{challenge.id}").get_data(as_text=True)
    assert "You joined on 02 Jun 2026 · completed" in page
    assert "You completed on" not in page


def test_my_challenges_gives_the_end_to_the_minute_in_utc_as_the_cards_do(student_client):
    from datetime import UTC, datetime

    from tests.helpers import make_participation

    # Ends just after midnight: the date alone reads as a whole day left that is not there.
    challenge = make_challenge(ends_at=datetime(2031, 5, 7, 0, 30, tzinfo=UTC))
    make_participation(student_client.user, challenge)
    page = student_client.get("/me/challenges").get_data(as_text=True)
    assert "07 May 2031 00:30 UTC" in page
    card = student_client.get(f"/challenges/{challenge.id}").get_data(as_text=True)
    assert "07 May 2031 00:30 UTC" in card


@pytest.mark.parametrize("closing", ["archived", "ended"])
def test_a_join_racing_the_challenge_closing_is_refused(app, closing):
    """The page checked the challenge while it was open; a professor closed it before the join
    was written."""
    from app.challenges.service import ParticipationError
    from app.models import utcnow

    challenge, student = make_challenge(status="published"), make_user("student")
    changes = {"status": "archived"} if closing == "archived" else {"ends_at": utcnow()}
    # Written behind the loaded object's back, as another request's commit would be.
    db.session.execute(
        update(Challenge)
        .where(Challenge.id == challenge.id)
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    assert challenge.status == "published" and not challenge.has_ended()  # as loaded
    with pytest.raises(ParticipationError, match="not open for joining"):
        join(student.id, challenge)
    assert count_of(challenge) == 0
    assert db.session.scalar(select(func.count()).select_from(Participation)) == 0
