"""POST /recommendations/event: validation, all-or-nothing batches, dedupe, CSRF, no 5xx."""

import json
import logging
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.extensions import db
from app.models import RecommendationEvent, RecommendationSlate
from tests.helpers import make_category, make_challenge, make_user

URL = "/recommendations/event"


@pytest.fixture
def shown(student_client):
    """A slate of three cards the student was shown, as (slate_id, [challenge ids])."""
    owner, category = make_user("professor"), make_category()
    for _ in range(3):
        make_challenge(owner=owner, category=category)
    html = student_client.get("/challenges/recommended", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    slate_id = re.search(r"\?slate=([0-9a-f-]{36})", html).group(1)
    return slate_id, [int(i) for i in re.findall(r'href="/challenges/(\d+)\?slate=', html)]


def event(slate_id, challenge_id, type_="click", **kw):
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "challenge_id": challenge_id,
        "slate_id": slate_id,
        **kw,
    }


def stored(type_=None):
    query = select(func.count(RecommendationEvent.id))
    if type_:
        query = query.where(RecommendationEvent.type == type_)
    return db.session.scalar(query)


def test_one_event_is_stored_with_the_slates_context(student_client, shown):
    slate_id, ids = shown
    response = student_client.post(URL, json=event(slate_id, ids[1], position=1))
    assert response.status_code == 201 and response.json == {"stored": 1, "duplicates": 0}
    click = db.session.scalar(
        select(RecommendationEvent).where(RecommendationEvent.type == "click")
    )
    assert (click.user_id, click.challenge_id, click.slate_id, click.position, click.source) == (
        student_client.user.id,
        ids[1],
        slate_id,
        1,
        "heuristic",
    )


def test_the_same_event_twice_is_a_duplicate(student_client, shown):
    payload = event(*shown[0:1], shown[1][0], type_="dismiss")
    assert student_client.post(URL, json=payload).status_code == 201
    again = student_client.post(URL, json=payload)
    assert again.status_code == 200 and again.json == {"stored": 0, "duplicates": 1}
    other_id = student_client.post(URL, json={**payload, "event_id": str(uuid.uuid4())})
    assert other_id.status_code == 200  # one "not interested" per challenge, whatever the event id
    assert stored("dismiss") == 1


def test_a_click_already_recorded_by_the_detail_page_is_a_duplicate(student_client, shown):
    slate_id, ids = shown
    student_client.get(f"/challenges/{ids[0]}?slate={slate_id}")
    assert student_client.post(URL, json=event(slate_id, ids[0])).status_code == 200
    assert stored("click") == 1


def test_a_batch_is_stored_whole(student_client, shown):
    slate_id, ids = shown
    batch = [event(slate_id, i, "click") for i in ids]
    response = student_client.post(URL, json={"events": batch})
    assert response.status_code == 201 and response.json["stored"] == 3


def test_events_of_a_card_taken_back_to_draft_after_it_was_shown_are_taken(student_client, shown):
    from app.models import Challenge

    slate_id, ids = shown
    db.session.get(Challenge, ids[1]).status = "draft"
    unseen = make_challenge(owner=make_user("professor"), category=make_category(), status="draft")
    db.session.commit()
    batch = [event(slate_id, i, "impression") for i in ids] + [event(slate_id, ids[1])]
    response = student_client.post(URL, json={"events": batch})
    # The server recorded the impressions when it served the slate: the client's are repeats.
    assert response.status_code == 201
    assert response.json == {"stored": 1, "duplicates": len(ids)}
    # A draft the student was never served is as unknown as a missing one.
    refused = student_client.post(URL, json=event(slate_id, unseen.id, "dismiss"))
    assert refused.status_code == 400
    assert refused.json["problems"] == [f"challenge_id: no challenge {unseen.id}"]


def test_one_bad_event_rejects_the_whole_batch_and_logs_why(student_client, shown, caplog):
    slate_id, ids = shown
    theirs = RecommendationSlate(id=str(uuid.uuid4()), user_id=make_user().id, source="heuristic")
    db.session.add(theirs)
    db.session.commit()
    batch = [event(slate_id, ids[0]), event(theirs.id, ids[1]), event(slate_id, 999_999)]
    before = stored()
    with caplog.at_level(logging.WARNING, logger="app.recs.routes"):
        response = student_client.post(URL, json={"events": batch})
    assert response.status_code == 400
    assert response.json["problems"] == [
        f"events[1].slate_id: no slate {theirs.id} was shown to you",
        "events[2].challenge_id: no challenge 999999",
    ]
    assert stored() == before
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "events[1].slate_id" in line
        and f"user_id={student_client.user.id}" in line
        and "127.0.0.1" in line
    )


@pytest.mark.parametrize(
    "payload, problem",
    [
        ({"events": []}, "events: must not be empty"),
        ([], "body: must be one event object"),
        (
            {"event_id": "nope", "type": "click", "challenge_id": 1, "slate_id": "x"},
            "event_id: must be a UUID string",
        ),
        ({"type": "join"}, "event_id: required"),
        ({"events": [{}], "user_id": 7}, "unknown field(s) next to events: user_id"),
        ({"events": [1]}, "events[0]: must be an object with event_id, type"),
    ],
)
def test_schema_problems_are_named(student_client, shown, payload, problem):
    response = student_client.post(URL, json=payload)
    assert response.status_code == 400
    assert response.json["error"].startswith(problem)


def test_types_are_checked(student_client, shown):
    slate_id, ids = shown
    bad = event(slate_id, str(ids[0]), "join", position=True, user_id=1)
    problems = student_client.post(URL, json=bad).json["problems"]
    assert problems == [
        "unknown field(s): user_id",
        "type: must be one of impression, click, dismiss",
        "challenge_id: must be an integer",
        "position: must be an integer",
    ]


def test_batch_size_limit(student_client, shown, app):
    slate_id, ids = shown
    app.config["RECS_EVENT_BATCH_LIMIT"] = 2
    response = student_client.post(URL, json={"events": [event(slate_id, i) for i in ids]})
    assert response.status_code == 400 and "limit is 2" in response.json["error"]


def test_body_size_limit(student_client, shown, app):
    app.config["MAX_CONTENT_LENGTH"] = 200
    response = student_client.post(
        URL, data=json.dumps({"events": ["x" * 500]}), content_type="application/json"
    )
    assert response.status_code == 413 and "larger than 200 bytes" in response.json["error"]


def test_form_bodies_for_send_beacon(student_client, shown):
    slate_id, ids = shown
    single = {k: str(v) for k, v in event(slate_id, ids[0], position=0).items()}
    assert student_client.post(URL, data=single).status_code == 201
    batch = {
        "events": json.dumps([event(slate_id, ids[1], "dismiss")]),
        "csrf_token": "ignored-here",
    }
    assert student_client.post(URL, data=batch).status_code == 201
    assert student_client.post(URL, data={"events": "[not json"}).status_code == 400
    assert student_client.post(URL, data="x", content_type="text/plain").status_code == 400


def test_logged_out_is_401(client):
    assert client.post(URL, json={}).status_code == 401


def test_csrf_token_is_required_by_header_or_form_field(student_client, shown, app):
    slate_id, ids = shown
    app.config["WTF_CSRF_ENABLED"] = True
    page = student_client.get("/challenges").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    assert student_client.post(URL, json=event(slate_id, ids[0])).status_code == 400
    assert (
        student_client.post(
            URL, json=event(slate_id, ids[0]), headers={"X-CSRFToken": token}
        ).status_code
        == 201
    )
    form = {**{k: str(v) for k, v in event(slate_id, ids[1]).items()}, "csrf_token": token}
    assert student_client.post(URL, data=form).status_code == 201


# --- property: nothing a client sends gets a 5xx or a partial write ------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def near_events(slate_id, ids):
    """Events whose fields are each valid or arbitrary, so every validation branch is reached."""

    def field(valid):
        return st.one_of(
            valid, valid, valid, JSON_VALUES
        )  # mostly valid, so some batches get stored

    return st.fixed_dictionaries(
        {
            "event_id": field(st.uuids().map(str)),
            "type": field(st.sampled_from(["impression", "click", "dismiss", "join"])),
            "challenge_id": field(
                st.sampled_from(ids) | st.integers(min_value=-5, max_value=2**40)
            ),
            "slate_id": field(st.just(slate_id) | st.uuids().map(str)),
        },
        optional={
            "position": field(st.integers(min_value=-2, max_value=20_000)),
            "user_id": st.integers(),
        },
    )


def bodies(slate_id, ids):
    event_ = near_events(slate_id, ids)
    as_json = st.one_of(
        JSON_VALUES, event_, st.fixed_dictionaries({"events": st.lists(event_, max_size=4)})
    )
    form = st.dictionaries(
        st.sampled_from(
            ["event_id", "type", "challenge_id", "slate_id", "position", "events", "csrf_token"]
        )
        | st.text(max_size=8),
        st.text(max_size=40) | st.sampled_from([slate_id, *map(str, ids)]),
        max_size=6,
    )
    raw = st.tuples(
        st.binary(max_size=200),
        st.sampled_from(
            [
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ]
        ),
    )
    return st.one_of(
        as_json.map(lambda body: {"json": body}),
        form.map(lambda body: {"data": body}),
        raw.map(lambda pair: {"data": pair[0], "content_type": pair[1]}),
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_payload_gets_a_5xx_or_a_partial_write(student_client, shown, data):
    request = data.draw(bodies(*shown))
    before = stored()
    response = student_client.post(URL, **request)
    assert response.status_code in (200, 201, 400), response.get_data(as_text=True)[:300]
    if response.status_code == 400:
        assert stored() == before
        assert response.json["problems"]
    else:
        assert stored() == before + response.json["stored"]


def test_restore_is_not_a_client_event_but_a_dismiss_after_one_stands_again(
    student_client, shown
):
    """Taking back "not interested" is the restore route's; a client can dismiss again after."""
    from app.recs import events as recs_events

    slate_id, ids = shown
    refused = student_client.post(URL, json=event(slate_id, ids[0], "restore"))
    assert refused.status_code == 400
    assert refused.get_json()["problems"] == ["type: must be one of impression, click, dismiss"]
    assert student_client.post(URL, json=event(slate_id, ids[0], "dismiss")).status_code == 201
    assert student_client.post(URL, json=event(slate_id, ids[0], "dismiss")).status_code == 200
    assert recs_events.record_restore(student_client.user.id, ids[0])
    assert student_client.post(URL, json=event(slate_id, ids[0], "dismiss")).status_code == 201
    kinds = db.session.scalars(
        select(RecommendationEvent.type)
        .where(RecommendationEvent.type.in_(("dismiss", "restore")))
        .order_by(RecommendationEvent.id)
    )
    assert kinds.all() == ["dismiss", "restore", "dismiss"]


def test_a_dismiss_sent_in_the_same_microsecond_as_the_restore_before_it_stands(
    student_client, shown, monkeypatch
):
    """Which of a dismiss and a restore came last is read from their moments; a restore is
    dated at or after the dismiss it takes back, so a client's dismiss after it stands even when
    the clock has not moved on (or another server's clock runs ahead)."""
    from datetime import UTC, datetime

    from app.recs import events as recs_events
    from app.recs.eligibility import excluded_challenge_ids

    slate_id, ids = shown
    monkeypatch.setattr(recs_events, "utcnow", lambda: datetime(2026, 11, 27, tzinfo=UTC))
    assert student_client.post(URL, json=event(slate_id, ids[0], "dismiss")).status_code == 201
    assert recs_events.record_restore(student_client.user.id, ids[0])
    assert student_client.post(URL, json=event(slate_id, ids[0], "dismiss")).status_code == 201
    assert ids[0] in excluded_challenge_ids(student_client.user.id)
