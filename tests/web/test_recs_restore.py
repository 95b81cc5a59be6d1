"""Taking back "Not interested": Undo in the fragment, without JavaScript, and on My challenges."""

import logging
import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Challenge, RecommendationEvent
from app.recs.eligibility import load_user_history
from tests.helpers import make_category, make_challenge, make_user, spend_limit

HTMX = {"HX-Request": "true"}


@pytest.fixture
def challenges(app):
    owner, category = make_user("professor"), make_category("Data Science")
    return [
        make_challenge(owner=owner, category=category, title=f"Challenge {i}") for i in range(9)
    ]


def kinds(user_id=None):
    query = select(RecommendationEvent.type, RecommendationEvent.challenge_id).where(
        RecommendationEvent.type.in_(("dismiss", "restore"))
    )
    if user_id is not None:
        query = query.where(RecommendationEvent.user_id == user_id)
    return db.session.execute(query.order_by(RecommendationEvent.id)).all()


def card_ids(html):
    return [int(i) for i in re.findall(r'href="/challenges/(\d+)\?slate=', html)]


def first_card(client):
    html = client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    return re.search(r"\?slate=([0-9a-f-]{36})", html).group(1), card_ids(html)[0]


def dismiss(client, challenge_id, slate_id=None, **headers):
    data = {"slate": slate_id, "next": "/challenges/recommended"} if slate_id else {}
    return client.post(
        f"/challenges/recommended/{challenge_id}/dismiss", data=data, headers=headers
    )


def restore(client, challenge_id, **data):
    return client.post(f"/challenges/recommended/{challenge_id}/restore", data=data, headers=HTMX)


def test_the_dismissed_placeholder_offers_an_accessible_undo(student_client, challenges):
    slate_id, target = first_card(student_client)
    html = dismiss(student_client, target, slate_id, **HTMX).get_data(as_text=True)
    assert 'role="status"' in html and "autofocus" in html
    form = re.search(r'<form method="post" class="inline recs-undo".*?</form>', html, re.S).group(0)
    # A real form (works without htmx) that htmx posts in place, with the token and the slate.
    assert f'action="/challenges/recommended/{target}/restore"' in form
    assert f'hx-post="/challenges/recommended/{target}/restore"' in form
    assert 'name="csrf_token"' in form and f'value="{slate_id}"' in form
    assert 'hx-target="closest .recs-dismissed"' in form
    assert re.search(r'<button type="submit"[^>]*aria-label="Undo: recommend “Challenge \d”', form)


def test_undo_in_the_fragment_brings_the_card_back_in_its_place(student_client, challenges):
    slate_id, target = first_card(student_client)
    dismiss(student_client, target, slate_id, **HTMX)
    assert target in load_user_history(student_client.user.id).dismissed_ids
    response = restore(student_client, target, slate=slate_id, next="/challenges/recommended")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert f'href="/challenges/{target}?slate={slate_id}" autofocus' in html
    assert 'data-position="0"' in html and "Not interested" in html
    assert 'id="recs-status" hx-swap-oob="innerHTML"' in html and "is back in your" in html
    # History is kept: the dismiss stays on record and a restore takes it back.
    assert kinds() == [("dismiss", target), ("restore", target)]
    assert target not in load_user_history(student_client.user.id).dismissed_ids
    seen = set()
    for _ in range(4):
        html = student_client.get("/challenges/recommended", headers=HTMX).get_data(True)
        seen.update(card_ids(html))
    assert target in seen


def test_undo_twice_stores_one_restore(student_client, challenges):
    slate_id, target = first_card(student_client)
    dismiss(student_client, target, slate_id, **HTMX)
    answers = [restore(student_client, target, slate=slate_id) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert kinds() == [("dismiss", target), ("restore", target)]


def test_dismiss_restore_dismiss_hides_it_again_and_each_step_is_kept(student_client, challenges):
    slate_id, target = first_card(student_client)
    dismiss(student_client, target, slate_id, **HTMX)
    restore(student_client, target, slate=slate_id)
    for _ in range(2):  # a double click on the second "Not interested"
        dismiss(student_client, target, slate_id, **HTMX)
    assert kinds() == [("dismiss", target), ("restore", target), ("dismiss", target)]
    ids = db.session.scalars(
        select(RecommendationEvent.event_id).where(RecommendationEvent.type == "dismiss")
    ).all()
    assert len(set(ids)) == 2
    assert target in load_user_history(student_client.user.id).dismissed_ids
    for _ in range(3):
        html = student_client.get("/challenges/recommended", headers=HTMX).get_data(True)
        assert target not in card_ids(html)


def test_recommend_again_of_a_challenge_no_longer_open_says_it_is_not_open(
    student_client, challenges
):
    target = challenges[2]
    dismiss(student_client, target.id)
    target.status = "archived"
    db.session.commit()
    page = student_client.post(
        f"/challenges/recommended/{target.id}/restore", follow_redirects=True
    ).get_data(as_text=True)
    assert f"“{target.title}” is no longer “Not interested”. It is not open now" in page
    assert "can be recommended to you again" not in page


def test_undo_of_a_card_that_cannot_come_back_says_so_instead(student_client, challenges):
    slate_id, target = first_card(student_client)
    dismiss(student_client, target, slate_id, **HTMX)
    challenge = db.session.get(Challenge, target)
    challenge.status = "archived"
    db.session.commit()
    html = restore(student_client, target, slate=slate_id).get_data(as_text=True)
    assert "<article" not in html and "It is not open now, so it will be recommended only" in html
    assert "autofocus" in html
    # No slate (or another student's) puts no card back either: the message stands in.
    other = challenges[5]
    dismiss(student_client, other.id)
    html = restore(student_client, other.id, slate="not-a-slate").get_data(as_text=True)
    assert "<article" not in html and f"“{other.title}” can be recommended" in html


def test_without_javascript_the_message_offers_undo_once(student_client, challenges):
    target = challenges[0]
    response = dismiss(student_client, target.id, "x")
    assert response.status_code == 303
    page = student_client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"We will not recommend “{target.title}” again." in page
    form = re.search(r'<form method="post" class="inline recs-undo".*?</form>', page, re.S)
    assert form and f'action="/challenges/recommended/{target.id}/restore"' in form.group(0)
    assert 'name="next" value="/challenges/recommended"' in form.group(0)
    again = student_client.get("/challenges/recommended").get_data(as_text=True)
    assert "recs-undo" not in again  # offered with its message only
    undone = student_client.post(
        f"/challenges/recommended/{target.id}/restore", data={"next": "/challenges/recommended"}
    )
    assert undone.status_code == 303 and undone.headers["Location"] == "/challenges/recommended"
    page = student_client.get("/challenges/recommended").get_data(as_text=True)
    assert f"“{target.title}” can be recommended to you again." in page
    assert kinds() == [("dismiss", target.id), ("restore", target.id)]


def test_my_challenges_lists_what_stands_and_restores_it(student_client, challenges):
    first, second, third = challenges[:3]
    for challenge in (first, second, third):
        dismiss(student_client, challenge.id)
    restore(student_client, third.id)
    other_student = make_user()  # another student's dismissal is not listed
    from app.recs import events

    events.record_dismiss(other_student.id, challenges[4].id)
    page = student_client.get("/me/challenges").get_data(as_text=True)
    section = page[page.index('id="not-interested-title"') :]
    assert first.title in section and second.title in section
    assert third.title not in section and challenges[4].title not in section
    assert 'aria-label="Recommend again: “Challenge 0”"' in section
    answer = student_client.post(f"/challenges/recommended/{first.id}/restore")
    assert answer.status_code == 303 and answer.headers["Location"] == "/me/challenges"
    page = student_client.get("/me/challenges").get_data(as_text=True)
    assert f"“{first.title}” can be recommended to you again." in page
    section = page[page.index('id="not-interested-title"') :]
    assert first.title not in section and second.title in section


def test_a_student_cannot_restore_another_students_dismissal(app, student_client, challenges):
    from app.recs import events

    owner = make_user()
    events.record_dismiss(owner.id, challenges[0].id)
    answer = restore(student_client, challenges[0].id)
    assert answer.status_code == 200
    assert kinds() == [("dismiss", challenges[0].id)]
    assert challenges[0].id in load_user_history(owner.id).dismissed_ids


def test_bad_input_is_a_404_not_an_error(student_client, challenges):
    draft = make_challenge(
        owner=challenges[0].owner, category=challenges[0].category, status="draft"
    )
    assert restore(student_client, draft.id).status_code == 404
    assert restore(student_client, 999_999).status_code == 404
    assert student_client.post("/challenges/recommended/x/restore").status_code == 404
    assert (
        student_client.get(f"/challenges/recommended/{challenges[0].id}/restore").status_code == 405
    )
    # Junk fields are ignored; an unsafe next is not followed.
    dismiss(student_client, challenges[1].id)
    answer = student_client.post(
        f"/challenges/recommended/{challenges[1].id}/restore",
        data={"slate": "z" * 5000, "next": "//evil.test/"},
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/me/challenges"
    assert kinds() == [("dismiss", challenges[1].id), ("restore", challenges[1].id)]


def test_restore_is_logged(student_client, challenges, caplog):
    dismiss(student_client, challenges[0].id)
    with caplog.at_level(logging.INFO, logger="app.recs"):
        restore(student_client, challenges[0].id)
        restore(student_client, challenges[0].id)
    lines = [r.getMessage() for r in caplog.records]
    user = student_client.user.id
    assert f"dismissal restored: user_id={user} challenge_id={challenges[0].id}" in lines
    assert any(line.startswith("restore with nothing to restore") for line in lines)


def test_restore_spends_the_request_budget(app, student_client, challenges):
    dismiss(student_client, challenges[0].id)
    spend_limit(app, 1)
    assert restore(student_client, challenges[0].id).status_code == 200
    refused = restore(student_client, challenges[0].id)
    assert refused.status_code == 429 and refused.headers["HX-Reswap"] == "none"


def test_my_challenges_lists_a_challenge_dismissed_twice_once(student_client, challenges):
    from datetime import timedelta

    from app.models import utcnow
    from tests.helpers import make_event

    target = challenges[3]
    first = utcnow() - timedelta(hours=2)
    # Two dismisses that both stand: the button and a client's event, racing.
    make_event(student_client.user, target, "dismiss", event_id="d-1", created_at=first)
    make_event(student_client.user, target, "dismiss", event_id="d-2", created_at=utcnow())
    page = student_client.get("/me/challenges").get_data(as_text=True)
    assert page.count(f"Recommend again: “{target.title}”") == 1
