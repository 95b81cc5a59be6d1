"""The demo campus and the synthetic campus generator: determinism, invariants, data structure."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from sqlalchemy import delete, func, select, text

from app import demo
from app.demo import (
    DEMO_PASSWORD,
    DatabaseNotEmpty,
    generate_synthetic_campus,
    seed_demo_campus,
)
from app.extensions import db
from app.models import (
    Category,
    Challenge,
    Participation,
    RecommendationEvent,
    RecommendationSlate,
    User,
    utcnow,
)
from app.recs.events import natural_event_id
from tests.helpers import make_category, make_user

SMALL = {"students": 120, "challenges": 40}


def _delete_campus() -> None:
    for model in (
        RecommendationEvent,
        RecommendationSlate,
        Participation,
        Challenge,
        User,
        Category,
    ):
        db.session.execute(delete(model))
    db.session.commit()


def _snapshot() -> dict:
    """Everything a seed decides; times as offsets from the admin's creation, since "now" moves."""
    reference = db.session.scalar(select(User.created_at).where(User.role == "admin"))
    users = {u.id: u for u in db.session.scalars(select(User))}
    challenges = {c.id: c for c in db.session.scalars(select(Challenge))}
    return {
        "categories": db.session.scalars(select(Category.name).order_by(Category.id)).all(),
        "users": sorted(
            (u.email, u.display_name, u.role, u.created_at - reference) for u in users.values()
        ),
        "challenges": sorted(
            (
                c.title,
                c.description,
                c.category.name,
                c.owner.email,
                c.status,
                c.reward_points,
                c.participations_count,
                c.starts_at - reference,
                c.ends_at and c.ends_at - reference,
            )
            for c in challenges.values()
        ),
        "participations": {
            (
                users[p.user_id].email,
                challenges[p.challenge_id].title,
                p.status,
                p.joined_at - reference,
            )
            for p in db.session.scalars(select(Participation))
        },
    }


def _load_joins() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(student, challenge, category) arrays of every participation that was not left."""
    rows = db.session.execute(
        select(Participation.user_id, Participation.challenge_id, Challenge.category_id)
        .join(Challenge, Participation.challenge_id == Challenge.id)
        .where(Participation.status != "left")
    ).all()
    return tuple(np.array(column) for column in zip(*rows, strict=True))


def test_same_seed_builds_the_same_campus(app):
    seed_demo_campus(seed=7, **SMALL)
    first = _snapshot()
    _delete_campus()
    seed_demo_campus(seed=7, **SMALL)
    assert _snapshot() == first
    _delete_campus()
    seed_demo_campus(seed=8, **SMALL)
    other = _snapshot()
    assert other["challenges"] != first["challenges"]
    assert other["participations"] != first["participations"]


def test_typed_insert_path_writes_the_same_campus(app, monkeypatch):
    """Other backends get SQLAlchemy's typed inserts; they must write what the SQLite path does."""
    seed_demo_campus(seed=5, **SMALL)
    fast = _snapshot()
    _delete_campus()
    monkeypatch.setattr(demo, "_sqlite_converters", lambda table, columns: None)
    seed_demo_campus(seed=5, **SMALL)
    assert _snapshot() == fast


@pytest.mark.parametrize("existing", ["user", "category"])
def test_refuses_a_database_that_is_not_empty(app, existing):
    make_user() if existing == "user" else make_category()
    with pytest.raises(DatabaseNotEmpty):
        seed_demo_campus(**SMALL)
    assert db.session.scalar(select(func.count()).select_from(Challenge)) == 0


@pytest.mark.parametrize("kwargs", [{"students": 0}, {"challenges": -1}])
def test_rejects_impossible_sizes(app, kwargs):
    with pytest.raises(ValueError):
        seed_demo_campus(**{**SMALL, **kwargs})


def test_participations_respect_each_challenge(app):
    seed_demo_campus(seed=3, **SMALL)
    now = utcnow()
    challenges = {c.id: c for c in db.session.scalars(select(Challenge))}
    participations = db.session.scalars(select(Participation)).all()
    assert participations
    active = Counter(p.challenge_id for p in participations if p.status != "left")
    for challenge in challenges.values():
        assert challenge.participations_count == active[challenge.id]
    for p in participations:
        challenge = challenges[p.challenge_id]
        assert challenge.status != "draft"
        assert challenge.starts_at <= p.joined_at <= min(challenge.ends_at or now, now)
        assert p.joined_at <= p.updated_at <= min(challenge.ends_at or now, now)
        assert p.slate_id is None and p.source is None
    students = {u.id: u for u in db.session.scalars(select(User).where(User.role == "student"))}
    assert all(students[p.user_id].created_at < p.joined_at for p in participations)
    assert db.session.scalar(select(func.count()).select_from(RecommendationEvent)) == 0


def test_bulk_written_timestamps_compare_like_orm_written_ones(app):
    """The writer skips SQLAlchemy's type processing on SQLite; date comparisons must not notice."""
    seed_demo_campus(seed=3, **SMALL)
    joined = sorted(db.session.scalars(select(Participation.joined_at)))
    middle = joined[len(joined) // 2]
    column_type = Participation.__table__.c.joined_at.type
    bound = column_type.dialect_impl(db.engine.dialect).bind_processor(db.engine.dialect)
    if (
        bound is not None
    ):  # SQLite renders timestamps as text; PostgreSQL takes datetimes as they are
        stored = db.session.scalar(
            text("SELECT joined_at FROM participations ORDER BY joined_at LIMIT 1")
        )
        assert stored == bound(joined[0])
    earlier = db.session.scalar(select(func.count()).where(Participation.joined_at < middle))
    assert earlier == sum(1 for t in joined if t < middle)


def test_demo_password_logs_in(app, client):
    seed_demo_campus(seed=3, **SMALL)
    for email in ("admin@example.edu", "prof2@example.edu", "student120@example.edu"):
        response = client.post("/login", data={"email": email, "password": DEMO_PASSWORD})
        assert response.status_code == 302, email
        client.post("/logout")
    tokens = db.session.scalars(select(User.session_token)).all()
    assert len(set(tokens)) == len(tokens)


def test_default_campus_sizes_and_states(app):
    summary = seed_demo_campus(seed=42)
    roles = Counter(db.session.scalars(select(User.role)))
    assert roles == {"student": 600, "professor": 3, "admin": 1}
    assert db.session.scalar(select(func.count()).select_from(Category)) == 12
    assert db.session.scalar(select(func.count()).select_from(Challenge)) == 150
    assert 7000 <= db.session.scalar(select(func.count()).select_from(Participation)) <= 9000
    states = summary.challenges_by_state
    assert all(
        states[state] > 0 for state in ("running", "upcoming", "ended", "drafts", "archived")
    )
    assert states["drafts"] + states["archived"] < 0.3 * summary.challenges
    statuses = Counter(db.session.scalars(select(Participation.status)))
    assert statuses["completed"] > 0 and statuses["left"] > 0 and statuses["joined"] > 0


def test_default_campus_has_taste_structure(app):
    seed_demo_campus(seed=42)
    student, _, category = _load_joins()
    by_student = defaultdict(list)
    for s, c in zip(student.tolist(), category.tolist(), strict=True):
        by_student[s].append(c)
    top_two_share = [
        sum(n for _, n in Counter(cats).most_common(2)) / len(cats)
        for cats in by_student.values()
        if len(cats) >= 3
    ]
    assert np.median(top_two_share) > 0.6
    joinable = select(Challenge.participations_count).where(
        Challenge.status != "draft", Challenge.starts_at <= utcnow()
    )
    popularity = np.sort(db.session.scalars(joinable).all())[::-1]
    assert popularity[: len(popularity) // 10].sum() > 0.25 * popularity.sum()


def test_co_participation_beats_popularity(app):
    """Leave one join out per student: item-to-item co-occurrence must find it far more often than
    the most popular challenges do, or a learned model has nothing to learn."""
    seed_demo_campus(seed=42)
    student, challenge, _ = _load_joins()
    users, user_index = np.unique(student, return_inverse=True)
    items, item_index = np.unique(challenge, return_inverse=True)
    matrix = np.zeros((users.size, items.size))
    matrix[user_index, item_index] = 1.0
    rng = np.random.default_rng(0)
    held_out = {}
    for u in np.flatnonzero(matrix.sum(axis=1) >= 3):
        held_out[u] = rng.choice(np.flatnonzero(matrix[u]))
        matrix[u, held_out[u]] = 0.0
    norms = np.sqrt(matrix.sum(axis=0)) + 1e-9
    similarity = (matrix.T @ matrix) / np.outer(norms, norms)
    np.fill_diagonal(similarity, 0.0)
    popularity = matrix.sum(axis=0)

    def hit_rate(score_of) -> float:
        hits = 0
        for u, item in held_out.items():
            scores = np.where(matrix[u] > 0, -np.inf, score_of(u))
            hits += item in np.argsort(-scores)[:10]
        return hits / len(held_out)

    assert hit_rate(lambda u: matrix[u] @ similarity) > 1.5 * hit_rate(lambda u: popularity)


def test_cli_seed_prints_accounts_and_if_empty_skips(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["demo", "seed", "--students", "50", "--challenges", "20"])
    assert result.exit_code == 0, result.output
    for text_ in (
        "admin@example.edu",
        "prof1@example.edu",
        "prof3@example.edu",
        "student1@example.edu",
        "student50@example.edu",
        DEMO_PASSWORD,
    ):
        assert text_ in result.output
    before = db.session.scalar(select(func.count()).select_from(Participation))

    skipped = runner.invoke(args=["demo", "seed", "--if-empty"])
    assert skipped.exit_code == 0, skipped.output
    assert "skipping" in skipped.output
    refused = runner.invoke(args=["demo", "seed"])
    assert refused.exit_code == 1
    assert "already has data" in refused.output
    assert db.session.scalar(select(func.count()).select_from(Participation)) == before
    assert db.session.scalar(select(func.count()).select_from(User)) == 54


def test_cli_seed_if_empty_seeds_an_empty_database(app):
    result = app.test_cli_runner().invoke(
        args=["demo", "seed", "--if-empty", "--students", "30", "--challenges", "12"]
    )
    assert result.exit_code == 0, result.output
    assert "student30@example.edu" in result.output
    assert db.session.scalar(select(func.count()).select_from(User)) == 34


def test_cli_seed_rejects_a_bad_size(app):
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--students", "0"])
    assert result.exit_code == 2
    assert "--students" in result.output


def test_synthetic_campus_events_point_at_real_slates_and_running_challenges(app):
    summary = generate_synthetic_campus(
        students=200,
        challenges=60,
        participations_per_student=5,
        events_per_student=13,
        seed=1,
        chunk_size=500,
    )
    assert summary.students == 200 and summary.events > 200 * 6
    slates = {s.id: s for s in db.session.scalars(select(RecommendationSlate))}
    challenges = {c.id: c for c in db.session.scalars(select(Challenge))}
    events = db.session.scalars(select(RecommendationEvent)).all()
    assert len(slates) == summary.slates and len(events) == summary.events
    assert len({e.event_id for e in events}) == len(events)
    assert {e.type for e in events} == {"impression", "click"}
    positions = defaultdict(list)
    for event in events:
        slate, challenge = slates[event.slate_id], challenges[event.challenge_id]
        assert event.user_id == slate.user_id and event.created_at >= slate.created_at
        assert challenge.status != "draft" and challenge.starts_at <= event.created_at
        assert challenge.ends_at is None or event.created_at < challenge.ends_at
        if event.type == "impression":
            positions[event.slate_id].append(event.position)
    assert all(sorted(p) == list(range(len(p))) and len(p) <= 6 for p in positions.values())
    first = events[0]
    assert first.event_id == natural_event_id(first.type, first.slate_id, first.challenge_id)
    clicks = [e for e in events if e.type == "click"]
    assert all(e.position in positions[e.slate_id] for e in clicks)
