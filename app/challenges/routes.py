"""Student pages: the challenge list with search, filters, sort and pages; detail; join/leave; mine."""

from __future__ import annotations

import logging

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select

from app.auth import role_required
from app.challenges import bp
from app.challenges.service import ParticipationError, join, leave
from app.extensions import db
from app.models import Category, Challenge, Participation, utcnow
from app.recs import events as rec_events
from app.text import clean_line
from app.web import contains_pattern, database_id, is_head, page_arg

log = logging.getLogger(__name__)

SORTS = {
    "newest": (Challenge.created_at.desc(), Challenge.id.desc()),
    "ending": (Challenge.ends_at.is_(None), Challenge.ends_at.asc(), Challenge.id.asc()),
    "reward": (Challenge.reward_points.desc(), Challenge.id.asc()),
    "popular": (Challenge.participations_count.desc(), Challenge.id.asc()),
}
SORT_LABELS = {
    "newest": "Newest",
    "ending": "Ending soon",
    "reward": "Highest reward",
    "popular": "Most joined",
}


def visible_challenges_query():
    """Published challenges that have not ended (running now or upcoming)."""
    now = utcnow()
    return select(Challenge).where(
        Challenge.status == "published", or_(Challenge.ends_at.is_(None), Challenge.ends_at > now)
    )


@bp.route("/challenges")
@role_required("student")
def index():
    q = clean_line(request.args.get("q") or "")[:100]
    category_id = database_id(request.args.get("category"))
    sort = request.args.get("sort", "newest")
    if sort not in SORTS:
        sort = "newest"
    page = page_arg()
    per_page = current_app.config["CHALLENGES_PER_PAGE"]

    categories = db.session.scalars(
        select(Category).order_by(func.lower(Category.name), Category.id)
    ).all()
    if category_id and category_id not in {c.id for c in categories}:
        # A bookmark or an old link to a category deleted since: the list says what it shows.
        log.info("unknown category filter %s from user_id=%s", category_id, current_user.id)
        flash("That category no longer exists, so challenges of every category are shown.", "info")
        category_id = None
    query = visible_challenges_query()
    if q:
        pattern = contains_pattern(q)
        query = query.where(
            or_(
                Challenge.title.ilike(pattern, escape="\\"),
                Challenge.description.ilike(pattern, escape="\\"),
            )
        )
    if category_id:
        query = query.where(Challenge.category_id == category_id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    pages = max(1, -(-total // per_page))
    page = min(page, pages)
    items = db.session.scalars(
        query.order_by(*SORTS[sort]).offset((page - 1) * per_page).limit(per_page)
    ).all()
    joined_ids = _joined_ids(current_user.id, [c.id for c in items])
    return render_template(
        "challenges/index.html",
        challenges=items,
        total=total,
        page=page,
        pages=pages,
        q=q,
        category_id=category_id,
        sort=sort,
        sorts=SORT_LABELS,
        categories=categories,
        joined_ids=joined_ids,
        now=utcnow(),
        # On the overview only: a student searching, filtering or paging is looking for
        # something else, and each showing would count as six more impressions.
        show_recommendations=page == 1 and not q and not category_id,
    )


def _joined_ids(user_id: int, challenge_ids: list[int]) -> set[int]:
    if not challenge_ids:
        return set()
    return set(
        db.session.scalars(
            select(Participation.challenge_id).where(
                Participation.user_id == user_id,
                Participation.challenge_id.in_(challenge_ids),
                Participation.status != "left",
            )
        )
    )


def _student_visible_or_404(challenge_id: int) -> Challenge:
    challenge = db.session.get(Challenge, challenge_id)
    if challenge is None or challenge.status == "draft":
        abort(404)
    return challenge


def _readable(challenge: Challenge, participation: Participation | None) -> bool:
    """An archived challenge's page is kept for those who took part in it. A draft can be
    archived without ever being published, and challenge ids are sequential: open to every
    student, its page would show by URL what was never published."""
    return challenge.status != "archived" or participation is not None


def _own_participation(challenge: Challenge) -> Participation | None:
    return db.session.scalar(
        select(Participation).where(
            Participation.user_id == current_user.id, Participation.challenge_id == challenge.id
        )
    )


def _detail_or_list(challenge: Challenge) -> str:
    """Where to go after a join or leave: the challenge's page, or the list when it is not
    readable (archived, and the student never took part)."""
    if _readable(challenge, _own_participation(challenge)):
        return url_for("challenges.detail", challenge_id=challenge.id)
    return url_for("challenges.index")


@bp.route("/challenges/<int:challenge_id>")
@role_required("student")
def detail(challenge_id: int):
    challenge = _student_visible_or_404(challenge_id)
    participation = _own_participation(challenge)
    if not _readable(challenge, participation):
        abort(404)  # before the click: a page refused was not a card followed
    slate_id = request.args.get("slate")
    if slate_id and not is_head():
        rec_events.record_click(current_user.id, challenge.id, slate_id)
    return render_template(
        "challenges/detail.html", challenge=challenge, participation=participation, now=utcnow()
    )


@bp.route("/challenges/<int:challenge_id>/join", methods=["POST"])
@role_required("student")
def join_challenge(challenge_id: int):
    challenge = _student_visible_or_404(challenge_id)
    slate_id, source = rec_events.attribution_for_join(current_user.id, challenge.id)
    try:
        outcome = join(current_user.id, challenge, slate_id=slate_id, source=source)
    except ParticipationError as exc:
        log.info("join refused user_id=%s challenge_id=%s: %s", current_user.id, challenge.id, exc)
        flash(str(exc), "error")
        return redirect(_detail_or_list(challenge), 303)
    if outcome.changed:
        rec_events.record_join(current_user.id, challenge.id, slate_id, source)
        flash(f"You joined “{challenge.title}”.", "success")
    else:
        flash("You are already in this challenge.", "info")
    return redirect(_back_or_detail(challenge), 303)


@bp.route("/challenges/<int:challenge_id>/leave", methods=["POST"])
@role_required("student")
def leave_challenge(challenge_id: int):
    challenge = _student_visible_or_404(challenge_id)
    try:
        outcome = leave(current_user.id, challenge)
    except ParticipationError as exc:
        log.info("leave refused user_id=%s challenge_id=%s: %s", current_user.id, challenge.id, exc)
        flash(str(exc), "error")
        return redirect(_detail_or_list(challenge), 303)
    flash(
        f"You left “{challenge.title}”." if outcome.changed else "You are not in this challenge.",
        "info",
    )
    return redirect(_back_or_detail(challenge), 303)


def _back_or_detail(challenge: Challenge) -> str:
    from app.auth.routes import safe_next

    return safe_next(request.form.get("next")) or _detail_or_list(challenge)


@bp.route("/me/challenges")
@role_required("student")
def mine():
    rows = db.session.execute(
        select(Participation, Challenge)
        .join(Challenge, Challenge.id == Participation.challenge_id)
        .where(Participation.user_id == current_user.id)
        .order_by(Participation.status == "left", Participation.joined_at.desc())
    ).all()
    return render_template(
        "challenges/mine.html",
        rows=rows,
        dismissed=rec_events.standing_dismissals(current_user.id),
        now=utcnow(),
    )
