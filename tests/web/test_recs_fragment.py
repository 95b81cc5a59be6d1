"""The "Recommended for you" fragment: impressions, show more, click, join, dismiss."""

import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Challenge, Participation, RecommendationEvent, RecommendationSlate
from tests.helpers import make_category, make_challenge, make_user

HTMX = {"HX-Request": "true"}


@pytest.fixture
def challenges(app):
    owner, category = make_user("professor"), make_category("Data Science")
    return [
        make_challenge(owner=owner, category=category, title=f"Challenge {i}") for i in range(9)
    ]


def events(type_="impression"):
    return db.session.scalars(
        select(RecommendationEvent)
        .where(RecommendationEvent.type == type_)
        .order_by(RecommendationEvent.position)
    ).all()


def card_ids(html):
    return [int(i) for i in re.findall(r'href="/challenges/(\d+)\?slate=', html)]


def slate_of(html):
    return re.search(r"\?slate=([0-9a-f-]{36})", html).group(1)


def more_link(html):
    match = re.search(r'hx-get="([^"]+)"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def test_one_load_of_n_cards_writes_exactly_n_impressions(student_client, challenges, app):
    app.config["RECS_SLATE_SIZE"] = 4
    response = student_client.get("/challenges/recommended", headers=HTMX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert response.headers["Cache-Control"] == "no-store"
    shown = events()
    assert [e.challenge_id for e in shown] == card_ids(html) and len(shown) == 4
    assert [e.position for e in shown] == [0, 1, 2, 3]
    slate = db.session.get(RecommendationSlate, slate_of(html))
    assert slate.user_id == student_client.user.id
    assert {(e.slate_id, e.source, e.model_version, e.user_id) for e in shown} == {
        (slate.id, "heuristic", None, student_client.user.id)
    }
    assert "Not interested" in html and 'class="reason"' in html
    # Each card says where it came from, as its impression does.
    assert re.findall(r'data-source="(\w+)" data-position="(\d+)"', html) == [
        (e.source, str(e.position)) for e in shown
    ]
    assert 'data-source="heuristic"' in html.split("<article", 1)[0]


def test_show_more_continues_the_slate_and_records_only_new_cards(student_client, challenges, app):
    app.config["RECS_SLATE_SIZE"] = 4
    first = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    second = student_client.get(more_link(first), headers=HTMX).get_data(as_text=True)
    third = student_client.get(more_link(second), headers=HTMX).get_data(as_text=True)
    # The first card of each further page takes focus when it arrives; page one takes none.
    assert "autofocus" not in first
    for page in (second, third):
        assert page.count("autofocus") == 1
        assert re.search(r'<a href="/challenges/\d+\?slate=[^"]+" autofocus>', page)
    assert len(card_ids(second)) == 4 and len(card_ids(third)) == 1
    assert more_link(third) is None
    assert slate_of(first) == slate_of(second) == slate_of(third)
    shown = events()
    assert [e.position for e in shown] == list(range(9))
    assert sorted(e.challenge_id for e in shown) == sorted(c.id for c in challenges)
    student_client.get(more_link(first), headers=HTMX)  # a reload of page two counts nothing new
    assert len(events()) == 9
    assert db.session.scalar(select(func.count(RecommendationSlate.id))) == 1


def test_without_htmx_it_is_a_full_page(student_client, challenges):
    html = student_client.get("/challenges/recommended").get_data(as_text=True)
    assert "<html" in html and "Recommended for you" in html and len(card_ids(html)) == 6
    assert len(events()) == 6


def test_index_page_lazy_loads_the_fragment(student_client):
    html = student_client.get("/challenges").get_data(as_text=True)
    assert 'hx-get="/challenges/recommended"' in html
    # Until the list replaces it, the box holds a link to it: the way in when the script is off,
    # blocked or out of reach, or the fragment request fails.
    slate_box = html.split('id="recommended-slate"', 1)[1].split("</section>", 1)[0]
    assert 'href="/challenges/recommended"' in slate_box and "<noscript>" not in slate_box
    assert not events()  # nothing is counted until the block is actually loaded


@pytest.mark.parametrize("query", ["?page=2", "?q=robot", "?category=1", "?q=x&page=1"])
def test_the_block_is_on_the_overview_only(student_client, challenges, app, query):
    """Searching, filtering or paging shows the list asked for, with a link to the
    recommendations instead of the block (each showing would count as more impressions)."""
    app.config["CHALLENGES_PER_PAGE"] = 3
    html = student_client.get(f"/challenges{query}").get_data(as_text=True)
    assert 'id="recommended-slate"' not in html
    assert 'href="/challenges/recommended">See your recommendations' in html
    overview = student_client.get("/challenges?sort=reward").get_data(as_text=True)
    assert 'id="recommended-slate"' in overview


def test_click_is_recorded_once_and_the_join_is_attributed(student_client, challenges):
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    slate_id, target = slate_of(html), card_ids(html)[2]
    for _ in range(2):
        assert student_client.get(f"/challenges/{target}?slate={slate_id}").status_code == 200
    [click] = events("click")
    assert (click.challenge_id, click.slate_id, click.position, click.source) == (
        target,
        slate_id,
        2,
        "heuristic",
    )
    assert student_client.post(f"/challenges/{target}/join").status_code == 303
    participation = db.session.scalar(
        select(Participation).where(Participation.challenge_id == target)
    )
    assert (participation.slate_id, participation.source) == (slate_id, "heuristic")
    [join] = events("join")
    assert (join.slate_id, join.user_id) == (slate_id, student_client.user.id)
    # Leaving and joining again on that one click is not a second join credited to the slate.
    assert student_client.post(f"/challenges/{target}/leave").status_code == 303
    assert student_client.post(f"/challenges/{target}/join").status_code == 303
    credited = [j for j in events("join") if j.slate_id is not None]
    assert len(events("join")) == 2 and len(credited) == 1


def test_a_head_request_records_no_slate_impression_or_click(student_client, challenges):
    """Link checkers and monitors send HEAD: nobody is shown anything."""
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    slate_id, target = slate_of(html), card_ids(html)[0]

    def stored():
        return (
            db.session.scalar(select(func.count()).select_from(RecommendationSlate)),
            db.session.scalar(select(func.count()).select_from(RecommendationEvent)),
        )

    before = stored()
    for url in (
        "/challenges/recommended",
        f"/challenges/recommended?slate={slate_id}&offset=6",
        f"/challenges/{target}?slate={slate_id}",
        "/api/v1/recommendations",
    ):
        assert student_client.head(url, headers=HTMX).status_code == 200, url
    assert stored() == before
    assert student_client.get(f"/challenges/{target}?slate={slate_id}").status_code == 200
    assert len(events("click")) == 1  # a GET still records


def test_a_card_archived_since_its_slate_was_shown_records_no_click(student_client, challenges):
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    slate_id, target = slate_of(html), card_ids(html)[0]
    db.session.get(Challenge, target).status = "archived"
    db.session.commit()
    assert student_client.get(f"/challenges/{target}?slate={slate_id}").status_code == 404
    assert events("click") == []


def test_a_rejoin_is_not_credited_to_an_older_click_in_another_slate(student_client, challenges):
    pages = [
        student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
        for _ in range(2)
    ]
    target = card_ids(pages[0])[0]
    assert target in card_ids(pages[1])
    for page in pages:  # the same card clicked from two slates, then joined
        assert student_client.get(f"/challenges/{target}?slate={slate_of(page)}").status_code == 200
    assert student_client.post(f"/challenges/{target}/join").status_code == 303
    assert student_client.post(f"/challenges/{target}/leave").status_code == 303
    assert student_client.post(f"/challenges/{target}/join").status_code == 303
    credited = [j.slate_id for j in events("join") if j.slate_id is not None]
    assert credited == [slate_of(pages[1])]


def test_not_interested_removes_the_card_for_good(student_client, challenges):
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    slate_id, target = slate_of(html), card_ids(html)[0]
    response = student_client.post(
        f"/challenges/recommended/{target}/dismiss", data={"slate": slate_id}, headers=HTMX
    )
    assert response.status_code == 200
    notice = response.get_data(as_text=True)
    assert 'role="status"' in notice and "autofocus" in notice and "<article" not in notice
    assert "We will not recommend “Challenge" in notice
    [dismiss] = events("dismiss")
    assert (dismiss.challenge_id, dismiss.slate_id, dismiss.position) == (target, slate_id, 0)
    for _ in range(3):
        html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
        assert target not in card_ids(html)


def test_not_interested_without_javascript_redirects_back(student_client, challenges):
    response = student_client.post(
        f"/challenges/recommended/{challenges[0].id}/dismiss",
        data={"next": "/challenges/recommended", "slate": "not-a-slate"},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/challenges/recommended"
    [dismiss] = events("dismiss")
    assert dismiss.slate_id is None
    evil = student_client.post(
        f"/challenges/recommended/{challenges[1].id}/dismiss", data={"next": "//evil.test/"}
    )
    assert evil.headers["Location"] == "/challenges"


def test_dismissing_a_missing_or_draft_challenge_is_404(student_client, challenges):
    draft = make_challenge(
        owner=challenges[0].owner, category=challenges[0].category, status="draft"
    )
    assert student_client.post(f"/challenges/recommended/{draft.id}/dismiss").status_code == 404
    assert student_client.post("/challenges/recommended/999999/dismiss").status_code == 404
    assert not events("dismiss")


def test_a_card_taken_back_to_draft_after_it_was_shown_can_still_be_turned_down(
    student_client, challenges
):
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    slate_id, target = slate_of(html), card_ids(html)[0]
    challenge = db.session.get(Challenge, target)
    challenge.status = "draft"
    db.session.commit()
    response = student_client.post(
        f"/challenges/recommended/{target}/dismiss", data={"slate": slate_id}, headers=HTMX
    )
    # Not its title: a draft's may have changed since, and is not public.
    assert "We will not recommend this challenge again." in response.get_data(True)
    [dismiss] = events("dismiss")
    assert (dismiss.challenge_id, dismiss.slate_id) == (target, slate_id)
    challenge.status = "published"  # back again: still turned down
    db.session.commit()
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    assert target not in card_ids(html)
    # Naming a slate that did not show it does not open other drafts.
    other = make_challenge(owner=challenge.owner, category=challenge.category, status="draft")
    response = student_client.post(
        f"/challenges/recommended/{other.id}/dismiss", data={"slate": slate_id}, headers=HTMX
    )
    assert response.status_code == 404


def test_a_foreign_or_unknown_slate_starts_a_new_one(student_client, challenges, app):
    other = make_user()
    db.session.add(
        RecommendationSlate(
            id="0b5a3f3e-8a55-4a39-9d4c-6a1f7a1b2c3d", user_id=other.id, source="heuristic"
        )
    )
    db.session.commit()
    html = student_client.get(
        "/challenges/recommended?slate=0b5a3f3e-8a55-4a39-9d4c-6a1f7a1b2c3d&offset=3", headers=HTMX
    ).get_data(as_text=True)
    assert slate_of(html) != "0b5a3f3e-8a55-4a39-9d4c-6a1f7a1b2c3d"
    assert [e.position for e in events()] == list(range(6))


def test_show_more_of_a_gone_slate_replaces_the_list(student_client, challenges):
    """Its first page would otherwise land under the cards already shown, each card twice."""
    gone = "/challenges/recommended?slate=11111111-2222-3333-4444-555555555555&offset=6"
    response = student_client.get(gone, headers=HTMX)
    assert response.status_code == 200
    assert response.headers["HX-Retarget"] == "#recommended-slate"
    assert response.headers["HX-Reswap"] == "innerHTML"
    html = response.get_data(as_text=True)
    assert "here is a fresh one" in html and len(card_ids(html)) == 6
    # Said in the block's status line, which screen readers read out as it changes.
    assert (
        '<p id="recs-status" hx-swap-oob="innerHTML">That list had expired, so here is a fresh '
        "one.</p>" in html
    )
    # The "Show more" that had focus is gone with the old list: the first new card takes it.
    assert html.count("autofocus") == 1 and "autofocus" in html.split("</h3>", 1)[0]
    # Continuing a slate that exists appends, as before.
    more = student_client.get(more_link(html), headers=HTMX)
    assert "HX-Retarget" not in more.headers and "fresh one" not in more.get_data(as_text=True)
    # Without HTMX it is a whole page anyway; the note still says why it starts again.
    page = student_client.get(gone).get_data(as_text=True)
    assert "<html" in page and "here is a fresh one" in page and 'id="recommended-slate"' in page
    assert page.count('id="recs-status"') == 1 and "hx-swap-oob" not in page


def test_nothing_to_recommend_writes_no_slate(student_client):
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    assert "nothing to recommend" in html
    assert db.session.scalar(select(func.count(RecommendationSlate.id))) == 0


def test_an_empty_block_says_why(student_client, app):
    # A new student on a campus where nothing is open has joined and dismissed nothing.
    make_challenge(title="Old one", status="archived")
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    assert "No challenge is open right now, so there is nothing to recommend." in html
    assert "you have joined or dismissed" not in html
    challenge = make_challenge(title="Only one")
    student_client.post(f"/challenges/{challenge.id}/join")
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    assert "you have joined or dismissed every open challenge" in html


@pytest.mark.parametrize("offset", ["-1", "abc", "99999999", "1e3"])
def test_odd_offsets_are_harmless(student_client, challenges, offset):
    response = student_client.get(f"/challenges/recommended?offset={offset}", headers=HTMX)
    assert response.status_code == 200


@pytest.mark.parametrize("offset", ["-6", "abc", "1e3", "٣", " 6"])
def test_a_bad_offset_of_a_slate_is_refused_clearly(student_client, challenges, offset):
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    before = len(events())
    response = student_client.get(
        "/challenges/recommended", query_string={"slate": slate_of(html), "offset": offset}
    )
    assert response.status_code == 400
    assert "offset must be a whole number" in response.get_data(as_text=True)
    assert len(events()) == before


@pytest.mark.parametrize("offset", ["99999", "100000", "9" * 40])
def test_an_offset_past_the_end_is_the_end(student_client, challenges, offset):
    html = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    response = student_client.get(
        "/challenges/recommended",
        query_string={"slate": slate_of(html), "offset": offset},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert "That is everything" in response.get_data(as_text=True)


def test_only_students_get_recommendations(client, professor_client):
    assert professor_client.get("/challenges/recommended").status_code == 403
    logged_out = client.get(
        "/challenges/recommended",
        headers={**HTMX, "HX-Current-URL": "http://localhost/challenges?page=2"},
    )
    # HTMX swaps nothing on a 401, so it is told to go to the login page and come back.
    assert logged_out.status_code == 401
    assert logged_out.headers["HX-Redirect"] == "/login?next=/challenges?page%3D2"
    assert client.get("/challenges/recommended").status_code == 302


def test_a_further_page_says_which_cards_it_added_on_the_status_line(student_client, challenges):
    first = student_client.get("/challenges/recommended", headers=HTMX).get_data(as_text=True)
    assert "hx-swap-oob" not in first
    more = student_client.get(more_link(first), headers=HTMX).get_data(as_text=True)
    count = len(card_ids(more))
    assert (
        f'<p id="recs-status" hx-swap-oob="innerHTML">Showing recommendations 7 to {6 + count}.'
        in more
    )
    # Without HTMX the page is whole: no out-of-band element to leave lying in it.
    assert "hx-swap-oob" not in student_client.get(more_link(first)).get_data(as_text=True)


def test_a_page_has_one_autofocus_after_a_no_js_not_interested(student_client, challenges):
    page = student_client.get("/challenges/recommended").get_data(as_text=True)
    more = re.search(r'href="(/challenges/recommended\?slate=[^"]+)"', page).group(1)
    more = more.replace("&amp;", "&")
    second = student_client.get(more).get_data(as_text=True)
    assert second.count("autofocus") == 1  # the first new card
    target = card_ids(second)[0]
    back = student_client.post(
        f"/challenges/recommended/{target}/dismiss",
        data={"next": more, "slate": slate_of(second)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "We will not recommend" in back
    assert back.count("autofocus") == 1 and '<div class="flashes" tabindex="-1" autofocus>' in back
