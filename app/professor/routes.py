"""Challenge management: professors manage their own challenges, admins manage every challenge."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.exc import StaleDataError
from wtforms.fields.choices import SelectChoice

from app.auth import role_required
from app.challenges.service import mark_completed
from app.extensions import db
from app.models import (
    CHALLENGE_STATUSES,
    Category,
    Challenge,
    ChallengeStatus,
    Participation,
    ParticipationStatus,
    User,
    utcnow,
)
from app.professor import bp
from app.professor.forms import ChallengeForm
from app.text import clean_line, counted
from app.web import contains_pattern, database_id, day_time, page_arg

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
        if request.method == "POST":
            # Typically a form opened before an admin handed the challenge to someone else.
            abort(403, "You no longer manage this challenge, so nothing was saved.")
        abort(403)
    return challenge


def _category_choices() -> list[SelectChoice]:
    return [
        SelectChoice(c.id, c.name)
        for c in db.session.scalars(
            select(Category).order_by(func.lower(Category.name), Category.id)
        )
    ]


def _owner_choices(challenge: Challenge | None) -> list[SelectChoice]:
    """Active professors and admins; a challenge's current owner stays listed even when their
    account was deactivated, so saving it unchanged stays possible."""
    from app.auth.accounts import can_own_challenges_clause

    can_own = can_own_challenges_clause()
    if challenge is not None:
        can_own = or_(can_own, User.id == challenge.owner_id)
    users = db.session.scalars(select(User).where(can_own))
    return [
        SelectChoice(u.id, f"{u.display_name} ({u.email})")
        for u in sorted(users, key=lambda u: (u.display_name.casefold(), u.id))
    ]


def _new_form(challenge: Challenge | None = None) -> ChallengeForm:
    form = ChallengeForm(obj=challenge)
    if challenge is None:
        del form.version
        if request.method == "GET":
            form.creation_token.data = str(uuid.uuid4())
    else:
        del form.creation_token
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
        form.form_errors.append(_integrity_message(form))
        return False
    return True


def _integrity_message(form: ChallengeForm) -> str:
    category_id = form.category_id.data
    if category_id is not None and db.session.get(Category, category_id) is None:
        return "The chosen category was deleted meanwhile. Pick another one and save again."
    return "The challenge could not be saved. Check the fields and try again."


def _token(form: ChallengeForm) -> str | None:
    """The create form's token, if it is one we issued (a UUID); otherwise none is kept."""
    raw = (form.creation_token.data or "").strip()
    try:
        return str(uuid.UUID(raw)) if len(raw) == 36 else None
    except ValueError:
        return None


def _created_from(token: str | None) -> Challenge | None:
    """The challenge created from the form that carried this token, if any."""
    if token is None:
        return None
    return db.session.scalar(select(Challenge).where(Challenge.creation_token == token))


def _could_have_sent(earlier: Challenge) -> bool:
    """Whether this account could have sent the form ``earlier`` was created from: a token of
    someone else's challenge is no business of theirs (its title is not told to them)."""
    return current_user.is_admin or earlier.owner_id == current_user.id


def _is_repeat(earlier: Challenge, form: ChallengeForm) -> bool:
    """Whether the form is the one ``earlier`` was created from, sent again as it was (Create
    double-clicked, or Back and Create): every field as ``earlier`` has it."""
    owner = form.owner_id.data if "owner_id" in form else current_user.id
    return (
        earlier.title,
        earlier.description,
        earlier.category_id,
        earlier.reward_points,
        earlier.status,
        earlier.starts_at,
        earlier.ends_at,
        earlier.owner_id,
    ) == (
        form.title.data.strip(),
        form.description.data.strip(),
        form.category_id.data,
        form.reward_points.data,
        form.status.data,
        _submitted_time(form.starts_at, earlier.starts_at),
        _submitted_time(form.ends_at, earlier.ends_at),
        owner,
    )


def _form_already_used(form: ChallengeForm, earlier: Challenge):
    """The form that created ``earlier``, sent again with other content (Back, a correction,
    Create): it may be meant as a correction of ``earlier`` or as another challenge, so nothing
    is saved and the professor chooses. The form keeps what was typed, with a fresh token, so
    Create again makes another challenge."""
    log.info(
        "challenge create refused: the form of challenge_id=%s sent again with other content "
        "by user_id=%s",
        earlier.id,
        current_user.id,
    )
    form.form_errors.append(
        f"This form already created “{earlier.title}”, so nothing was saved now. To change that "
        "challenge, edit it; to create another challenge from what you typed, press Create "
        "challenge again."
    )
    form.creation_token.data = str(uuid.uuid4())
    return _render_form(form, None, 409, already_created=earlier)


# How long after creating a challenge the same content sent again counts as the same form.
REPEAT_WINDOW = timedelta(minutes=30)


def _recent_twin(form: ChallengeForm) -> Challenge | None:
    """A challenge created moments ago, for the same owner, with every field as the form has it:
    the form sent again after Back, which fetches the page, and a new token with it. Any field
    changed (the status, a date, the reward) makes it another challenge."""
    owner = form.owner_id.data if "owner_id" in form else current_user.id
    return db.session.scalar(
        select(Challenge)
        .where(
            Challenge.owner_id == owner,
            Challenge.title == form.title.data.strip(),
            Challenge.category_id == form.category_id.data,
            Challenge.description == form.description.data.strip(),
            Challenge.reward_points == form.reward_points.data,
            Challenge.status == form.status.data,
            Challenge.starts_at == _submitted_time(form.starts_at, None),
            Challenge.ends_at.is_(None)
            if form.ends_at.data is None
            else Challenge.ends_at == _submitted_time(form.ends_at, None),
            Challenge.created_at >= utcnow() - REPEAT_WINDOW,
        )
        .order_by(Challenge.id.desc())
        .limit(1)
    )


def _already_created(challenge: Challenge, same_form: bool = True):
    log.info(
        "challenge create repeated: challenge_id=%s already created from %s by user_id=%s",
        challenge.id,
        "this form" if same_form else "the same content",
        current_user.id,
    )
    if same_form:
        message = (
            f"“{challenge.title}” was already created from this form; it was not created twice."
        )
    else:
        message = (
            f"“{challenge.title}” was created with exactly this content a moment ago, so it was "
            "not created twice. To create another like it, change any field."
        )
    flash(message, "info")
    return redirect(url_for("professor.challenges", **_list_args()), 303)


def _render_form(
    form: ChallengeForm,
    challenge: Challenge | None,
    status: int = 200,
    already_created: Challenge | None = None,
):
    return render_template(
        "professor/challenge_form.html",
        form=form,
        challenge=challenge,
        already_created=already_created,
    ), status


def _validated(form: ChallengeForm, challenge: Challenge | None) -> bool:
    if not form.validate_on_submit():
        _ask_again_for_vanished_choices(form)
        return False
    error = _status_error(challenge, form.status.data)
    if error:
        form.status.errors.append(error)
        return False
    # The form compares minutes; a stored time keeps its seconds (``_submitted_time``), so the
    # times that would be stored must be in order too.
    starts = _submitted_time(form.starts_at, challenge.starts_at if challenge else None)
    ends = _submitted_time(form.ends_at, challenge.ends_at if challenge else None)
    if starts is not None and ends is not None and ends <= starts:
        form.ends_at.errors.append("The end must be after the start.")
        return False
    owner_id = form.owner_id.data if "owner_id" in form else None
    if owner_id is not None and owner_id != (challenge.owner_id if challenge else current_user.id):
        problem = _new_owner_problem(owner_id)
        if problem:
            form.owner_id.errors.append(problem)
            return False
    return True


# The value of the "Choose ..." entry: no row has id 0.
PLACEHOLDER = "0"


def _ask_again_for_vanished_choices(form: ChallengeForm) -> None:
    """A list whose submitted choice is no longer offered would show its first entry as chosen,
    and a second Save would store an owner or a category nobody picked: it shows a placeholder
    instead, which cannot be sent, so the field must be chosen again."""
    for name, prompt in (("category_id", "Choose a category"), ("owner_id", "Choose an owner")):
        field = form[name] if name in form else None
        offered = {str(choice.value) for choice in (field.choices or [])} if field else set()
        sent = (field.raw_data or [""])[0] if field else ""
        if field is None or not field.errors or not sent or sent in offered:
            continue
        if sent == PLACEHOLDER:  # sent as shown, without choosing
            field.errors[:] = [f"{prompt}."]
        # Sent with the form (not disabled, which would leave the field out and let the
        # create form fall back to its default owner), and refused as above until changed.
        placeholder = SelectChoice(PLACEHOLDER, prompt, render_kw={"selected": True})
        field.choices = [placeholder, *field.choices]


def _new_owner_problem(owner_id: int) -> str | None:
    """Whether the owner an admin chose can still own challenges: the form's choices were read
    before, and a role change may have come since. Takes the accounts' lock, which the save then
    holds, accounts before challenges as a hand-over takes them, so a demotion of that owner
    waits for it."""
    from app.auth.accounts import can_own_challenges, lock_accounts

    lock_accounts()
    owner = db.session.get(User, owner_id, populate_existing=True)
    if owner is None or not can_own_challenges(owner):
        return "This account can no longer own challenges; choose another owner."
    return None


def _differences(form: ChallengeForm, challenge: Challenge) -> list[str]:
    """The fields where the saved challenge differs from what the form would save, each with its
    saved value, for the message of an edit conflict."""
    category = db.session.get(Category, challenge.category_id)
    pairs = [
        ("Title", challenge.title, form.title.data, challenge.title),
        ("Description", challenge.description, form.description.data, None),
        ("Category", challenge.category_id, form.category_id.data, category and category.name),
        (
            "Reward points",
            challenge.reward_points,
            form.reward_points.data,
            challenge.reward_points,
        ),
        (
            "Starts at",
            challenge.starts_at,
            _submitted_time(form.starts_at, challenge.starts_at),
            _shown_time(challenge.starts_at),
        ),
        (
            "Ends at",
            challenge.ends_at,
            _submitted_time(form.ends_at, challenge.ends_at),
            _shown_time(challenge.ends_at),
        ),
        ("Status", challenge.status, form.status.data, challenge.status),
    ]
    if "owner_id" in form:
        owner = challenge.owner
        pairs.append(
            ("Owner", challenge.owner_id, form.owner_id.data, owner and owner.display_name)
        )
    return [
        f"{label} (saved: “{_short(shown)}”)" if shown is not None else label
        for label, stored, submitted, shown in pairs
        if stored != submitted
    ]


def _shown_time(value: datetime | None) -> str:
    return f"{day_time(value)} UTC" if value else "no end"


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _conflict(form: ChallengeForm, challenge: Challenge):
    """Someone saved the challenge after this form was opened: nothing is saved, the form keeps
    what was typed, and now carries the saved version, so saving again is a deliberate choice.
    When the saved challenge is already what the form says (Save pressed twice, or the form sent
    again after Back), there is nothing to choose: it is reported saved."""
    differences = _differences(form, challenge)
    if not differences:
        log.info(
            "challenge edit repeated challenge_id=%s user_id=%s: already saved as sent",
            challenge.id,
            current_user.id,
        )
        flash(f"Challenge “{challenge.title}” saved.", "success")
        _warn_if_ended(challenge)
        return redirect(url_for("professor.challenges", **_list_args()), 303)
    log.info(
        "challenge edit conflict challenge_id=%s user_id=%s form_version=%r saved_version=%s",
        challenge.id,
        current_user.id,
        (form.version.raw_data or [""])[0][:20],
        challenge.version,
    )
    message = (
        "Someone saved this challenge after you opened this form, so your changes were not saved."
    )
    if differences:
        message += " The saved challenge differs from your form in: " + "; ".join(differences) + "."
    message += (
        " Save again to replace the saved version with yours, or reopen the challenge to start"
        " from it."
    )
    form.form_errors.append(message)
    form.version.data = str(challenge.version)
    return _render_form(form, challenge, 409)


# A table of rows, as the users page has; the student's grid of cards shows fewer.
MANAGED_PER_PAGE = 50


def _list_filters() -> dict[str, str | int | None]:
    """The list's filters from the query string, kept on the publish and archive forms so their
    redirect comes back to the same list. ``owner`` is an admin's filter only."""
    status = request.args.get("status", "")
    return {
        "q": clean_line(request.args.get("q") or "")[:100],
        "status": status if status in CHALLENGE_STATUSES else "",
        "owner": database_id(request.args.get("owner")) if current_user.is_admin else None,
    }


@bp.context_processor
def _list_place() -> dict:
    # The management list's page and filters, carried through the pages opened from it, so
    # "Back to challenges" and the redirect after saving return to the same place.
    return {"list_args": _list_args() if current_user.is_authenticated else {}}


def _list_args() -> dict:
    """The list's filters and page as its links carry them: none that is empty or the default."""
    kept = {name: value for name, value in _list_filters().items() if value}
    if request.args.get("page"):
        kept["page"] = page_arg()
    return kept


def _owners_with_challenges() -> list[User]:
    owners = db.session.scalars(select(User).where(User.id.in_(select(Challenge.owner_id))))
    return sorted(owners, key=lambda u: (u.display_name.casefold(), u.id))


@bp.route("/challenges")
@role_required(*MANAGERS)
def challenges():
    filters = _list_filters()
    owners = _owners_with_challenges() if current_user.is_admin else []
    if filters["owner"] and filters["owner"] not in {u.id for u in owners}:
        # An old link to an account that owns nothing now: the list says what it shows.
        flash("That account owns no challenges now, so every owner's challenges are shown.", "info")
        filters["owner"] = None
    query = select(Challenge)
    if not current_user.is_admin:
        query = query.where(Challenge.owner_id == current_user.id)
    elif filters["owner"]:
        query = query.where(Challenge.owner_id == filters["owner"])
    if filters["status"]:
        query = query.where(Challenge.status == filters["status"])
    if filters["q"]:
        query = query.where(Challenge.title.ilike(contains_pattern(filters["q"]), escape="\\"))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    pages = max(1, -(-total // MANAGED_PER_PAGE))
    page = min(page_arg(), pages)
    items = db.session.scalars(
        query.options(joinedload(Challenge.category), joinedload(Challenge.owner))
        .order_by(Challenge.created_at.desc(), Challenge.id.desc())
        .offset((page - 1) * MANAGED_PER_PAGE)
        .limit(MANAGED_PER_PAGE)
    ).all()
    return render_template(
        "professor/challenges.html",
        challenges=items,
        filters=filters,
        query_args={name: value for name, value in filters.items() if value},
        statuses=CHALLENGE_STATUSES,
        owners=owners,
        show_owner=current_user.is_admin,
        total=total,
        page=page,
        pages=pages,
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
    token = _token(form)
    earlier = _created_from(token)
    if earlier is not None and not _could_have_sent(earlier):
        earlier = token = None  # someone else's token: this form deduplicates nothing
    if earlier is not None:
        if _is_repeat(earlier, form):
            return _already_created(earlier)
        return _form_already_used(form, earlier)
    twin = _recent_twin(form)
    if twin is not None:
        return _already_created(twin, same_form=False)
    challenge = Challenge(owner_id=current_user.id, participations_count=0, creation_token=token)
    _apply_form(challenge, form)
    db.session.add(challenge)
    if not _save(form):
        # The same form submitted twice at once: the other request created it.
        earlier = _created_from(token)
        if earlier is not None and _could_have_sent(earlier):
            form.form_errors.clear()
            if _is_repeat(earlier, form):
                return _already_created(earlier)
            return _form_already_used(form, earlier)
        return _render_form(form, None, 400)
    log.info(
        "challenge created challenge_id=%s by user_id=%s status=%s",
        challenge.id,
        current_user.id,
        challenge.status,
    )
    flash(f"Challenge “{challenge.title}” created.", "success")
    _warn_if_ended(challenge)
    return redirect(url_for("professor.challenges", **_list_args()), 303)


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
    # From the request only: without one, the field would fall back to the challenge's own.
    if (form.version.raw_data or [""])[0].strip() != str(challenge.version):
        return _conflict(form, challenge)
    _apply_form(challenge, form)
    try:
        saved = _save(form)
    except StaleDataError:
        # Saved by someone else between this request's read and its write.
        db.session.rollback()
        return _conflict(form, _manageable_or_abort(challenge_id))
    if not saved:
        return _render_form(form, challenge, 400)
    log.info(
        "challenge edited challenge_id=%s by user_id=%s status=%s",
        challenge.id,
        current_user.id,
        challenge.status,
    )
    flash(f"Challenge “{challenge.title}” saved.", "success")
    _warn_if_ended(challenge)
    return redirect(url_for("professor.challenges", **_list_args()), 303)


def _warn_if_ended(challenge: Challenge) -> None:
    """A published challenge whose end has passed is shown to no student: said at once, not
    left for the professor to find out from an empty participants list."""
    if challenge.status == ChallengeStatus.PUBLISHED.value and challenge.has_ended():
        flash(
            f"“{challenge.title}” has already ended, so students will not see it or be able "
            "to join it. Edit its end to open it again.",
            "warning",
        )


def _set_status(challenge_id: int, status: ChallengeStatus, verb: str):
    challenge = _manageable_or_abort(challenge_id)
    if challenge.status == status.value:
        flash(f"“{challenge.title}” is already {status.value}.", "info")
        _warn_if_ended(challenge)
    else:
        previous = challenge.status
        challenge.status = status.value
        try:
            db.session.commit()
        except StaleDataError:
            db.session.rollback()
            log.info("challenge %s challenge_id=%s: changed meanwhile", verb, challenge_id)
            flash(
                "This challenge was changed by someone else at the same moment. Try again.", "error"
            )
            return redirect(url_for("professor.challenges", **_list_args()), 303)
        log.info(
            "challenge %s challenge_id=%s by user_id=%s (was %s)",
            verb,
            challenge.id,
            current_user.id,
            previous,
        )
        flash(f"“{challenge.title}” is now {status.value}.", "success")
        _warn_if_ended(challenge)
    return redirect(url_for("professor.challenges", **_list_args()), 303)


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
    return _participants_page(_manageable_or_abort(challenge_id))


def _participants_page(challenge: Challenge, status: int = 200):
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
    return (
        render_template(
            "professor/participants.html", challenge=challenge, rows=rows, by_status=by_status
        ),
        status,
    )


# One form marks at most this many participants (a bound on one UPDATE's list of ids); the page is
# not paged, so a larger selection is refused and marked in parts.
MAX_MARKED = 1000
_MARKS = {"completed": True, "joined": False}


@bp.route("/challenges/<int:challenge_id>/participants/status", methods=["POST"])
@role_required(*MANAGERS)
def mark_participants(challenge_id: int):
    """Mark the chosen participants completed (``status=completed``) or not (``joined``)."""
    challenge = _manageable_or_abort(challenge_id)
    wanted = request.form.get("status", "")
    raw_ids = request.form.getlist("user_id")
    user_ids = [database_id(r) for r in raw_ids]
    problem = None
    if wanted not in _MARKS:
        problem = "Choose whether to mark them completed or not completed."
    elif not raw_ids:
        problem = "Choose at least one participant first."
    elif len(raw_ids) > MAX_MARKED:
        problem = f"At most {MAX_MARKED} participants can be marked at once."
    elif None in user_ids:
        problem = "That choice of participants is not valid. Reload the page and choose again."
    if problem:
        log.warning(
            "participants of challenge_id=%s not marked by user_id=%s: %s",
            challenge.id,
            current_user.id,
            problem,
        )
        flash(problem, "error")
        return _participants_page(challenge, 400)
    marked = mark_completed(challenge, user_ids, _MARKS[wanted])
    log.info(
        "participants of challenge_id=%s marked %s by user_id=%s: changed=%s unchanged=%s "
        "refused=%s",
        challenge.id,
        wanted,
        current_user.id,
        marked.changed,
        marked.unchanged,
        marked.refused,
    )
    _flash_marked(marked, "completed" if _MARKS[wanted] else "not completed")
    return redirect(
        url_for("professor.participants", challenge_id=challenge.id, **_list_args()), 303
    )


def _flash_marked(marked, state: str) -> None:
    if marked.changed:
        flash(f"Marked {counted(len(marked.changed), 'participant')} {state}.", "success")
    if marked.unchanged:
        verb = "was" if len(marked.unchanged) == 1 else "were"
        flash(f"{counted(len(marked.unchanged), 'participant')} {verb} already {state}.", "info")
    if marked.refused:
        flash(
            f"{counted(len(marked.refused), 'participant')} left the challenge (or never joined "
            "it), so "
            f"{'was' if len(marked.refused) == 1 else 'were'} not changed.",
            "warning",
        )
