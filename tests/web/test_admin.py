"""Admin pages: overview counts, category management, user activation."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import Category
from tests.helpers import login, make_category, make_challenge, make_participation, make_user


def test_overview_counts_users_challenges_participations(admin_client):
    make_user("student")
    make_user("student", active=False)
    challenge = make_challenge(status="published")
    make_challenge(owner=challenge.owner, category=challenge.category, status="draft")
    make_participation(make_user("student"), challenge)
    page = admin_client.get("/admin/").get_data(as_text=True)
    # 3 students, 1 professor, 1 admin; one account deactivated.
    assert '<div class="value">3</div><div class="muted">students</div>' in page
    assert '<div class="value">1</div><div class="muted">professor</div>' in page
    assert '<div class="value">1</div><div class="muted">admin</div>' in page
    assert '<div class="value">1</div><div class="muted">deactivated</div>' in page
    assert '<div class="value">1</div><div class="muted"><span class="badge draft">' in page
    assert '<div class="value">1</div><div class="muted"><span class="badge joined">' in page
    assert 'href="/admin/recommendations"' in page


def test_create_category(admin_client, caplog):
    caplog.set_level("INFO", logger="app.admin.routes")
    response = admin_client.post("/admin/categories", data={"name": "  Data   Science "})
    assert response.status_code == 303
    assert db.session.scalar(select(Category.name)) == "Data Science"
    assert "category created" in caplog.text


def test_duplicate_category_name_is_refused_case_insensitively(admin_client):
    make_category("Robotics")
    response = admin_client.post("/admin/categories", data={"name": "robotics"})
    assert response.status_code == 409
    assert "A category named “robotics” already exists." in response.get_data(as_text=True)
    assert db.session.scalars(select(Category.name)).all() == ["Robotics"]


def test_duplicate_category_name_is_refused_whatever_the_script(admin_client):
    make_category("Énergie")
    for name in ("énergie", "ÉNERGIE", "E\u0301nergie", "e\u0301NERGIE"):
        response = admin_client.post("/admin/categories", data={"name": name})
        assert response.status_code == 409
    street, other = make_category("Straße"), make_category("Other")
    clash = admin_client.post(f"/admin/categories/{other.id}/rename", data={"name": "STRASSE"})
    assert clash.status_code == 409
    # A category may change its own case.
    own = admin_client.post(f"/admin/categories/{street.id}/rename", data={"name": "STRASSE"})
    assert own.status_code == 303
    assert sorted(db.session.scalars(select(Category.name))) == ["Other", "STRASSE", "Énergie"]


def test_a_decomposed_category_name_is_stored_composed(admin_client):
    response = admin_client.post("/admin/categories", data={"name": "Re\u0301seaux"})
    assert response.status_code == 303
    assert db.session.scalar(select(Category.name)) == "R\u00e9seaux"


def test_blank_category_name_is_refused(admin_client):
    response = admin_client.post("/admin/categories", data={"name": "   "})
    assert response.status_code == 400
    assert "This field is required." in response.get_data(as_text=True)


def test_rename_category(admin_client):
    category = make_category("Maths")
    other = make_category("Physics")
    response = admin_client.post(
        f"/admin/categories/{category.id}/rename", data={"name": "Mathematics"}
    )
    assert response.status_code == 303
    db.session.refresh(category)
    assert category.name == "Mathematics"
    clash = admin_client.post(f"/admin/categories/{other.id}/rename", data={"name": "MATHEMATICS"})
    assert clash.status_code == 409
    assert "already exists" in clash.get_data(as_text=True)
    db.session.refresh(other)
    assert other.name == "Physics"
    # Changing only the case of its own name is not a clash.
    assert (
        admin_client.post(
            f"/admin/categories/{category.id}/rename", data={"name": "mathematics"}
        ).status_code
        == 303
    )


def test_delete_category_only_when_unused(admin_client):
    used = make_challenge().category
    unused = make_category("Empty")
    refused = admin_client.post(f"/admin/categories/{used.id}/delete")
    assert refused.status_code == 409
    assert "is used by 1 challenge and cannot be deleted" in refused.get_data(as_text=True)
    assert db.session.get(Category, used.id) is not None
    assert admin_client.post(f"/admin/categories/{unused.id}/delete").status_code == 303
    assert db.session.get(Category, unused.id) is None
    assert admin_client.post(f"/admin/categories/{unused.id}/delete").status_code == 404


def test_users_search_and_filters(admin_client):
    make_user("student", display_name="Ada Lovelace", email="ada@uni.test")
    make_user("professor", display_name="Charles Babbage", email="cb@uni.test")
    make_user("student", display_name="Ghost", email="ghost@uni.test", active=False)

    def names(query: str) -> set[str]:
        page = admin_client.get("/admin/users" + query).get_data(as_text=True)
        return {n for n in ("Ada Lovelace", "Charles Babbage", "Ghost") if n in page}

    assert names("?q=ada") == {"Ada Lovelace"}
    assert names("?q=CB%40uni") == {"Charles Babbage"}
    assert names("?role=student") == {"Ada Lovelace", "Ghost"}
    assert names("?active=0") == {"Ghost"}
    assert names("?q=%25") == set()  # LIKE wildcards are searched literally
    assert admin_client.get("/admin/users?role=wizard&active=maybe&page=x").status_code == 200


def test_lists_sorted_by_name_ignore_case(admin_client, student_client):
    """As the owner and heir lists do: in the database's own order (SQLite's and PostgreSQL's C
    collation) every capital comes before every small letter, so "ada" followed "Zed"."""
    for name in ("Zed Zimmer", "ada lovelace", "Bob Brown"):
        make_user("student", display_name=name)
    for category in ("zoology", "Astronomy", "Botany"):
        make_category(category)

    def in_order(page: str, names: tuple[str, ...]) -> bool:
        return sorted(names, key=page.index) == list(names)

    users = ("ada lovelace", "Bob Brown", "Zed Zimmer")
    assert in_order(admin_client.get("/admin/users").get_data(as_text=True), users)
    preview = admin_client.get("/admin/recommendations/preview?q=e").get_data(as_text=True)
    assert in_order(preview, users)
    categories = ("Astronomy", "Botany", "zoology")
    assert in_order(admin_client.get("/admin/categories").get_data(as_text=True), categories)
    assert in_order(student_client.get("/challenges").get_data(as_text=True), categories)


def test_searches_ignore_case_in_any_script(admin_client, student_client):
    """On SQLite too, whose own lower() folds ASCII only; PostgreSQL folds every script."""
    make_user("student", display_name="Émile Zoé", email="emile@uni.test")
    for query in ("%C3%A9mile", "ZO%C3%89"):  # "émile", "ZOÉ"
        assert "Émile Zoé" in admin_client.get(f"/admin/users?q={query}").get_data(as_text=True)
    make_challenge(title="Énergie solaire")
    page = student_client.get("/challenges?q=%C3%89NERGIE").get_data(as_text=True)
    assert "Énergie solaire" in page
    # An email, typed in capitals, found by the users list and by the preview's student search.
    make_user("student", display_name="Jo", email="m\u00fcller@uni.test")
    for path in ("/admin/users", "/admin/recommendations/preview"):
        page = admin_client.get(f"{path}?q=M%C3%9CLLER%40UNI").get_data(as_text=True)  # MÜLLER@UNI
        assert "m\u00fcller@uni.test" in page, path


def test_deactivation_ends_sessions_and_blocks_login(app, admin_client):
    student = make_user("student")
    student_session = app.test_client()
    login(student_session, student)
    assert student_session.get("/challenges").status_code == 200

    response = admin_client.post(f"/admin/users/{student.id}/deactivate?role=student")
    assert response.status_code == 303
    assert response.location.endswith("/admin/users?role=student")
    db.session.refresh(student)
    assert student.active is False
    assert student_session.get("/challenges").status_code == 302
    assert login(app.test_client(), student).status_code == 401

    assert admin_client.post(f"/admin/users/{student.id}/activate").status_code == 303
    assert login(app.test_client(), student).status_code == 302


def test_activation_rotates_the_session_token(admin_client):
    student = make_user("student", active=False)
    token = student.session_token
    admin_client.post(f"/admin/users/{student.id}/activate")
    db.session.refresh(student)
    assert student.active is True and student.session_token != token


def test_admin_cannot_deactivate_themselves(admin_client):
    me = admin_client.user
    response = admin_client.post(f"/admin/users/{me.id}/deactivate")
    assert response.status_code == 400
    assert "You cannot deactivate your own account." in response.get_data(as_text=True)
    db.session.refresh(me)
    assert me.active is True
    assert admin_client.get("/admin/").status_code == 200


def test_users_deactivate_and_activate_follow_the_users_pages_rules(app, runner):
    student = make_user("student")
    their_session = app.test_client()
    login(their_session, student)
    result = runner.invoke(args=["users", "deactivate", "--email", student.email.upper()])
    assert result.exit_code == 0, result.output
    assert "cannot log in, and its sessions were logged out" in result.output
    assert their_session.get("/challenges").status_code == 302
    assert login(app.test_client(), student).status_code == 401
    again = runner.invoke(args=["users", "deactivate", "--email", student.email])
    assert again.exit_code == 0 and f"{student.email} is already deactivated." in again.output

    result = runner.invoke(args=["users", "activate", "--email", student.email])
    assert result.exit_code == 0 and "it can log in again" in result.output
    assert login(app.test_client(), student).status_code == 302

    only = make_user("admin")
    refused = runner.invoke(args=["users", "deactivate", "--email", only.email])
    assert refused.exit_code == 1 and f"{only.email} is the only active admin" in refused.output
    db.session.refresh(only)
    assert only.active is True
    missing = runner.invoke(args=["users", "activate", "--email", "nobody@uni.test"])
    assert missing.exit_code == 1 and "no account with email nobody@uni.test" in missing.output


def test_users_role_says_when_the_account_cannot_log_in(runner):
    student = make_user("student", active=False)
    result = runner.invoke(args=["users", "role", "--email", student.email, "--role", "admin"])
    assert result.exit_code == 0
    assert f"{student.email} is now an admin." in result.output
    assert f"{student.email} is deactivated and cannot log in" in result.output
    assert f"flask users activate --email {student.email}" in result.output


def test_unknown_user_is_404(admin_client):
    assert admin_client.post("/admin/users/999999/deactivate").status_code == 404


def test_a_refused_rename_is_reported_on_its_row_not_in_the_new_category_form(admin_client):
    make_category("Maths")
    other = make_category("Physics")
    clash = admin_client.post(f"/admin/categories/{other.id}/rename", data={"name": "MATHS"})
    page = clash.get_data(as_text=True)
    assert clash.status_code == 409
    assert "“Physics” was not renamed: a category named “MATHS” already exists." in page
    assert 'value="MATHS"' not in page  # the New category field stays empty


def test_a_name_too_long_once_spelled_out_is_refused(admin_client):
    # U+FDFA is one character that compares as 18 letters.
    response = admin_client.post("/admin/categories", data={"name": "\ufdfa" * 40})
    assert response.status_code == 400
    assert "too long once its characters are spelled out" in response.get_data(as_text=True)


def test_categories_written_without_a_key_get_one_before_names_are_compared(admin_client):
    """The previous release, still serving while the migration ran, writes no name key."""
    from sqlalchemy import insert

    make_category("Chemistry Lab")
    for name in ("Biology Lab", "CHEMISTRY LAB"):
        db.session.execute(insert(Category.__table__).values(name=name))
    db.session.commit()
    response = admin_client.post("/admin/categories", data={"name": "biology lab"})
    assert response.status_code == 409
    keys = dict(db.session.execute(select(Category.name, Category.name_key)).all())
    assert keys["Biology Lab"] == "biology lab"
    assert keys["CHEMISTRY LAB"].startswith("chemistry lab\u2063")  # alike to an older one


def test_admin_makes_a_registered_student_a_professor(app, admin_client):
    student = make_user("student")
    their_session = app.test_client()
    login(their_session, student)
    assert their_session.get("/professor/challenges").status_code == 403
    response = admin_client.post(
        f"/admin/users/{student.id}/role?role=student", data={"role": "professor"}
    )
    assert response.status_code == 303 and response.location.endswith("/admin/users?role=student")
    db.session.refresh(student)
    assert student.role == "professor"
    # The same login now reaches the professor's pages, and no longer the student's.
    assert their_session.get("/professor/challenges").status_code == 200
    assert their_session.get("/challenges").status_code == 403
    page = admin_client.get("/admin/users").get_data(as_text=True)
    assert f'aria-label="Role of {student.email}"' in page
    assert f'aria-label="Role of {admin_client.user.email}"' not in page  # not one's own


def test_role_changes_that_would_strand_challenges_or_the_campus_are_refused(admin_client):
    me, owner = admin_client.user, make_user("professor")
    make_challenge(owner=owner)
    for user, role, reason in [
        (me, "student", "You cannot change your own role."),
        (owner, "student", "owns 1 challenge, which a student cannot manage"),
        (owner, "superuser", "“superuser” is not a role"),
    ]:
        response = admin_client.post(f"/admin/users/{user.id}/role", data={"role": role})
        assert response.status_code == 400 and reason in response.get_data(as_text=True)
        db.session.refresh(user)
    assert (me.role, owner.role) == ("admin", "professor")
    assert admin_client.post("/admin/users/999999/role", data={"role": "admin"}).status_code == 404


def test_the_only_active_admin_keeps_the_role(app):
    from app.auth.accounts import RoleChangeRefused, change_role

    only, other = make_user("admin"), make_user("admin", active=False)
    try:
        change_role(only, "professor", by=other)
    except RoleChangeRefused as exc:
        assert "the only active admin" in str(exc)
    else:
        raise AssertionError("the last active admin was demoted")
    assert change_role(other, "professor", by=only) is True
    assert change_role(other, "professor", by=only) is False  # already


def _demote_in_own_context(app, barrier, target_id: int, actor_id: int) -> str:
    """One request's worth of work: its own app context, hence its own session and connection."""
    from app.auth.accounts import RoleChangeRefused, change_role
    from app.models import User

    with app.app_context():
        try:
            target, actor = db.session.get(User, target_id), db.session.get(User, actor_id)
            barrier.wait(timeout=30)
            try:
                change_role(target, "professor", by=actor)
            except RoleChangeRefused:
                return "refused"
            return "changed"
        finally:
            db.session.remove()


def test_two_admins_demoting_each_other_at_once_leave_one_admin(app):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from app.models import User

    first, second = make_user("admin"), make_user("admin")
    db.session.commit()  # nothing of ours may hold the database while the threads write
    barrier = threading.Barrier(2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(
            future.result(timeout=60)
            for future in [
                pool.submit(_demote_in_own_context, app, barrier, second.id, first.id),
                pool.submit(_demote_in_own_context, app, barrier, first.id, second.id),
            ]
        )
    db.session.expire_all()
    assert outcomes == ["changed", "refused"]
    assert db.session.scalar(select(func.count(User.id)).where(User.role == "admin")) == 1
