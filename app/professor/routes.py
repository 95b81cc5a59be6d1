"""Challenge management: professors manage their own challenges, admins manage every challenge."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from wtforms.fields.choices import SelectChoice

from app.auth import role_required
from app.extensions import db
from app.models import (
    CHALLENGE_STATUSES,
    Category,
    Challenge,
    ChallengeStatus,
    Participation,
    ParticipationStatus,
    User,
)
from app.professor import bp
from app.professor.forms import ChallengeForm

log = logging.getLogger(__name__)

MANAGERS = ("professor", "admin")


def _manageable_or_abort(challenge_id: int) -> Challenge:
    """The challenge if the current user may manage it; 404 when missing, 403 when not theirs."""
    challenge = db.session.get(Challenge, challenge_id)
    if challenge is None:
        abort(404)
    if not current_user.is_admin and challenge.owner_id != current_user.id:
        log.warning(
            "user_id=%s denied access to challenge_id=%s owned by user_id=%s",
            current_user.id,
            challenge.id,
            challenge.owner_id,
        )
        abort(403)
    return challenge


def _category_choices() -> list[SelectChoice]:
    return [
        SelectChoice(c.id, c.name)
        for c in db.session.scalars(select(Category).order_by(Category.name))
    ]


def _owner_choices(challenge: Challenge | None) -> list[SelectChoice]:
    """Active professors and admins; a challenge's current owner stays listed even when their
    account was deactivated, so saving it unchanged stays possible."""
    can_own = and_(User.role.in_(MANAGERS), User.active.is_(True))
    if challenge is not None:
        can_own = or_(can_own, User.id == challenge.owner_id)
    users = db.session.scalars(select(User).where(can_own))
    return [
        SelectChoice(u.id, f"{u.display_name} ({u.email})")
        for u in sorted(users, key=lambda u: (u.display_name.casefold(), u.id))
    ]


def _new_form(challenge: Challenge | None = None) -> ChallengeForm:
    form = ChallengeForm(obj=challenge)
    form.category_id.choices = _category_choices()
    if current_user.is_admin:
        form.owner_id.choices = _owner_choices(challenge)
        if form.owner_id.data is None:
            form.owner_id.data = current_user.id
    else:
        del form.owner_id
    return form


def _has_had_participants(challenge: Challenge) -> bool:
    return (
        db.session.scalar(
            select(Participation.id).where(Participation.challenge_id == challenge.id).limit(1)
        )
        is not None
    )


def _status_error(challenge: Challenge | None, status: str) -> str | None:
    # A draft is invisible to students, so a challenge people joined must stay visible to them.
    back_to_draft = status == ChallengeStatus.DRAFT.value and challenge is not None
    if back_to_draft and challenge.status != status and _has_had_participants(challenge):
        return "Students have joined this challenge, so it cannot go back to draft. Archive it."
    return None


def _apply_form(challenge: Challenge, form: ChallengeForm) -> None:
    """Copy the edited fields only; counters such as participations_count are never touched here."""
    challenge.title = form.title.data.strip()
    challenge.description = form.description.data.strip()
    challenge.category_id = form.category_id.data
    challenge.reward_points = form.reward_points.data
    challenge.starts_at = _submitted_time(form.starts_at, challenge.starts_at)
    challenge.ends_at = _submitted_time(form.ends_at, challenge.ends_at)
    challenge.status = form.status.data
    if "owner_id" in form and form.owner_id.data != challenge.owner_id:
        if challenge.id is not None:
            log.info(
                "challenge_id=%s handed from user_id=%s to user_id=%s by user_id=%s",
                challenge.id,
                challenge.owner_id,
                form.owner_id.data,
                current_user.id,
            )
        challenge.owner_id = form.owner_id.data


def _submitted_time(field, stored: datetime | None) -> datetime | None:
    """The field's time in UTC. The form shows times to the minute, so a minute-only value equal
    to the stored time's minute keeps the stored seconds (times written by the seed or the CLI have
    them) rather than losing them on every save; a value written with seconds is taken as sent."""
    submitted = field.data.astimezone(UTC) if field.data else None
    raw = (field.raw_data or [""])[0].strip()
    if submitted is None or stored is None or len(raw) != len("YYYY-MM-DDTHH:MM"):
        return submitted
    return stored if stored.replace(second=0, microsecond=0) == submitted else submitted


def _save(form: ChallengeForm) -> bool:
    try:
        db.session.commit()
    except IntegrityError as exc:
        # The form checks every constraint; this is a race, e.g. the category was deleted meanwhile.
        db.session.rollback()
        log.warning("challenge save failed user_id=%s: %s", current_user.id, exc.orig)
        form.form_errors.append(
            "The challenge could not be saved. Check the category and try again."
        )
        return False
    return True


def _render_form(form: ChallengeForm, challenge: Challenge | None, status: int = 200):
    return render_template("professor/challenge_form.html", form=form, challenge=challenge), status


def _validated(form: ChallengeForm, challenge: Challenge | None) -> bool:
    if not form.validate_on_submit():
        return False
    error = _status_error(challenge, form.status.data)
    if error:
        form.status.errors.append(error)
        return False
    return True


@bp.route("/challenges")
@role_required(*MANAGERS)
def challenges():
    status = request.args.get("status", "")
    query = (
        select(Challenge)
        .options(joinedload(Challenge.category), joinedload(Challenge.owner))
        .order_by(Challenge.created_at.desc(), Challenge.id.desc())
    )
    if not current_user.is_admin:
        query = query.where(Challenge.owner_id == current_user.id)
    if status in CHALLENGE_STATUSES:
        query = query.where(Challenge.status == status)
    else:
        status = ""
    items = db.session.scalars(query).all()
    return render_template(
        "professor/challenges.html",
        challenges=items,
        status=status,
        statuses=CHALLENGE_STATUSES,
        show_owner=current_user.is_admin,
    )


@bp.route("/challenges/new", methods=["GET", "POST"])
@role_required(*MANAGERS)
def new_challenge():
    form = _new_form()
    if not form.category_id.choices:
        flash("There are no categories yet. An administrator must create one first.", "warning")
    if request.method == "GET":
        return _render_form(form, None)
    if not _validated(form, None):
        log.info("challenge create rejected user_id=%s errors=%s", current_user.id, form.errors)
        return _render_form(form, None, 400)
    challenge = Challenge(owner_id=current_user.id, participations_count=0)
    _apply_form(challenge, form)
    db.session.add(challenge)
    if not _save(form):
        return _render_form(form, None, 400)
    log.info(
        "challenge created challenge_id=%s by user_id=%s status=%s",
        challenge.id,
        current_user.id,
        challenge.status,
    )
    flash(f"Challenge “{challenge.title}” created.", "success")
    return redirect(url_for("professor.challenges"), 303)


@bp.route("/challenges/<int:challenge_id>/edit", methods=["GET", "POST"])
@role_required(*MANAGERS)
def edit_challenge(challenge_id: int):
    challenge = _manageable_or_abort(challenge_id)
    form = _new_form(challenge)
    if request.method == "GET":
        return _render_form(form, challenge)
    if not _validated(form, challenge):
        log.info(
            "challenge edit rejected challenge_id=%s user_id=%s errors=%s",
            challenge.id,
            current_user.id,
            form.errors,
        )
        return _render_form(form, challenge, 400)
    _apply_form(challenge, form)
    if not _save(form):
        return _render_form(form, challenge, 400)
    log.info(
        "challenge edited challenge_id=%s by user_id=%s status=%s",
        challenge.id,
        current_user.id,
        challenge.status,
    )
    flash(f"Challenge “{challenge.title}” saved.", "success")
    return redirect(url_for("professor.challenges"), 303)


def _set_status(challenge_id: int, status: ChallengeStatus, verb: str):
    challenge = _manageable_or_abort(challenge_id)
    if challenge.status == status.value:
        flash(f"“{challenge.title}” is already {status.value}.", "info")
    else:
        previous = challenge.status
        challenge.status = status.value
        db.session.commit()
        log.info(
            "challenge %s challenge_id=%s by user_id=%s (was %s)",
            verb,
            challenge.id,
            current_user.id,
            previous,
        )
        flash(f"“{challenge.title}” is now {status.value}.", "success")
    return redirect(url_for("professor.challenges"), 303)


@bp.route("/challenges/<int:challenge_id>/publish", methods=["POST"])
@role_required(*MANAGERS)
def publish_challenge(challenge_id: int):
    return _set_status(challenge_id, ChallengeStatus.PUBLISHED, "published")


@bp.route("/challenges/<int:challenge_id>/archive", methods=["POST"])
@role_required(*MANAGERS)
def archive_challenge(challenge_id: int):
    return _set_status(challenge_id, ChallengeStatus.ARCHIVED, "archived")


@bp.route("/challenges/<int:challenge_id>/participants")
@role_required(*MANAGERS)
def participants(challenge_id: int):
    challenge = _manageable_or_abort(challenge_id)
    rows = db.session.execute(
        select(Participation, User)
        .join(User, User.id == Participation.user_id)
        .where(Participation.challenge_id == challenge.id)
        .order_by(
            Participation.status == ParticipationStatus.LEFT.value, Participation.joined_at.desc()
        )
    ).all()
    by_status = dict(
        db.session.execute(
            select(Participation.status, func.count(Participation.id))
            .where(Participation.challenge_id == challenge.id)
            .group_by(Participation.status)
        ).all()
    )
    return render_template(
        "professor/participants.html", challenge=challenge, rows=rows, by_status=by_status
    )
