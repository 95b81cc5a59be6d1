"""Accounts: login, registration, logout, cookies, rate limit, redirects, password change."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from app import create_app
from app.extensions import db
from app.models import LoginAttempt, User
from tests.helpers import PASSWORD, login, make_user


def test_login_ok_goes_to_the_role_home(client):
    professor = make_user("professor")
    response = login(client, professor)
    assert response.status_code == 302
    assert response.location == "/professor/challenges"


def test_bad_password_is_401_with_message(client):
    student = make_user("student")
    response = login(client, student, password="not-the-password")
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)
    assert client.get("/challenges").status_code == 302


def test_unknown_email_gets_the_same_answer(client):
    response = client.post("/login", data={"email": "nobody@uni.test", "password": "whatever1"})
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)


def test_inactive_account_is_refused(client):
    student = make_user("student", active=False)
    response = login(client, student)
    assert response.status_code == 401
    assert "This account is disabled." in response.get_data(as_text=True)
    assert client.get("/challenges").status_code == 302


def test_email_is_case_insensitive(client):
    make_user("student", email="Mixed.Case@Uni.test")
    response = client.post("/login", data={"email": "  MIXED.case@uni.TEST ", "password": PASSWORD})
    assert response.status_code == 302


def register(client, email="new@uni.edu", **overrides):
    data = {
        "display_name": "New Student",
        "email": email,
        "password": "longenough1",
        "confirm": "longenough1",
    }
    data.update(overrides)
    return client.post("/register", data=data)


def test_registration_creates_a_logged_in_student(client):
    response = register(client, email="Fresh@Uni.edu")
    assert response.status_code == 302
    user = db.session.scalar(select(User).where(User.email == "fresh@uni.edu"))
    assert user.role == "student"
    assert client.get("/challenges").status_code == 200


def test_registration_with_a_taken_email_is_409(client):
    make_user("student", email="taken@uni.edu")
    response = register(client, email="TAKEN@uni.edu")
    assert response.status_code == 409
    assert "already exists" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(User.id))) == 1


def test_registration_takes_an_email_with_spaces_around_it_as_the_login_does(client):
    # A phone keyboard's autocomplete adds a space after the address; the login ignores it.
    response = register(client, email="  Spaced@Uni.edu ")
    assert response.status_code == 302
    assert db.session.scalar(select(User.id).where(User.email == "spaced@uni.edu")) is not None
    client.post("/logout")
    assert register(client, email=" spaced@uni.edu").status_code == 409


def test_registration_validation_is_400(client):
    response = register(client, confirm="different1")
    assert response.status_code == 400
    assert "Passwords do not match." in response.get_data(as_text=True)


def test_refused_account_forms_are_logged_without_what_was_typed(client, student_client, caplog):
    caplog.set_level("INFO", logger="app.auth.routes")
    register(client, email="taken@uni.edu")
    register(
        client.application.test_client(),
        email="taken@uni.edu",
        password="secret-one",
        confirm="secret-one",
    )
    assert "registration refused for email='taken@uni.edu': it has an account" in caplog.text
    register(client.application.test_client(), email="fresh@uni.edu", confirm="secret-two")
    assert "registration refused address=127.0.0.1: confirm" in caplog.text
    client.application.test_client().post("/login", data={"email": "", "password": "secret-3"})
    assert "login refused address=127.0.0.1: email" in caplog.text
    student_client.post(
        "/account/password",
        data={"current_password": PASSWORD, "password": "secret-4", "confirm": "secret-5"},
    )
    assert f"password change refused user_id={student_client.user.id}: confirm" in caplog.text
    assert not any(f"secret-{n}" in caplog.text for n in ("one", "two", "3", "4", "5"))


def test_a_form_with_errors_opens_on_a_summary_linking_each_field(client):
    html = register(client, display_name="", confirm="different1").get_data(as_text=True)
    assert "<title>Error: Register · Campus Challenges</title>" in html
    opening = 'class="danger-box error-summary" role="alert" tabindex="-1" autofocus>'
    summary = html.split(opening)[1].split("</div>")[0]
    assert "These 2 fields need correcting:" in summary
    assert '<a href="#display_name">' in summary and '<a href="#confirm">' in summary
    assert "Passwords do not match." in summary
    assert "error-summary" not in client.get("/register").get_data(as_text=True)


def test_registration_disabled_by_config_is_404(make_app):
    closed = make_app(REGISTRATION_ENABLED=False)
    client = closed.test_client()
    assert client.get("/register").status_code == 404
    assert register(client).status_code == 404
    assert "Register" not in client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize("spelling", ["False", "FALSE", "off", "no", "0", "false"])
def test_registration_turned_off_from_the_environment_in_any_spelling_is_404(
    make_app, monkeypatch, spelling
):
    monkeypatch.setenv("FLASK_REGISTRATION_ENABLED", spelling)
    closed = make_app()
    assert closed.config["REGISTRATION_ENABLED"] is False
    assert closed.test_client().get("/register").status_code == 404


def test_a_flag_that_is_neither_true_nor_false_fails_at_startup(make_app, monkeypatch):
    monkeypatch.setenv("FLASK_REGISTRATION_ENABLED", "nope")
    with pytest.raises(ValueError, match="REGISTRATION_ENABLED must be true or false, not 'nope'"):
        make_app()


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("LOGIN_RATE_LIMIT", "ten", "a whole number"),
        ("LOGIN_RATE_LIMIT", "true", "a whole number"),
        ("RECS_SLATE_SIZE", "6.5", "a whole number"),
        ("RECS_GATE_MARGIN", "none", "a number"),
        ("RECS_GATE_MARGIN", "NaN", "a number"),
        ("RECS_STALE_AFTER_HOURS", "two days", "a number"),
        ("RECS_HEURISTIC_WEIGHTS", '{"affinity": "high"}', "a JSON object of numbers"),
        ("RECS_INTERACTION_WEIGHTS", "join=3", "a JSON object"),
        ("RECS_CONTENT_POSITIONS", "2,5", "a list of whole numbers"),
        ("PERMANENT_SESSION_LIFETIME", "7d", "a number of seconds"),
        # The right type, out of range.
        ("RECS_EVENT_RETENTION_DAYS", "0", "1 or more"),  # would purge every event
        ("RECS_EVENT_RETENTION_DAYS", "-30", "1 or more"),
        ("CHALLENGES_PER_PAGE", "0", "1 or more"),
        ("RECS_SLATE_SIZE", "-3", "1 or more"),
        ("TRUSTED_PROXIES", "-1", "0 or more"),
        ("RECS_HOLDOUT_FRACTION", "1", "between 0 and 1"),
        ("RECS_IMPORT_MAX_BAD_SHARE", "1.5", "from 0 to 1"),
        ("RECS_STALE_AFTER_HOURS", "0", "more than 0"),
        ("RECS_CONTENT_POSITIONS", "[2, -1]", "places from 0 up"),
        ("PERMANENT_SESSION_LIFETIME", "-5", "more than 0"),
    ],
)
def test_a_setting_of_the_wrong_type_or_range_fails_at_startup(
    make_app, monkeypatch, name, value, expected
):
    monkeypatch.setenv(f"FLASK_{name}", value)
    with pytest.raises(ValueError, match=rf"^{name} must be {expected}, not "):
        make_app()


def test_a_log_level_of_another_name_fails_at_startup(make_app, monkeypatch):
    monkeypatch.setenv("FLASK_LOG_LEVEL", "LOUD")
    with pytest.raises(ValueError, match="^LOG_LEVEL must be one of DEBUG, INFO, .*not 'LOUD'$"):
        make_app()
    monkeypatch.setenv("FLASK_LOG_LEVEL", "warning")
    assert make_app().config["LOG_LEVEL"] == "warning"


@pytest.mark.parametrize("value", ["30", "WARN"])
def test_a_log_level_logging_itself_reads_still_starts(make_app, monkeypatch, value):
    # LOG_LEVEL = logging.WARNING in instance/config.py, or a logging alias, started the app
    # before LOG_LEVEL was checked.
    monkeypatch.setenv("FLASK_LOG_LEVEL", value)
    assert make_app().config["LOG_LEVEL"] in (30, "WARN")


def test_a_range_holds_for_settings_given_to_the_factory_too(make_app):
    with pytest.raises(ValueError, match="^LOGIN_RATE_LIMIT must be 1 or more, not 0$"):
        make_app(LOGIN_RATE_LIMIT=0)  # would refuse every login


@pytest.mark.parametrize(
    "name, value",
    [
        ("RECS_GATE_MARGIN", "0"),  # a whole number is a number
        ("RECS_STALE_AFTER_HOURS", "1.5"),  # a duration may be a fraction
        ("RECS_CONTENT_POSITIONS", "null"),  # no content positions
        ("RECS_CONTENT_POSITIONS", "[1, 3]"),
        ("PERMANENT_SESSION_LIFETIME", "3600"),
        ("RECS_PSEUDONYM_KEY", "12345"),  # no default: anything
        ("SQLALCHEMY_ENGINE_OPTIONS", '{"pool_pre_ping": true, "pool_recycle": 300}'),
    ],
)
def test_settings_of_the_type_their_default_allows_start(make_app, monkeypatch, name, value):
    monkeypatch.setenv(f"FLASK_{name}", value)
    assert make_app().config[name] == json.loads(value)


@pytest.mark.parametrize(
    "url", ["campus.db", "postgresql://campus:pw@db.example.edu:port/campus", "nosuchdb://x"]
)
def test_a_database_url_that_cannot_be_used_fails_at_startup_naming_it(monkeypatch, url):
    # SQLAlchemy's traceback ("Could not parse SQLAlchemy URL ...") named no setting.
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("FLASK_SQLALCHEMY_DATABASE_URI", raising=False)
    with pytest.raises(ValueError, match="^DATABASE_URL is not a database URL this app can use: "):
        create_app({"SECRET_KEY": "test-secret-key"})


def test_logout_requires_post(student_client):
    assert student_client.get("/logout").status_code == 405
    assert student_client.get("/challenges").status_code == 200
    response = student_client.post("/logout")
    assert response.status_code == 302
    assert student_client.get("/challenges").status_code == 302


def test_session_cookie_is_httponly_and_samesite_lax(client):
    response = login(client, make_user("student"))
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def _post_login(client, email, password="wrong-password", address="10.0.0.1"):
    return client.post(
        "/login",
        data={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_guessing_one_password_answers_429_but_others_behind_the_address_log_in(make_app, caplog):
    limited = make_app(LOGIN_RATE_LIMIT=3)
    client = limited.test_client()
    student, neighbour = make_user("student"), make_user("student")
    for _ in range(3):
        assert _post_login(client, student.email).status_code == 401
    caplog.set_level("WARNING", logger="app.auth.routes")
    # Even the right password waits out the window, whatever the email's case.
    response = _post_login(client, student.email.upper(), PASSWORD)
    assert response.status_code == 429
    assert "Too many attempts for this account" in response.get_data(as_text=True)
    # The refusal names the account, so guessing one password shows in the log.
    assert (
        f"login rate limit hit (account) for address=10.0.0.1 email={student.email!r}"
        in caplog.text
    )
    # Someone else behind the same campus address is not held up.
    assert _post_login(limited.test_client(), neighbour.email, PASSWORD).status_code == 302
    # Nor is the account's owner at another address.
    assert (
        _post_login(limited.test_client(), student.email, PASSWORD, "10.0.0.2").status_code == 302
    )


def test_guesses_at_one_account_spread_over_addresses_are_counted_together(make_app):
    limited = make_app(LOGIN_RATE_LIMIT=3, LOGIN_ACCOUNT_RATE_LIMIT=4)
    client = limited.test_client()
    student = make_user("student")
    for n in range(4):
        assert _post_login(client, student.email, address=f"10.0.1.{n}").status_code == 401
    response = _post_login(client, student.email, PASSWORD, "10.0.1.99")
    assert response.status_code == 429
    assert "Too many attempts for this account" in response.get_data(as_text=True)


def test_one_address_trying_many_accounts_meets_the_address_ceiling(make_app, caplog):
    limited = make_app(LOGIN_RATE_LIMIT=3, LOGIN_ADDRESS_RATE_LIMIT=4)
    client = limited.test_client()
    student = make_user("student")
    for n in range(4):
        assert _post_login(client, f"someone{n}@uni.test").status_code == 401
    caplog.set_level("WARNING", logger="app.auth.routes")
    response = _post_login(client, student.email, PASSWORD)
    assert response.status_code == 429
    assert "Too many attempts from your address" in response.get_data(as_text=True)
    assert "login rate limit hit (address) for address=10.0.0.1" in caplog.text
    assert _post_login(client, student.email, PASSWORD, "10.0.0.2").status_code == 302


def test_a_json_body_cannot_log_in_past_the_budget(make_app):
    """A form filled from JSON would be checked without the budgets reading its email."""
    limited = make_app(LOGIN_RATE_LIMIT=2)
    client = limited.test_client()
    student = make_user("student")
    for _ in range(2):
        assert _post_login(client, student.email).status_code == 401
    body = {"email": student.email, "password": PASSWORD}
    response = client.post("/login", json=body, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert response.status_code == 400 and "session" not in response.headers.get("Set-Cookie", "")
    assert client.get("/challenges").status_code == 302  # still logged out


def test_an_ipv6_host_counts_as_its_whole_64_network(make_app):
    limited = make_app(LOGIN_RATE_LIMIT=3)
    client = limited.test_client()
    student = make_user("student")
    for n in range(1, 4):
        assert _post_login(client, student.email, address=f"2001:db8::{n}").status_code == 401
    assert _post_login(client, student.email, PASSWORD, "2001:db8::ffff").status_code == 429
    elsewhere = _post_login(limited.test_client(), student.email, PASSWORD, "2001:db8:0:1::1")
    assert elsewhere.status_code == 302


def test_guessing_from_many_addresses_does_not_stop_the_owner_changing_the_password(make_app):
    limited = make_app(LOGIN_ACCOUNT_RATE_LIMIT=2)
    owner = limited.test_client()
    student = make_user("student")
    assert login(owner, student).status_code == 302
    for n in range(2):
        assert (
            _post_login(limited.test_client(), student.email, address=f"10.9.0.{n}").status_code
            == 401
        )
    assert _post_login(limited.test_client(), student.email, PASSWORD).status_code == 429
    changed = owner.post(
        "/account/password",
        data={"current_password": PASSWORD, "password": "newpassword1", "confirm": "newpassword1"},
    )
    assert changed.status_code == 302
    db.session.refresh(student)
    assert student.check_password("newpassword1")


def test_an_email_with_and_without_an_account_meet_the_same_limit(make_app):
    limited = make_app(LOGIN_RATE_LIMIT=2)
    client = limited.test_client()
    student = make_user("student")
    for email in (student.email, "nobody@uni.test"):
        for _ in range(2):
            assert _post_login(client, email).status_code == 401
        refused = _post_login(client, email)
        assert refused.status_code == 429
        assert "Too many attempts for this account" in refused.get_data(as_text=True)


def test_attempts_are_stored_without_what_was_typed(make_app):
    limited = make_app()
    client = limited.test_client()
    assert _post_login(client, "Secret-Typed-In-The-Email-Field").status_code == 401
    for spelling in ("Someone@Uni.test", " someone@uni.test "):
        assert _post_login(client, spelling).status_code == 401
    rows = db.session.scalars(select(LoginAttempt)).all()
    assert len(rows) == 3 and all(row.account and len(row.account) == 64 for row in rows)
    stored = " ".join(f"{row.account} {row.address}" for row in rows).lower()
    assert "someone" not in stored and "secret" not in stored
    assert len({row.account for row in rows}) == 2  # one key per account, however spelled


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com",
        "https://evil.com",
        "//evil.com/challenges",
        "/\\evil.com",
        "/\t/evil.com",  # browsers drop the tab and read //evil.com
        "javascript:alert(1)",
        "/x\ny",  # would split the Location header
        "/x\r\nSet-Cookie: a=b",
    ],
)
def test_open_redirect_via_next_is_ignored(client, target):
    student = make_user("student")
    response = client.post(
        "/login", query_string={"next": target}, data={"email": student.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response.location == "/challenges"


def test_local_next_is_followed(client):
    student = make_user("student")
    response = client.post(
        "/login?next=/me/challenges", data={"email": student.email, "password": PASSWORD}
    )
    assert response.location == "/me/challenges"


@pytest.mark.parametrize(
    ("role", "target", "landing"),
    [
        ("student", "/professor/challenges", "/challenges"),
        ("student", "/admin/", "/challenges"),
        ("student", "/admin", "/challenges"),  # redirected to /admin/ first
        ("student", "/professor//challenges", "/challenges"),
        ("professor", "/me/challenges", "/professor/challenges"),
        ("student", "/challenges/1/join", "/challenges"),  # POST only
        ("student", "/no/such/page", "/challenges"),
        ("professor", "/professor/challenges?status=draft", "/professor/challenges?status=draft"),
        ("admin", "/professor/challenges", "/professor/challenges"),
    ],
)
def test_a_next_page_the_account_cannot_open_leads_home(client, role, target, landing):
    user = make_user(role)
    response = client.post(
        "/login", query_string={"next": target}, data={"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response.location == landing


def test_the_login_page_of_someone_logged_in_already_follows_its_next_page(student_client):
    # E.g. a second tab sent to log in before the first one did.
    response = student_client.get("/login", query_string={"next": "/me/challenges"})
    assert response.location == "/me/challenges"
    for target in ("//evil.example/", "/admin/"):
        response = student_client.get("/login", query_string={"next": target})
        assert response.location == "/challenges"


def test_password_change_logs_out_other_sessions(app, student_client):
    other_device = app.test_client()
    login(other_device, student_client.user)
    assert other_device.get("/challenges").status_code == 200

    response = student_client.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "password": "brand-new-pass",
            "confirm": "brand-new-pass",
        },
    )
    assert response.status_code == 302
    assert student_client.get("/challenges").status_code == 200
    assert other_device.get("/challenges").status_code == 302
    assert (
        login(app.test_client(), student_client.user, password="brand-new-pass").status_code == 302
    )


def test_password_change_with_wrong_current_password_is_400(student_client):
    response = student_client.post(
        "/account/password",
        data={
            "current_password": "not-it",
            "password": "brand-new-pass",
            "confirm": "brand-new-pass",
        },
    )
    assert response.status_code == 400
    assert "That is not your current password." in response.get_data(as_text=True)


def test_registrations_have_their_own_budget_per_address(make_app):
    limited = make_app(REGISTRATION_RATE_LIMIT=2, LOGIN_ADDRESS_RATE_LIMIT=1)
    client = limited.test_client()
    for n in range(2):
        response = client.post(
            "/register",
            data={
                "display_name": f"New {n}",
                "email": f"new{n}@campus.example.edu",
                "password": "longenough1",
                "confirm": "longenough1",
            },
        )
        assert response.status_code == 302
        client.post("/logout")
    response = client.post(
        "/register",
        data={
            "display_name": "Third",
            "email": "third@campus.example.edu",
            "password": "longenough1",
            "confirm": "longenough1",
        },
    )
    assert response.status_code == 429
    assert "Too many attempts from your address" in response.get_data(as_text=True)
    assert db.session.scalar(select(User).where(User.email == "third@campus.example.edu")) is None
    # Registrations are not failed logins: the address's one failure is still to come.
    assert login(client, make_user("student"), password="wrong-password").status_code == 401


def test_a_page_that_says_what_went_wrong_has_one_autofocus_on_that(client, professor_client):
    wrong = client.post("/login", data={"email": "x@uni.test", "password": "nope-nope"})
    html = wrong.get_data(as_text=True)
    assert html.count("autofocus") == 1 and '<div class="flashes" tabindex="-1" autofocus>' in html
    assert "<title>Error: Log in · Campus Challenges</title>" in html
    empty = client.post("/login", data={}).get_data(as_text=True)
    assert (
        empty.count("autofocus") == 1
        and 'error-summary" role="alert" tabindex="-1" autofocus' in empty
    )
    new = professor_client.post("/professor/challenges/new", data={}).get_data(as_text=True)
    assert new.count("autofocus") == 1 and "error-summary" in new
    assert client.get("/login").get_data(as_text=True).count("autofocus") == 1  # the email field


def test_registration_cleans_the_name_others_will_see(client, app):
    blank = register(client, email="blank@uni.edu", display_name="\u200b\u200b\u200b")
    assert blank.status_code == 400
    register(client, email="spoof@uni.edu", display_name="Admin\u202etneduts\u200b")
    user = db.session.scalar(select(User).where(User.email == "spoof@uni.edu"))
    assert user.display_name == "Admintneduts"


def test_an_unknown_email_costs_a_password_check_like_a_known_one(client, monkeypatch):
    """How long a failed login takes must not tell which addresses have accounts."""
    from app.auth import routes

    checked = []
    real = routes.check_password_hash
    monkeypatch.setattr(routes, "check_password_hash", lambda h, p: checked.append(h) or real(h, p))
    response = client.post("/login", data={"email": "nobody@uni.test", "password": "whatever1"})
    assert response.status_code == 401 and checked == [routes._UNKNOWN_ACCOUNT_HASH]


def test_a_password_is_checked_without_holding_up_other_writes(client, monkeypatch):
    """A password check is a ~100 ms hash; on SQLite, the login budgets' clean-up of expired
    attempts took the database's one write lock before it, so each login, right or wrong, and
    each password change, made every other request's write wait behind its hashing."""
    from sqlalchemy import update
    from sqlalchemy.exc import OperationalError

    from app.models import Category
    from tests.helpers import make_category

    student, category = make_user("student"), make_category()
    check_password = User.check_password
    held_up = []

    def checked_while_another_request_writes(self, password):
        with db.engine.connect() as other:
            if other.dialect.name == "sqlite":
                other.exec_driver_sql("PRAGMA busy_timeout=200")
            try:
                other.execute(update(Category).where(Category.id == category.id).values(name="x"))
                other.commit()
            except OperationalError as exc:
                held_up.append(str(exc.orig))
        return check_password(self, password)

    monkeypatch.setattr(User, "check_password", checked_while_another_request_writes)
    assert login(client, student, password="not-the-password").status_code == 401
    assert login(client, student).status_code == 302
    response = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "password": "longenough2", "confirm": "longenough2"},
    )
    assert response.status_code == 302
    assert held_up == []


def test_guessing_the_current_password_counts_with_failed_logins(make_app, caplog):
    """A stolen session must not get to guess the password behind it at leisure."""
    limited = make_app(LOGIN_RATE_LIMIT=3)
    client = limited.test_client()
    student = make_user("student")
    assert login(client, student).status_code == 302
    wrong = {
        "current_password": "not-it-123",
        "password": "newpassword1",
        "confirm": "newpassword1",
    }
    for _ in range(3):
        assert client.post("/account/password", data=wrong).status_code == 400
    caplog.set_level("WARNING", logger="app.auth.routes")
    right = {**wrong, "current_password": PASSWORD}
    response = client.post("/account/password", data=right)
    assert response.status_code == 429 and "password change rate limit hit" in caplog.text
    db.session.refresh(student)
    assert student.check_password(PASSWORD)  # unchanged
    # The guesses were counted against the account: its login from that address waits too.
    again = _post_login(limited.test_client(), student.email, PASSWORD, "127.0.0.1")
    assert again.status_code == 429


def test_a_form_posted_after_logging_out_elsewhere_says_so_and_returns_to_its_page(app):
    from app.models import Participation
    from tests.helpers import make_challenge

    student, challenge = make_user("student"), make_challenge()
    tab, phone = app.test_client(), app.test_client()
    login(tab, student)
    login(phone, student)
    assert phone.post("/logout").status_code == 302  # ends every session of the account
    page = f"/challenges/{challenge.id}"
    response = tab.post(f"{page}/join", headers={"Referer": f"http://localhost{page}"})
    assert response.status_code == 302 and response.location == f"/login?next={page}"
    shown = tab.get("/login").get_data(as_text=True)
    assert "Your session has ended, so that was not done. Log in and try again." in shown
    again = tab.post(response.location, data={"email": student.email, "password": PASSWORD})
    assert again.location == page  # the page, not the POST-only join address
    assert db.session.scalar(select(func.count(Participation.id))) == 0


def test_a_page_that_needs_a_login_says_so(client):
    response = client.get("/me/challenges")
    assert response.status_code == 302 and response.location == "/login?next=/me/challenges"
    assert "Please log in to see that page." in client.get("/login").get_data(as_text=True)


def test_a_session_survives_a_change_of_network(client):
    """A phone moving from campus Wi-Fi to mobile data keeps its login."""
    student = make_user("student")
    wifi, mobile = {"REMOTE_ADDR": "10.1.2.3"}, {"REMOTE_ADDR": "198.51.100.7"}
    response = client.post(
        "/login", data={"email": student.email, "password": PASSWORD}, environ_base=wifi
    )
    assert response.status_code == 302
    assert client.get("/me/challenges", environ_base=mobile).status_code == 200
    assert client.get("/me/challenges", environ_base=wifi).status_code == 200


def test_an_email_is_the_same_however_its_accents_were_typed(client, app):
    decomposed, composed = "mu\u0308ller@uni.edu", "m\u00fcller@uni.edu"
    assert register(client, email=decomposed).status_code == 302
    client.post("/logout")
    response = client.post("/login", data={"email": composed.upper(), "password": "longenough1"})
    assert response.status_code == 302
    client.post("/logout")
    assert register(client, email=composed).status_code == 409  # no look-alike second account


def test_a_head_request_to_a_page_that_needs_a_login_is_answered_as_a_get(client):
    response = client.head("/me/challenges")
    assert response.status_code == 302 and response.location == "/login?next=/me/challenges"
    assert "Your session has ended" not in client.get("/login").get_data(as_text=True)


def test_a_login_without_an_email_is_not_held_to_the_registration_budget(make_app):
    limited = make_app(REGISTRATION_RATE_LIMIT=1)
    client = limited.test_client()
    assert register(client, email="one@uni.edu").status_code == 302
    client.post("/logout")
    response = client.post("/login", data={"email": "", "password": "whatever1"})
    assert response.status_code == 400  # what is missing, not "too many attempts"


def create_account(runner, **options):
    values = {
        "email": "new.admin@uni.edu",
        "name": "New Admin",
        "role": "admin",
        "password": "longenough1",
        **options,
    }
    args = [part for name, value in values.items() for part in (f"--{name}", value)]
    return runner.invoke(args=["users", "create", *args])


def test_users_create_makes_an_account_that_logs_in(client, runner):
    result = create_account(runner, email=" New.Admin@Uni.edu ", name="  Ada \u202eLovelace\u200b ")
    assert result.exit_code == 0, result.output
    created = db.session.scalar(select(User).where(User.email == "new.admin@uni.edu"))
    assert created.display_name == "Ada Lovelace"
    response = client.post("/login", data={"email": created.email, "password": "longenough1"})
    assert response.location == "/admin/"


def test_users_create_without_a_name_uses_the_email_cut_to_a_names_length(runner):
    # An address may be 254 characters; the name column holds 120 (PostgreSQL refuses more).
    email = f"{'a' * 64}@{'b' * 60}.{'c' * 20}.edu"
    result = create_account(runner, email=email, name=" \u200b ")
    assert result.exit_code == 0, result.output
    created = db.session.scalar(select(User).where(User.email == email))
    assert created.display_name == email[:120]


@pytest.mark.parametrize(
    "option, value, message",
    [
        # The login form takes at most 200 characters: a longer password could never be used.
        ("password", "p" * 201, "8 to 200 characters"),
        ("password", "short", "8 to 200 characters"),
        # The login form reads a password of spaces as none: such an account could never log in.
        ("password", " " * 8, "must not be only spaces"),
        ("name", "N" * 121, "at most 120 characters"),
        ("email", "new admin@uni.edu", "not an email address"),
        ("email", "new.admin@", "not an email address"),
    ],
)
def test_users_create_refuses_what_registration_refuses(runner, option, value, message):
    result = create_account(runner, **{option: value})
    assert result.exit_code == 2
    assert message in result.output
    assert db.session.scalar(select(func.count(User.id))) == 0


def test_users_password_sets_a_forgotten_password_and_ends_the_accounts_sessions(app, runner):
    student = make_user("student")
    old_device = app.test_client()
    login(old_device, student)
    result = runner.invoke(
        args=["users", "password", "--email", student.email.upper()],
        input="a new secret\na new secret\n",
    )
    assert result.exit_code == 0, result.output
    assert f"Password of {student.email} set; its sessions were logged out." in result.output
    assert old_device.get("/challenges").status_code == 302
    fresh = app.test_client()
    assert login(fresh, student, password=PASSWORD).status_code == 401
    assert login(fresh, student, password="a new secret").status_code == 302
    short = runner.invoke(
        args=["users", "password", "--email", student.email, "--password", "short"]
    )
    assert short.exit_code == 2 and "8 to 200 characters" in short.output
    missing = runner.invoke(
        args=["users", "password", "--email", "nobody@uni.test", "--password", "long enough"]
    )
    assert missing.exit_code == 1 and "no account with email nobody@uni.test" in missing.output
    # Said before the password is asked for, not after it was typed twice.
    unasked = runner.invoke(args=["users", "password", "--email", "nobody@uni.test"], input="")
    assert unasked.exit_code == 1 and "no account with email nobody@uni.test" in unasked.output
    assert "New password" not in unasked.output


def test_a_login_lasts_the_session_lifetime_from_when_its_cookie_was_written(
    app, client, monkeypatch
):
    """As the README and the operations guide say: browsing does not extend a login; past
    PERMANENT_SESSION_LIFETIME after the session last changed, it has ended."""
    from itsdangerous import TimestampSigner

    student = make_user("student")
    login(client, student)
    client.get("/challenges")  # shows the welcome message: the session changes, and is signed
    signed = int(time.time())
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    for elapsed, status in [(lifetime // 2, 200), (lifetime - 60, 200), (lifetime + 60, 302)]:
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self, e=elapsed: signed + e)
        response = client.get("/challenges")
        assert response.status_code == status, elapsed
        assert status == 302 or "Set-Cookie" not in response.headers  # browsing signs nothing


def test_a_nested_setting_from_the_environment_changes_only_that_app(make_app, monkeypatch):
    monkeypatch.setenv("FLASK_RECS_HEURISTIC_WEIGHTS__affinity", "9.5")
    assert make_app().config["RECS_HEURISTIC_WEIGHTS"]["affinity"] == 9.5
    monkeypatch.delenv("FLASK_RECS_HEURISTIC_WEIGHTS__affinity")
    from app.config import DefaultConfig

    assert DefaultConfig.RECS_HEURISTIC_WEIGHTS["affinity"] != 9.5
    assert make_app().config["RECS_HEURISTIC_WEIGHTS"] == DefaultConfig.RECS_HEURISTIC_WEIGHTS


def test_users_password_asks_again_for_a_password_of_the_wrong_length(runner):
    # Refused only after the account was looked up and the password typed twice, it ended the
    # command, and everything had to be typed again.
    student = make_user("student")
    result = runner.invoke(
        args=["users", "password", "--email", student.email],
        input="short\nlong enough1\nlong enough1\n",
    )
    assert result.exit_code == 0, result.output
    assert "8 to 200 characters" in result.output
    db.session.refresh(student)
    assert student.check_password("long enough1")


@pytest.mark.parametrize(
    "args",
    [
        ("users", "activate", "--email", "someone@uni.test"),
        ("users", "delete", "--email", "someone@uni.test", "--yes"),
        ("demo", "seed"),
    ],
)
def test_account_and_demo_commands_on_a_database_not_migrated_say_so_in_one_line(
    make_app, tmp_path, caplog, args
):
    # They ended in a traceback, where `flask recs ...` says what to check.
    empty = make_app(SQLALCHEMY_DATABASE_URI="sqlite:///" + str(tmp_path / "empty.db"))
    with empty.app_context():
        result = empty.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 1
    assert "Error: database error: no such table: users" in result.output
    assert "flask db upgrade" in result.output and "Traceback" not in result.output
    assert f"flask {args[0]} {args[1]}: database error: no such table: users" in caplog.text


def test_users_refusals_are_logged(runner, caplog):
    result = runner.invoke(args=["users", "deactivate", "--email", "nobody@uni.test"])
    assert result.exit_code == 1
    assert "flask users deactivate: no account with email nobody@uni.test" in caplog.text


@pytest.mark.parametrize("name", ["TRAP_HTTP_EXCEPTIONS", "WTF_CSRF_ENABLED", "SQLALCHEMY_ECHO"])
def test_flask_and_extension_flags_read_false_in_any_spelling(make_app, monkeypatch, name):
    # FLASK_TESTING=False too (the test config sets TESTING itself, so it is not shown here).
    monkeypatch.setenv(f"FLASK_{name}", "False")
    assert make_app().config[name] is False


def test_a_login_form_sent_while_logged_in_says_whose_session_it_is(client):
    first, second = make_user("student"), make_user("student")
    login(client, first)
    response = client.post("/login", data={"email": second.email, "password": PASSWORD})
    assert response.status_code == 302 and response.location == "/challenges"
    page = client.get("/challenges").get_data(as_text=True)
    assert f"You are already logged in as {first.email}" in page
    with client.session_transaction() as session:
        assert session["_user_id"].split(":")[0] == str(first.id)
    # The same account's email (another tab's stale form) carries on without a word.
    response = client.post("/login", data={"email": f" {first.email.upper()} ", "password": "x"})
    assert response.status_code == 302
    assert "already logged in" not in client.get("/challenges").get_data(as_text=True)
