"""The per-student budget of recommendation requests: past it, 429 and nothing written."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import RecommendationEvent, RecommendationSlate
from app.recs import throttle
from app.recs.throttle import RequestBudget
from tests.conftest import _logged_in
from tests.helpers import make_category, make_challenge, make_user, spend_limit

HTMX = {"HX-Request": "true"}


class Clock:
    def __init__(self, now: float = 600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_budget_renews_each_minute_and_says_when():
    clock = Clock(600.0)
    budget = RequestBudget(3, clock)
    assert [budget.spend("a")[0] for _ in range(3)] == [True] * 3
    clock.now = 640.5
    allowed, retry_after, first = budget.spend("a")
    assert (allowed, retry_after, first) == (False, 20, True)
    clock.now = 658.9995  # 1.0005 s left: waiting 1 s would be refused once more
    assert budget.spend("a")[1] == 2
    clock.now = 659.9999
    assert budget.spend("a")[1] == 1
    assert budget.spend("a")[:1] == (False,) and budget.spend("a")[2] is False  # said once
    assert budget.spend("b")[0] is True  # each key has its own count
    clock.now = 660.0
    assert budget.spend("a")[0] is True


def test_earlier_minutes_are_forgotten_first(monkeypatch):
    monkeypatch.setattr(throttle, "MAX_TRACKED", 3)
    clock = Clock(0.0)
    budget = RequestBudget(1, clock)
    budget.spend("old")
    clock.now = 60.0
    for key in ("a", "b", "c"):
        budget.spend(key)
    assert set(budget._counts) == {"a", "b", "c"}
    assert budget.spend("a")[0] is False  # this minute's counts are kept


@pytest.fixture
def challenges():
    owner, category = make_user("professor"), make_category("Data Science")
    return [make_challenge(owner=owner, category=category, title=f"C{i}") for i in range(8)]


def _slates() -> int:
    return db.session.scalar(select(func.count(RecommendationSlate.id)))


def test_past_the_budget_a_student_gets_429_and_nothing_is_written(app, challenges, caplog):
    spend_limit(app, 3)
    student = _logged_in(app, "student")
    for _ in range(3):
        assert student.get("/challenges/recommended", headers=HTMX).status_code == 200
    slates, impressions = _slates(), db.session.scalar(select(func.count(RecommendationEvent.id)))
    with caplog.at_level(logging.WARNING, logger="app.recs.throttle"):
        refused = [
            student.get("/challenges/recommended", headers=HTMX),
            student.get("/api/v1/recommendations"),
            student.post("/recommendations/event", json={}),
            student.post(f"/challenges/recommended/{challenges[0].id}/dismiss"),
        ]
    assert [r.status_code for r in refused] == [429] * 4
    assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in refused)
    assert "Wait" in refused[0].get_data(as_text=True)
    assert refused[2].get_json()["error"].startswith("Too many recommendation requests")
    assert _slates() == slates
    assert db.session.scalar(select(func.count(RecommendationEvent.id))) == impressions
    budget_lines = [r for r in caplog.records if "request budget spent" in r.getMessage()]
    assert len(budget_lines) == 1 and f"user_id={student.user.id}" in budget_lines[0].getMessage()
    # Another student's budget is their own; pages outside the budget are unaffected.
    other = _logged_in(app, "student")
    assert other.get("/challenges/recommended", headers=HTMX).status_code == 200
    assert student.get("/challenges").status_code == 200


def test_htmx_gets_a_notice_to_swap_in_with_a_way_to_try_again(app, challenges):
    spend_limit(app, 1)
    student = _logged_in(app, "student")
    assert student.get("/challenges/recommended", headers=HTMX).status_code == 200
    more = "/challenges/recommended?slate=x&offset=6"
    refused = student.get(more, headers=HTMX)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 429 and "<html" not in html
    assert 'role="status"' in html and "Wait" in html
    assert f'hx-get="{more.replace("&", "&amp;")}"' in html  # "Try again" asks for the same page
    assert "autofocus" in html  # it takes the place, and the focus, of "Show more"
    # A refused "Not interested" leaves the card where it is and says why on the status line.
    dismissed = student.post(f"/challenges/recommended/{challenges[0].id}/dismiss", headers=HTMX)
    assert dismissed.status_code == 429 and dismissed.headers["HX-Reswap"] == "none"
    body = dismissed.get_data(as_text=True)
    assert 'id="recs-status" hx-swap-oob="innerHTML"' in body and "Wait" in body
    assert 'id="recs-status"' in student.get("/challenges").get_data(as_text=True)
    # JSON paths answer JSON even when the caller says it is HTMX.
    api = student.get("/api/v1/recommendations", headers=HTMX)
    assert api.status_code == 429 and api.get_json()["error"].startswith("Too many")
    # base.html lets htmx swap a 429 (its default swaps no 4xx).
    page = student.get("/challenges").get_data(as_text=True)
    assert '{"code": "429", "swap": true, "error": true}' in page


def test_a_first_load_refused_does_not_pull_focus(app, challenges):
    spend_limit(app, 1)
    student = _logged_in(app, "student")
    student.get("/challenges/recommended", headers=HTMX)
    refused = student.get("/challenges/recommended", headers=HTMX)
    assert refused.status_code == 429 and "autofocus" not in refused.get_data(as_text=True)


def test_who_may_not_use_the_routes_is_refused_first_and_spends_nothing(app, challenges, client):
    """The budget counts a logged-in student's requests: the login and role checks come first."""
    spend_limit(app, 1)
    professor = _logged_in(app, "professor")
    for _ in range(3):
        assert client.get("/challenges/recommended", headers=HTMX).status_code == 401
        assert client.get("/api/v1/recommendations").status_code == 401
        assert client.post("/recommendations/event", json={}).status_code == 401
        assert professor.get("/challenges/recommended", headers=HTMX).status_code == 403
        assert professor.post("/recommendations/event", json={}).status_code == 403
    budget = app.extensions.get("recs_request_budget")
    assert budget is None or professor.user.id not in budget._counts


def test_zero_turns_the_budget_off(app, challenges):
    app.config["RECS_REQUESTS_PER_MINUTE"] = 0
    student = _logged_in(app, "student")
    codes = {student.get("/challenges/recommended", headers=HTMX).status_code for _ in range(10)}
    assert codes == {200}


def test_the_default_budget_is_on():
    from app.config import DefaultConfig

    assert DefaultConfig.RECS_REQUESTS_PER_MINUTE > 0


@pytest.mark.parametrize("value", ["abc", -1, 2.5, True, None])
def test_a_setting_that_is_not_a_whole_number_fails_at_startup(make_app, value):
    with pytest.raises(ValueError, match="RECS_REQUESTS_PER_MINUTE must be a whole number"):
        make_app(RECS_REQUESTS_PER_MINUTE=value)


def test_the_setting_from_the_environment_is_read_as_a_number(monkeypatch, tmp_path):
    from app import create_app

    settings = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
        "SECRET_KEY": "test",
        "TESTING": True,
        "RECS_SCHEDULER_ENABLED": False,
    }
    monkeypatch.setenv("FLASK_RECS_REQUESTS_PER_MINUTE", "30")
    app = create_app(settings)
    assert app.config["RECS_REQUESTS_PER_MINUTE"] == 30
    monkeypatch.setenv("FLASK_RECS_REQUESTS_PER_MINUTE", "abc")
    with pytest.raises(ValueError, match="not 'abc'"):
        create_app(settings)
