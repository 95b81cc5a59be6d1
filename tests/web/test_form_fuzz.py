"""Property-based input on every form: whatever is posted, no 5xx; a refused form stores nothing,
and what an accepted form stores passes the same rules as the form."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.extensions import db
from app.models import CHALLENGE_STATUSES, Category, Challenge, Experiment, User
from app.recs import publish
from app.text import clean_line, clean_text
from tests.helpers import PASSWORD, make_category, make_challenge, make_user

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Values that have broken form handlers somewhere: empty and blank, numbers at and past the
# column ranges, NUL and direction-override characters, injection-looking text, odd dates.
ODD = st.sampled_from(
    [
        "",
        "   ",
        "0",
        "-1",
        "2147483648",
        "9" * 40,
        "1e9",
        "nan",
        "null",
        '=HYPERLINK("http://x")',
        "<script>alert(1)</script>",
        "' OR 1=1 --",
        "%_\\",
        "\x00",
        "ab\x00cd",
        "\u202egnp.exe",
        "😀😀",
        "2025-13-40T25:61",
        "0001-01-01T00:00",
        "9999-12-31T23:59",
        "x" * 12_000,
    ]
)
JUNK = st.one_of(ODD, st.text(max_size=30), st.text(min_size=150, max_size=400))
EMAILS = st.from_regex(r"[a-z][a-z0-9.]{0,20}@university\.edu", fullmatch=True)
DATES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M")
)


def field(valid):
    """Mostly-valid values, so that accepted submissions get checked too."""
    return st.one_of(valid, valid, JUNK)


def form(**fields):
    return st.fixed_dictionaries(fields, optional={"unexpected": JUNK})


def snapshot() -> dict[str, list]:
    """Every stored row except the failed-login log, which refused logins are meant to grow."""
    db.session.rollback()
    return {
        table.name: sorted(tuple(map(repr, row)) for row in db.session.execute(select(table)))
        for table in db.metadata.sorted_tables
        if table.name != "login_attempts"
    }


def post(client, url: str, data: dict, before: dict):
    response = client.post(url, data=data)
    assert response.status_code < 500, (url, data)
    if response.status_code >= 400:
        assert snapshot() == before, f"refused {url} ({response.status_code}) changed data"
    return response


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@FUZZ
@given(data=st.data())
def test_login(app, data):
    user = make_user(email=f"fuzz{count(User)}@university.edu")
    values = data.draw(form(email=field(st.just(user.email)), password=field(st.just(PASSWORD))))
    before = snapshot()
    response = post(app.test_client(), "/login", values, before)
    assert response.status_code in (302, 400, 401)
    if response.status_code == 302:
        assert (values["email"].strip().lower(), values["password"]) == (user.email, PASSWORD)
    assert snapshot() == before


@FUZZ
@given(data=st.data())
def test_register(app, data):
    values = data.draw(
        form(
            display_name=field(st.text(min_size=2, max_size=40)),
            email=field(EMAILS),
            password=field(st.just("long enough 1")),
            confirm=field(st.just("long enough 1")),
        )
    )
    users = count(User)
    response = post(app.test_client(), "/register", values, snapshot())
    if response.status_code == 302:
        user = db.session.scalar(select(User).order_by(User.id.desc()).limit(1))
        assert count(User) == users + 1 and user.role == "student"
        assert user.email == values["email"].strip().lower() and "@" in user.email
        assert 2 <= len(values["display_name"]) <= 120 and user.display_name.strip()
        assert user.check_password(values["password"]) and values["password"] == values["confirm"]
    else:
        assert response.status_code in (400, 409)


@FUZZ
@given(data=st.data())
def test_password_change(student_client, data):
    user = student_client.user
    current = getattr(student_client, "password", PASSWORD)
    new = data.draw(field(st.text(min_size=8, max_size=30)))
    values = data.draw(
        form(
            current_password=field(st.just(current)),
            password=st.just(new),
            confirm=field(st.just(new)),
        )
    )
    response = post(student_client, "/account/password", values, snapshot())
    db.session.refresh(user)
    if response.status_code == 302:
        assert values["current_password"] == current and 8 <= len(new) <= 200
        assert user.check_password(new)
        student_client.password = new
    else:
        assert response.status_code == 400 and user.check_password(current)


def challenge_form(category: Category):
    return form(
        title=field(st.text(min_size=1, max_size=60)),
        description=field(st.text(min_size=1, max_size=200)),
        category_id=field(st.just(str(category.id))),
        reward_points=field(st.integers(0, 100_000).map(str)),
        starts_at=field(DATES),
        ends_at=st.one_of(st.just(""), DATES, JUNK),
        status=field(st.sampled_from(CHALLENGE_STATUSES)),
    )


def assert_valid_challenge(challenge: Challenge, values: dict) -> None:
    assert challenge.title == clean_line(values["title"]) and 0 < len(challenge.title) <= 200
    assert 0 < len(challenge.description) <= 10_000
    assert 0 <= challenge.reward_points <= 100_000
    assert challenge.ends_at is None or challenge.ends_at > challenge.starts_at
    assert challenge.status in CHALLENGE_STATUSES and challenge.starts_at.tzinfo == UTC


@pytest.fixture
def category(app):
    return make_category()


@FUZZ
@given(data=st.data())
def test_challenge_create(professor_client, category, data):
    values = data.draw(challenge_form(category))
    challenges = count(Challenge)
    response = post(professor_client, "/professor/challenges/new", values, snapshot())
    if response.status_code == 303:
        if count(Challenge) == challenges:
            # The same content as an earlier example moments ago: that challenge stands for it.
            created = db.session.scalar(
                select(Challenge).where(
                    Challenge.title == clean_line(values["title"]),
                    Challenge.description == clean_text(values["description"]),
                )
            )
        else:
            assert count(Challenge) == challenges + 1
            created = db.session.scalar(select(Challenge).order_by(Challenge.id.desc()).limit(1))
        assert created is not None and created.owner_id == professor_client.user.id
        assert_valid_challenge(created, values)
    else:
        assert response.status_code == 400


@FUZZ
@given(data=st.data())
def test_challenge_edit(professor_client, category, data):
    challenge = db.session.scalar(
        select(Challenge).where(Challenge.owner_id == professor_client.user.id)
    ) or make_challenge(owner=professor_client.user, category=category)
    values = {**data.draw(challenge_form(category)), "version": str(challenge.version)}
    url = f"/professor/challenges/{challenge.id}/edit"
    response = post(professor_client, url, values, snapshot())
    db.session.refresh(challenge)
    if response.status_code == 303:
        assert_valid_challenge(challenge, values)
    else:
        assert response.status_code == 400


NAMES = field(st.text(min_size=2, max_size=30))


def squashed(name: str) -> str:
    # What the form stores (NFC, invisible characters out, spaces squashed); tests/web/test_text.py
    # checks that rule on its own.
    return clean_line(name)


@FUZZ
@given(data=st.data())
def test_category_create(admin_client, data):
    values = data.draw(form(name=NAMES))
    categories = count(Category)
    response = post(admin_client, "/admin/categories", values, snapshot())
    if response.status_code == 303:
        assert count(Category) == categories + 1
        assert db.session.scalar(select(Category).where(Category.name == squashed(values["name"])))
        assert 2 <= len(squashed(values["name"])) <= 80
    else:
        assert response.status_code in (400, 409)


@FUZZ
@given(data=st.data())
def test_category_rename(admin_client, data):
    category = db.session.scalar(select(Category)) or make_category()
    values = data.draw(form(name=NAMES))
    url = f"/admin/categories/{category.id}/rename"
    response = post(admin_client, url, values, snapshot())
    db.session.refresh(category)
    if response.status_code == 303:
        assert category.name == squashed(values["name"]) and 2 <= len(category.name) <= 80
    else:
        assert response.status_code in (400, 409)


@FUZZ
@given(data=st.data())
def test_user_search(admin_client, data):
    query = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "q": JUNK,
                "role": field(st.sampled_from(["student", "professor", "admin"])),
                "active": field(st.sampled_from(["0", "1"])),
                "page": field(st.integers(-5, 50).map(str)),
            },
        )
    )
    before = snapshot()
    response = admin_client.get("/admin/users", query_string=query)
    assert response.status_code == (400 if "\x00" in "".join(query.values()) else 200)
    assert snapshot() == before


@FUZZ
@given(data=st.data())
def test_experiment_start(admin_client, data):
    values = data.draw(form(allocation_percent=field(st.integers(0, 100).map(str)), name=JUNK))
    experiments = count(Experiment)
    url = "/admin/recommendations/experiment/start"
    response = post(admin_client, url, values, snapshot())
    if response.status_code == 303:
        started = db.session.scalar(select(Experiment).where(Experiment.status == "running"))
        assert count(Experiment) == experiments + 1
        assert started.allocation_percent == int(values["allocation_percent"])
        assert 0 < len(started.name) <= 120
        started.status = "stopped"  # so that the next example can start one again
        db.session.commit()
    else:
        assert response.status_code == 400


@pytest.fixture
def versions(app):
    """Two published import runs: the first is superseded, so rolling back to it is valid."""
    student, challenge = make_user(), make_challenge()
    made = []
    for _ in range(2):
        run = publish.start_run("import")
        publish.write_rows(
            run, [{"user_id": student.id, "challenge_id": challenge.id, "score": 1.0, "rank": 1}]
        )
        publish.publish(run)
        made.append(run.version)
    return made


@FUZZ
@given(data=st.data())
def test_rollback(admin_client, versions, data):
    values = data.draw(form(version=field(st.sampled_from(versions))))
    current = publish.published_run().version
    response = post(admin_client, "/admin/recommendations/rollback", values, snapshot())
    db.session.expire_all()
    if response.status_code == 303:
        assert values["version"].strip() != current
        assert publish.published_run().version == values["version"].strip()
    else:
        assert response.status_code == 400 and publish.published_run().version == current
