"""What the browser tests do over and over: log in through the form, read rows the server wrote."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from app.extensions import db
from app.models import User
from tests.helpers import PASSWORD


def log_in(page: Page, user: User, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def server_view():
    """The test's session, emptied so the next query sees what the server's threads committed."""
    db.session.rollback()
    db.session.expire_all()
    return db.session


def challenge_list(page: Page):
    """The cards of /challenges' main list, leaving out the "Recommended for you" block above it."""
    return page.locator("main > .grid > article.challenge-card")
