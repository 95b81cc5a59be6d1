"""Admin pages: the overview, category management and user accounts. The recommendations console
is in ``app/admin/recommendations.py``."""

from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from app.admin import bp
from app.admin.forms import CategoryForm
from app.auth import role_required
from app.extensions import db
from app.models import (
    CATEGORY_KEY_LENGTH,
    CHALLENGE_STATUSES,
    PARTICIPATION_STATUSES,
    ROLES,
    Category,
    Challenge,
    Participation,
    User,
    category_name_key,
    distinct_category_key,
)
from app.text import clean_line, counted
from app.web import contains_pattern, database_id, page_arg

log = logging.getLogger(__name__)

USERS_PER_PAGE = 50


def _counts_by(column, values: tuple[str, ...]) -> dict[str, int]:
    counts = dict(db.session.execute(select(column, func.count()).group_by(column)).all())
    return {value: counts.get(value, 0) for value in values}


@bp.route("/")
@role_required("admin")
def index():
    inactive = db.session.scalar(select(func.count(User.id)).where(User.active.is_(False)))
    return render_template(
        "admin/index.html",
        users=_counts_by(User.role, ROLES),
        inactive_users=inactive,
        challenges=_counts_by(Challenge.status, CHALLENGE_STATUSES),
        participations=_counts_by(Participation.status, PARTICIPATION_STATUSES),
        categories=db.session.scalar(select(func.count(Category.id))),
    )


# --- Categories ---------------------------------------------------------------------------------


def _categories_page(form: CategoryForm | None = None, status: int = 200):
    rows = db.session.execute(
        select(Category, func.count(Challenge.id))
        .outerjoin(Challenge, Challenge.category_id == Category.id)
        .group_by(Category.id)
        .order_by(func.lower(Category.name), Category.id)
    ).all()
    form = form or CategoryForm(formdata=None)
    return render_template("admin/categories.html", rows=rows, form=form), status


def _fill_missing_keys() -> None:
    """Bring every category's name key in line with its name. Keys go missing or stale when the
    previous release writes or renames categories while the migration that added them runs, or
    when the rule itself grows; until mended the duplicate check cannot see those names. The
    list is an admin's, short: all of it is read."""
    stale = [
        category
        for category in db.session.scalars(select(Category).order_by(Category.id))
        if not _key_matches(category)
    ]
    if not stale:
        return
    try:
        for category in stale:
            category.name_key = None  # out of the way while the others are given theirs
        db.session.flush()
        for category in stale:
            key = category_name_key(category.name)
            taken = db.session.scalar(select(Category.id).where(Category.name_key == key).limit(1))
            too_long = len(key) > CATEGORY_KEY_LENGTH
            category.name_key = (
                distinct_category_key(key, category.id) if taken or too_long else key
            )
            db.session.flush()
            log.info("category_id=%s given its name key", category.id)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        log.info("category name keys mended by a concurrent request")


def _key_matches(category: Category) -> bool:
    key = category_name_key(category.name)
    stored = category.name_key
    return stored is not None and (
        stored == key or stored == distinct_category_key(key, category.id)
    )


def _name_taken(name: str, except_id: int | None = None) -> bool:
    # The unique name key decides (see category_name_key); this check only gives the common case
    # its friendly message before the insert, which a concurrent request can still beat.
    query = select(Category.id).where(Category.name_key == category_name_key(name))
    if except_id is not None:
        query = query.where(Category.id != except_id)
    return db.session.scalar(query.limit(1)) is not None


def _duplicate(form: CategoryForm, renaming: Category | None = None):
    """409. A refused new name stays in the New category form with its error; a refused rename
    is told about in the notice only, so it does not look like a new category being created."""
    log.info("category name %r refused: already exists", form.name.data)
    message = f"A category named “{form.name.data}” already exists."
    if renaming is not None:
        flash(f"“{renaming.name}” was not renamed: {message[0].lower()}{message[1:]}", "error")
        return _categories_page(None, 409)
    form.name.errors.append(message)
    flash(message, "error")
    return _categories_page(form, 409)


def _commit_category() -> bool:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a concurrent request took the name between our check and commit
        return False
    return True


@bp.route("/categories", methods=["GET", "POST"])
@role_required("admin")
def categories():
    if request.method == "GET":
        return _categories_page()
    _fill_missing_keys()
    form = CategoryForm()
    if not form.validate_on_submit():
        flash("The category was not created: " + _first_error(form), "error")
        return _categories_page(form, 400)
    if _name_taken(form.name.data):
        return _duplicate(form)
    category = Category(name=form.name.data)
    db.session.add(category)
    if not _commit_category():
        return _duplicate(form)
    log.info(
        "category created category_id=%s name=%r by user_id=%s",
        category.id,
        category.name,
        current_user.id,
    )
    flash(f"Category “{category.name}” created.", "success")
    return redirect(url_for("admin.categories"), 303)


@bp.route("/categories/<int:category_id>/rename", methods=["POST"])
@role_required("admin")
def rename_category(category_id: int):
    _fill_missing_keys()
    category = db.get_or_404(Category, category_id)
    form = CategoryForm()
    if not form.validate_on_submit():
        flash(f"“{category.name}” was not renamed: " + _first_error(form), "error")
        return _categories_page(None, 400)
    if _name_taken(form.name.data, except_id=category.id):
        return _duplicate(form, renaming=category)
    old_name, category.name = category.name, form.name.data
    if not _commit_category():
        category = db.get_or_404(Category, category_id)  # as stored, after the rollback
        return _duplicate(form, renaming=category)
    log.info(
        "category renamed category_id=%s %r -> %r by user_id=%s",
        category.id,
        old_name,
        category.name,
        current_user.id,
    )
    flash(f"Category “{old_name}” renamed to “{category.name}”.", "success")
    return redirect(url_for("admin.categories"), 303)


@bp.route("/categories/<int:category_id>/delete", methods=["POST"])
@role_required("admin")
def delete_category(category_id: int):
    category = db.get_or_404(Category, category_id)
    used = db.session.scalar(
        select(func.count(Challenge.id)).where(Challenge.category_id == category.id)
    )
    if used:
        log.info("category delete refused category_id=%s: in use (%d)", category.id, used)
        challenges = "1 challenge" if used == 1 else f"{used} challenges"
        flash(
            f"“{category.name}” is used by {challenges} and cannot be deleted. Move those "
            "challenges to another category first, or rename this one.",
            "error",
        )
        return _categories_page(None, 409)
    db.session.delete(category)
    try:
        db.session.commit()
    except IntegrityError:  # a challenge was created in this category meanwhile
        db.session.rollback()
        flash(f"“{category.name}” is now in use and cannot be deleted.", "error")
        return _categories_page(None, 409)
    log.info(
        "category deleted category_id=%s name=%r by user_id=%s",
        category_id,
        category.name,
        current_user.id,
    )
    flash(f"Category “{category.name}” deleted.", "success")
    return redirect(url_for("admin.categories"), 303)


def _first_error(form: CategoryForm) -> str:
    return next((error for errors in form.errors.values() for error in errors), "invalid input")


# --- Users --------------------------------------------------------------------------------------


def _user_filters() -> dict[str, str]:
    """The list's filters from the query string, kept on the activate/deactivate form actions."""
    role = request.args.get("role", "")
    active = request.args.get("active", "")
    return {
        "q": clean_line(request.args.get("q") or "")[:100],
        "role": role if role in ROLES else "",
        "active": active if active in ("1", "0") else "",
    }


def _users_page(status: int = 200):
    filters = _user_filters()
    query = select(User)
    if filters["q"]:
        pattern = contains_pattern(filters["q"])
        query = query.where(
            or_(
                User.display_name.ilike(pattern, escape="\\"),
                User.email.ilike(pattern, escape="\\"),
            )
        )
    if filters["role"]:
        query = query.where(User.role == filters["role"])
    if filters["active"]:
        query = query.where(User.active.is_(filters["active"] == "1"))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    pages = max(1, -(-total // USERS_PER_PAGE))
    page = min(page_arg(), pages)
    users = db.session.scalars(
        query.order_by(func.lower(User.display_name), User.id)
        .offset((page - 1) * USERS_PER_PAGE)
        .limit(USERS_PER_PAGE)
    ).all()
    query_args = {k: v for k, v in filters.items() if v}
    owned = dict(
        db.session.execute(
            select(Challenge.owner_id, func.count(Challenge.id))
            .where(Challenge.owner_id.in_([u.id for u in users]))
            .group_by(Challenge.owner_id)
        ).all()
    )
    return render_template(
        "admin/users.html",
        users=users,
        owned=owned,
        filters=filters,
        query_args=query_args,
        roles=ROLES,
        total=total,
        page=page,
        pages=pages,
    ), status


def _back_to_users():
    kept = {k: v for k, v in _user_filters().items() if v}
    if request.args.get("page"):
        kept["page"] = page_arg()
    return redirect(url_for("admin.users", **kept), 303)


@bp.route("/users")
@role_required("admin")
def users():
    return _users_page()


def _set_active(user_id: int, active: bool):
    from app.auth.accounts import ActivationRefused, set_active

    user = db.get_or_404(User, user_id)
    verb = "activated" if active else "deactivated"
    try:
        changed = set_active(user, active, by=current_user)
    except ActivationRefused as exc:
        log.warning(
            "user_id=%s not %s by admin user_id=%s: %s", user.id, verb, current_user.id, exc
        )
        flash(str(exc), "error")
        return _users_page(400)
    if not changed:
        flash(f"{user.display_name} is already {verb}.", "info")
    else:
        flash(f"{user.display_name} ({user.email}) {verb}.", "success")
    return _back_to_users()


@bp.route("/users/<int:user_id>/role", methods=["POST"])
@role_required("admin")
def change_user_role(user_id: int):
    from app.auth.accounts import RoleChangeRefused, change_role

    user = db.get_or_404(User, user_id)
    role = request.form.get("role") or ""
    try:
        changed = change_role(user, role, by=current_user)
    except RoleChangeRefused as exc:
        log.warning("role change refused user_id=%s role=%r: %s", user.id, role[:20], exc)
        flash(str(exc), "error")
        return _users_page(400)
    flash(
        f"{user.display_name} ({user.email}) is {'now' if changed else 'already'} "
        f"{'an' if role == 'admin' else 'a'} {role}.",
        "success" if changed else "info",
    )
    return _back_to_users()


@bp.route("/users/<int:user_id>/challenges", methods=["GET", "POST"])
@role_required("admin")
def user_challenges(user_id: int):
    """The challenges an account owns, and handing all of them to another professor or admin
    (before the account becomes a student, or when its owner leaves)."""
    from app.auth.accounts import HandOverRefused, hand_over_challenges

    owner = db.get_or_404(User, user_id)
    if request.method == "GET":
        return _user_challenges_page(owner)
    raw = request.form.get("heir_id") or ""
    heir_id = database_id(raw)
    heir = db.session.get(User, heir_id) if heir_id else None
    if heir is None:
        log.warning("hand-over of user_id=%s refused: no account %r", owner.id, raw[:20])
        flash("Choose the professor or admin who takes the challenges over.", "error")
        return _user_challenges_page(owner, 400, refused=True)
    try:
        moved = hand_over_challenges(owner, heir, by=current_user)
    except HandOverRefused as exc:
        log.warning("hand-over of user_id=%s to user_id=%s refused: %s", owner.id, heir.id, exc)
        flash(str(exc), "error")
        return _user_challenges_page(owner, 400, refused=True)
    if not moved:
        flash(f"{owner.display_name} owns no challenge: nothing was handed over.", "info")
    else:
        flash(
            f"{counted(len(moved), 'challenge')} of {owner.display_name} handed to "
            f"{heir.display_name} ({heir.email}).",
            "success",
        )
        if len(moved) <= HAND_BACK_MAX:
            # Kept in this admin's session, so that exactly these can be handed back, even
            # once the heir has challenges of their own.
            session[HAND_BACK_KEY] = {"owner": owner.id, "heir": heir.id, "ids": moved}
        else:
            # An earlier, smaller hand-over must not be offered as if it were this one.
            session.pop(HAND_BACK_KEY, None)
            flash(
                "So many cannot be handed back from this page. The log line of this hand-over "
                "lists their ids, for flask users hand-over --only.",
                "info",
            )
    return redirect(url_for("admin.user_challenges", user_id=owner.id), 303)


@bp.route("/users/<int:user_id>/challenges/hand-back", methods=["POST"])
@role_required("admin")
def hand_back_challenges(user_id: int):
    """Take back this admin's last hand-over of ``user_id``'s challenges: those of them the heir
    still has go back to ``user_id``."""
    from app.auth.accounts import HandOverRefused, hand_over_challenges

    owner = db.get_or_404(User, user_id)
    last = _last_hand_over(owner)
    heir = db.session.get(User, last["heir"]) if last else None
    if heir is None:
        log.warning("hand-back of user_id=%s refused: no hand-over to take back", owner.id)
        flash("There is no hand-over of these challenges to take back.", "error")
        return _user_challenges_page(owner, 400)
    try:
        moved = hand_over_challenges(heir, owner, by=current_user, only=last["ids"])
    except HandOverRefused as exc:
        log.warning("hand-back to user_id=%s refused: %s", owner.id, exc)
        flash(str(exc), "error")
        return _user_challenges_page(owner, 400)
    session.pop(HAND_BACK_KEY, None)
    if moved:
        flash(f"{counted(len(moved), 'challenge')} handed back to {owner.display_name}.", "success")
    else:
        flash(f"None of them is still with {heir.display_name}: nothing was handed back.", "info")
    return redirect(url_for("admin.user_challenges", user_id=owner.id), 303)


# A hand-over can be taken back from the page it was made on; its ids ride in the session
# cookie, so a very large one cannot (`flask users hand-over --only`, given the ids its log line
# lists, can).
HAND_BACK_KEY = "hand_over"
HAND_BACK_MAX = 300


def _last_hand_over(owner: User) -> dict | None:
    last = session.get(HAND_BACK_KEY)
    if not isinstance(last, dict) or last.get("owner") != owner.id:
        return None
    ids, heir = last.get("ids"), last.get("heir")
    if not isinstance(heir, int) or not isinstance(ids, list):
        return None
    if not all(isinstance(i, int) for i in ids):
        return None
    return last


def _user_challenges_page(owner: User, status: int = 200, refused: bool = False):
    """``refused``: the hand-over form was sent back, and its field is marked."""
    from app.auth.accounts import can_own_challenges_clause

    owned = db.session.scalars(
        select(Challenge)
        .where(Challenge.owner_id == owner.id)
        .order_by(Challenge.status, Challenge.title, Challenge.id)
    ).all()
    heirs = sorted(
        db.session.scalars(select(User).where(can_own_challenges_clause(), User.id != owner.id)),
        key=lambda u: (u.display_name.casefold(), u.id),
    )
    last = _last_hand_over(owner)
    handed = (
        db.session.scalar(
            select(func.count(Challenge.id)).where(
                Challenge.id.in_(last["ids"]), Challenge.owner_id == last["heir"]
            )
        )
        if last
        else 0
    )
    return render_template(
        "admin/user_challenges.html",
        owner=owner,
        owned=owned,
        heirs=heirs,
        handed=handed,
        handed_to=db.session.get(User, last["heir"]) if handed else None,
        chosen=request.form.get("heir_id", ""),
        refused=refused,
    ), status


@bp.route("/users/<int:user_id>/activate", methods=["POST"])
@role_required("admin")
def activate_user(user_id: int):
    return _set_active(user_id, True)


@bp.route("/users/<int:user_id>/deactivate", methods=["POST"])
@role_required("admin")
def deactivate_user(user_id: int):
    return _set_active(user_id, False)
