"""Object-level access to slates: every way a student can name a slate id (fragment, API, detail
link, "not interested", the event endpoint as JSON or form) refuses or ignores another student's
slate, so nobody reads it or writes events onto it."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import RecommendationEvent
from tests.helpers import PASSWORD, login, make_category, make_challenge, make_user

HTMX = {"HX-Request": "true"}


def shown_slate(client) -> tuple[str, list[int]]:
    html = client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    slate = re.search(r"\?slate=([0-9a-f-]{36})", html).group(1)
    return slate, [int(i) for i in re.findall(r'href="/challenges/(\d+)\?slate=', html)]


@pytest.fixture
def theirs(app, student_client):
    """Another student's slate (id and cards), shown to them, not to ``student_client``."""
    owner, category = make_user("professor"), make_category()
    for _ in range(8):
        make_challenge(owner=owner, category=category)
    other = app.test_client()
    login(other, make_user(), PASSWORD)
    return shown_slate(other)


def events_on(slate_id: str) -> int:
    return db.session.scalar(
        select(func.count(RecommendationEvent.id)).where(RecommendationEvent.slate_id == slate_id)
    )


def test_reading_another_students_slate_shows_none_of_it(student_client, theirs):
    slate, cards = theirs
    html = student_client.get(
        f"/challenges/recommended?slate={slate}&offset=2", headers=HTMX
    ).get_data(as_text=True)
    assert slate not in html
    response = student_client.get(f"/api/v1/recommendations?slate_id={slate}")
    assert response.status_code == 404 and "items" not in response.get_json()
    assert events_on(slate) == len(cards)  # only the owner's own impressions


@pytest.mark.parametrize("single", [True, False], ids=["one event", "batch"])
@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
def test_posting_events_on_another_students_slate_is_refused(
    student_client, theirs, single, as_form
):
    slate, cards = theirs
    one = {"event_id": str(uuid.uuid4()), "type": "click", "slate_id": slate}
    one["challenge_id"] = cards[0]
    if as_form:
        data = {k: str(v) for k, v in one.items()} if single else {"events": json.dumps([one])}
        response = student_client.post("/recommendations/event", data=data)
    else:
        body = one if single else {"events": [one]}
        response = student_client.post("/recommendations/event", json=body)
    assert response.status_code == 400
    assert f"no slate {slate} was shown to you" in response.get_json()["error"]
    assert events_on(slate) == len(cards)


def test_a_detail_link_with_another_students_slate_records_no_click(student_client, theirs):
    slate, cards = theirs
    assert student_client.get(f"/challenges/{cards[0]}?slate={slate}").status_code == 200
    student_client.post(f"/challenges/{cards[0]}/join")
    assert events_on(slate) == len(cards)
    join = db.session.scalar(select(RecommendationEvent).where(RecommendationEvent.type == "join"))
    assert join.slate_id is None and join.user_id == student_client.user.id


def test_not_interested_with_another_students_slate_is_not_attached_to_it(student_client, theirs):
    slate, cards = theirs
    response = student_client.post(
        f"/challenges/recommended/{cards[0]}/dismiss", data={"slate": slate}, headers=HTMX
    )
    assert response.status_code == 200
    dismiss = db.session.scalar(
        select(RecommendationEvent).where(RecommendationEvent.type == "dismiss")
    )
    assert dismiss.user_id == student_client.user.id and dismiss.slate_id is None
    assert events_on(slate) == len(cards)


def test_another_student_cannot_swallow_a_dismissal_by_guessing_its_event_id(app, student_client):
    """Server-made event ids are keyed with the secret: a student who posts, on their own slate,
    an event under the id the victim's dismissal would get cannot make that dismissal a
    'duplicate' that is never stored."""
    owner, category = make_user("professor"), make_category()
    for _ in range(8):
        make_challenge(owner=owner, category=category)
    victim_client = app.test_client()
    victim = make_user()
    login(victim_client, victim, PASSWORD)
    my_slate, my_cards = shown_slate(student_client)
    target = my_cards[0]
    guesses = [
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"dismiss:{victim.id}:{target}")),  # an unkeyed scheme
    ]
    for guess in guesses:
        response = student_client.post("/recommendations/event", json={
            "event_id": guess, "type": "click", "challenge_id": target, "slate_id": my_slate})
        assert response.status_code in (200, 201)
    response = victim_client.post(f"/challenges/recommended/{target}/dismiss", headers=HTMX)
    assert response.status_code < 400
    dismissed = db.session.scalar(
        select(func.count(RecommendationEvent.id)).where(
            RecommendationEvent.user_id == victim.id,
            RecommendationEvent.type == "dismiss",
            RecommendationEvent.challenge_id == target,
        )
    )
    assert dismissed == 1
