"""Two people (or two clicks) writing the same thing at once: an edit made from an older copy of a
challenge, a create form submitted twice, two look-alike categories, two experiments started."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Category, Challenge, Experiment
from app.professor import routes as professor_routes
from app.recs import experiment as experiments
from tests.helpers import make_category, make_challenge


def edit_form(challenge: Challenge, version: int, **overrides) -> dict:
    data = {
        "title": challenge.title,
        "description": challenge.description,
        "category_id": str(challenge.category_id),
        "reward_points": str(challenge.reward_points),
        "starts_at": challenge.starts_at.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": challenge.ends_at.strftime("%Y-%m-%dT%H:%M") if challenge.ends_at else "",
        "status": challenge.status,
        "version": str(version),
    }
    data.update(overrides)
    return data


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --- Edits made from an older copy ---------------------------------------------------------------


def test_the_edit_form_carries_the_version_it_was_opened_at(professor_client):
    challenge = make_challenge(owner=professor_client.user)
    page = professor_client.get(f"/professor/challenges/{challenge.id}/edit").get_data(as_text=True)
    assert f'name="version" type="hidden" value="{challenge.version}"' in page


def test_a_save_from_an_older_copy_is_refused_and_keeps_both_versions(
    professor_client, admin_client, caplog
):
    challenge = make_challenge(owner=professor_client.user, title="Original", reward_points=10)
    opened_at = challenge.version
    url = f"/professor/challenges/{challenge.id}/edit"
    # The admin saves a new title while the professor's form is open.
    saved = admin_client.post(url, data=edit_form(challenge, opened_at, title="Admin's title"))
    assert saved.status_code == 303
    db.session.refresh(challenge)
    assert challenge.title == "Admin's title" and challenge.version == opened_at + 1

    caplog.set_level("INFO", logger="app.professor.routes")
    stale = edit_form(challenge, opened_at, title="Original", reward_points="99")
    response = professor_client.post(url, data=stale)
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Someone saved this challenge after you opened this form" in page
    assert "Title (saved: “Admin&#39;s title”)" in page or "Title (saved: “Admin's title”)" in page
    assert "Reward points (saved: “10”)" in page
    # The professor's input is still in the form, which now carries the saved version.
    assert 'value="99"' in page
    assert f'name="version" type="hidden" value="{challenge.version}"' in page
    assert f"challenge edit conflict challenge_id={challenge.id}" in caplog.text
    db.session.refresh(challenge)
    assert (challenge.title, challenge.reward_points) == ("Admin's title", 10)

    # Saving again from the refreshed form is a deliberate overwrite.
    again = edit_form(challenge, challenge.version, title="Original", reward_points="99")
    assert professor_client.post(url, data=again).status_code == 303
    db.session.refresh(challenge)
    assert (challenge.title, challenge.reward_points) == ("Original", 99)


def test_the_same_edit_sent_twice_is_saved_once_and_reported_saved_both_times(
    professor_client, caplog
):
    """Save double-clicked, or the form sent again after Back: the second request carries the
    old version, but the saved challenge already is what it asks for."""
    challenge = make_challenge(owner=professor_client.user, reward_points=10)
    url = f"/professor/challenges/{challenge.id}/edit"
    form = edit_form(challenge, challenge.version, reward_points="321")
    assert professor_client.post(url, data=form).status_code == 303
    caplog.set_level("INFO", logger="app.professor.routes")
    again = professor_client.post(url, data=form, follow_redirects=True)
    page = again.get_data(as_text=True)
    assert again.status_code == 200
    assert f"Challenge “{challenge.title}” saved." in page
    assert "Someone saved this challenge" not in page
    assert f"challenge edit repeated challenge_id={challenge.id}" in caplog.text
    db.session.refresh(challenge)
    assert (challenge.reward_points, challenge.version) == (321, form_version(form) + 1)


def form_version(form: dict) -> int:
    return int(form["version"])


def test_an_old_form_cannot_undo_an_archive(professor_client):
    challenge = make_challenge(owner=professor_client.user, status="published")
    opened_at = challenge.version
    base = f"/professor/challenges/{challenge.id}"
    assert professor_client.post(base + "/archive").status_code == 303
    response = professor_client.post(
        base + "/edit", data=edit_form(challenge, opened_at, status="published", reward_points="11")
    )
    assert response.status_code == 409
    assert "Status (saved: “archived”)" in response.get_data(as_text=True)
    db.session.refresh(challenge)
    assert (challenge.status, challenge.reward_points) == ("archived", 10)


@pytest.mark.parametrize("version", [None, "", "abc", "0"])
def test_an_edit_without_the_current_version_is_refused(professor_client, version):
    challenge = make_challenge(owner=professor_client.user, title="Kept")
    data = edit_form(challenge, challenge.version, title="Changed")
    if version is None:
        del data["version"]
    else:
        data["version"] = version
    response = professor_client.post(f"/professor/challenges/{challenge.id}/edit", data=data)
    assert response.status_code == 409
    db.session.refresh(challenge)
    assert challenge.title == "Kept"


def test_a_change_between_the_check_and_the_write_is_refused_too(professor_client, monkeypatch):
    """The version is also checked by the UPDATE itself, for a save that lands between this
    request's read and its write."""
    challenge = make_challenge(owner=professor_client.user, title="Kept")
    apply_form = professor_routes._apply_form

    def saved_by_someone_else_meanwhile(target, form):
        db.session.execute(
            update(Challenge)
            .where(Challenge.id == target.id)
            .values(version=Challenge.version + 1, title="Theirs")
            .execution_options(synchronize_session=False)
        )
        apply_form(target, form)

    monkeypatch.setattr(professor_routes, "_apply_form", saved_by_someone_else_meanwhile)
    response = professor_client.post(
        f"/professor/challenges/{challenge.id}/edit",
        data=edit_form(challenge, challenge.version, title="Mine"),
    )
    assert response.status_code == 409
    assert "Someone saved this challenge" in response.get_data(as_text=True)
    db.session.refresh(challenge)
    assert challenge.title == "Kept"  # the whole transaction was rolled back


def test_a_form_for_a_challenge_handed_over_meanwhile_says_why_nothing_was_saved(
    professor_client,
):
    from tests.helpers import make_user

    challenge = make_challenge(owner=professor_client.user, title="Kept")
    opened_at = challenge.version
    challenge.owner = make_user("professor")
    db.session.commit()
    response = professor_client.post(
        f"/professor/challenges/{challenge.id}/edit",
        data=edit_form(challenge, opened_at, title="Mine"),
    )
    assert response.status_code == 403
    assert "You no longer manage this challenge, so nothing was saved." in response.get_data(
        as_text=True
    )
    db.session.refresh(challenge)
    assert challenge.title == "Kept"


def test_joins_do_not_count_as_edits(professor_client, student_client):
    challenge = make_challenge(owner=professor_client.user)
    opened_at = challenge.version
    assert student_client.post(f"/challenges/{challenge.id}/join").status_code in (302, 303)
    db.session.refresh(challenge)
    assert challenge.participations_count == 1 and challenge.version == opened_at
    response = professor_client.post(
        f"/professor/challenges/{challenge.id}/edit",
        data=edit_form(challenge, opened_at, title="Renamed"),
    )
    assert response.status_code == 303


def test_the_end_is_checked_against_the_seconds_that_are_kept(professor_client):
    starts_at = datetime(2031, 6, 5, 0, 23, 26, tzinfo=UTC)
    challenge = make_challenge(owner=professor_client.user, starts_at=starts_at, ends_at=None)
    response = professor_client.post(
        f"/professor/challenges/{challenge.id}/edit",
        data=edit_form(
            challenge,
            challenge.version,
            starts_at="2031-06-05T00:23",
            ends_at="2031-06-05T00:23:01",
        ),
    )
    assert response.status_code == 400
    assert "The end must be after the start." in response.get_data(as_text=True)


def test_a_category_deleted_meanwhile_is_named(professor_client, monkeypatch):
    challenge = make_challenge(owner=professor_client.user)
    doomed = make_category("Doomed")
    apply_form = professor_routes._apply_form

    def category_deleted_meanwhile(target, form):
        # Another admin's delete, committed after the form was validated, before the save.
        with db.engine.begin() as connection:
            connection.execute(
                Category.__table__.delete().where(Category.__table__.c.id == doomed.id)
            )
        apply_form(target, form)

    monkeypatch.setattr(professor_routes, "_apply_form", category_deleted_meanwhile)
    response = professor_client.post(
        f"/professor/challenges/{challenge.id}/edit",
        data=edit_form(challenge, challenge.version, category_id=str(doomed.id)),
    )
    assert response.status_code == 400
    assert "The chosen category was deleted meanwhile" in response.get_data(as_text=True)


# --- A create form submitted twice ---------------------------------------------------------------


def create_form(category: Category, token: str | None) -> dict:
    data = {
        "title": "Twice",
        "description": "Sent twice.",
        "category_id": str(category.id),
        "reward_points": "5",
        "starts_at": "2031-01-01T10:00",
        "ends_at": "",
        "status": "draft",
    }
    if token is not None:
        data["creation_token"] = token
    return data


def test_the_create_form_carries_a_fresh_token(professor_client):
    make_category()
    tokens = set()
    for _ in range(2):
        page = professor_client.get("/professor/challenges/new").get_data(as_text=True)
        start = page.index('name="creation_token" type="hidden" value="') + 43
        tokens.add(str(uuid.UUID(page[start : start + 36])))
    assert len(tokens) == 2


def test_a_form_submitted_twice_creates_one_challenge(professor_client, caplog):
    category = make_category()
    token = str(uuid.uuid4())
    caplog.set_level("INFO", logger="app.professor.routes")
    first = professor_client.post("/professor/challenges/new", data=create_form(category, token))
    second = professor_client.post("/professor/challenges/new", data=create_form(category, token))
    assert (first.status_code, second.status_code) == (303, 303)
    assert count(Challenge) == 1
    assert "challenge create repeated" in caplog.text
    page = professor_client.get("/professor/challenges").get_data(as_text=True)
    assert "was already created from this form" in page


def test_two_submits_at_the_same_moment_create_one_challenge(professor_client, monkeypatch):
    """The second request passes the token check before the first commits: the unique token
    refuses its insert, and it answers as the repeat it is."""
    category = make_category()
    token = str(uuid.uuid4())
    make_challenge(
        owner=professor_client.user,
        category=category,
        creation_token=token,
        title="Twice",
        description="Sent twice.",
        reward_points=5,
        starts_at=datetime(2031, 1, 1, 10, 0, tzinfo=UTC),
        ends_at=None,
        status="draft",
        # Older than the twin rule's moment: only the token finds it.
        created_at=datetime.now(UTC) - professor_routes.REPEAT_WINDOW - timedelta(minutes=1),
    )
    created_from = professor_routes._created_from
    calls = []

    def not_yet_committed_on_first_look(value):
        calls.append(value)
        return None if len(calls) == 1 else created_from(value)

    monkeypatch.setattr(professor_routes, "_created_from", not_yet_committed_on_first_look)
    response = professor_client.post("/professor/challenges/new", data=create_form(category, token))
    assert response.status_code == 303
    assert count(Challenge) == 1 and len(calls) == 2


@pytest.mark.parametrize(
    "change",
    [
        {"title": "Another one"},
        {"description": "Corrected description."},
        {"status": "published"},
        {"reward_points": "100"},
        {"ends_at": "2031-02-01T10:00"},
    ],
)
def test_the_form_sent_again_with_other_content_saves_nothing_until_asked_again(
    professor_client, change, caplog
):
    """Back, a correction, Create: a correction of the challenge the form made, or another
    challenge? Nothing is saved; the form keeps what was typed and says how to do either."""
    category = make_category()
    token = str(uuid.uuid4())
    first = professor_client.post("/professor/challenges/new", data=create_form(category, token))
    assert first.status_code == 303
    created = db.session.scalar(select(Challenge))
    caplog.set_level("INFO", logger="app.professor.routes")
    other = {**create_form(category, token), **change}
    second = professor_client.post("/professor/challenges/new", data=other)
    page = second.get_data(as_text=True)
    assert second.status_code == 409
    assert "This form already created “Twice”, so nothing was saved now." in page
    assert f'href="/professor/challenges/{created.id}/edit"' in page
    assert f"the form of challenge_id={created.id} sent again with other content" in caplog.text
    db.session.refresh(created)
    assert (created.description, created.status, created.reward_points) == (
        "Sent twice.",
        "draft",
        5,
    )
    assert count(Challenge) == 1
    # What was typed is still there, with a fresh token: Create again makes another challenge.
    start = page.index('name="creation_token" type="hidden" value="') + 43
    fresh = page[start : start + 36]
    assert fresh != token
    for name, value in change.items():
        assert value in page, name
    third = professor_client.post(
        "/professor/challenges/new", data={**other, "creation_token": fresh}
    )
    assert third.status_code == 303
    assert count(Challenge) == 2


@pytest.mark.parametrize("token", [None, "", "not-a-token", "x" * 36])
def test_forms_without_a_valid_token_still_create(professor_client, token):
    category = make_category()
    for title in ("First", "Second"):
        response = professor_client.post(
            "/professor/challenges/new", data={**create_form(category, token), "title": title}
        )
        assert response.status_code == 303
    assert count(Challenge) == 2
    assert db.session.scalar(select(func.count()).where(Challenge.creation_token.is_(None))) == 2


def test_the_same_content_sent_again_with_a_new_token_is_not_created_twice(professor_client):
    """Back after creating fetches the form anew, with a new token, and the browser fills the
    fields back in: sent again, it is the same challenge."""
    category = make_category()
    first = professor_client.post(
        "/professor/challenges/new", data=create_form(category, str(uuid.uuid4()))
    )
    again = professor_client.post(
        "/professor/challenges/new", data=create_form(category, str(uuid.uuid4()))
    )
    assert (first.status_code, again.status_code) == (303, 303)
    assert count(Challenge) == 1
    shown = professor_client.get(again.location).get_data(as_text=True)
    assert "was created with exactly this content a moment ago, so it was not created" in shown
    # Any field changed is another challenge (Back, publish instead of draft, Create); so is the
    # same content once the moment has passed.
    for change in (
        {"description": "Another text."},
        {"status": "published"},
        {"reward_points": "6"},
    ):
        other = {**create_form(category, str(uuid.uuid4())), **change}
        assert professor_client.post("/professor/challenges/new", data=other).status_code == 303
    assert count(Challenge) == 4
    from app.models import utcnow
    from app.professor.routes import REPEAT_WINDOW

    for challenge in db.session.scalars(select(Challenge)):
        challenge.created_at = utcnow() - REPEAT_WINDOW - timedelta(minutes=1)
    db.session.commit()
    later = professor_client.post(
        "/professor/challenges/new", data=create_form(category, str(uuid.uuid4()))
    )
    assert later.status_code == 303 and count(Challenge) == 5


# --- Look-alike categories and running experiments -----------------------------------------------


def test_look_alike_categories_cannot_both_be_stored_even_past_the_check(admin_client, monkeypatch):
    from app.admin import routes as admin_routes

    make_category("Robotics")
    monkeypatch.setattr(admin_routes, "_name_taken", lambda name, except_id=None: False)
    for name in ("ROBOTICS", "robotics ", "Ro\u200bbotics", "\uff32obotics"):
        response = admin_client.post("/admin/categories", data={"name": name})
        assert response.status_code == 409, name
    assert db.session.scalars(select(Category.name)).all() == ["Robotics"]


def test_invisible_characters_are_left_out_of_names_and_titles(
    admin_client, professor_client, student_client
):
    created = admin_client.post("/admin/categories", data={"name": "\u200bRobo\u202etics\ufeff"})
    assert created.status_code == 303
    assert db.session.scalar(select(Category.name)) == "Robotics"
    for invisible in ("\u200e\u200e", "\u00ad\u200d", "\u200f \u2060"):
        refused = admin_client.post("/admin/categories", data={"name": invisible})
        assert refused.status_code == 400, repr(invisible)
        assert "Write at least one visible character." in refused.get_data(as_text=True)
    category = db.session.scalar(select(Category))
    form = create_form(category, None)
    response = professor_client.post(
        "/professor/challenges/new", data={**form, "title": "\u200b\u200b"}
    )
    assert response.status_code == 400
    assert "This field is required." in response.get_data(as_text=True)
    response = professor_client.post(
        "/professor/challenges/new", data={**form, "title": "\u00ad\u200d"}
    )
    assert response.status_code == 400
    assert "Write at least one visible character." in response.get_data(as_text=True)
    # A title typed with a combining accent is stored composed, so a search for "é" finds it.
    created = professor_client.post(
        "/professor/challenges/new",
        data={**form, "title": "Cafe\u0301 night", "status": "published"},
    )
    assert created.status_code == 303
    assert db.session.scalar(select(Challenge.title)) == "Caf\u00e9 night"
    for query in ("café", "CAFE\u0301"):
        page = student_client.get("/challenges", query_string={"q": query}).get_data(as_text=True)
        assert "Caf\u00e9 night" in page, query


def test_a_reward_in_other_digits_is_refused(professor_client):
    category = make_category()
    response = professor_client.post(
        "/professor/challenges/new", data={**create_form(category, None), "reward_points": "\u0663"}
    )
    assert response.status_code == 400
    assert "Write the reward with the digits 0 to 9." in response.get_data(as_text=True)
    assert count(Challenge) == 0


def test_only_one_experiment_can_run(app, monkeypatch):
    db.session.add(Experiment(name="first", salt="a", allocation_percent=50))
    db.session.commit()
    db.session.add(Experiment(name="second", salt="b", allocation_percent=50))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    # Two admins pressing Start at once: the check passes for both, the index stops one.
    monkeypatch.setattr(experiments, "running_experiment", lambda: None)
    with pytest.raises(ValueError, match="already running"):
        experiments.start_experiment("third", 50)
    assert db.session.scalars(select(Experiment.name)).all() == ["first"]


def test_a_create_token_is_only_ever_its_owners(professor_client, app):
    from tests.helpers import login, make_user

    category = make_category()
    token = str(uuid.uuid4())
    assert (
        professor_client.post(
            "/professor/challenges/new", data=create_form(category, token)
        ).status_code
        == 303
    )
    other = app.test_client()
    login(other, make_user("professor"))
    response = other.post(
        "/professor/challenges/new", data={**create_form(category, token), "title": "Theirs"}
    )
    assert response.status_code == 303
    assert count(Challenge) == 2  # not told "already created", nor kept from creating
    page = other.get(response.location).get_data(as_text=True)
    assert "Challenge “Theirs” created." in page
    assert "already created" not in page and "Twice" not in page  # nor told the other's title


def test_keys_stale_from_the_previous_release_are_mended_before_names_are_compared(admin_client):
    robotics = make_category("Robotics")
    # The previous release renames without touching the key.
    db.session.execute(
        Category.__table__.update().where(Category.__table__.c.id == robotics.id).values(name="Art")
    )
    db.session.commit()
    assert admin_client.post("/admin/categories", data={"name": "Robotics"}).status_code == 303
    assert admin_client.post("/admin/categories", data={"name": "ART"}).status_code == 409


@pytest.mark.parametrize("blank", ["\u3164", "\u115f", "\uffa0", "\u2800", "\ufe0f", "\u034f"])
def test_blank_letters_neither_make_a_name_nor_tell_two_apart(
    admin_client, professor_client, blank
):
    category = make_category("Robotics")
    alike = admin_client.post("/admin/categories", data={"name": "Robotics" + blank})
    assert alike.status_code == 409
    empty = admin_client.post("/admin/categories", data={"name": blank * 3})
    assert empty.status_code == 400
    title = professor_client.post(
        "/professor/challenges/new", data={**create_form(category, None), "title": blank * 2}
    )
    assert title.status_code == 400
