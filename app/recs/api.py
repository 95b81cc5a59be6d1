"""The JSON API: a student's slate (``GET /api/v1/recommendations``) and its OpenAPI description.

The slate is the one the fragment shows (``serving.get_recommendations``). The API records no
impressions: clients report what they display through ``POST /recommendations/event``, which is
why a student's slate row, and the cards each page served, are stored before they are returned.
"""

from __future__ import annotations

import json
import logging
import uuid
from functools import cache
from importlib import resources

from flask import Blueprint, current_app, jsonify, request, url_for
from flask_login import current_user

from app.auth import role_required
from app.extensions import db
from app.models import Role, User, utcnow
from app.recs import events, serving
from app.recs.throttle import budgeted
from app.web import is_head

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api/v1")

DEFAULT_K = 10
PARAMETERS = ("k", "offset", "slate_id", "user_id")


class BadParameter(ValueError):
    """A query parameter the API refuses; the message names it."""


@bp.route("/recommendations")
@role_required(Role.STUDENT.value, Role.ADMIN.value)
@budgeted
def recommendations():
    """A page of a slate: the student's own, or (admins, ``user_id``) any student's."""
    try:
        k, offset, slate_id = _paging()
        user, status, problem = _subject()
        if user is None:
            return _problem(problem, status)
        now = utcnow()
        slate = serving.get_recommendations(user, k=k, offset=offset, slate_id=slate_id, now=now)
    except BadParameter as exc:
        return _problem(str(exc), 400)
    except serving.UnknownSlate:
        return _problem("slate_id: no such slate for this student", 404)
    # Built before the write: its commit would expire the challenges, and reloading each is a query.
    body = _slate_json(slate)
    # An admin's read is a preview: storing a slate the student never saw would skew metrics. A
    # student's page stores what it served, which the client's events are checked against.
    if user.id == current_user.id and slate.items and not is_head():
        stored = events.save_api_page(
            user.id,
            slate,
            new_slate=slate_id is None,
            created_at=now,
            places=serving.MAX_SLATE_ITEMS,
        )
        _as_stored(body, stored)
    response = jsonify(body)
    # Personal and different on every call.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/openapi.json")
def openapi():
    """The hand-written OpenAPI 3.1 description of this API and of the event endpoint."""
    return current_app.response_class(_openapi_text(), mimetype="application/json")


@cache
def _openapi_text() -> str:
    text = resources.files("app.recs").joinpath("openapi.json").read_text(encoding="utf-8")
    json.loads(text)  # a broken file fails on first use, loudly, not as a truncated document
    return text


def _problem(message: str, status: int):
    log.info("api refused %s: %s (user_id=%s)", request.full_path[:200], message, current_user.id)
    return jsonify(error=message, status=status), status


def _single(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise BadParameter(f"{name}: give it at most once")
    return values[0] if values else None


def _integer(name: str, default: int, low: int, high: int) -> int:
    raw = _single(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        raise BadParameter(f"{name}: must be a whole number from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise BadParameter(f"{name}: must be a whole number from {low} to {high}")
    return value


def _paging() -> tuple[int, int, str | None]:
    k = _integer("k", DEFAULT_K, 1, serving.MAX_SLATE_ITEMS)
    offset = _integer("offset", 0, 0, serving.MAX_SLATE_ITEMS - 1)
    raw_slate = _single("slate_id")
    if raw_slate is None:
        return k, offset, None
    try:
        return k, offset, str(uuid.UUID(raw_slate[:45]))
    except ValueError:
        raise BadParameter("slate_id: must be a UUID") from None


def _subject() -> tuple[User | None, int, str]:
    """The student whose slate is asked for: (user, 200, "") or (None, status, why not)."""
    # Checked as a number before whose it is: "abc" is a bad parameter, "05" a student's own 5.
    user_id = _integer("user_id", 0, 1, 2**31 - 1)
    if current_user.role == Role.STUDENT.value:
        if user_id and user_id != current_user.id:
            return None, 403, "user_id: students may only read their own recommendations"
        return current_user, 200, ""
    if not user_id:
        raise BadParameter("user_id: required for an admin")
    user = db.session.get(User, user_id)
    if user is None or user.role != Role.STUDENT.value:
        return None, 404, f"user_id: no student {user_id}"
    return user, 200, ""


def _as_stored(body: dict, stored: dict[int, tuple[int, str]]) -> None:
    """The page as stored: a card a concurrent request for the same slate stored first keeps the
    place and source it was stored with, and a card that found no place is left out (its events
    would be refused)."""
    items = [
        {
            **item,
            "position": stored[item["challenge_id"]][0],
            "source": stored[item["challenge_id"]][1],
        }
        for item in body["items"]
        if item["challenge_id"] in stored
    ]
    if items == body["items"]:
        return
    body["items"] = sorted(items, key=lambda item: item["position"])
    if body["next_offset"] is not None and items:
        following = max(item["position"] for item in items) + 1
        body["next_offset"] = (
            max(body["next_offset"], following) if following < serving.MAX_SLATE_ITEMS else None
        )


def _slate_json(slate: serving.Slate) -> dict:
    return {
        "slate_id": slate.slate_id,
        "source": slate.source,
        "model_version": slate.model_version,
        "arm": slate.arm,
        "items": [
            {
                "challenge_id": item.challenge_id,
                "title": item.challenge.title,
                "url": url_for(
                    "challenges.detail", challenge_id=item.challenge_id, slate=slate.slate_id
                ),
                "score": round(float(item.score), 6),
                "reason": item.reason,
                "source": item.source,
                "position": item.position,
            }
            for item in slate.items
        ],
        "next_offset": slate.next_offset if slate.has_more else None,
    }
