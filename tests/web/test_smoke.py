import io

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Category
from tests.helpers import make_challenge


def test_healthz_reports_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["database"]["ok"] is True
    assert response.json["status"] == "ok"


def test_student_sees_published_challenge(student_client):
    challenge = make_challenge(title="Build a solar boat")
    draft = make_challenge(title="Secret draft", status="draft")
    page = student_client.get("/challenges").get_data(as_text=True)
    assert "Build a solar boat" in page
    assert "Secret draft" not in page
    assert student_client.get(f"/challenges/{draft.id}").status_code == 404
    assert student_client.get(f"/challenges/{challenge.id}").status_code == 200


def test_an_empty_list_says_whether_the_search_found_nothing(student_client):
    page = student_client.get("/challenges").get_data(as_text=True)
    assert "No challenge is open right now" in page
    assert "Try another search" not in page
    make_challenge(title="Build a solar boat")
    page = student_client.get("/challenges?q=kite").get_data(as_text=True)
    assert "No challenges match. Try another search or category." in page


def test_a_category_filter_of_a_deleted_category_shows_every_category(student_client, caplog):
    challenge = make_challenge(title="Build a solar boat")
    filtered = student_client.get(f"/challenges?category={challenge.category_id}")
    assert "Build a solar boat" in filtered.get_data(as_text=True)
    caplog.set_level("INFO", logger="app.challenges.routes")
    page = student_client.get("/challenges?category=99999").get_data(as_text=True)
    assert "That category no longer exists" in page
    assert "Build a solar boat" in page
    assert "unknown category filter 99999" in caplog.text


def test_odd_and_oversized_ids_are_bad_input_not_errors(student_client, admin_client):
    make_challenge()
    # "²" passes str.isdigit() but not int(); 20 digits overflow SQLite's integer binding.
    assert student_client.get("/challenges/recommended?offset=%C2%B2").status_code == 200
    assert student_client.get("/challenges?category=99999999999999999999").status_code == 200
    assert student_client.get("/challenges?category=%C2%B2").status_code == 200
    assert student_client.get("/challenges/99999999999999999999").status_code == 404
    assert admin_client.get("/admin/recommendations/preview?user_id=%C2%B2").status_code == 400
    assert (
        admin_client.get(
            "/admin/recommendations/preview?user_id=99999999999999999999999"
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    "url, field",
    [
        ("/login", "email"),
        ("/register", "display_name"),
        ("/admin/categories", "name"),
    ],
)
def test_a_file_in_a_form_is_bad_input_not_an_error(client, admin_client, url, field, caplog):
    caplog.set_level("WARNING", logger="app.web")
    browser = admin_client if url.startswith("/admin") else client
    before = db.session.scalar(select(func.count(Category.id)))
    response = browser.post(
        url,
        data={field: (io.BytesIO(b"hi"), "a.txt"), "password": "x"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "does not take file uploads" in response.get_data(as_text=True)
    assert "refused a file upload" in caplog.text
    assert db.session.scalar(select(func.count(Category.id))) == before


def test_error_pages_have_titles_that_say_which_error(student_client):
    missing = student_client.get("/no-such-page").get_data(as_text=True)
    assert "<title>Page not found (404) · Campus Challenges</title>" in missing
    refused = student_client.get("/admin/").get_data(as_text=True)
    assert "<title>No access (403) · Campus Challenges</title>" in refused


class OperationalError(Exception):
    """Named as the drivers name a lost connection."""


@pytest.mark.parametrize("path", ["/challenges", "/challenges/recommended"])
def test_a_database_that_stops_answering_gets_a_page_that_says_so(
    student_client, monkeypatch, caplog, path
):
    """Even the error page's layout needs the logged-in account, which needs the database: the
    answer is still the app's own page, 503 with when to try again, never the server's bare 500."""
    from sqlalchemy import exc

    def down(*args, **kwargs):
        raise exc.OperationalError(
            "SELECT ...", {}, OperationalError("server closed the connection")
        )

    monkeypatch.setattr(db.session, "get", down)
    response = student_client.get(path, headers={"HX-Request": "true"})
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert "The database is not answering just now" in page
    assert "<title>Try again soon (503) · Campus Challenges</title>" in page
    assert "unhandled error on GET" in caplog.text


def test_which_database_errors_say_try_again():
    import sqlite3

    from sqlalchemy import exc

    from app.errors import _unreachable

    def operational(message: str) -> exc.OperationalError:
        return exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))

    assert _unreachable(operational("database is locked"))
    assert _unreachable(exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"))
    assert not _unreachable(operational("no such table: challenges"))  # an upgrade not run
    assert not _unreachable(exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))
    assert not _unreachable(ValueError("a bug"))


def test_an_error_page_that_cannot_be_drawn_is_answered_plainly(student_client, monkeypatch):
    from app import errors

    def broken(*args, **kwargs):
        raise RuntimeError("the layout failed")

    monkeypatch.setattr(errors, "render_template", broken)
    monkeypatch.setattr(db.session, "get", broken)
    response = student_client.get("/challenges?page=2")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong on our side" in page
    assert '<a href="/challenges?page=2">Try again</a>' in page
    assert 'name="viewport"' in page


def test_a_logged_in_page_is_kept_by_no_cache(student_client, client):
    make_challenge()
    assert student_client.get("/me/challenges").headers["Cache-Control"] == "private, no-store"
    assert student_client.get("/challenges").headers["Cache-Control"] == "private, no-store"
    assert "no-store" not in client.get("/login").headers.get("Cache-Control", "")
    assert "no-store" not in student_client.get("/static/app.css").headers.get("Cache-Control", "")


def test_a_refused_upload_cannot_write_a_line_of_its_own_into_the_log(client, caplog):
    forged = "2026-11-27 00:00:00,000 INFO app.auth.routes: login user_id=1"
    with caplog.at_level("WARNING", logger="app.web"):
        response = client.post(
            f"/nothing%0a{forged.replace(' ', '%20')}",
            data={"f": (io.BytesIO(b"x"), "a.txt")},
            content_type="multipart/form-data",
        )
    assert response.status_code == 400
    [record] = [r for r in caplog.records if "file upload" in r.getMessage()]
    assert "\n" not in record.getMessage()


def test_a_refused_request_cannot_write_a_line_of_its_own_into_the_log(client, caplog):
    forged = "2026-11-26 19:40:00,000 INFO app.auth.routes: login user_id=1"
    with caplog.at_level("WARNING", logger="app.web"):
        response = client.get(f"/x%0a{forged.replace(' ', '%20')}?q=%00")
    assert response.status_code == 400
    [record] = [r for r in caplog.records if "NUL" in r.getMessage()]
    assert "\n" not in record.getMessage() and "\\n" in record.getMessage()


def test_the_header_marks_the_page_shown(student_client, client):
    page = student_client.get("/me/challenges").get_data(as_text=True)
    assert '<a href="/me/challenges" aria-current="page">My challenges</a>' in page
    assert '<a href="/challenges">Challenges</a>' in page
    assert page.count('aria-current="page"') == 1
    login_page = client.get("/login").get_data(as_text=True)
    assert '<a href="/login" aria-current="page">Log in</a>' in login_page


def test_a_list_page_title_says_which_search_filter_and_page(student_client, app):
    from tests.helpers import make_category

    app.config["CHALLENGES_PER_PAGE"] = 2
    robotics = make_category("Robotics")
    for n in range(3):
        make_challenge(title=f"Robot arm {n}", category=robotics)
    first = student_client.get("/challenges").get_data(as_text=True)
    assert "<title>Challenges, page 1 of 2 · Campus Challenges</title>" in first
    second = student_client.get(f"/challenges?q=arm&category={robotics.id}&page=2")
    assert (
        "<title>Challenges matching “arm” in Robotics, page 2 of 2 · Campus Challenges</title>"
        in second.get_data(as_text=True)
    )
    # The pages' links keep the search, the filter and the sort.
    assert (
        f'href="/challenges?q=arm&amp;category={robotics.id}&amp;sort=newest&amp;page=1">'
        "&larr; Previous"
    ) in second.get_data(as_text=True)


def test_the_managers_paged_lists_name_their_page_in_the_title(admin_client):
    from tests.helpers import make_user

    owner = make_user("professor")
    for n in range(51):  # past the 50 a page of either list shows
        make_user(display_name=f"Student {n:02d}")
        make_challenge(owner=owner, title=f"Challenge {n:02d}")
    users = admin_client.get("/admin/users?page=2").get_data(as_text=True)
    assert "<title>Users, page 2 of 2 · Campus Challenges</title>" in users  # 53 accounts
    managed = admin_client.get("/professor/challenges").get_data(as_text=True)
    assert "<title>All challenges (manage), page 1 of 2 · Campus Challenges</title>" in managed
