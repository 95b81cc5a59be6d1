"""The "Recommended for you" block in a real browser: lazy loading, impressions, clicks that lead to
an attributed join, and "Not interested"."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.models import Participation, RecommendationEvent
from tests.e2e.pages import log_in, server_view
from tests.helpers import PASSWORD, make_category, make_challenge, make_user, spend_limit

pytestmark = pytest.mark.e2e

FRAGMENT = "/challenges/recommended"
# Short enough that the block starts below the fold, so only scrolling can reveal it.
SHORT_VIEWPORT = {"width": 1000, "height": 120}


@pytest.fixture
def student():
    professor = make_user("professor")
    for category in (make_category("Robotics"), make_category("Poetry")):
        for n in range(4):
            make_challenge(professor, category, title=f"{category.name} challenge {n + 1}")
    return make_user("student")


def _events(user_id: int, kind: str) -> list[RecommendationEvent]:
    return list(
        server_view().scalars(
            select(RecommendationEvent)
            .where(RecommendationEvent.user_id == user_id, RecommendationEvent.type == kind)
            .order_by(RecommendationEvent.position)
        )
    )


def _card_ids(page) -> list[int]:
    hrefs = page.locator("#recommended-slate article h3 a").evaluate_all(
        "links => links.map(a => a.href)"
    )
    return [int(re.search(r"/challenges/(\d+)\?slate=", href).group(1)) for href in hrefs]


def test_block_loads_when_scrolled_into_view_and_records_impressions(open_page, student):
    page = open_page(viewport=SHORT_VIEWPORT)
    log_in(page, student)
    fragment_requests = []
    page.on("request", lambda r: fragment_requests.append(r.url) if FRAGMENT in r.url else None)
    page.goto("/challenges")
    slate = page.locator("#recommended-slate")
    below_fold = slate.evaluate("el => el.getBoundingClientRect().top > window.innerHeight")
    assert below_fold, "the test needs the block to start below the fold"
    # Intersection observers report during a rendering step: after two frames, a block that was
    # going to load on its own would have asked for its fragment already.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    expect(slate.locator("article")).to_have_count(0)
    assert fragment_requests == [] and _events(student.id, "impression") == []

    with page.expect_response(lambda r: FRAGMENT in r.url) as answer:
        slate.scroll_into_view_if_needed()
    assert answer.value.status == 200
    assert answer.value.request.headers.get("hx-request") == "true"
    expect(slate.locator("article").first).to_be_visible()

    shown = _card_ids(page)
    impressions = _events(student.id, "impression")
    assert len(shown) == len(impressions) > 0
    assert [e.challenge_id for e in impressions] == shown
    assert [e.position for e in impressions] == list(range(len(shown)))
    assert len({e.slate_id for e in impressions}) == 1

    assert len(fragment_requests) == 1


def test_click_on_a_recommendation_then_join_is_attributed_to_the_slate(page, student):
    log_in(page, student)
    first_card = page.locator("#recommended-slate article").first
    title = first_card.locator("h3").inner_text()
    first_card.get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    page.get_by_role("button", name="Join challenge").click()
    expect(page.get_by_role("status")).to_contain_text("You joined")

    (click,) = _events(student.id, "click")
    (join,) = _events(student.id, "join")
    assert join.challenge_id == click.challenge_id
    assert join.slate_id == click.slate_id is not None
    participation = server_view().scalar(
        select(Participation).where(Participation.user_id == student.id)
    )
    assert (participation.challenge_id, participation.slate_id) == (
        click.challenge_id,
        click.slate_id,
    )


def test_not_interested_removes_the_card_and_it_stays_gone(page, student):
    log_in(page, student)
    cards = page.locator("#recommended-slate article")
    expect(cards.first).to_be_visible()
    before = cards.count()
    title = cards.first.locator("h3").inner_text()
    cards.first.get_by_role("button", name=f"Not interested in {title}").click()
    expect(cards).to_have_count(before - 1)
    # The card's place and the keyboard focus go to a notice that says what happened.
    notice = page.locator("#recommended-slate [role=status]")
    expect(notice).to_have_text(f"We will not recommend “{title}” again.")
    expect(notice).to_be_focused()
    expect(page.locator("#recommended-slate").get_by_text(title, exact=True)).to_have_count(0)

    (dismiss,) = _events(student.id, "dismiss")
    assert dismiss.slate_id is not None
    page.reload()
    expect(cards.first).to_be_visible()
    expect(page.locator("#recommended-slate").get_by_text(title, exact=True)).to_have_count(0)


def test_undo_brings_the_card_back_in_its_place_with_the_keyboard(page, student):
    log_in(page, student)
    cards = page.locator("#recommended-slate article")
    expect(cards.first).to_be_visible()
    before = cards.count()
    title = cards.first.locator("h3").inner_text()
    place = cards.first.get_attribute("data-position")
    cards.first.get_by_role("button", name=f"Not interested in {title}").click()
    notice = page.locator("#recommended-slate [role=status]")
    expect(notice).to_be_focused()
    # Undo is the next stop of the keyboard after the notice.
    page.keyboard.press("Tab")
    undo = page.get_by_role("button", name=f"Undo: recommend “{title}” again")
    expect(undo).to_be_focused()
    # And stays there: nothing focuses the notice again once the student has moved on.
    page.wait_for_timeout(300)
    assert page.evaluate("document.activeElement.textContent") == "Undo"
    page.keyboard.press("Enter")
    expect(cards).to_have_count(before)
    restored = cards.first.get_by_role("link", name=title)
    expect(restored).to_be_focused()
    assert cards.first.get_attribute("data-position") == place
    expect(page.locator("#recs-status")).to_have_text(f"“{title}” is back in your recommendations.")
    assert [e.type for e in _events(student.id, "restore")] == ["restore"]
    assert len(_events(student.id, "dismiss")) == 1  # kept on record
    # The card is a card again: it can be turned down once more.
    cards.first.get_by_role("button", name=f"Not interested in {title}").click()
    expect(cards).to_have_count(before - 1)
    assert len(_events(student.id, "dismiss")) == 2


def test_my_challenges_restores_what_was_marked_not_interested(page, student):
    log_in(page, student)
    cards = page.locator("#recommended-slate article")
    expect(cards.first).to_be_visible()
    title = cards.first.locator("h3").inner_text()
    cards.first.get_by_role("button", name=f"Not interested in {title}").click()
    expect(page.locator(".recs-dismissed")).to_be_visible()
    page.goto("/me/challenges")
    section = page.locator("section", has=page.get_by_role("heading", name="Not interested"))
    section.get_by_role("button", name=f"Recommend again: “{title}”").click()
    expect(page.get_by_role("status").first).to_have_text(
        f"“{title}” can be recommended to you again."
    )
    expect(section.get_by_text(title, exact=True)).to_have_count(0)
    assert len(_events(student.id, "restore")) == 1


def test_show_more_appends_the_next_cards_and_focuses_the_first_of_them(page, student):
    log_in(page, student)
    cards = page.locator("#recommended-slate article")
    expect(cards).to_have_count(6)
    first_page = _card_ids(page)
    page.get_by_role("link", name="Show more").click()
    expect(cards).to_have_count(8)
    assert _card_ids(page)[:6] == first_page and len(set(_card_ids(page))) == 8
    expect(cards.nth(6).locator("h3 a")).to_be_focused()
    expect(page.locator("#recs-status")).to_have_text("Showing recommendations 7 to 8.")
    page.keyboard.press("Tab")
    expect(
        cards.nth(6).get_by_role("button", name=re.compile("^Not interested in"))
    ).to_be_focused()


def test_when_htmx_cannot_load_a_link_still_leads_to_the_list(open_page, student, htmx_js):
    """A CDN out of reach or blocked (here: a copy the SRI check refuses) leaves the box with its
    link, not an empty heading."""
    page = open_page(htmx_body=htmx_js + b"\n/* not the pinned file */\n")
    log_in(page, student)
    link = page.locator("#recommended-slate").get_by_role("link", name="Open your recommendations")
    expect(link).to_be_visible()
    link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Recommended for you")
    expect(page.locator("#recommended-slate article")).to_have_count(6)


def test_after_the_session_ends_not_interested_leads_to_the_login_and_back(page, student):
    log_in(page, student)
    cards = page.locator("#recommended-slate article")
    expect(cards.first).to_be_visible()
    page.context.clear_cookies()  # the session ended while the page was open
    title = cards.first.locator("h3").inner_text()
    cards.first.get_by_role("button", name=f"Not interested in {title}").click()
    expect(page).to_have_url(re.compile(r"/login\?next=/challenges$"))
    page.get_by_label("Email").fill(student.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/challenges$"))
    expect(cards.first).to_be_visible()
    assert _events(student.id, "dismiss") == []  # nothing was done in the ended session


def test_a_spent_request_budget_shows_a_notice_where_the_cards_would_go(page, student, app):
    spend_limit(app, 1)
    log_in(page, student)
    cards = page.locator("#recommended-slate article")
    expect(cards).to_have_count(6)
    with page.expect_response(lambda r: FRAGMENT in r.url) as answer:
        page.get_by_role("link", name="Show more").click()
    assert answer.value.status == 429
    notice = page.locator("#recommended-slate [role=status]")
    expect(notice).to_contain_text("Too many recommendation requests")
    expect(notice).to_be_focused()
    expect(notice.get_by_role("link", name="Try again")).to_be_visible()
    expect(cards).to_have_count(6)  # the cards already shown stay


def test_a_refused_not_interested_keeps_the_card_and_says_why(page, student, app):
    spend_limit(app, 1)
    log_in(page, student)
    cards = page.locator("#recommended-slate article")
    expect(cards).to_have_count(6)
    title = cards.first.locator("h3").inner_text()
    with page.expect_response(lambda r: "/dismiss" in r.url) as answer:
        cards.first.get_by_role("button", name=f"Not interested in {title}").click()
    assert answer.value.status == 429
    expect(page.locator("#recs-status")).to_contain_text("Too many recommendation requests")
    expect(cards).to_have_count(6)  # the card was not dismissed, so it stays
    expect(cards.first.locator("h3")).to_have_text(title)
    assert _events(student.id, "dismiss") == []


@pytest.mark.parametrize("failure", ["server error", "no connection"])
def test_a_failed_not_interested_or_show_more_says_so_and_the_next_try_clears_it(
    page, student, failure
):
    """htmx swaps nothing on a 5xx or a lost connection: the status line says what failed."""
    log_in(page, student)
    cards = page.locator("#recommended-slate article")
    expect(cards).to_have_count(6)
    status = page.locator("#recs-status")

    def fail(route):
        if failure == "server error":
            route.fulfill(status=502, body="Bad gateway", content_type="text/plain")
        else:
            route.abort("connectionrefused")

    page.route("**/dismiss", fail)
    title = cards.first.locator("h3").inner_text()
    cards.first.get_by_role("button", name=f"Not interested in {title}").click()
    expect(status).to_have_text("“Not interested” did not go through. Try again in a moment.")
    expect(cards).to_have_count(6)

    page.route(re.compile(r".*/challenges/recommended\?slate=.*"), fail)
    page.get_by_role("link", name="Show more").click()
    expect(status).to_have_text("More recommendations could not be loaded. Try again in a moment.")
    expect(cards).to_have_count(6)

    page.unroute("**/dismiss")
    cards.first.get_by_role("button", name=f"Not interested in {title}").click()
    expect(cards).to_have_count(5)
    expect(status).to_have_text("")  # the old notice does not outlive the next request
    assert len(_events(student.id, "dismiss")) == 1


def test_a_refused_not_interested_says_to_reload_rather_than_retry(page, student):
    log_in(page, student)
    cards = page.locator("#recommended-slate article")
    expect(cards).to_have_count(6)
    page.route("**/dismiss", lambda route: route.fulfill(status=404, body="gone"))
    title = cards.first.locator("h3").inner_text()
    cards.first.get_by_role("button", name=f"Not interested in {title}").click()
    expect(page.locator("#recs-status")).to_have_text(
        "That did not work. Reload the page for a fresh list."
    )
