"""Student-facing recommendation routes: the "Recommended for you" fragment, "Not interested",
and the event endpoint. Slates come from ``serving``; every write goes through ``events``."""

from __future__ import annotations

import json
import logging

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from app.auth import role_required
from app.extensions import db
from app.models import Challenge, ChallengeStatus, utcnow
from app.recs import events, serving
from app.recs.eligibility import eligible_challenges, excluded_challenge_ids, is_eligible
from app.recs.throttle import budgeted
from app.web import is_head

log = logging.getLogger(__name__)
bp = Blueprint("recs", __name__)

FORM_MIMETYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# The session key naming the challenge a "Not interested" without JavaScript offers to undo.
UNDO_KEY = "recs_undo"


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def _offset_arg() -> int:
    """Where "Show more" continues: a whole number, past the slate's end means its end."""
    raw = request.args.get("offset", "0")
    if not (raw.isascii() and raw.isdigit()):
        log.info("bad recommendations offset %r from user_id=%s", raw[:40], current_user.id)
        abort(400, "offset must be a whole number, 0 or more.")
    # Any number of digits past the end is the end, without reading a huge one.
    return min(int(raw[:9]) if len(raw) <= 9 else serving.MAX_SLATE_ITEMS, serving.MAX_SLATE_ITEMS)


@bp.route("/challenges/recommended")
@role_required("student")
@budgeted
def fragment():
    """The student's slate; "Show more" passes ``slate`` and ``offset`` to continue it."""
    asked_for = request.args.get("slate") or None
    offset = _offset_arg() if asked_for else 0
    slate, new_slate = _slate_page(asked_for, offset)
    # "Show more" of a slate that is gone (expired, or a forged id) starts a new one: it
    # replaces the whole list instead of adding its first page under the old cards.
    restarted = asked_for is not None and new_slate
    template = "_partials/recommendations.html" if _is_htmx() else "recs/recommended.html"
    # Rendered before the write: its commit would expire the cards, and reloading each is a query.
    # Focus moves to the first added card, which reads only that card: the status line says
    # how many "Show more" added.
    announce = _is_htmx() and offset > 0 and not restarted
    now = utcnow()
    html = render_template(
        template,
        slate=slate,
        now=now,
        restarted=restarted,
        announce=announce,
        htmx=_is_htmx(),
        # An empty first page: a student new to an empty campus has dismissed nothing.
        nothing_open=not slate.items and slate.offset == 0 and not _anything_open(now),
    )
    if not is_head():
        events.record_page(current_user.id, slate, new_slate)
    response = current_app.make_response(html)
    if restarted and _is_htmx():
        response.headers["HX-Retarget"] = "#recommended-slate"
        response.headers["HX-Reswap"] = "innerHTML"
    # Each rendering records impressions, so no cache may answer in our place.
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("HX-Request")
    return response


def _anything_open(now) -> bool:
    return (
        db.session.scalar(eligible_challenges(now).with_only_columns(Challenge.id).limit(1))
        is not None
    )


def _slate_page(slate_id: str | None, offset: int) -> tuple[serving.Slate, bool]:
    """The page to show, and whether it starts a new slate (whose row is then recorded)."""
    if slate_id is not None:
        try:
            return serving.get_recommendations(
                current_user, offset=offset, slate_id=slate_id
            ), False
        except serving.UnknownSlate:
            log.info(
                "unknown slate %r for user_id=%s: starting a new one",
                slate_id[:40],
                current_user.id,
            )
    return serving.get_recommendations(current_user), True


@bp.route("/challenges/recommended/<int:challenge_id>/dismiss", methods=["POST"])
@role_required("student")
@budgeted
def dismiss(challenge_id: int):
    """Not interested: the card goes away (HTMX), or the page reloads without it (no JS)."""
    challenge = db.session.get(Challenge, challenge_id)
    slate_id = (request.form.get("slate") or "")[:36] or None
    # A card taken back to draft after it was shown can still be turned down, or it would
    # return when published again; a draft the student was never shown stays unknown to them.
    if challenge is None or (
        challenge.status == ChallengeStatus.DRAFT.value
        and not events.was_served(current_user.id, slate_id, challenge.id)
    ):
        abort(404)
    events.record_dismiss(current_user.id, challenge.id, slate_id)
    named = _named(challenge)
    message = f"We will not recommend {named} again."
    if _is_htmx():
        # Takes the card's place and focus, so keyboard and screen-reader users keep their place.
        return render_template(
            "_partials/recommendation_dismissed.html",
            message=message,
            named=named,
            challenge=challenge,
            slate_id=slate_id,
            here=_next_field(),
        )
    flash(message, "info")
    # The page it leads to offers "Undo" beside the message (``undo_offer``).
    session[UNDO_KEY] = challenge.id
    return redirect(_next_field() or url_for("challenges.index"), 303)


def _named(challenge: Challenge) -> str:
    # A draft's title may have been changed since the student saw it, and is not public yet.
    if challenge.status == ChallengeStatus.DRAFT.value:
        return "this challenge"
    return f"“{challenge.title}”"


def _next_field() -> str | None:
    from app.auth.routes import safe_next

    return safe_next(request.form.get("next"))


@bp.route("/challenges/recommended/<int:challenge_id>/restore", methods=["POST"])
@role_required("student")
@budgeted
def restore(challenge_id: int):
    """Undo "Not interested": the challenge may be recommended again. In the fragment (HTMX) the
    card comes back in its place; elsewhere the page reloads (My challenges by default)."""
    challenge = db.session.get(Challenge, challenge_id)
    # A draft stays unknown to a student who never turned it down.
    if challenge is None or (
        challenge.status == ChallengeStatus.DRAFT.value
        and not events.has_dismissed(current_user.id, challenge.id)
    ):
        abort(404)
    restored = events.record_restore(current_user.id, challenge.id)
    if not restored:  # a double click, or a second tab: what was asked for is already so
        log.info(
            "restore with nothing to restore: user_id=%s challenge_id=%s",
            current_user.id,
            challenge.id,
        )
    named = _named(challenge)
    if _is_htmx():
        return _restored_card(challenge, named)
    flash(_restored_message(challenge, named, utcnow()), "success")
    return redirect(_next_field() or url_for("challenges.mine"), 303)


def _restored_message(challenge: Challenge, named: str, now) -> str:
    # Archived, ended or back in draft: taking "Not interested" back does not make it open.
    if not is_eligible(challenge, now):
        return (
            f"{_capitalized(named)} is no longer “Not interested”. It is not open now, so it "
            "will be recommended only if it opens again."
        )
    return f"{_capitalized(named)} can be recommended to you again."


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _restored_card(challenge: Challenge, named: str):
    """The card "Undo" puts back in its slate, at the place it was served; a message instead
    when it cannot be recommended now (joined, ended, unpublished) or the slate is not known."""
    slate_id = (request.form.get("slate") or "")[:36] or None
    now = utcnow()
    card = events.served_card(current_user.id, slate_id, challenge.id)
    if card is not None and not (
        is_eligible(challenge, now) and challenge.id not in excluded_challenge_ids(current_user.id)
    ):
        card = None
    message = (
        f"{_capitalized(named)} is back in your recommendations."
        if card is not None
        else _restored_message(challenge, named, now)
    )
    return render_template(
        "_partials/recommendation_restored.html",
        message=message,
        card=card,
        challenge=challenge,
        slate_id=slate_id,
        here=_next_field(),
        now=now,
    )


@bp.app_context_processor
def undo_offer():
    """``dismiss_undo()`` for the page a "Not interested" without JavaScript leads to: the
    challenge to offer "Undo" for, once, beside the flashed message."""

    def dismiss_undo() -> Challenge | None:
        challenge_id = session.pop(UNDO_KEY, None)
        if not isinstance(challenge_id, int) or not current_user.is_authenticated:
            return None
        return db.session.get(Challenge, challenge_id)

    return {"dismiss_undo": dismiss_undo}


class _BadBody(Exception):
    """A body that is not an event payload at all (wrong type, broken JSON, repeated fields)."""


def _form_payload() -> tuple[object, bool]:
    form = request.form
    repeated = sorted(key for key in form if len(form.getlist(key)) > 1)
    if repeated:
        raise _BadBody(f"field(s) sent more than once: {', '.join(k[:40] for k in repeated[:5])}")
    fields = {key: value for key, value in form.items() if key != "csrf_token"}
    if set(fields) == {"events"}:
        # sendBeacon batches: the list travels as JSON inside one form field.
        return {"events": json.loads(fields["events"])}, False
    return fields, True


def _event_payload() -> tuple[object, bool]:
    """(payload, numbers-may-be-text) from a JSON or form-encoded body."""
    try:
        if request.mimetype in FORM_MIMETYPES:
            return _form_payload()
        if request.is_json:
            return json.loads(request.get_data(cache=True)), False
    except (ValueError, RecursionError) as exc:
        raise _BadBody(f"body is not valid JSON ({type(exc).__name__})") from None
    raise _BadBody("send JSON (application/json) or a form (application/x-www-form-urlencoded)")


def _rejected(reason: str, problems: list[str] | None = None, status: int = 400):
    log.warning(
        "event rejected: reason=%r user_id=%s address=%s",
        reason,
        current_user.id,
        request.remote_addr,
    )
    return jsonify(error=reason, problems=problems or [reason]), status


@bp.route("/recommendations/event", methods=["POST"])
@role_required("student")
@budgeted
def event():
    """Store one event or ``{"events": [...]}``: 201 stored, 200 all duplicates, 400 invalid
    (nothing stored), 401 logged out. The user is the session's, never the payload's."""
    try:
        payload, text_numbers = _event_payload()
        incoming = events.parse_events(
            payload, current_app.config["RECS_EVENT_BATCH_LIMIT"], text_numbers
        )
        stored, duplicates = events.store_events(current_user.id, incoming)
    except RequestEntityTooLarge:
        return _rejected(
            f"body larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes", status=413
        )
    except _BadBody as exc:
        return _rejected(str(exc))
    except events.InvalidEvents as exc:
        return _rejected(exc.problems[0], exc.problems)
    return jsonify(stored=stored, duplicates=duplicates), 201 if stored else 200
