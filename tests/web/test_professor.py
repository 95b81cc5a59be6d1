"""Challenge management: create, edit, validation, publish/archive, participants, ownership."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Challenge, Participation
from tests.helpers import (
    count_queries,
    login,
    make_category,
    make_challenge,
    make_participation,
    make_user,
)


def form_data(category, **overrides) -> dict:
    data = {
        "title": "Build a weather station",
        "description": "Measure, log and plot the campus weather for a week.",
        "category_id": str(category.id),
        "reward_points": "25",
        "starts_at": "2030-03-01T09:30",
        "ends_at": "2030-03-31T18:00",
        "status": "draft",
    }
    data.update(overrides)
    return data


def edit_data(challenge, **overrides) -> dict:
    """The edit form as the browser sends it: with the version it was opened at."""
    return form_data(challenge.category, version=str(challenge.version), **overrides)


def test_create_stores_the_challenge_with_utc_dates(professor_client, caplog):
    category = make_category("Engineering")
    caplog.set_level("INFO", logger="app.professor.routes")
    response = professor_client.post("/professor/challenges/new", data=form_data(category))
    assert response.status_code == 303
    challenge = db.session.scalar(
        select(Challenge).where(Challenge.title == "Build a weather station")
    )
    assert challenge.owner_id == professor_client.user.id
    assert challenge.starts_at == datetime(2030, 3, 1, 9, 30, tzinfo=UTC)
    assert challenge.ends_at == datetime(2030, 3, 31, 18, 0, tzinfo=UTC)
    assert (challenge.reward_points, challenge.status, challenge.participations_count) == (
        25,
        "draft",
        0,
    )
    assert f"challenge created challenge_id={challenge.id}" in caplog.text


def test_form_says_dates_are_utc(professor_client):
    make_category()
    page = professor_client.get("/professor/challenges/new").get_data(as_text=True)
    assert 'type="datetime-local"' in page
    assert "in UTC" in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"title": ""}, "This field is required."),
        ({"reward_points": "-1"}, "Number must be between 0 and"),
        ({"reward_points": "ten"}, "Not a valid integer value."),
        ({"starts_at": ""}, "This field is required."),
        ({"starts_at": "next tuesday"}, "Not a valid datetime value."),
        ({"ends_at": "2030-03-01T09:30"}, "The end must be after the start."),
        ({"ends_at": "2030-02-01T09:30"}, "The end must be after the start."),
        ({"status": "deleted"}, "Not a valid choice."),
        ({"category_id": "999999"}, "The chosen category no longer exists."),
        ({"category_id": "abc"}, "Invalid Choice"),
    ],
)
def test_invalid_input_rerenders_the_form_with_400(professor_client, overrides, message):
    category = make_category()
    response = professor_client.post(
        "/professor/challenges/new", data=form_data(category, **overrides)
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(Challenge.id)) is None


@pytest.mark.parametrize("typed", ["5.5", "ten", "1e3"])
def test_a_reward_that_is_not_a_whole_number_is_told_so_and_nothing_else(professor_client, typed):
    category = make_category()
    response = professor_client.post(
        "/professor/challenges/new", data=form_data(category, reward_points=typed)
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert page.count('class="field-error"') == 1 and "Not a valid integer value." in page
    # 5.5 is between 0 and 100000: the range's message would be false.
    assert "Number must be between" not in page


def test_ends_at_is_optional(professor_client):
    category = make_category()
    response = professor_client.post(
        "/professor/challenges/new", data=form_data(category, ends_at="")
    )
    assert response.status_code == 303
    assert db.session.scalar(select(Challenge)).ends_at is None


def test_edit_keeps_participations_count(professor_client):
    challenge = make_challenge(owner=professor_client.user)
    for _ in range(3):
        make_participation(make_user("student"), challenge)
    response = professor_client.post(
        f"/professor/challenges/{challenge.id}/edit",
        data=edit_data(challenge, title="Renamed", status="published"),
    )
    assert response.status_code == 303
    db.session.refresh(challenge)
    assert (challenge.title, challenge.participations_count) == ("Renamed", 3)


def test_edit_form_shows_current_values(professor_client):
    challenge = make_challenge(
        owner=professor_client.user,
        title="Old title",
        starts_at=datetime(2031, 5, 6, 7, 8, tzinfo=UTC),
        ends_at=None,
    )
    page = professor_client.get(f"/professor/challenges/{challenge.id}/edit").get_data(as_text=True)
    assert 'value="Old title"' in page
    assert 'value="2031-05-06T07:08"' in page


def test_edit_form_writes_a_year_before_1000_with_four_digits(professor_client):
    # A date field reads only YYYY-MM-DD: "202-05-06T07:08" showed as empty, and saving the
    # form unchanged then said the start was missing. Such a year is a typo the form now
    # refuses, so saving names it to be corrected.
    challenge = make_challenge(
        owner=professor_client.user,
        starts_at=datetime(202, 5, 6, 7, 8, tzinfo=UTC),
        ends_at=datetime(2031, 5, 6, 7, 8, tzinfo=UTC),
    )
    url = f"/professor/challenges/{challenge.id}/edit"
    page = professor_client.get(url).get_data(as_text=True)
    assert 'value="0202-05-06T07:08"' in page
    unchanged = edit_data(challenge, starts_at="0202-05-06T07:08", ends_at="2031-05-06T07:08")
    response = professor_client.post(url, data=unchanged)
    assert response.status_code == 400
    assert "Use a year from 2000 to 2100 (this says 0202)." in response.get_data(as_text=True)
    fixed = edit_data(challenge, starts_at="2026-05-06T07:08", ends_at="2031-05-06T07:08")
    assert professor_client.post(url, data=fixed).status_code == 303
    db.session.refresh(challenge)
    assert challenge.starts_at == datetime(2026, 5, 6, 7, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("starts_at", "0202-03-01T09:30"),
        ("starts_at", "1999-12-31T23:59"),
        ("ends_at", "2101-01-01T00:00"),
        ("ends_at", "9999-12-31T23:59"),
    ],
)
def test_a_year_outside_2000_to_2100_is_refused_at_its_field(professor_client, field, value):
    category = make_category()
    data = form_data(category, **{field: value})
    if field == "starts_at":
        data["ends_at"] = ""
    response = professor_client.post("/professor/challenges/new", data=data)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    # Tied to its field as every field error is (aria-describedby names the message's id).
    assert f'<div id="{field}-error"><p class="field-error">Use a year from 2000 to 2100' in page
    assert re.search(rf'<input[^>]*aria-describedby="[^"]*{field}-error', page)
    assert db.session.scalar(select(Challenge.id)) is None


def test_the_first_and_last_day_of_the_window_are_taken(professor_client):
    category = make_category()
    data = form_data(category, starts_at="2000-01-01T00:00", ends_at="2100-12-31T23:59")
    assert professor_client.post("/professor/challenges/new", data=data).status_code == 303
    page = professor_client.get("/professor/challenges/new").get_data(as_text=True)
    assert 'min="2000-01-01T00:00"' in page and 'max="2100-12-31T23:59"' in page


def test_a_year_before_1000_shows_with_four_digits(professor_client, student_client):
    # strftime's %Y drops leading zeros on Linux: year 1 read "01 Jan 1".
    challenge = make_challenge(
        owner=professor_client.user,
        title="Ancient",
        starts_at=datetime(1, 1, 1, 9, 5, tzinfo=UTC),
        ends_at=datetime(2031, 5, 6, 7, 8, tzinfo=UTC),
    )
    managed = professor_client.get("/professor/challenges").get_data(as_text=True)
    assert "<td>01 Jan 0001 09:05</td>" in managed and "<td>06 May 2031 07:08</td>" in managed
    card = student_client.get("/challenges").get_data(as_text=True)
    assert "Started 01 Jan 0001" in card and "ends 06 May 2031 07:08 UTC" in card
    detail = student_client.get(f"/challenges/{challenge.id}").get_data(as_text=True)
    assert "Started 01 Jan 0001 09:05 UTC" in detail


def test_saving_the_edit_form_unchanged_keeps_the_stored_seconds(professor_client):
    starts_at = datetime(2031, 5, 6, 7, 8, 31, tzinfo=UTC)
    ends_at = datetime(2031, 6, 6, 7, 8, 59, tzinfo=UTC)
    challenge = make_challenge(owner=professor_client.user, starts_at=starts_at, ends_at=ends_at)
    url = f"/professor/challenges/{challenge.id}/edit"
    unchanged = edit_data(challenge, starts_at="2031-05-06T07:08", ends_at="2031-06-06T07:08")
    assert professor_client.post(url, data=unchanged).status_code == 303
    db.session.refresh(challenge)
    assert (challenge.starts_at, challenge.ends_at) == (starts_at, ends_at)
    # A time that was changed is stored as sent.
    moved = edit_data(challenge, starts_at="2031-05-06T07:09", ends_at="2031-06-06T07:08")
    assert professor_client.post(url, data=moved).status_code == 303
    db.session.refresh(challenge)
    assert challenge.starts_at == datetime(2031, 5, 6, 7, 9, tzinfo=UTC)
    assert challenge.ends_at == ends_at
    # Seconds written out are meant: ":00" clears the stored ones.
    exact = edit_data(challenge, starts_at="2031-05-06T07:09", ends_at="2031-06-06T07:08:00")
    assert professor_client.post(url, data=exact).status_code == 303
    db.session.refresh(challenge)
    assert challenge.ends_at == datetime(2031, 6, 6, 7, 8, tzinfo=UTC)


def test_challenge_with_participants_cannot_return_to_draft(professor_client):
    challenge = make_challenge(owner=professor_client.user)
    make_participation(make_user("student"), challenge, status="left")
    response = professor_client.post(
        f"/professor/challenges/{challenge.id}/edit",
        data=edit_data(challenge, status="draft"),
    )
    assert response.status_code == 400
    assert "cannot go back to draft" in response.get_data(as_text=True)
    db.session.refresh(challenge)
    assert challenge.status == "published"


def test_publish_and_archive(professor_client, caplog):
    challenge = make_challenge(owner=professor_client.user, status="draft")
    caplog.set_level("INFO", logger="app.professor.routes")
    assert professor_client.post(f"/professor/challenges/{challenge.id}/publish").status_code == 303
    db.session.refresh(challenge)
    assert challenge.status == "published"
    assert f"challenge published challenge_id={challenge.id}" in caplog.text
    assert professor_client.post(f"/professor/challenges/{challenge.id}/archive").status_code == 303
    db.session.refresh(challenge)
    assert challenge.status == "archived"
    again = professor_client.post(
        f"/professor/challenges/{challenge.id}/archive", follow_redirects=True
    )
    assert "already archived" in again.get_data(as_text=True)


def test_publishing_a_challenge_that_has_ended_says_students_will_not_see_it(professor_client):
    category = make_category()
    ended = {"starts_at": "2020-10-01T09:00", "ends_at": "2020-10-02T09:00"}
    warning = "has already ended, so students will not see it"
    created = professor_client.post(
        "/professor/challenges/new",
        data=form_data(category, status="published", **ended),
        follow_redirects=True,
    )
    assert warning in created.get_data(as_text=True)
    draft = make_challenge(
        owner=professor_client.user,
        category=category,
        status="draft",
        starts_at=datetime(2020, 10, 1, tzinfo=UTC),
        ends_at=datetime(2020, 10, 2, tzinfo=UTC),
    )
    published = professor_client.post(
        f"/professor/challenges/{draft.id}/publish", follow_redirects=True
    )
    assert warning in published.get_data(as_text=True)
    again = professor_client.post(
        f"/professor/challenges/{draft.id}/publish", follow_redirects=True
    )
    assert "is already published" in again.get_data(as_text=True)
    assert warning in again.get_data(as_text=True)
    db.session.refresh(draft)
    edited = professor_client.post(
        f"/professor/challenges/{draft.id}/edit",
        data=edit_data(draft, title="Still over", status="published", **ended),
        follow_redirects=True,
    )
    assert "Still over" in edited.get_data(as_text=True)
    assert warning in edited.get_data(as_text=True)
    # Open, a draft, or archived: nothing to warn about.
    for data in (form_data(category, title="Open", status="published"), form_data(category)):
        page = professor_client.post("/professor/challenges/new", data=data, follow_redirects=True)
        assert warning not in page.get_data(as_text=True)


def test_professor_cannot_touch_another_professors_challenge(professor_client):
    foreign = make_challenge(title="Not yours", status="draft")
    base = f"/professor/challenges/{foreign.id}"
    assert professor_client.get(base + "/edit").status_code == 403
    assert (
        professor_client.post(base + "/edit", data=form_data(foreign.category)).status_code == 403
    )
    assert professor_client.post(base + "/publish").status_code == 403
    assert professor_client.post(base + "/archive").status_code == 403
    assert professor_client.get(base + "/participants").status_code == 403
    db.session.refresh(foreign)
    assert (foreign.title, foreign.status) == ("Not yours", "draft")
    assert "Not yours" not in professor_client.get("/professor/challenges").get_data(as_text=True)


def test_admin_manages_every_challenge_and_sees_owners(admin_client):
    owner = make_user("professor", display_name="Prof Ada")
    challenge = make_challenge(owner=owner, title="Ada challenge", status="draft")
    page = admin_client.get("/professor/challenges").get_data(as_text=True)
    assert "Ada challenge" in page and "Prof Ada" in page
    response = admin_client.post(
        f"/professor/challenges/{challenge.id}/edit",
        data=edit_data(challenge, title="Edited"),
    )
    assert response.status_code == 303
    db.session.refresh(challenge)
    assert (challenge.title, challenge.owner_id) == ("Edited", owner.id)


def test_list_shows_status_and_participant_count(professor_client):
    challenge = make_challenge(owner=professor_client.user, title="Counted", status="published")
    make_participation(make_user("student"), challenge)
    make_participation(make_user("student"), challenge)
    page = professor_client.get("/professor/challenges").get_data(as_text=True)
    assert '<span class="badge published">published</span>' in page
    assert (
        f'/professor/challenges/{challenge.id}/participants" '
        'aria-label="2 participants of Counted">2</a>'
    ) in page
    filtered = professor_client.get("/professor/challenges?status=draft").get_data(as_text=True)
    assert "Counted" not in filtered
    make_participation(
        make_user("student"), make_challenge(owner=professor_client.user, title="One")
    )
    page = professor_client.get("/professor/challenges").get_data(as_text=True)
    assert 'aria-label="1 participant of One"' in page


def listed(client, query: str = "") -> list[str]:
    """The titles the management list shows, in its order."""
    page = client.get("/professor/challenges" + query).get_data(as_text=True)
    return re.findall(r'aria-label="Edit ([^"]*)"', page)


def test_the_list_comes_in_pages_newest_first(professor_client, monkeypatch):
    monkeypatch.setattr("app.professor.routes.MANAGED_PER_PAGE", 2)
    start = datetime(2031, 1, 1, tzinfo=UTC)
    for n in range(5):
        make_challenge(
            owner=professor_client.user, title=f"C{n}", created_at=start + timedelta(days=n)
        )
    assert listed(professor_client) == ["C4", "C3"]
    assert listed(professor_client, "?page=3") == ["C0"]
    # As the student list and the users page: a page that is no number is the first, one past
    # the end is the last.
    assert listed(professor_client, "?page=x") == ["C4", "C3"]
    assert listed(professor_client, "?page=99") == ["C0"]
    page = professor_client.get("/professor/challenges?page=2").get_data(as_text=True)
    assert "5 challenges." in page and "Page 2 of 3" in page
    assert 'href="/professor/challenges?page=1">&larr; Previous' in page
    assert 'href="/professor/challenges?page=3">Next &rarr;' in page


def test_the_list_searches_titles_and_filters_by_status(professor_client, monkeypatch):
    monkeypatch.setattr("app.professor.routes.MANAGED_PER_PAGE", 1)
    make_challenge(owner=professor_client.user, title="Robot arm", status="draft")
    make_challenge(owner=professor_client.user, title="Robot race", status="published")
    make_challenge(owner=professor_client.user, title="100% poetry", status="draft")
    assert sorted(listed(professor_client, "?q=ROBOT&page=2")) == ["Robot arm"]
    assert listed(professor_client, "?q=robot&status=published") == ["Robot race"]
    assert listed(professor_client, "?q=%25") == ["100% poetry"]  # searched literally
    page = professor_client.get("/professor/challenges?q=robot&status=draft")
    assert "Robot race" not in page.get_data(as_text=True)
    page = professor_client.get("/professor/challenges?q=robot").get_data(as_text=True)
    assert 'href="/professor/challenges?q=robot&amp;page=2">Next' in page
    nothing = professor_client.get("/professor/challenges?q=nothing").get_data(as_text=True)
    assert "No challenge matches." in nothing
    unknown = professor_client.get("/professor/challenges?status=wizard").get_data(as_text=True)
    assert "3 challenges." in unknown


def test_an_admin_filters_the_list_by_owner(admin_client, professor_client):
    ada = make_user("professor", display_name="Prof Ada")
    make_challenge(owner=ada, title="Ada one")
    make_challenge(owner=professor_client.user, title="Theirs")
    assert listed(admin_client, f"?owner={ada.id}") == ["Ada one"]
    page = admin_client.get("/professor/challenges").get_data(as_text=True)
    assert f'<option value="{ada.id}" >Prof Ada ({ada.email})</option>' in page
    gone = admin_client.get("/professor/challenges?owner=999999").get_data(as_text=True)
    assert "owns no challenges now" in gone and "Ada one" in gone and "Theirs" in gone
    # A professor's list is their own whatever the link says.
    assert listed(professor_client, f"?owner={ada.id}") == ["Theirs"]
    assert 'id="owner"' not in professor_client.get("/professor/challenges").get_data(as_text=True)


def test_publish_and_archive_return_to_the_list_as_it_was(professor_client):
    challenge = make_challenge(owner=professor_client.user, status="draft")
    page = professor_client.get("/professor/challenges?status=draft&q=chall").get_data(as_text=True)
    action = f"/professor/challenges/{challenge.id}/publish?q=chall&amp;status=draft"
    assert f'action="{action}"' in page
    response = professor_client.post(action.replace("&amp;", "&") + "&page=2")
    assert response.location == "/professor/challenges?q=chall&status=draft&page=2"
    response = professor_client.post(f"/professor/challenges/{challenge.id}/archive")
    assert response.location == "/professor/challenges"


def test_edit_and_participants_lead_back_to_the_list_as_it_was(professor_client, monkeypatch):
    monkeypatch.setattr("app.professor.routes.MANAGED_PER_PAGE", 1)
    challenge = make_challenge(owner=professor_client.user, title="Kept place", status="draft")
    make_challenge(owner=professor_client.user, title="Newer", status="draft")
    place = "q=e&status=draft&page=2"
    listing = professor_client.get(f"/professor/challenges?{place}").get_data(as_text=True)
    edit = f"/professor/challenges/{challenge.id}/edit?{place}"
    people = f"/professor/challenges/{challenge.id}/participants?{place}"
    assert f'href="{edit.replace("&", "&amp;")}"' in listing
    assert f'href="{people.replace("&", "&amp;")}"' in listing
    back = f'href="/professor/challenges?{place.replace("&", "&amp;")}">&larr; Back to challenges'
    edit_page = professor_client.get(edit).get_data(as_text=True)
    assert back in edit_page
    # The edit page's own link to the participants keeps the place too.
    assert f'href="{people.replace("&", "&amp;")}">Participants' in edit_page
    assert back in professor_client.get(people).get_data(as_text=True)
    saved = professor_client.post(edit, data=edit_data(challenge, title="Kept place 2"))
    assert saved.status_code == 303
    assert saved.location == f"/professor/challenges?{place}"
    student = make_user("student")
    make_participation(student, challenge)
    marked = professor_client.post(
        people.replace("/participants?", "/participants/status?"),
        data={"status": "completed", "user_id": str(student.id)},
    )
    assert marked.location == f"{people}"


@pytest.mark.parametrize("who", ["professor_client", "admin_client"])
def test_the_list_takes_the_same_queries_for_any_number_of_rows(who, request):
    client = request.getfixturevalue(who)
    owner = client.user if who == "professor_client" else make_user("professor")

    def queries() -> int:
        with count_queries() as statements:
            assert client.get("/professor/challenges").status_code == 200
        return len(statements)

    make_challenge(owner=owner)
    few = queries()
    for _ in range(6):
        make_challenge(owner=owner, category=make_category())
    assert queries() == few


def test_participants_page_lists_name_email_status(professor_client):
    challenge = make_challenge(owner=professor_client.user)
    joined = make_user("student", display_name="Grace Hopper", email="grace@uni.test")
    left = make_user("student", display_name="Alan Turing")
    make_participation(joined, challenge)
    make_participation(left, challenge, status="left")
    page = professor_client.get(f"/professor/challenges/{challenge.id}/participants").get_data(
        as_text=True
    )
    assert "Grace Hopper" in page and "grace@uni.test" in page and "Alan Turing" in page
    assert '<span class="badge left">left</span>' in page
    assert page.index("Grace Hopper") < page.index("Alan Turing")


def _statuses(challenge) -> dict[str, str]:
    db.session.expire_all()
    return {
        p.user.email: p.status
        for p in db.session.scalars(
            select(Participation).where(Participation.challenge_id == challenge.id)
        )
    }


def test_professor_marks_participants_completed_and_back(professor_client, caplog):
    challenge = make_challenge(owner=professor_client.user)
    ada = make_user("student", email="ada@uni.test")
    bob = make_user("student", email="bob@uni.test")
    gone = make_user("student", email="gone@uni.test")
    outsider = make_user("student", email="outsider@uni.test")
    for student in (ada, bob):
        make_participation(student, challenge)
    make_participation(gone, challenge, status="left")
    url = f"/professor/challenges/{challenge.id}/participants/status"
    with caplog.at_level("INFO", logger="app.professor.routes"):
        response = professor_client.post(
            url,
            data={"status": "completed", "user_id": [str(ada.id), str(gone.id), str(outsider.id)]},
            follow_redirects=True,
        )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Marked 1 participant completed." in page
    assert "2 participants left the challenge (or never joined it), so were not changed." in page
    assert _statuses(challenge) == {
        "ada@uni.test": "completed",
        "bob@uni.test": "joined",
        "gone@uni.test": "left",
    }
    assert f"changed=[{ada.id}]" in caplog.text
    assert db.session.get(Challenge, challenge.id).participations_count == 2

    again = professor_client.post(
        url,
        data={"status": "completed", "user_id": [str(ada.id), str(bob.id)]},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert (
        "Marked 1 participant completed." in again
        and "1 participant was already completed." in again
    )
    back = professor_client.post(
        url, data={"status": "joined", "user_id": str(bob.id)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Marked 1 participant not completed." in back
    assert _statuses(challenge)["bob@uni.test"] == "joined"
    assert db.session.get(Challenge, challenge.id).participations_count == 2


def test_a_completion_is_a_training_interaction_dated_when_it_was_marked(professor_client, app):
    from app.recs.data import read_database

    challenge = make_challenge(owner=professor_client.user)
    ada = make_user("student", email="ada@uni.test")
    make_participation(ada, challenge, joined_at=datetime(2024, 1, 1, tzinfo=UTC))
    professor_client.post(
        f"/professor/challenges/{challenge.id}/participants/status",
        data={"status": "completed", "user_id": str(ada.id)},
    )
    read = read_database(app.config["RECS_INTERACTION_WEIGHTS"])
    events = dict(zip(read.events.tolist(), read.timestamps.tolist(), strict=True))
    assert set(events) == {"join", "complete"}
    assert events["complete"] > events["join"]


def test_participants_page_offers_marking_to_current_participants_only(professor_client):
    challenge = make_challenge(owner=professor_client.user)
    ada = make_user("student", display_name="Ada Lovelace")
    done = make_user("student", display_name="Done Student")
    gone = make_user("student", display_name="Gone Student")
    make_participation(ada, challenge)
    make_participation(done, challenge, status="completed")
    make_participation(gone, challenge, status="left")
    page = professor_client.get(f"/professor/challenges/{challenge.id}/participants").get_data(
        as_text=True
    )
    # Names need not be unique: each control's label also names the student's email.
    assert f'aria-label="Mark completed: Ada Lovelace ({ada.email})"' in page
    assert f'aria-label="Mark not completed: Done Student ({done.email})"' in page
    assert "completed: Gone Student" not in page and "Select Gone Student" not in page
    assert f'aria-label="Select Ada Lovelace ({ada.email})"' in page
    assert f'aria-label="Select Done Student ({done.email})"' in page


@pytest.mark.parametrize(
    "data, message",
    [
        ({"status": "completed"}, "Choose at least one participant first."),
        ({"status": "finished", "user_id": "1"}, "Choose whether to mark them completed"),
        ({"status": "completed", "user_id": "1e3"}, "That choice of participants is not valid."),
        ({"status": "completed", "user_id": "\u0661"}, "That choice of participants is not valid."),
        ({"status": "completed", "user_id": "9" * 11}, "That choice of participants is not valid."),
        # Ten digits, but past an INTEGER column: PostgreSQL refused the query with a 500.
        ({"status": "completed", "user_id": "9" * 10}, "That choice of participants is not valid."),
        ({"status": "completed", "user_id": "0"}, "That choice of participants is not valid."),
        ({"status": "completed", "user_id": ["1"] * 1001}, "At most 1000 participants"),
    ],
)
def test_marking_refuses_a_bad_choice_with_400_and_changes_nothing(
    professor_client, caplog, data, message
):
    challenge = make_challenge(owner=professor_client.user)
    ada = make_user("student", email="ada@uni.test")
    make_participation(ada, challenge)
    with caplog.at_level("WARNING", logger="app.professor.routes"):
        response = professor_client.post(
            f"/professor/challenges/{challenge.id}/participants/status", data=data
        )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert "not marked" in caplog.text
    assert _statuses(challenge) == {"ada@uni.test": "joined"}


def test_a_professor_cannot_mark_participants_of_another_professors_challenge(professor_client):
    other = make_user("professor")
    challenge = make_challenge(owner=other)
    ada = make_user("student", email="ada@uni.test")
    make_participation(ada, challenge)
    response = professor_client.post(
        f"/professor/challenges/{challenge.id}/participants/status",
        data={"status": "completed", "user_id": str(ada.id)},
    )
    assert response.status_code == 403
    assert _statuses(challenge) == {"ada@uni.test": "joined"}


def test_a_student_cannot_leave_a_challenge_marked_completed(professor_client, app):
    challenge = make_challenge(owner=professor_client.user)
    ada = make_user("student", email="ada@uni.test", password="pw-ada-1234")
    make_participation(ada, challenge)
    professor_client.post(
        f"/professor/challenges/{challenge.id}/participants/status",
        data={"status": "completed", "user_id": str(ada.id)},
    )
    student = app.test_client()
    login(student, ada, "pw-ada-1234")
    page = student.post(f"/challenges/{challenge.id}/leave", follow_redirects=True).get_data(
        as_text=True
    )
    assert "You already completed this challenge" in page
    assert _statuses(challenge) == {"ada@uni.test": "completed"}


def test_create_without_categories_explains_why(professor_client):
    page = professor_client.get("/professor/challenges/new").get_data(as_text=True)
    assert "An administrator must create one first" in page


def test_professor_session_sees_own_challenges_only(app):
    mine = make_user("professor")
    make_challenge(owner=mine, title="Mine")
    make_challenge(title="Theirs")
    client = app.test_client()
    login(client, mine)
    page = client.get("/professor/challenges").get_data(as_text=True)
    assert "Mine" in page and "Theirs" not in page
    assert "<th>Owner</th>" not in page


def test_admin_hands_a_challenge_to_another_professor(admin_client, app):
    first, second = make_user("professor"), make_user("professor")
    challenge = make_challenge(owner=first)
    url = f"/professor/challenges/{challenge.id}/edit"
    page = admin_client.get(url).get_data(as_text=True)
    assert 'name="owner_id"' in page and second.email in page
    data = edit_data(challenge, owner_id=str(second.id), status="published")
    assert admin_client.post(url, data=data).status_code == 303
    db.session.refresh(challenge)
    assert challenge.owner_id == second.id
    for professor, status in ((first, 403), (second, 200)):
        browser = app.test_client()
        login(browser, professor)
        assert browser.get(url).status_code == status


def test_only_professors_and_admins_can_own_a_challenge(admin_client):
    owner = make_user("professor")
    challenge = make_challenge(owner=owner)
    for someone in (make_user("student"), make_user("professor", active=False)):
        response = admin_client.post(
            f"/professor/challenges/{challenge.id}/edit",
            data=edit_data(challenge, owner_id=str(someone.id), status="published"),
        )
        assert response.status_code == 400
    db.session.refresh(challenge)
    assert challenge.owner_id == owner.id


def test_a_challenge_created_by_an_admin_is_theirs_unless_they_name_an_owner(admin_client):
    category, professor = make_category(), make_user("professor")
    admin_client.post("/professor/challenges/new", data=form_data(category, title="Own"))
    admin_client.post(
        "/professor/challenges/new",
        data=form_data(category, title="Given", owner_id=str(professor.id)),
    )
    owners = dict(db.session.execute(select(Challenge.title, Challenge.owner_id)).all())
    assert owners == {"Own": admin_client.user.id, "Given": professor.id}


def test_a_professor_cannot_hand_a_challenge_over(professor_client):
    other = make_user("professor")
    challenge = make_challenge(owner=professor_client.user)
    url = f"/professor/challenges/{challenge.id}/edit"
    assert 'name="owner_id"' not in professor_client.get(url).get_data(as_text=True)
    data = edit_data(challenge, owner_id=str(other.id), status="published")
    assert professor_client.post(url, data=data).status_code == 303
    db.session.refresh(challenge)
    assert challenge.owner_id == professor_client.user.id


def test_a_deactivated_owner_stays_listed_so_the_challenge_can_be_saved(admin_client):
    owner = make_user("professor", active=False)
    challenge = make_challenge(owner=owner)
    url = f"/professor/challenges/{challenge.id}/edit"
    assert owner.email in admin_client.get(url).get_data(as_text=True)
    data = edit_data(challenge, owner_id=str(owner.id), status="published", title="New")
    assert admin_client.post(url, data=data).status_code == 303
    db.session.refresh(challenge)
    assert (challenge.title, challenge.owner_id) == ("New", owner.id)


def test_form_errors_and_help_are_tied_to_their_fields(professor_client):
    category = make_category()
    response = professor_client.post(
        "/professor/challenges/new", data=form_data(category, title="", ends_at="2000-01-01T00:00")
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    title = re.search(r"<input[^>]*id=\"title\"[^>]*>", page).group(0)
    assert 'aria-invalid="true"' in title and 'aria-describedby="title-error"' in title
    assert '<div id="title-error"><p class="field-error">' in page
    ends = re.search(r"<input[^>]*id=\"ends_at\"[^>]*>", page).group(0)
    assert 'aria-describedby="ends_at-help ends_at-error"' in ends
    starts = re.search(r"<input[^>]*id=\"starts_at\"[^>]*>", page).group(0)
    assert 'aria-describedby="starts_at-help"' in starts and "aria-invalid" not in starts


def test_a_choice_gone_since_the_form_was_opened_must_be_chosen_again(admin_client):
    """Not "Not a valid choice." with the list quietly showing its first entry as chosen: a second
    Save would then store an owner or category nobody picked."""
    import re

    category = make_category("Physics")
    challenge = make_challenge(category=category)
    retired = make_user("professor", active=False)
    response = admin_client.post(
        f"/professor/challenges/{challenge.id}/edit",
        data=edit_data(challenge, owner_id=str(retired.id)),
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "The chosen account can no longer own challenges. Choose another." in html
    owner_select = re.search(r'<select[^>]*id="owner_id".*?</select>', html, re.S).group(0)
    assert re.findall(r"<option[^>]*selected[^>]*>([^<]*)<", owner_select) == ["Choose an owner"]
    # Sent as shown, without choosing again: refused, and the owner stays as it was.
    unchosen = admin_client.post(
        f"/professor/challenges/{challenge.id}/edit", data=edit_data(challenge, owner_id="0")
    )
    assert unchosen.status_code == 400 and "Choose an owner." in unchosen.get_data(as_text=True)
    db.session.refresh(challenge)
    assert challenge.owner_id not in (retired.id, admin_client.user.id)

    gone = make_category("Gone")
    data = form_data(gone)
    db.session.delete(gone)
    db.session.commit()
    created = admin_client.post("/professor/challenges/new", data=data)
    html = created.get_data(as_text=True)
    assert created.status_code == 400
    assert "The chosen category no longer exists. Choose another one." in html
    category_select = re.search(r'<select[^>]*id="category_id".*?</select>', html, re.S).group(0)
    chosen = re.findall(r"<option[^>]*selected[^>]*>([^<]*)<", category_select)
    assert chosen == ["Choose a category"]
    # Sent as shown, without choosing again: nothing is stored.
    again = admin_client.post("/professor/challenges/new", data={**data, "category_id": "0"})
    assert again.status_code == 400 and "Choose a category." in again.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Challenge.id))) == 1
