"""With CSRF protection on (as in production), state-changing POSTs need the session's token."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Challenge, Participation
from tests.helpers import PASSWORD, make_category, make_challenge, make_user


@pytest.fixture
def csrf_app(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


def token_from(client, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)


def logged_in(app, role: str):
    user = make_user(role)
    client = app.test_client()
    response = client.post(
        "/login",
        data={
            "email": user.email,
            "password": PASSWORD,
            "csrf_token": token_from(client, "/login"),
        },
    )
    assert response.status_code == 302
    client.user = user
    return client


def test_login_needs_the_token(csrf_app):
    user = make_user("student")
    client = csrf_app.test_client()
    credentials = {"email": user.email, "password": PASSWORD}
    refused = client.post("/login", data=credentials)
    assert refused.status_code == 400
    assert "Security token missing or invalid" in refused.get_data(as_text=True)
    assert client.post("/login", data={**credentials, "csrf_token": "forged"}).status_code == 400
    accepted = client.post(
        "/login", data={**credentials, "csrf_token": token_from(client, "/login")}
    )
    assert accepted.status_code == 302


def test_join_needs_the_token(csrf_app):
    student = logged_in(csrf_app, "student")
    challenge = make_challenge()
    url = f"/challenges/{challenge.id}/join"
    assert student.post(url).status_code == 400
    assert db.session.scalar(select(Participation.id)) is None
    token = token_from(student, f"/challenges/{challenge.id}")
    assert student.post(url, data={"csrf_token": token}).status_code == 303
    assert db.session.scalar(select(Participation.user_id)) == student.user.id


def test_htmx_header_token_is_accepted(csrf_app):
    student = logged_in(csrf_app, "student")
    challenge = make_challenge()
    token = token_from(student, "/challenges")
    response = student.post(f"/challenges/{challenge.id}/join", headers={"X-CSRFToken": token})
    assert response.status_code == 303


def test_professor_create_needs_the_token(csrf_app):
    professor = logged_in(csrf_app, "professor")
    category = make_category()
    data = {
        "title": "Tokened",
        "description": "A challenge.",
        "category_id": str(category.id),
        "reward_points": "5",
        "starts_at": "2030-01-01T10:00",
        "ends_at": "",
        "status": "draft",
    }
    assert professor.post("/professor/challenges/new", data=data).status_code == 400
    assert db.session.scalar(select(Challenge.id)) is None
    token = token_from(professor, "/professor/challenges/new")
    response = professor.post("/professor/challenges/new", data={**data, "csrf_token": token})
    assert response.status_code == 303
    assert db.session.scalar(select(Challenge.title)) == "Tokened"


# --- a page left open after the session ended ---------------------------------------------------


def test_a_form_posted_after_the_session_ended_leads_to_the_login_page(csrf_app):
    challenge = make_challenge()
    client = csrf_app.test_client()  # no session: it expired, or logged out in another tab
    page = f"http://localhost/challenges/{challenge.id}"
    response = client.post(
        f"/challenges/{challenge.id}/join", data={"csrf_token": "stale"}, headers={"Referer": page}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"/login?next=/challenges/{challenge.id}"
    assert "Your session has ended" in client.get("/login").get_data(as_text=True)
    assert db.session.scalar(select(Participation.id)) is None
    # A referrer on another site is never where the login sends back to.
    foreign = client.post(
        f"/challenges/{challenge.id}/join", headers={"Referer": "https://evil.example/x"}
    )
    assert foreign.headers["Location"] == "/login"


def test_htmx_after_the_session_ended_is_sent_to_log_in(csrf_app):
    challenge = make_challenge()
    response = csrf_app.test_client().post(
        f"/challenges/recommended/{challenge.id}/dismiss",
        headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/challenges"},
    )
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/challenges"


def test_the_event_endpoint_logged_out_is_401_with_the_token_check_on(csrf_app):
    response = csrf_app.test_client().post("/recommendations/event", json={})
    assert response.status_code == 401
    assert response.get_json()["error"] == "Please log in first."


def test_a_stale_token_while_logged_in_is_a_clear_refusal(csrf_app):
    student = logged_in(csrf_app, "student")
    challenge = make_challenge()
    refused = student.post(f"/challenges/{challenge.id}/join", data={"csrf_token": "stale"})
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "Reload the page and try again" in text and "CSRF session token" not in text
    # HTMX is told to reload the page, which brings a fresh token and says why.
    htmx = student.post(
        f"/challenges/recommended/{challenge.id}/dismiss",
        headers={"HX-Request": "true", "X-CSRFToken": "stale"},
    )
    assert htmx.status_code == 400 and htmx.headers["HX-Refresh"] == "true"
    assert "The page had expired" in student.get("/challenges").get_data(as_text=True)
    assert db.session.scalar(select(Participation.id)) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Referer": "http://[::1/x"},
        {"HX-Request": "true", "HX-Current-URL": "http://[x]/"},
        {"Referer": "http://a]/"},
    ],
)
def test_a_malformed_page_address_is_ignored_not_a_500(csrf_app, headers):
    challenge = make_challenge()
    response = csrf_app.test_client().post(f"/challenges/{challenge.id}/join", headers=headers)
    assert response.status_code in (303, 401)
    assert (response.headers.get("Location") or response.headers["HX-Redirect"]) == "/login"
    logged_out = csrf_app.test_client().get("/challenges", headers=headers)
    assert logged_out.status_code in (302, 401)


def test_the_login_does_not_send_back_to_a_form_answer(csrf_app):
    """A page whose address is a POST-only URL (a form's answer rendered in place)."""
    challenge = make_challenge()
    response = csrf_app.test_client().post(
        f"/challenges/{challenge.id}/join",
        headers={"Referer": f"http://localhost/challenges/{challenge.id}/join"},
    )
    assert response.headers["Location"] == "/login"


def test_logging_out_after_the_session_ended_just_says_so(csrf_app):
    client = csrf_app.test_client()
    response = client.post("/logout", headers={"Referer": "http://localhost/challenges"})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert "You are logged out." in client.get("/login").get_data(as_text=True)
