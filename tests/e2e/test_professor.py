"""A professor creates a challenge in a real browser, publishes it, and a student then finds it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.models import Challenge, Participation, User, utcnow
from tests.e2e.pages import challenge_list, log_in, server_view
from tests.helpers import make_category, make_challenge, make_participation, make_user

pytestmark = pytest.mark.e2e

TITLE = "Campus energy audit"


def _local_input(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def test_professor_creates_and_publishes_a_challenge_that_a_student_then_sees(open_page):
    make_category("Sustainability")
    professor = make_user("professor", display_name="Prof. Ada Green")
    student = make_user("student")
    prof_page, student_page = open_page(), open_page()

    log_in(prof_page, professor)
    expect(prof_page).to_have_url(re.compile(r"/professor/challenges$"))
    prof_page.get_by_role("link", name="New challenge").click()
    prof_page.get_by_label("Title").fill(TITLE)
    prof_page.get_by_label("Description").fill(
        "Measure how much power the library wastes at night."
    )
    prof_page.get_by_label("Category").select_option(label="Sustainability")
    prof_page.get_by_label("Reward points").fill("40")
    prof_page.get_by_label("Starts at").fill(_local_input(utcnow() - timedelta(hours=1)))
    prof_page.get_by_label("Ends at (optional)").fill(_local_input(utcnow() + timedelta(days=14)))
    prof_page.get_by_role("button", name="Create challenge").click()
    expect(prof_page.get_by_role("status")).to_contain_text(f"Challenge “{TITLE}” created")
    row = prof_page.get_by_role("row", name=re.compile(TITLE))
    expect(row).to_contain_text("draft")
    assert _stored_status() == "draft"

    log_in(student_page, student)
    expect(challenge_list(student_page)).to_have_count(0)
    draft_id = server_view().scalar(select(Challenge.id).where(Challenge.title == TITLE))
    assert student_page.goto(f"/challenges/{draft_id}").status == 404
    student_page.goto("/challenges")

    row.get_by_role("button", name=f"Publish {TITLE}", exact=True).click()
    expect(prof_page.get_by_role("status")).to_contain_text(f"“{TITLE}” is now published")
    expect(prof_page.get_by_role("row", name=re.compile(TITLE))).to_contain_text("published")
    assert _stored_status() == "published"

    student_page.reload()
    challenge_list(student_page).get_by_role("link", name=TITLE).click()
    expect(student_page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(student_page.get_by_text("40 points")).to_be_visible()
    expect(student_page.get_by_text("by Prof. Ada Green")).to_be_visible()
    expect(student_page.get_by_role("button", name="Join challenge")).to_be_visible()


def _stored_status() -> str | None:
    return server_view().scalar(select(Challenge.status).where(Challenge.title == TITLE))


def test_professor_marks_a_selection_completed_and_takes_one_back(open_page):
    professor = make_user("professor")
    challenge = make_challenge(owner=professor, title="Bridge building")
    ada = make_user("student", display_name="Ada Byron")
    bob = make_user("student", display_name="Bob Stone")
    cyd = make_user("student", display_name="Cyd Moss")
    for student in (ada, bob, cyd):
        make_participation(student, challenge)
    page = open_page()
    log_in(page, professor)
    page.goto(f"/professor/challenges/{challenge.id}/participants")

    page.get_by_role("checkbox", name="Select Ada Byron").check()
    page.get_by_role("checkbox", name="Select Cyd Moss").check()
    page.get_by_role("button", name="Mark selected completed").click()
    expect(page.get_by_role("status")).to_contain_text("Marked 2 participants completed.")
    expect(page.get_by_role("row", name=re.compile("Ada Byron"))).to_contain_text("completed")
    expect(page.get_by_role("row", name=re.compile("Bob Stone"))).to_contain_text("joined")

    page.get_by_role("button", name="Mark not completed: Cyd Moss").click()
    expect(page.get_by_role("status")).to_contain_text("Marked 1 participant not completed.")
    page.get_by_role("button", name="Mark completed: Bob Stone").click()
    expect(page.get_by_role("status")).to_contain_text("Marked 1 participant completed.")
    stored = dict(
        server_view()
        .execute(
            select(User.display_name, Participation.status)
            .join(Participation, Participation.user_id == User.id)
            .where(Participation.challenge_id == challenge.id)
        )
        .all()
    )
    assert stored == {"Ada Byron": "completed", "Bob Stone": "completed", "Cyd Moss": "joined"}
