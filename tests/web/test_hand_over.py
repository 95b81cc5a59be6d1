"""Handing every challenge an account owns to another professor or admin: the admin *Users* page
and ``flask users hand-over``."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from app.extensions import db
from app.models import Challenge, Participation
from tests.helpers import make_challenge, make_participation, make_user


def _owned_by(user) -> list[int]:
    return sorted(db.session.scalars(select(Challenge.id).where(Challenge.owner_id == user.id)))


def test_an_admin_hands_a_professors_challenges_over_and_participations_stay(admin_client):
    leaving, heir = make_user("professor"), make_user("professor")
    challenges = [
        make_challenge(owner=leaving, status=status)
        for status in ("published", "draft", "archived")
    ]
    student = make_user("student")
    make_participation(student, challenges[0])
    versions = {c.id: c.version for c in challenges}
    users = admin_client.get("/admin/users").get_data(as_text=True)
    assert f'aria-label="3 challenges of {leaving.email}: see or hand over"' in users
    page = admin_client.get(f"/admin/users/{leaving.id}/challenges").get_data(as_text=True)
    assert all(c.title in page for c in challenges) and "Hand over 3 challenges" in page
    assert f'<option value="{heir.id}"' in page and f'<option value="{leaving.id}"' not in page

    response = admin_client.post(
        f"/admin/users/{leaving.id}/challenges", data={"heir_id": str(heir.id)}
    )
    assert response.status_code == 303
    after = admin_client.get(response.location).get_data(as_text=True)
    assert f"3 challenges of {leaving.display_name} handed to {heir.display_name}" in after
    assert f"{leaving.display_name} owns no challenge." in after
    db.session.expire_all()
    assert _owned_by(leaving) == [] and _owned_by(heir) == sorted(versions)
    # An edit form still open on one of them learns that the owner changed.
    assert all(db.session.get(Challenge, cid).version == v + 1 for cid, v in versions.items())
    assert db.session.scalar(select(func.count(Participation.id))) == 1
    # Now nothing stops the former professor from becoming a student.
    demoted = admin_client.post(f"/admin/users/{leaving.id}/role", data={"role": "student"})
    assert demoted.status_code == 303


def test_the_list_of_an_accounts_challenges_gives_each_end_to_the_minute(admin_client):
    # Ends just after midnight: the date alone reads as a whole day left that is not there.
    challenge = make_challenge(ends_at=datetime(2031, 5, 7, 0, 30, tzinfo=UTC))
    page = admin_client.get(f"/admin/users/{challenge.owner_id}/challenges")
    assert "<td>07 May 2031 00:30</td>" in page.get_data(as_text=True)


def test_a_hand_over_to_someone_who_cannot_manage_challenges_is_refused(admin_client, caplog):
    leaving = make_user("professor")
    challenge = make_challenge(owner=leaving)
    student, retired = make_user("student"), make_user("professor", active=False)
    caplog.set_level("WARNING", logger="app.admin.routes")
    for heir_id, reason in [
        (student.id, f"{student.email} is not an active professor or admin."),
        (retired.id, f"{retired.email} is not an active professor or admin."),
        (leaving.id, "Choose another account to hand the challenges to."),
        ("", "Choose the professor or admin who takes the challenges over."),
        ("999999", "Choose the professor or admin who takes the challenges over."),
        ("１２", "Choose the professor or admin who takes the challenges over."),
        ("2147483648", "Choose the professor or admin who takes the challenges over."),
        ("9" * 5000, "Choose the professor or admin who takes the challenges over."),
    ]:
        response = admin_client.post(
            f"/admin/users/{leaving.id}/challenges", data={"heir_id": str(heir_id)}
        )
        html = response.get_data(as_text=True)
        assert response.status_code == 400 and reason in html, heir_id
        assert "<title>Error: Challenges of" in html and 'aria-invalid="true"' in html
    assert "hand-over of user_id=" in caplog.text
    db.session.expire_all()
    assert db.session.get(Challenge, challenge.id).owner_id == leaving.id
    assert admin_client.get("/admin/users/999999/challenges").status_code == 404


def test_with_no_one_to_take_over_the_page_says_so(admin_client):
    from app.models import User

    # The admin is the only other manager; deactivate nobody, but look at the admin's own page.
    admin = db.session.get(User, admin_client.user.id)
    make_challenge(owner=admin)
    page = admin_client.get(f"/admin/users/{admin.id}/challenges").get_data(as_text=True)
    assert "No other active professor or admin can take them over." in page
    assert "Hand over 1 challenge" not in page


def test_users_hand_over_from_the_command_line(app, runner):
    leaving, heir = make_user("professor"), make_user("admin")
    owned = [make_challenge(owner=leaving).id for _ in range(2)]
    student = make_user("student")
    for args, code, message in [
        (["--from", "nobody@uni.test", "--to", heir.email], 2, "no account with email"),
        (["--from", leaving.email, "--to", student.email], 2, "is not an active professor"),
        (["--from", leaving.email, "--to", leaving.email], 2, "must be another account"),
    ]:
        result = runner.invoke(args=["users", "hand-over", *args])
        assert result.exit_code == code and message in result.output, result.output
    assert _owned_by(leaving) == sorted(owned)
    result = runner.invoke(
        args=["users", "hand-over", "--from", leaving.email.upper(), "--to", heir.email]
    )
    assert result.exit_code == 0
    ids = ",".join(map(str, sorted(owned)))
    assert f"Handed 2 challenge(s) of {leaving.email} to {heir.email}: {ids}" in result.output
    db.session.expire_all()
    assert _owned_by(heir) == sorted(owned)
    again = runner.invoke(args=["users", "hand-over", "--from", leaving.email, "--to", heir.email])
    assert again.exit_code == 0 and "owns no challenge: nothing to hand over" in again.output


def _in_own_context(app, barrier, work) -> str:
    with app.app_context():
        try:
            barrier.wait(timeout=30)
            return work()
        except ValueError as exc:  # a refusal
            return type(exc).__name__
        finally:
            db.session.remove()


def test_a_hand_over_and_the_heirs_demotion_at_once_never_leave_a_student_owner(app):
    """Each checks what the other changes: one of them must see the other's outcome."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from app.auth.accounts import change_role, hand_over_challenges
    from app.models import User

    admin, leaving, heir = make_user("admin"), make_user("professor"), make_user("professor")
    make_challenge(owner=leaving)
    ids = admin.id, leaving.id, heir.id
    db.session.commit()
    barrier = threading.Barrier(2)

    def hand_over():
        owner, to = db.session.get(User, ids[1]), db.session.get(User, ids[2])
        return f"moved {len(hand_over_challenges(owner, to))}"

    def demote():
        target, by = db.session.get(User, ids[2]), db.session.get(User, ids[0])
        return f"demoted {change_role(target, 'student', by=by)}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_in_own_context, app, barrier, w) for w in (hand_over, demote)]
        outcomes = [f.result(timeout=60) for f in futures]
    db.session.expire_all()
    heir = db.session.get(User, ids[2])
    owned = len(_owned_by(heir))
    assert not (heir.role == "student" and owned), outcomes
    assert outcomes in (
        ["moved 1", "RoleChangeRefused"],
        ["HandOverRefused", "demoted True"],
    ), outcomes


def test_an_edit_giving_a_challenge_to_the_heir_during_a_hand_over_waits_for_it(app, monkeypatch):
    """Accounts before challenges, in both: the edit must not lock the challenge and then wait
    for the heir's account while the hand-over holds the account and waits for the challenge
    (a deadlock on PostgreSQL)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from app.auth import accounts
    from app.models import User
    from tests.helpers import login
    from tests.web.test_professor import edit_data

    admin, leaving, heir = make_user("admin"), make_user("professor"), make_user("admin")
    challenge, _ = make_challenge(owner=leaving), make_challenge(owner=leaving)
    editor = app.test_client()
    login(editor, admin)
    data = edit_data(challenge, owner_id=str(heir.id))
    ids, url = (leaving.id, heir.id), f"/professor/challenges/{challenge.id}/edit"
    db.session.commit()
    holding = threading.Event()
    real_move = accounts.move_challenges

    def slow_move(owner_id, heir_id, only=None):
        holding.set()  # the hand-over holds the accounts' lock and the heir checked
        time.sleep(1.0)  # time for the edit to reach its writes
        return real_move(owner_id, heir_id, only)

    monkeypatch.setattr(accounts, "move_challenges", slow_move)

    def hand_over():
        with app.app_context():
            try:
                owner, to = db.session.get(User, ids[0]), db.session.get(User, ids[1])
                return accounts.hand_over_challenges(owner, to)
            finally:
                db.session.remove()

    def edit():
        assert holding.wait(timeout=30)
        return editor.post(url, data=data).status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        moved, status = pool.submit(hand_over), pool.submit(edit)
        assert len(moved.result(timeout=60)) == 2
        # The edit, opened before the hand-over, is told the challenge changed meanwhile.
        assert status.result(timeout=60) == 409
    db.session.expire_all()
    assert _owned_by(db.session.get(User, ids[1])) and not _owned_by(db.session.get(User, ids[0]))


def test_a_hand_over_is_taken_back_without_the_heirs_own_challenges(admin_client):
    leaving, heir = make_user("professor"), make_user("professor")
    theirs = sorted(make_challenge(owner=leaving).id for _ in range(2))
    own = make_challenge(owner=heir).id
    page = f"/admin/users/{leaving.id}/challenges"
    assert "Take the hand-over back" not in admin_client.get(page).get_data(as_text=True)
    admin_client.post(page, data={"heir_id": str(heir.id)})
    shown = admin_client.get(page).get_data(as_text=True)
    assert "Take the hand-over back" in shown and "Hand them back to" in shown
    back = admin_client.post(f"{page}/hand-back")
    assert back.status_code == 303
    assert "2 challenges handed back to" in admin_client.get(back.location).get_data(as_text=True)
    db.session.expire_all()
    assert _owned_by(leaving) == theirs and _owned_by(heir) == [own]
    # Taken back once: nothing is left to take back.
    again = admin_client.post(f"{page}/hand-back")
    assert again.status_code == 400
    assert "There is no hand-over of these challenges to take back." in again.get_data(as_text=True)


def test_a_hand_back_to_an_account_that_can_no_longer_own_challenges_is_refused(admin_client):
    leaving, heir = make_user("professor"), make_user("professor")
    challenge = make_challenge(owner=leaving)
    page = f"/admin/users/{leaving.id}/challenges"
    admin_client.post(page, data={"heir_id": str(heir.id)})
    assert admin_client.post(f"/admin/users/{leaving.id}/deactivate").status_code == 303
    refused = admin_client.post(f"{page}/hand-back")
    assert refused.status_code == 400
    assert f"{leaving.email} is not an active professor or admin." in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Challenge, challenge.id).owner_id == heir.id


def test_the_command_line_takes_back_only_the_ids_it_is_given(app, runner):
    leaving, heir = make_user("professor"), make_user("professor")
    theirs = sorted(make_challenge(owner=leaving).id for _ in range(2))
    runner.invoke(args=["users", "hand-over", "--from", leaving.email, "--to", heir.email])
    own = make_challenge(owner=heir).id
    ids = ",".join(map(str, theirs))
    result = runner.invoke(
        args=["users", "hand-over", "--from", heir.email, "--to", leaving.email, "--only", ids]
    )
    assert result.exit_code == 0 and "Handed 2 challenge(s)" in result.output
    db.session.expire_all()
    assert _owned_by(leaving) == theirs and _owned_by(heir) == [own]
    for bad in ("", "1,x", "-3", "12345678901"):
        refused = runner.invoke(
            args=["users", "hand-over", "--from", heir.email, "--to", leaving.email, "--only", bad]
        )
        assert refused.exit_code == 2 and "challenge ids separated by commas" in refused.output


def test_a_hand_back_says_so_when_nothing_is_left_to_move_and_leaves_the_form_alone(
    admin_client,
):
    leaving, heir, third = make_user("professor"), make_user("professor"), make_user("admin")
    challenge = make_challenge(owner=leaving)
    page = f"/admin/users/{leaving.id}/challenges"
    admin_client.post(page, data={"heir_id": str(heir.id)})
    from app.auth.accounts import hand_over_challenges

    hand_over_challenges(heir, third)  # the heir passed it on meanwhile
    back = admin_client.post(f"{page}/hand-back")
    assert back.status_code == 303
    shown = admin_client.get(back.location).get_data(as_text=True)
    assert f"None of them is still with {heir.display_name}: nothing was handed back." in shown
    db.session.expire_all()
    assert db.session.get(Challenge, challenge.id).owner_id == third.id
    make_challenge(owner=leaving)
    refused = admin_client.post(f"{page}/hand-back").get_data(as_text=True)
    assert "There is no hand-over" in refused and 'aria-invalid="true"' not in refused


def test_a_hand_over_too_large_for_the_page_is_not_offered_back_but_logged(
    admin_client, monkeypatch, caplog
):
    from app.admin import routes

    leaving, heir, other = make_user("professor"), make_user("professor"), make_user("professor")
    make_challenge(owner=leaving)
    page = f"/admin/users/{leaving.id}/challenges"
    admin_client.post(page, data={"heir_id": str(heir.id)})  # small: offered back
    ids = sorted(make_challenge(owner=leaving).id for _ in range(2))
    monkeypatch.setattr(routes, "HAND_BACK_MAX", 1)
    caplog.set_level("INFO", logger="app.auth.accounts")
    response = admin_client.post(page, data={"heir_id": str(other.id)})
    shown = admin_client.get(response.location).get_data(as_text=True)
    assert "So many cannot be handed back from this page." in shown
    assert "Take the hand-over back" not in shown  # not the earlier one either
    assert f"ids {','.join(map(str, ids))}" in caplog.text


def test_a_long_only_list_is_moved_in_parts(app, runner, monkeypatch):
    from app.auth import accounts

    leaving, heir = make_user("professor"), make_user("professor")
    owned = sorted(make_challenge(owner=leaving).id for _ in range(3))
    monkeypatch.setattr(accounts, "MOVE_CHUNK", 2)
    only = ",".join(map(str, owned))
    result = runner.invoke(
        args=["users", "hand-over", "--from", leaving.email, "--to", heir.email, "--only", only]
    )
    assert result.exit_code == 0 and "Handed 3 challenge(s)" in result.output
    db.session.expire_all()
    assert _owned_by(heir) == owned
