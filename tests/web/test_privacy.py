"""``flask users delete`` erases a student's activity (participations, events, slates, precomputed
recommendations) and nobody else's."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Challenge,
    Participation,
    RecommendationEvent,
    RecommendationSlate,
    RecommendationSlateCard,
    User,
    UserRecommendation,
)
from app.recs import publish
from tests.helpers import make_challenge, make_event, make_participation, make_user


def footprint(user_id: int) -> dict[str, int]:
    counts = {
        model.__tablename__: db.session.scalar(
            select(func.count()).select_from(model).where(model.user_id == user_id)
        )
        for model in (Participation, RecommendationEvent, RecommendationSlate, UserRecommendation)
    }
    # The cards an API page served the student: theirs through the slate.
    counts["recommendation_slate_cards"] = db.session.scalar(
        select(func.count())
        .select_from(RecommendationSlateCard)
        .join(RecommendationSlate, RecommendationSlate.id == RecommendationSlateCard.slate_id)
        .where(RecommendationSlate.user_id == user_id)
    )
    return counts


def active_student(challenge, run, slate_id: str) -> User:
    student = make_user()
    make_participation(student, challenge)
    db.session.add(RecommendationSlate(id=slate_id, user_id=student.id, source="model"))
    db.session.flush()
    db.session.add(
        RecommendationSlateCard(
            slate_id=slate_id, challenge_id=challenge.id, position=0, source="model"
        )
    )
    db.session.commit()
    make_event(student, challenge, "impression", slate_id=slate_id)
    make_event(student, challenge, "click", slate_id=slate_id)
    publish.write_rows(
        run, [{"user_id": student.id, "challenge_id": challenge.id, "score": 1.0, "rank": 1}]
    )
    return student


def test_users_delete_removes_every_trace_of_the_student_only(app, runner):
    challenge = make_challenge()
    run = publish.start_run("import")
    gone = active_student(challenge, run, "00000000-0000-4000-8000-000000000001")
    kept = active_student(challenge, run, "00000000-0000-4000-8000-000000000002")
    publish.publish(run)
    gone_id, kept_id, before = gone.id, kept.id, footprint(kept.id)
    assert all(footprint(gone_id).values())

    result = runner.invoke(args=["users", "delete", "--email", gone.email.upper(), "--yes"])

    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert db.session.get(User, gone_id) is None
    assert footprint(gone_id) == dict.fromkeys(before, 0)
    assert footprint(kept_id) == before and all(before.values())


def test_users_delete_refuses_unknown_accounts_and_owners(app, runner):
    owner = make_challenge().owner
    result = runner.invoke(args=["users", "delete", "--email", "nobody@uni.test", "--yes"])
    assert result.exit_code == 1 and "no account" in result.output
    result = runner.invoke(args=["users", "delete", "--email", owner.email, "--yes"])
    assert result.exit_code == 1 and "owns 1 challenge" in result.output
    assert "--reassign-to" in result.output
    assert db.session.get(User, owner.id) is not None


def test_users_delete_keeps_the_only_active_admin(app, runner):
    only = make_user("admin")
    make_user("admin", active=False)
    result = runner.invoke(args=["users", "delete", "--email", only.email, "--yes"])
    assert result.exit_code == 1 and "is the only active admin" in result.output
    assert db.session.get(User, only.id) is not None
    other = make_user("admin")
    result = runner.invoke(args=["users", "delete", "--email", only.email, "--yes"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["users", "delete", "--email", other.email, "--yes"])
    assert result.exit_code == 1 and "is the only active admin" in result.output


def test_users_delete_hands_a_professors_challenges_to_another_and_keeps_participations(
    app, runner
):
    leaving = make_user("professor")
    heir = make_user("professor")
    student = make_user()
    challenges = [make_challenge(owner=leaving), make_challenge(owner=leaving, status="archived")]
    make_participation(student, challenges[0])
    ids = [c.id for c in challenges]
    leaving_id, heir_email = leaving.id, heir.email

    result = runner.invoke(
        args=["users", "delete", "--email", leaving.email, "--reassign-to", heir_email, "--yes"]
    )

    assert result.exit_code == 0, result.output
    assert f"Handed 2 challenge(s) to {heir_email}" in result.output
    db.session.expire_all()
    assert db.session.get(User, leaving_id) is None
    assert [db.session.get(Challenge, i).owner.email for i in ids] == [heir_email] * 2
    assert footprint(student.id)["participations"] == 1


def test_users_delete_hands_over_challenges_edited_while_it_asked(app, runner, monkeypatch):
    import click
    from sqlalchemy import update

    leaving, heir = make_user("professor"), make_user("professor")
    challenge = make_challenge(owner=leaving, title="Before")
    challenge_id, opened_at, heir_id = challenge.id, challenge.version, heir.id

    def edited_meanwhile(*args, **kwargs):
        with db.engine.begin() as connection:  # an admin saves the challenge during the prompt
            connection.execute(
                update(Challenge)
                .where(Challenge.id == challenge_id)
                .values(title="Edited", version=Challenge.version + 1)
            )
        return True

    monkeypatch.setattr(click, "confirm", edited_meanwhile)
    result = runner.invoke(
        args=["users", "delete", "--email", leaving.email, "--reassign-to", heir.email]
    )
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    moved = db.session.get(Challenge, challenge_id)
    assert (moved.owner_id, moved.title, moved.version) == (heir_id, "Edited", opened_at + 2)


def test_users_delete_refuses_an_heir_who_cannot_own_challenges(app, runner):
    leaving = make_user("professor")
    challenge = make_challenge(owner=leaving)
    retired = make_user("professor")
    retired.active = False
    db.session.commit()
    for heir, reason in [
        ("nobody@uni.test", "no account"),
        (make_user("student").email, "not an active professor or admin"),
        (retired.email, "not an active professor or admin"),
        (leaving.email, "must be another account"),
    ]:
        result = runner.invoke(
            args=["users", "delete", "--email", leaving.email, "--reassign-to", heir, "--yes"]
        )
        assert result.exit_code == 2 and reason in result.output, (heir, result.output)
    db.session.expire_all()
    assert db.session.get(Challenge, challenge.id).owner_id == leaving.id


def test_users_delete_needs_no_heir_for_an_account_that_owns_no_challenge(app, runner):
    leaving, student = make_user("professor"), make_user("student")
    result = runner.invoke(
        args=["users", "delete", "--email", leaving.email, "--reassign-to", student.email, "--yes"]
    )
    assert result.exit_code == 0, result.output
    assert f"{leaving.email} owns no challenge: nothing was handed over." in result.output
    assert db.session.scalar(select(User).where(User.email == leaving.email)) is None


def test_users_role_changes_a_role_from_the_command_line(app, runner):
    student = make_user("student")
    result = runner.invoke(
        args=["users", "role", "--email", student.email.upper(), "--role", "professor"]
    )
    assert result.exit_code == 0 and f"{student.email} is now a professor." in result.output
    db.session.refresh(student)
    assert student.role == "professor"
    owner = make_user("professor")
    make_challenge(owner=owner)
    refused = runner.invoke(args=["users", "role", "--email", owner.email, "--role", "student"])
    assert refused.exit_code == 1
    assert "owns 1 challenge, which a student cannot manage" in refused.output
    missing = runner.invoke(args=["users", "role", "--email", "nobody@uni.test", "--role", "admin"])
    assert missing.exit_code == 1 and "no account with email nobody@uni.test" in missing.output


def test_a_deleted_accounts_id_is_never_given_to_a_new_one(app, runner):
    from app.models import User

    make_user("student")
    newest = make_user("student")
    gone_id = newest.id
    result = runner.invoke(args=["users", "delete", "--email", newest.email, "--yes"])
    assert result.exit_code == 0
    # One account alone, then two in one flush: each numbered past every id given out so far.
    first = make_user("student")
    pair = [
        User(email=f"pair{n}@uni.test", display_name="P", password_hash="x", session_token="t")
        for n in range(2)
    ]
    db.session.add_all(pair)
    db.session.commit()
    ids = [first.id, *(u.id for u in pair)]
    assert min(ids) > gone_id and len(set(ids)) == 3
