"""A student in a real browser: log in, browse, filter, join, leave; professor pages are 403."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.models import Challenge, Participation
from tests.e2e.pages import challenge_list, log_in, server_view
from tests.helpers import make_category, make_challenge, make_user

pytestmark = pytest.mark.e2e


@pytest.fixture
def campus():
    robotics, poetry = make_category("Robotics"), make_category("Poetry")
    professor = make_user("professor")
    return {
        "robot": make_challenge(
            professor, robotics, title="Line-following robot", reward_points=50
        ),
        "sonnet": make_challenge(
            professor, poetry, title="Sonnet sprint", description="Fourteen lines."
        ),
        "draft": make_challenge(
            professor, robotics, title="Unannounced drone race", status="draft"
        ),
        "student": make_user("student"),
    }


def test_student_logs_in_browses_filters_joins_and_leaves(page, campus):
    log_in(page, campus["student"])
    expect(page).to_have_url(re.compile(r"/challenges$"))
    cards = challenge_list(page).locator("h3")
    expect(cards).to_have_text(["Sonnet sprint", "Line-following robot"], ignore_case=False)
    expect(page.get_by_text("Unannounced drone race")).to_have_count(0)
    # The recommendations block loads after the page, above the filters, and moves them down:
    # wait for it, or a click can land where the button was.
    expect(page.locator("#recommended-slate article").first).to_be_visible()

    page.get_by_label("Category").select_option(label="Robotics")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"category=\d+"))
    expect(cards).to_have_text(["Line-following robot"])

    page.get_by_label("Category").select_option(label="All categories")
    page.get_by_label("Search").fill("fourteen")
    page.get_by_role("button", name="Apply").click()
    expect(cards).to_have_text(["Sonnet sprint"])

    page.get_by_label("Search").fill("")
    page.get_by_label("Sort by").select_option(label="Highest reward")
    page.get_by_role("button", name="Apply").click()
    expect(cards).to_have_text(["Line-following robot", "Sonnet sprint"])
    expect(page.locator("#recommended-slate article").first).to_be_visible()  # as above

    challenge_list(page).get_by_role("link", name="Line-following robot").click()
    page.get_by_role("button", name="Join challenge").click()
    expect(page.get_by_role("status")).to_contain_text("You joined “Line-following robot”")
    expect(page.get_by_text(re.compile(r"You joined on"))).to_be_visible()
    robot_id = campus["robot"].id
    assert _participation_status(campus["student"].id, robot_id) == ("joined", 1)

    page.get_by_role("link", name="My challenges").click()
    expect(page.get_by_role("row", name=re.compile("Line-following robot"))).to_contain_text(
        "joined"
    )

    page.get_by_role("link", name="Line-following robot").click()
    page.get_by_role("button", name="Leave challenge").click()
    expect(page.get_by_role("status")).to_contain_text("You left “Line-following robot”")
    expect(page.get_by_role("button", name="Join challenge")).to_be_visible()
    assert _participation_status(campus["student"].id, robot_id) == ("left", 0)


def _participation_status(user_id: int, challenge_id: int) -> tuple[str, int]:
    session = server_view()
    status = session.scalar(
        select(Participation.status).where(
            Participation.user_id == user_id, Participation.challenge_id == challenge_id
        )
    )
    return status, session.get(Challenge, challenge_id).participations_count


@pytest.mark.parametrize("path", ["/professor/challenges", "/professor/challenges/new"])
def test_student_gets_403_on_professor_pages(page, campus, path):
    log_in(page, campus["student"])
    response = page.goto(path)
    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_be_visible()


def test_anonymous_visitor_is_sent_to_login(page):
    page.goto("/challenges")
    expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)challenges$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def _follow_skip_link(page, name: str) -> str:
    """The skip link has the focus and is shown; Enter follows it. The id that has focus then."""
    skip = page.get_by_role("link", name=name)
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    return page.evaluate("document.activeElement.id")


def test_the_first_tab_offers_to_skip_the_navigation(page, campus):
    log_in(page, campus["student"])
    page.goto("/me/challenges")
    page.keyboard.press("Tab")
    assert _follow_skip_link(page, "Skip to content") == "content"


def test_keyboard_users_can_pass_the_recommendations_to_reach_the_list(page, campus):
    log_in(page, campus["student"])
    page.goto("/challenges")
    expect(page.locator("#recommended-slate article").first).to_be_visible()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # "Skip to content": the next stop is the first in the page
    page.keyboard.press("Tab")
    assert _follow_skip_link(page, "Skip to all challenges") == "all-challenges"
    page.keyboard.press("Tab")
    expect(page.get_by_label("Search")).to_be_focused()
