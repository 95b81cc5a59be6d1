"""GET /api/v1/recommendations and /api/v1/openapi.json: shape, access rules, parameters, and
conformance to the OpenAPI document (schemathesis, in process)."""

import logging
import re
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance
from sqlalchemy import func, select

from app.extensions import db
from app.models import SOURCES, RecommendationEvent, RecommendationSlate
from tests.helpers import PASSWORD, login, make_category, make_challenge, make_user

URL = "/api/v1/recommendations"
ITEM_KEYS = {"challenge_id", "title", "url", "score", "reason", "source", "position"}


@pytest.fixture
def challenges(app):
    owner, category = make_user("professor"), make_category("Data Science")
    return [make_challenge(owner=owner, category=category, title=f"Dataset {i}") for i in range(8)]


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_a_student_reads_their_own_slate(student_client, challenges):
    response = student_client.get(URL + "?k=3")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"slate_id", "source", "model_version", "arm", "items", "next_offset"}
    assert (body["source"], body["model_version"], body["arm"]) == ("heuristic", None, None)
    assert [item["position"] for item in body["items"]] == [0, 1, 2]
    assert body["next_offset"] == 3
    for item in body["items"]:
        assert set(item) == ITEM_KEYS and item["reason"] and item["source"] == "heuristic"
        assert item["url"] == f"/challenges/{item['challenge_id']}?slate={body['slate_id']}"
    slate = db.session.get(RecommendationSlate, body["slate_id"])
    assert slate.user_id == student_client.user.id
    assert count(RecommendationEvent) == 0  # API clients report impressions themselves


def test_the_api_serves_the_fragments_ranking(student_client, challenges):
    html = student_client.get("/challenges/recommended", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    shown = [int(i) for i in re.findall(r'href="/challenges/(\d+)\?slate=', html)]
    body = student_client.get(f"{URL}?k={len(shown)}").get_json()
    assert [item["challenge_id"] for item in body["items"]] == shown


def test_events_about_an_api_slate_are_accepted_with_the_cards_source(student_client, challenges):
    body = student_client.get(URL + "?k=2").get_json()
    card = body["items"][1]

    def report(challenge_id, type_="impression", **claimed):
        return student_client.post(
            "/recommendations/event",
            json={
                "event_id": str(uuid.uuid4()),
                "type": type_,
                "challenge_id": challenge_id,
                "slate_id": body["slate_id"],
                **claimed,
            },
        )

    # What the client claims about the card's place and origin does not count: the served card does.
    claimed = next(source for source in SOURCES if source != card["source"])
    response = report(card["challenge_id"], position=0, source=claimed)
    assert response.status_code == 201, response.get_json()
    stored = db.session.scalar(select(RecommendationEvent))
    assert (stored.slate_id, stored.position, stored.source) == (
        body["slate_id"],
        card["position"],
        card["source"],
    )
    # A card the slate never had cannot be reported, nor clicked through its link.
    other = next(c.id for c in challenges if c.id not in {i["challenge_id"] for i in body["items"]})
    refused = report(other, "click")
    assert refused.status_code == 400
    assert f"challenge {other} is not a card of slate" in refused.get_json()["error"]
    student_client.get(f"/challenges/{other}?slate={body['slate_id']}")
    assert db.session.scalar(select(func.count()).select_from(RecommendationEvent)) == 1
    # Clicking the served card's link credits the card's own source, not the slate's.
    student_client.get(card["url"])
    click = db.session.scalar(
        select(RecommendationEvent).where(RecommendationEvent.type == "click")
    )
    assert (click.position, click.source) == (card["position"], card["source"])


def test_the_next_page_continues_the_slate(student_client, challenges):
    first = student_client.get(URL + "?k=3").get_json()
    second = student_client.get(
        f"{URL}?k=3&offset={first['next_offset']}&slate_id={first['slate_id']}"
    ).get_json()
    last = student_client.get(
        f"{URL}?k=3&offset={second['next_offset']}&slate_id={first['slate_id']}"
    ).get_json()
    pages = [first, second, last]
    assert {page["slate_id"] for page in pages} == {first["slate_id"]}
    ids = [item["challenge_id"] for page in pages for item in page["items"]]
    assert sorted(ids) == sorted(c.id for c in challenges)
    assert [item["position"] for page in pages for item in page["items"]] == list(range(8))
    assert last["next_offset"] is None
    assert count(RecommendationSlate) == 1


def test_a_student_cannot_read_another_students_slate(student_client, challenges, app):
    other = make_user()
    theirs = app.test_client()
    login(theirs, other, PASSWORD)
    their_slate = theirs.get(URL).get_json()["slate_id"]

    response = student_client.get(f"{URL}?user_id={other.id}")
    assert response.status_code == 403 and "user_id" in response.get_json()["error"]
    response = student_client.get(f"{URL}?slate_id={their_slate}&offset=2")
    assert response.status_code == 404 and "items" not in response.get_json()
    own = student_client.get(f"{URL}?user_id={student_client.user.id}")
    assert own.status_code == 200
    own = student_client.get(f"{URL}?user_id=0{student_client.user.id}")
    assert own.status_code == 200


def test_an_admin_names_a_student_and_stores_nothing(admin_client, challenges):
    student, professor = make_user(), make_user("professor")
    assert admin_client.get(URL).status_code == 400
    response = admin_client.get(f"{URL}?user_id={student.id}&k=2")
    assert response.status_code == 200 and len(response.get_json()["items"]) == 2
    assert count(RecommendationSlate) == 0
    for user_id in (professor.id, 10**9):
        assert admin_client.get(f"{URL}?user_id={user_id}").status_code == 404


def test_professors_and_anonymous_callers_are_refused_in_json(client, professor_client):
    anonymous = client.get(URL)
    assert anonymous.status_code == 401 and anonymous.get_json()["error"]
    forbidden = professor_client.get(URL)
    assert forbidden.status_code == 403 and forbidden.get_json()["error"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("k=0", "k"),
        ("k=61", "k"),
        ("k=abc", "k"),
        ("k=1.5", "k"),
        ("k=%EF%BC%91", "k"),  # a full-width digit: isdigit() says yes, int() agrees, we do not
        ("k=1&k=2", "k"),
        ("offset=-1", "offset"),
        ("offset=60", "offset"),
        ("offset=99999999999999999999", "offset"),
        ("slate_id=not-a-uuid", "slate_id"),
        ("user_id=abc", "user_id"),
        ("user_id=0", "user_id"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(student_client, challenges, caplog, query, named):
    with caplog.at_level(logging.INFO, logger="app.recs.api"):
        response = student_client.get(f"{URL}?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(f"{named}:")
    assert any("api refused" in r.getMessage() for r in caplog.records)


def test_the_openapi_document_describes_the_api(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    assert {"/api/v1/recommendations", "/api/v1/openapi.json", "/recommendations/event"} <= set(
        document["paths"]
    )
    assert tuple(document["components"]["schemas"]["Source"]["enum"]) == SOURCES
    item = document["components"]["schemas"]["SlateItem"]
    assert set(item["required"]) == ITEM_KEYS


# --- conformance: schemathesis drives the app in process, logged in as a student ---------------

USER_AGENT = "schemathesis-in-process"


@pytest.fixture
def api_schema(app):
    owner, category = make_user("professor"), make_category()
    for _ in range(4):
        make_challenge(owner=owner, category=category)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    # The session cookie is the test's to send; generated cases vary the parameters and bodies.
    schema.config.generation.update(with_security_parameters=False)
    return schema


@pytest.fixture
def student_cookie(app):
    client = app.test_client()
    user = make_user()
    client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD},
        headers={"User-Agent": USER_AGENT},
    )
    return client.get_cookie("session").value


POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# The document itself takes no input, so it has no invalid requests to try.
CONFORMANCE = [
    ("GET", "/api/v1/recommendations", POSITIVE),
    ("GET", "/api/v1/recommendations", NEGATIVE),
    ("GET", "/api/v1/openapi.json", POSITIVE),
    ("POST", "/recommendations/event", POSITIVE),
    ("POST", "/recommendations/event", NEGATIVE),
]


@pytest.mark.parametrize(
    ("method", "path", "mode"), CONFORMANCE, ids=[f"{m} {p} {g.value}" for m, p, g in CONFORMANCE]
)
def test_the_api_conforms_to_its_openapi_document(api_schema, student_cookie, method, path, mode):
    """Positive cases: every answer is documented and matches its schema; negative cases (values
    outside the schema) must be refused with a documented 4xx, never a 5xx."""
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def conforms(case):
        # Schema-valid requests may still be refused by design (another student's id, an unknown
        # slate), and each such answer is documented, so "valid data must be accepted" is off;
        # the session is the test's own, so is "auth must matter" (the 401s are tested above).
        response = case.call_and_validate(
            headers={"User-Agent": USER_AGENT},
            cookies={"session": student_cookie},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},  # the test client's, where the login ran
            excluded_checks=[positive_data_acceptance, ignored_auth],
        )
        statuses.add(response.status_code)

    statuses: set[int] = set()
    conforms()
    if method == "GET" and mode == POSITIVE:
        assert 200 in statuses, statuses  # the session works: this is not a run of 401s


def test_api_pages_are_stored_in_one_write_and_continue_past_what_they_served(
    student_client, challenges
):
    first = student_client.get(URL + "?k=3").get_json()
    served = [item["challenge_id"] for item in first["items"]]
    # "Not interested" on a served card, before any impression was reported: page two must not
    # shift and serve a card of page one again, nor skip one.
    assert student_client.post(
        f"/challenges/recommended/{served[0]}/dismiss", data={"slate": first["slate_id"]}
    ).status_code in (200, 303)
    second = student_client.get(
        f"{URL}?k=3&offset={first['next_offset']}&slate_id={first['slate_id']}"
    ).get_json()
    again = {item["challenge_id"] for item in second["items"]} & set(served)
    assert not again and [i["position"] for i in second["items"]] == [3, 4, 5]


def test_events_about_a_slate_served_before_cards_were_kept_are_taken_as_before(
    student_client, challenges
):
    """An API slate from before the upgrade has no stored cards and no impressions."""
    slate = RecommendationSlate(
        id=str(uuid.uuid4()), user_id=student_client.user.id, source="model"
    )
    db.session.add(slate)
    db.session.commit()
    # Its client reports what it showed, then a click: both are taken, the click after the
    # client's own impression too (a client's impression proves nothing, nor refuses anything).
    for type_ in ("impression", "click"):
        response = student_client.post(
            "/recommendations/event",
            json={
                "event_id": str(uuid.uuid4()),
                "type": type_,
                "challenge_id": challenges[0].id,
                "slate_id": slate.id,
                "source": "model",
            },
        )
        assert response.status_code == 201, response.get_json()
    rows = db.session.execute(
        select(
            RecommendationEvent.slate_id, RecommendationEvent.position, RecommendationEvent.source
        )
    ).all()
    assert rows == [(slate.id, None, None)] * 2


def test_not_interested_about_a_card_of_another_slate_stands_without_credit(
    student_client, challenges
):
    body = student_client.get(URL + "?k=2").get_json()
    other = next(c.id for c in challenges if c.id not in {i["challenge_id"] for i in body["items"]})
    response = student_client.post(
        "/recommendations/event",
        json={
            "event_id": str(uuid.uuid4()),
            "type": "dismiss",
            "challenge_id": other,
            "slate_id": body["slate_id"],
        },
    )
    assert response.status_code == 201, response.get_json()
    dismiss = db.session.scalar(select(RecommendationEvent))
    assert (dismiss.challenge_id, dismiss.slate_id, dismiss.source) == (other, None, None)


def test_a_slate_older_than_a_day_without_cards_takes_no_events(student_client, challenges):
    from datetime import timedelta

    from app.models import utcnow

    slate = RecommendationSlate(
        id=str(uuid.uuid4()),
        user_id=student_client.user.id,
        source="model",
        created_at=utcnow() - timedelta(days=2),
    )
    db.session.add(slate)
    db.session.commit()
    response = student_client.post(
        "/recommendations/event",
        json={
            "event_id": str(uuid.uuid4()),
            "type": "click",
            "challenge_id": challenges[0].id,
            "slate_id": slate.id,
        },
    )
    assert response.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(RecommendationEvent)) == 0


def test_one_card_per_place_when_a_page_is_asked_for_again(student_client, challenges):
    from app.models import RecommendationSlateCard

    first = student_client.get(URL + "?k=3").get_json()
    dismissed = first["items"][0]["challenge_id"]
    student_client.post(
        f"/challenges/recommended/{dismissed}/dismiss", data={"slate": first["slate_id"]}
    )
    student_client.get(f"{URL}?k=3&offset=0&slate_id={first['slate_id']}")
    positions = db.session.scalars(
        select(RecommendationSlateCard.position).where(
            RecommendationSlateCard.slate_id == first["slate_id"]
        )
    ).all()
    assert sorted(positions) == sorted(set(positions))


def test_a_page_asked_for_again_gives_the_places_its_cards_are_stored_at(
    student_client, challenges
):
    """A retry of a page after the student joined one of its cards: the cards served before keep
    their places, the new card takes a free one, and the client's events about that page are all
    taken, at the places the page gave."""
    from app.models import RecommendationSlateCard

    first = student_client.get(URL + "?k=6").get_json()
    slate_id = first["slate_id"]
    joined = first["items"][0]["challenge_id"]
    assert student_client.post(f"/challenges/{joined}/join").status_code == 303
    again = student_client.get(f"{URL}?k=6&offset=0&slate_id={slate_id}").get_json()
    before = {item["challenge_id"]: item["position"] for item in first["items"]}
    after = {item["challenge_id"]: item["position"] for item in again["items"]}
    assert joined not in after
    new = [c for c in after if c not in before]
    assert len(new) == 1 and after[new[0]] == 6
    assert again["next_offset"] == 7  # the next page starts past the new card
    assert all(after[c] == before[c] for c in after if c in before)
    stored = dict(
        db.session.execute(
            select(RecommendationSlateCard.challenge_id, RecommendationSlateCard.position).where(
                RecommendationSlateCard.slate_id == slate_id
            )
        ).all()
    )
    assert {c: stored[c] for c in after} == after
    for item in again["items"]:
        response = _report(student_client, "impression", again, item)
        assert response.status_code == 201, response.get_json()
    impressions = dict(
        db.session.execute(
            select(RecommendationEvent.challenge_id, RecommendationEvent.position).where(
                RecommendationEvent.type == "impression"
            )
        ).all()
    )
    assert impressions == after


def test_a_card_whose_place_a_concurrent_request_took_gets_the_next_free_one(
    student_client, challenges, monkeypatch
):
    """A retry racing the original: both placed their new card at the same free place, and the
    one that stores second moves its card on and says so, instead of leaving it unstored."""
    from app.models import RecommendationSlateCard
    from app.recs import events

    first = student_client.get(URL + "?k=6").get_json()
    slate_id = first["slate_id"]
    joined = first["items"][0]["challenge_id"]
    student_client.post(f"/challenges/{joined}/join")
    stale = events.served_places(slate_id)  # what the racing request read
    other = make_challenge(status="draft")  # the card the other request stored first, at 6
    db.session.add(
        RecommendationSlateCard(slate_id=slate_id, challenge_id=other.id, position=6, source="x")
    )
    db.session.commit()
    monkeypatch.setattr(events, "served_places", lambda slate: dict(stale))
    again = student_client.get(f"{URL}?k=6&offset=0&slate_id={slate_id}").get_json()
    before = {item["challenge_id"] for item in first["items"]}
    [new] = [item for item in again["items"] if item["challenge_id"] not in before]
    assert new["position"] == 7
    stored = dict(
        db.session.execute(
            select(RecommendationSlateCard.challenge_id, RecommendationSlateCard.position).where(
                RecommendationSlateCard.slate_id == slate_id
            )
        ).all()
    )
    assert stored[new["challenge_id"]] == 7 and stored[other.id] == 6
    assert all(stored[item["challenge_id"]] == item["position"] for item in again["items"])
    assert len(again["items"]) == 6  # the whole page, the moved card with the others
    assert again["next_offset"] == 8
    response = _report(student_client, "impression", again, new)
    assert response.status_code == 201, response.get_json()


def test_a_page_asked_for_again_at_the_end_of_a_full_slate_stays_within_it(student_client):
    owner, category = make_user("professor"), make_category("Data Science")
    for i in range(64):
        make_challenge(owner=owner, category=category, title=f"Dataset {i}")
    body = student_client.get(URL + "?k=10").get_json()
    slate_id = body["slate_id"]
    while body["next_offset"] is not None:
        last = body
        body = student_client.get(
            f"{URL}?k=10&offset={body['next_offset']}&slate_id={slate_id}"
        ).get_json()
    last = body if body["items"] else last
    assert last["items"][-1]["position"] == 59
    joined = last["items"][0]["challenge_id"]
    assert student_client.post(f"/challenges/{joined}/join").status_code == 303
    offset = last["items"][0]["position"]
    again = student_client.get(f"{URL}?k=10&offset={offset}&slate_id={slate_id}").get_json()
    positions = [item["position"] for item in again["items"]]
    assert positions == sorted(positions) and max(positions) <= 59
    assert joined not in [item["challenge_id"] for item in again["items"]]
    assert again["next_offset"] is None


def test_the_page_after_a_dismissal_without_javascript_shows_the_places_stored(student_client):
    """Not interested, without JavaScript, reloads the slate's first page: the cards after the
    dismissed one keep their places, and the card that fills the gap gets a place of its own."""
    owner, category = make_user("professor"), make_category("Data Science")
    for i in range(9):
        make_challenge(owner=owner, category=category, title=f"Dataset {i}")
    page = student_client.get("/challenges/recommended").get_data(as_text=True)
    cards = _places(page)
    assert [p for _, p in cards] == [0, 1, 2, 3, 4, 5]
    slate_id = re.search(r'data-slate="([^"]+)"', page).group(1)
    dismissed = cards[3][0]
    reloaded = student_client.post(
        f"/challenges/recommended/{dismissed}/dismiss",
        data={"slate": slate_id, "next": f"/challenges/recommended?slate={slate_id}"},
        follow_redirects=True,
    ).get_data(as_text=True)
    shown = _places(reloaded)
    assert dismissed not in [c for c, _ in shown]
    assert shown[:5] == cards[:3] + cards[4:]
    assert shown[5][1] == 6
    stored = db.session.execute(
        select(RecommendationEvent.challenge_id, RecommendationEvent.position).where(
            RecommendationEvent.type == "impression", RecommendationEvent.slate_id == slate_id
        )
    ).all()
    positions = [p for _, p in stored]
    assert sorted(positions) == sorted(set(positions)) == [0, 1, 2, 3, 4, 5, 6]
    assert set(shown) <= {(c, p) for c, p in stored}
    # Show more goes on past every card the page showed: none comes back on the next page.
    more = re.search(r'class="button" href="([^"]+)"[^>]*>Show more', reloaded).group(1)
    assert "offset=7" in more
    following = _places(student_client.get(more.replace("&amp;", "&")).get_data(as_text=True))
    assert following and not {c for c, _ in following} & {c for c, _ in shown + cards}
    assert [p for _, p in following] == list(range(7, 7 + len(following)))


def _places(page: str) -> list[tuple[int, int]]:
    """(challenge id, data-position) of each card of a rendered slate page, in page order."""
    found = re.findall(r'data-position="(\d+)".*?href="/challenges/(\d+)\?slate=', page, re.S)
    return [(int(challenge), int(position)) for position, challenge in found]


def _report(client, kind: str, body: dict, card: dict):
    """An API client reporting an event about one card of the page ``body``."""
    return client.post(
        "/recommendations/event",
        json={
            "event_id": str(uuid.uuid4()),
            "type": kind,
            "challenge_id": card["challenge_id"],
            "slate_id": body["slate_id"],
        },
    )


def _event_counts() -> dict[str, int]:
    return dict(
        db.session.execute(
            select(RecommendationEvent.type, func.count()).group_by(RecommendationEvent.type)
        ).all()
    )


def test_clicks_never_outnumber_impressions_on_an_api_card(student_client, challenges):
    body = student_client.get(URL + "?k=2").get_json()
    for _ in range(3):
        _report(student_client, "click", body, body["items"][0])
    assert _event_counts() == {"click": 1, "impression": 1}


def test_an_api_card_reported_shown_then_opened_counts_one_impression(student_client, challenges):
    body = student_client.get(URL + "?k=2").get_json()
    card = body["items"][0]
    assert _report(student_client, "impression", body, card).status_code == 201
    assert student_client.get(card["url"]).status_code == 200  # the card's link: a click
    assert _event_counts() == {"click": 1, "impression": 1}
