"""Small synthetic data with a planted structure: students fall into taste groups that cut across
categories, so collaborative models can find what popularity and category affinity cannot."""

from __future__ import annotations

import secrets
from datetime import timedelta

import numpy as np

from app.extensions import db
from app.models import Category, Challenge, Participation, RecommendationEvent, User, utcnow
from app.recs.data import Interactions

DAY = 86400.0


def planted_interactions(
    n_users: int = 90,
    n_groups: int = 3,
    items_per_group: int = 12,
    per_user: int = 7,
    seed: int = 0,
) -> Interactions:
    """User u belongs to group u % n_groups and mostly picks that group's items, plus one random
    item; timestamps spread over 100 days."""
    rng = np.random.default_rng(seed)
    n_items = n_groups * items_per_group
    rows = []
    for user in range(1, n_users + 1):
        group = user % n_groups
        own = rng.choice(items_per_group, per_user, replace=False) + group * items_per_group + 1
        noise = rng.integers(1, n_items + 1)
        for item in {*own.tolist(), int(noise)}:
            rows.append((user, item, "join", 1.0, float(rng.uniform(0, 100 * DAY))))
    return Interactions.from_rows(rows)


def make_student(n: int) -> User:
    # A fixed hash: real password hashing would make seeding dozens of students slow.
    return User(
        email=f"planted{n}-{secrets.token_hex(3)}@uni.test",
        display_name=f"Student {n}",
        role="student",
        password_hash="unusable",
        session_token=secrets.token_hex(16),
    )


def seed_planted_campus(
    n_students: int = 45, n_groups: int = 3, per_group: int = 6, per_student: int = 5, seed: int = 0
) -> dict:
    """Students, challenges (group = index // per_group, category = index % 3) and joins spread
    over the last 60 days; every challenge is open for another month."""
    rng = np.random.default_rng(seed)
    now = utcnow()
    owner = User(
        email=f"prof-{secrets.token_hex(3)}@uni.test",
        display_name="Prof",
        role="professor",
        password_hash="unusable",
        session_token=secrets.token_hex(16),
    )
    categories = [Category(name=f"Planted {i} {secrets.token_hex(2)}") for i in range(3)]
    challenges = [
        Challenge(
            title=f"Planted challenge {i}",
            category=categories[i % 3],
            owner=owner,
            reward_points=10,
            starts_at=now - timedelta(days=90),
            ends_at=now + timedelta(days=30),
            status="published",
        )
        for i in range(n_groups * per_group)
    ]
    students = [make_student(n) for n in range(n_students)]
    db.session.add_all([owner, *categories, *challenges, *students])
    db.session.flush()
    for index, student in enumerate(students):
        group = index % n_groups
        picks = rng.choice(per_group, per_student, replace=False) + group * per_group
        for pick in picks.tolist():
            joined = now - timedelta(days=float(rng.uniform(1, 60)))
            db.session.add(
                Participation(
                    user_id=student.id,
                    challenge_id=challenges[pick].id,
                    status="completed" if pick % 4 == 0 else "joined",
                    joined_at=joined,
                    updated_at=joined + timedelta(hours=1),
                )
            )
            challenges[pick].participations_count += 1
    db.session.commit()
    return {"students": students, "challenges": challenges, "owner": owner}


def add_event(
    user: User, challenge: Challenge, type_: str, days_ago: float = 0.0
) -> RecommendationEvent:
    event = RecommendationEvent(
        event_id=secrets.token_hex(16),
        user_id=user.id,
        challenge_id=challenge.id,
        type=type_,
        created_at=utcnow() - timedelta(days=days_ago),
    )
    db.session.add(event)
    db.session.commit()
    return event
