"""Security headers on every response, session cookie flags, and sessions ended on logout."""

from __future__ import annotations

import pytest

from tests.helpers import login, make_challenge, make_user

PAGES = ["/login", "/healthz", "/no-such-page", "/static/app.css"]


def _directives(policy: str) -> dict[str, list[str]]:
    directives = {}
    for part in filter(None, (p.strip() for p in policy.split(";"))):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize("path", PAGES)
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] in {
        "strict-origin-when-cross-origin",
        "same-origin",
        "no-referrer",
    }
    assert "Content-Security-Policy" in headers


def test_csp_allows_scripts_only_from_us_and_the_pinned_cdn(client, app):
    directives = _directives(client.get("/login").headers["Content-Security-Policy"])
    # The pinned file, not the whole CDN host: another package there could not run.
    assert directives["script-src"] == ["'self'", app.config["HTMX_URL"]]
    assert app.config["HTMX_URL"].startswith("https://unpkg.com/htmx.org@")
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["base-uri"] == ["'self'"]
    assert directives["form-action"] == ["'self'"]
    everything = " ".join(v for values in directives.values() for v in values)
    assert (
        "'unsafe-inline'" not in everything
        and "'unsafe-eval'" not in everything
        and "*" not in everything
    )


def test_csp_follows_the_configured_cdn(client, app):
    app.config["HTMX_URL"] = "https://cdn.example.org/htmx.org@2.0.4/dist/htmx.min.js"
    directives = _directives(client.get("/login").headers["Content-Security-Policy"])
    assert directives["script-src"] == [
        "'self'",
        "https://cdn.example.org/htmx.org@2.0.4/dist/htmx.min.js",
    ]


def test_pages_load_htmx_with_sri_and_crossorigin(client, app):
    page = client.get("/login").get_data(as_text=True)
    src, sri = app.config["HTMX_URL"], app.config["HTMX_SRI"]
    tag = f'<script src="{src}" integrity="{sri}" crossorigin="anonymous"'
    assert tag in page
    assert app.config["HTMX_SRI"].startswith("sha384-")


def _session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return cookies[0]


def _attributes(set_cookie: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}


def test_session_cookie_is_httponly_and_samesite_lax(client):
    cookie = _session_cookie(login(client, make_user("student")))
    assert "httponly" in _attributes(cookie)
    assert "SameSite=Lax" in cookie
    assert "secure" not in _attributes(cookie)


def test_session_cookie_is_secure_when_configured(client, app):
    app.config["SESSION_COOKIE_SECURE"] = True
    cookie = _session_cookie(login(client, make_user("student")))
    assert {"secure", "httponly"} <= _attributes(cookie)


def test_login_starts_a_fresh_session(client):
    with client.session_transaction() as session:
        session["planted"] = "by an attacker before login"
    login(client, make_user("student"))
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("_user_id")


def _copy_of_session_cookie(client) -> str:
    return client.get_cookie("session").value


def test_a_copied_session_cookie_stops_working_after_logout(app, client):
    make_challenge()
    student = make_user("student")
    login(client, student)
    stolen = _copy_of_session_cookie(client)
    assert client.get("/challenges").status_code == 200
    assert client.post("/logout").status_code == 302

    replay = app.test_client()
    replay.set_cookie("session", stolen)
    response = replay.get("/challenges")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_password_change_ends_other_sessions(app, client):
    student = make_user("student")
    login(client, student)
    other_device = app.test_client()
    login(other_device, student)
    assert other_device.get("/me/challenges").status_code == 200

    response = client.post(
        "/account/password",
        data={
            "current_password": "password123",
            "password": "a new passphrase",
            "confirm": "a new passphrase",
        },
    )
    assert response.status_code == 302
    assert client.get("/me/challenges").status_code == 200
    assert other_device.get("/me/challenges").status_code == 302
