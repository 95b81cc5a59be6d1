"""Tiny data builders with keyword defaults: ``make_user(role="professor")`` and friends."""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import event

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

_counter = itertools.count(1)
PASSWORD = "password123"


def make_user(
    role: str = "student", email: str | None = None, password: str = PASSWORD, **kw
) -> User:
    n = next(_counter)
    user = User(
        email=User.normalize_email(email or f"{role}{n}@uni.test"),
        display_name=kw.pop("display_name", f"{role.title()} {n}"),
        role=role,
        **kw,
    )
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def make_category(name: str | None = None) -> Category:
    category = Category(name=name or f"Category {next(_counter)}")
    db.session.add(category)
    db.session.commit()
    return category


def make_challenge(owner: User | None = None, category: Category | None = None, **kw) -> Challenge:
    now = utcnow()
    challenge = Challenge(
        title=kw.pop("title", f"Challenge {next(_counter)}"),
        description=kw.pop("description", "Solve a problem with your classmates."),
        category=category or make_category(),
        owner=owner or make_user("professor"),
        reward_points=kw.pop("reward_points", 10),
        starts_at=kw.pop("starts_at", now - timedelta(days=1)),
        ends_at=kw.pop("ends_at", now + timedelta(days=30)),
        status=kw.pop("status", "published"),
        **kw,
    )
    db.session.add(challenge)
    db.session.commit()
    return challenge


def make_participation(
    user: User, challenge: Challenge, status: str = "joined", **kw
) -> Participation:
    participation = Participation(user_id=user.id, challenge_id=challenge.id, status=status, **kw)
    db.session.add(participation)
    if status != "left":
        challenge.participations_count += 1
    db.session.commit()
    return participation


def make_event(
    user: User, challenge: Challenge, kind: str = "impression", **kw
) -> RecommendationEvent:
    """A recommendation event; ``source`` defaults to "model", ``created_at`` to now. A
    ``slate_id`` not stored yet is stored with the event, shown at ``slate_created_at`` (default:
    the event's time), as the first event of a slate comes with the slate."""
    source = kw.pop("source", "model")
    created_at = kw.pop("created_at", utcnow())
    slate_created_at = kw.pop("slate_created_at", created_at)
    slate_id = kw.get("slate_id")
    if slate_id is not None and db.session.get(RecommendationSlate, slate_id) is None:
        db.session.add(
            RecommendationSlate(
                id=slate_id,
                user_id=user.id,
                source=source or "heuristic",
                model_version=kw.get("model_version"),
                arm=kw.get("arm"),
                created_at=slate_created_at,
            )
        )
    event = RecommendationEvent(
        event_id=kw.pop("event_id", f"event-{next(_counter)}"),
        user_id=user.id,
        challenge_id=challenge.id,
        type=kind,
        source=source,
        created_at=created_at,
        **kw,
    )
    db.session.add(event)
    db.session.commit()
    return event


def login(client, user: User, password: str = PASSWORD):
    return client.post("/login", data={"email": user.email, "password": password})


def recorded_slate(user: User, **kw):
    """A slate served and stored as the JSON API stores it (its row and the cards it served),
    without impressions: ``serving.get_recommendations`` writes nothing itself."""
    from app.recs import events, serving

    slate = serving.get_recommendations(user, **kw)
    if slate.items:
        events.save_api_page(user.id, slate, new_slate=True, created_at=utcnow())
    return slate


def spend_limit(app, per_minute: int) -> None:
    """Turn the per-student request budget on at ``per_minute``, on a clock that stands still:
    a minute ending mid-test would renew every budget and let a refused request through."""
    from app.recs.throttle import RequestBudget

    app.config["RECS_REQUESTS_PER_MINUTE"] = per_minute
    app.extensions["recs_request_budget"] = RequestBudget(per_minute, clock=lambda: 600.0)


@contextmanager
def count_queries():
    """The SQL statements run inside the block, in a list that fills as they run."""
    statements = []

    def _count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", _count)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", _count)
