"""The one place that writes recommendation events: impressions, clicks, dismisses, restores and
joins."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, func, insert, literal, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.models import (
    SOURCES,
    Challenge,
    ChallengeStatus,
    RecommendationEvent,
    RecommendationSlate,
    RecommendationSlateCard,
    User,
    utcnow,
)
from app.recs.eligibility import dismissal_stands

log = logging.getLogger(__name__)

# A join counts as coming from a slate when the student clicked that slate's card this recently.
ATTRIBUTION_WINDOW = timedelta(hours=24)
# How long after the upgrade an API slate served before it (no stored cards) still takes events.
UNCHECKED_SLATE_WINDOW = timedelta(hours=24)


def owned_slate(user_id: int, slate_id: str | None) -> RecommendationSlate | None:
    if not slate_id or len(slate_id) > 36:
        return None
    slate = db.session.get(RecommendationSlate, slate_id)
    return slate if slate is not None and slate.user_id == user_id else None


def record_click(user_id: int, challenge_id: int, slate_id: str) -> bool:
    """Record a click once per (slate, challenge); ignores slates that are not this user's."""
    slate = owned_slate(user_id, slate_id)
    if slate is None:
        log.info("click ignored: slate %r is not user %s's", slate_id[:40], user_id)
        return False
    already = db.session.scalar(
        select(RecommendationEvent.id).where(
            RecommendationEvent.slate_id == slate.id,
            RecommendationEvent.type == "click",
            RecommendationEvent.challenge_id == challenge_id,
        )
    )
    if already is not None:
        return False
    shown = _impression(slate.id, challenge_id)
    if shown is None:
        log.info("click ignored: challenge %s was not served in slate %s", challenge_id, slate.id)
        return False
    click = {
        # Deterministic id: two racing requests for the same click collapse on the unique key.
        "event_id": natural_event_id("click", slate.id, challenge_id),
        "user_id": user_id,
        "challenge_id": challenge_id,
        "type": "click",
        "slate_id": slate.id,
        "position": shown.position,
        "source": shown.source,
        "model_version": slate.model_version,
        "arm": slate.arm,
        "created_at": utcnow(),
    }
    if shown.api_card:
        # Checked one after the other with the student's event batches, which may be reporting
        # this very impression under the client's own id at the same moment.
        _serialize_student(user_id)
        if not _has_impression(slate.id, challenge_id):
            # An API page's card whose impression its client never reported: clicked, so shown.
            _insert_ignoring_duplicates([_impression_of(click)])
    db.session.add(RecommendationEvent(**click))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def _has_impression(slate_id: str, challenge_id: int) -> bool:
    """Whether any impression of this card is stored: the server's, or one its client reported
    under the client's own event id (a card counts once per slate, whoever reported it)."""
    return (
        db.session.scalar(
            select(RecommendationEvent.id)
            .where(
                RecommendationEvent.slate_id == slate_id,
                RecommendationEvent.type == "impression",
                RecommendationEvent.challenge_id == challenge_id,
            )
            .limit(1)
        )
        is not None
    )


def attribution_for_join(user_id: int, challenge_id: int) -> tuple[str | None, str | None]:
    """The slate (and its card's source) of the student's latest recent click on this challenge
    since they last joined it: leaving and joining again without a new click credits no slate,
    however many slates the student clicked the card in before."""
    last_join = (
        select(func.max(RecommendationEvent.created_at))
        .where(
            RecommendationEvent.user_id == user_id,
            RecommendationEvent.challenge_id == challenge_id,
            RecommendationEvent.type == "join",
        )
        .scalar_subquery()
    )
    row = db.session.execute(
        select(RecommendationEvent.slate_id, RecommendationEvent.source)
        .where(
            RecommendationEvent.user_id == user_id,
            RecommendationEvent.challenge_id == challenge_id,
            RecommendationEvent.type == "click",
            RecommendationEvent.created_at >= utcnow() - ATTRIBUTION_WINDOW,
            or_(last_join.is_(None), RecommendationEvent.created_at > last_join),
        )
        .order_by(RecommendationEvent.created_at.desc(), RecommendationEvent.id.desc())
        .limit(1)
    ).first()
    return (row.slate_id, row.source) if row else (None, None)


def record_join(user_id: int, challenge_id: int, slate_id: str | None, source: str | None) -> None:
    """A ``join`` event, so online metrics read joins from the same table as impressions."""
    slate = owned_slate(user_id, slate_id)
    db.session.add(
        RecommendationEvent(
            event_id=str(uuid.uuid4()),
            user_id=user_id,
            challenge_id=challenge_id,
            type="join",
            slate_id=slate.id if slate else None,
            source=source,
            model_version=slate.model_version if slate else None,
            arm=slate.arm if slate else None,
        )
    )
    db.session.commit()


# --- impressions and dismissals written by the web layer ------------------------------------------


def natural_event_id(kind: str, *key: object) -> str:
    """Deterministic ids for server-written events, so a reload collapses on the unique key.
    Keyed with the app's secret: a client that could compute another student's dismiss id could
    post it first (as any event of its own) and silently swallow that student's dismissal."""
    message = ":".join([kind, *map(str, key)]).encode()
    digest = hmac.new(current_app.config["SECRET_KEY"].encode(), message, hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def served_places(slate_id: str) -> dict[int, tuple[int, str | None]]:
    """challenge id -> (position, source) this slate served it with: its impressions (the
    server's, and the ones clients reported, which take the stored card's) and the JSON API's
    cards."""
    impressions = select(
        RecommendationEvent.challenge_id, RecommendationEvent.position, RecommendationEvent.source
    ).where(
        RecommendationEvent.slate_id == slate_id,
        RecommendationEvent.type == "impression",
        RecommendationEvent.position.is_not(None),
    )
    cards = select(
        RecommendationSlateCard.challenge_id,
        RecommendationSlateCard.position,
        RecommendationSlateCard.source,
    ).where(RecommendationSlateCard.slate_id == slate_id)
    places = {int(c): (int(p), source) for c, p, source in db.session.execute(impressions)}
    places.update({int(c): (int(p), source) for c, p, source in db.session.execute(cards)})
    return places


def shown_in_slate(slate_id: str, before_position: int) -> set[int]:
    """Challenges this slate already showed at positions before ``before_position``."""
    if before_position <= 0:
        return set()
    impressions = select(RecommendationEvent.challenge_id).where(
        RecommendationEvent.slate_id == slate_id,
        RecommendationEvent.type == "impression",
        RecommendationEvent.position < before_position,
    )
    # An API client may not have reported its impressions (yet): what the pages served counts.
    served = select(RecommendationSlateCard.challenge_id).where(
        RecommendationSlateCard.slate_id == slate_id,
        RecommendationSlateCard.position < before_position,
    )
    return set(db.session.scalars(impressions.union(served)))


# Dialects whose INSERT can skip rows that hit a unique key (``ON CONFLICT DO NOTHING``).
_INSERTS_IGNORING_DUPLICATES = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
_EVENTS = RecommendationEvent.__table__


def _insert_new(rows: list[dict]) -> int:
    """Insert the rows whose ``event_id`` is new and commit, all or nothing; returns how many
    were stored. Rows a concurrent writer stored first are skipped by the unique key itself."""
    if not rows:
        return 0
    try:
        stored = _insert_ignoring_duplicates(rows)
        db.session.commit()
    except IntegrityError as exc:
        # Not a repeated event_id (skipped above): a challenge or student deleted meanwhile.
        db.session.rollback()
        log.warning("events not stored: %d rows refused: %s", len(rows), exc.orig)
        return 0
    return stored


def _insert_ignoring_duplicates(rows: list[dict]) -> int:
    if not rows:
        return 0
    dialect_insert = _INSERTS_IGNORING_DUPLICATES.get(db.session.get_bind().dialect.name)
    if dialect_insert is None:
        existing = set(
            db.session.scalars(
                select(_EVENTS.c.event_id).where(
                    _EVENTS.c.event_id.in_([r["event_id"] for r in rows])
                )
            )
        )
        fresh = [r for r in rows if r["event_id"] not in existing]
        if fresh:
            db.session.execute(insert(_EVENTS), fresh)
        return len(fresh)
    statement = (
        dialect_insert(_EVENTS)
        .on_conflict_do_nothing(index_elements=[_EVENTS.c.event_id])
        .returning(_EVENTS.c.event_id)
    )
    # One executemany: the dialect turns it into multi-row INSERTs, RETURNING what was new.
    return len(db.session.execute(statement, rows).all())


def _impression_rows(user_id: int, slate) -> list[dict]:
    return [
        {
            "event_id": natural_event_id("impression", slate.slate_id, item.challenge_id),
            "user_id": user_id,
            "challenge_id": item.challenge_id,
            "type": "impression",
            "slate_id": slate.slate_id,
            "position": item.position,
            "source": item.source,
            "model_version": slate.model_version,
            "arm": slate.arm,
            "created_at": utcnow(),
        }
        for item in slate.items
    ]


def record_impressions(user_id: int, slate) -> int:
    """One ``impression`` per card of a rendered ``serving.Slate`` page; returns the new count."""
    return _insert_new(_impression_rows(user_id, slate))


def _slate_row(user_id: int, slate, created_at: datetime) -> dict:
    return {
        "id": slate.slate_id,
        "user_id": user_id,
        "source": slate.source,
        "model_version": slate.model_version,
        "arm": slate.arm,
        "created_at": created_at,
    }


def record_page(user_id: int, slate, new_slate: bool) -> int:
    """A rendered page: the slate's row when the page starts a slate (and shows something), and
    one impression per card, in one transaction; returns the number of new impressions."""
    rows = _impression_rows(user_id, slate)
    if not (new_slate and rows):
        return _insert_new(rows)
    db.session.execute(
        insert(RecommendationSlate.__table__), [_slate_row(user_id, slate, utcnow())]
    )
    # The slate is new, so none of its impressions can be stored yet: no duplicate to skip.
    db.session.execute(insert(_EVENTS), rows)
    db.session.commit()
    return len(rows)


def was_served(user_id: int, slate_id: str | None, challenge_id: int) -> bool:
    """Whether the server put this challenge on a slate of this student's."""
    return served_card(user_id, slate_id, challenge_id) is not None


@dataclass(frozen=True)
class _Dismissal:
    """A student's dismisses and restores of one challenge: the latest of each, and whether a
    dismissal stands (no restore at or after it)."""

    dismissed_at: datetime | None
    restored_at: datetime | None

    @property
    def latest(self) -> datetime | None:
        return max(filter(None, (self.dismissed_at, self.restored_at)), default=None)

    @property
    def stands(self) -> bool:
        return self.dismissed_at is not None and (
            self.restored_at is None or self.restored_at < self.dismissed_at
        )


def has_dismissed(user_id: int, challenge_id: int) -> bool:
    """Whether the student ever marked this challenge "not interested" (restored or not)."""
    return _dismissal(user_id, challenge_id).latest is not None


def served_card(user_id: int, slate_id: str | None, challenge_id: int):
    """(position, source, api_card) of this challenge's card in a slate of this student's, or
    None when that slate is not theirs or never served it."""
    slate = owned_slate(user_id, slate_id)
    return _impression(slate.id, challenge_id) if slate is not None else None


def _dismissal(user_id: int, challenge_id: int) -> _Dismissal:
    rows = db.session.execute(
        select(RecommendationEvent.type, RecommendationEvent.created_at).where(
            RecommendationEvent.user_id == user_id,
            RecommendationEvent.challenge_id == challenge_id,
            RecommendationEvent.type.in_(("dismiss", "restore")),
        )
    ).all()
    return _Dismissal(
        dismissed_at=max((at for kind, at in rows if kind == "dismiss"), default=None),
        restored_at=max((at for kind, at in rows if kind == "restore"), default=None),
    )


def record_dismiss(user_id: int, challenge_id: int, slate_id: str | None = None) -> bool:
    """Record "not interested" once per (student, challenge), with the slate if it is theirs;
    again after the student restored it, once per restore."""
    slate = owned_slate(user_id, slate_id)
    shown = _impression(slate.id, challenge_id) if slate else None
    if shown is None:
        slate = None  # not a card of that slate: the dismissal stands, credited to no slate
    before = _dismissal(user_id, challenge_id)
    if before.stands:
        return False
    # The first dismissal keeps the id it always had; a later one is keyed by the restore it
    # follows, so a double click still stores one. (Not by how many restores there were: the
    # purge deletes old pairs, and a count could then repeat the id of a dismissal it kept.)
    key = (user_id, challenge_id)
    if before.restored_at is not None:
        key += ("after", before.restored_at.isoformat())
    row = {
        "event_id": natural_event_id("dismiss", *key),
        "user_id": user_id,
        "challenge_id": challenge_id,
        "type": "dismiss",
        "slate_id": slate.id if slate else None,
        "position": shown.position if shown else None,
        "source": shown.source if shown else None,
        "model_version": slate.model_version if slate else None,
        "arm": slate.arm if slate else None,
        # Strictly after the restore it follows, whatever another server's clock says.
        "created_at": _after(before.latest, strictly=True),
    }
    return _insert_new([row]) == 1


def record_restore(user_id: int, challenge_id: int) -> bool:
    """Take back the student's standing "not interested" of this challenge by storing a
    ``restore`` (the dismiss stays on record); False when none stands (already restored, a
    double click, or never dismissed)."""
    before = _dismissal(user_id, challenge_id)
    if not before.stands:
        return False
    row = {
        # One restore per dismissal: a double click collapses on the unique key.
        "event_id": natural_event_id(
            "restore", user_id, challenge_id, "of", before.dismissed_at.isoformat()
        ),
        "user_id": user_id,
        "challenge_id": challenge_id,
        "type": "restore",
        "created_at": _after(before.latest, strictly=False),
    }
    stored = _insert_new([row]) == 1
    if stored:
        log.info("dismissal restored: user_id=%s challenge_id=%s", user_id, challenge_id)
    return stored


def _after(moment: datetime | None, strictly: bool) -> datetime:
    """Now, or ``moment`` (plus a microsecond when ``strictly``) when a clock says otherwise:
    which of a dismiss and a restore came last is read from their ``created_at``."""
    now = utcnow()
    if moment is None:
        return now
    return max(now, moment + timedelta(microseconds=1) if strictly else moment)


def standing_dismissals(user_id: int) -> list[tuple[Challenge, datetime]]:
    """The student's challenges marked "not interested" and not restored, each once with its
    latest such moment, newest first; drafts left out (not public, and never recommended)."""
    latest = (
        select(
            RecommendationEvent.challenge_id,
            func.max(RecommendationEvent.created_at).label("dismissed_at"),
        )
        .where(
            RecommendationEvent.user_id == user_id,
            RecommendationEvent.type == "dismiss",
            dismissal_stands(),
        )
        .group_by(RecommendationEvent.challenge_id)
        .subquery()
    )
    return db.session.execute(
        select(Challenge, latest.c.dismissed_at)
        .join(latest, latest.c.challenge_id == Challenge.id)
        .where(Challenge.status != ChallengeStatus.DRAFT.value)
        .options(joinedload(Challenge.category))
        .order_by(latest.c.dismissed_at.desc(), Challenge.id.desc())
    ).all()


def _impression(slate_id: str, challenge_id: int):
    """(position, source, api_card) of a card the server served in this slate, or None: the
    server's own impression (its id is keyed with the app's secret, so no client can have written
    it), else the card the JSON API stored (``api_card``); never an impression a client reported."""
    shown = db.session.execute(
        select(
            RecommendationEvent.position,
            RecommendationEvent.source,
            literal(False).label("api_card"),
        ).where(
            RecommendationEvent.event_id == natural_event_id("impression", slate_id, challenge_id)
        )
    ).first()
    if shown is not None:
        return shown
    return db.session.execute(
        select(
            RecommendationSlateCard.position,
            RecommendationSlateCard.source,
            literal(True).label("api_card"),
        ).where(
            RecommendationSlateCard.slate_id == slate_id,
            RecommendationSlateCard.challenge_id == challenge_id,
        )
    ).first()


def save_api_page(
    user_id: int, slate, new_slate: bool, created_at: datetime, places: int = 60
) -> dict[int, tuple[int, str]]:
    """A JSON API page: the slate's row when the page starts it, and the cards it served (what
    the client's events are checked against), in one transaction. Returns each card's stored
    place (see ``save_cards``); ``places``: how many a slate has."""
    if new_slate:
        db.session.execute(
            insert(RecommendationSlate.__table__), [_slate_row(user_id, slate, created_at)]
        )
    stored = save_cards(slate, places)
    db.session.commit()
    return stored


# A card whose place a concurrent page of the same slate took is placed again at most this often.
PLACE_ATTEMPTS = 3


def save_cards(slate, places: int = 60) -> dict[int, tuple[int, str]]:
    """Add the cards of a JSON API page (``serving.Slate``), once each, to the session's
    transaction (the caller commits). Returns challenge id -> (place, source) each is stored with:
    the page's own, or, when a concurrent request for the same slate stored another card there
    first (a retry racing the original), the next free place below ``places``; a card left
    without one is not in the answer."""
    page = [item.challenge_id for item in slate.items]
    wanted = {item.challenge_id: (item.position, item.source) for item in slate.items}
    if not wanted:
        return {}
    table = RecommendationSlateCard.__table__
    stored: dict[int, tuple[int, str]] = {}
    for _attempt in range(PLACE_ATTEMPTS):
        _insert_cards(slate.slate_id, wanted)
        stored = {
            challenge: (position, source)
            for challenge, position, source in db.session.execute(
                select(table.c.challenge_id, table.c.position, table.c.source).where(
                    table.c.slate_id == slate.slate_id, table.c.challenge_id.in_(page)
                )
            )
        }
        unplaced = [c for c in page if c not in stored]
        if not unplaced:
            break
        taken = set(
            db.session.scalars(select(table.c.position).where(table.c.slate_id == slate.slate_id))
        )
        free = (p for p in range(places) if p not in taken)
        wanted = {
            challenge: (place, wanted[challenge][1])
            for challenge, place in zip(unplaced, free, strict=False)
        }
        if not wanted:
            break
    return stored


def _insert_cards(slate_id: str, wanted: dict[int, tuple[int, str]]) -> None:
    """Insert the cards, skipping one already stored and one whose place is already taken."""
    table = RecommendationSlateCard.__table__
    rows = [
        {"slate_id": slate_id, "challenge_id": challenge, "position": place, "source": source}
        for challenge, (place, source) in wanted.items()
    ]
    dialect_insert = _INSERTS_IGNORING_DUPLICATES.get(db.session.get_bind().dialect.name)
    if dialect_insert is None:  # other databases: insert only the cards not stored yet
        stored = set(
            db.session.scalars(select(table.c.challenge_id).where(table.c.slate_id == slate_id))
        )
        taken = set(
            db.session.scalars(select(table.c.position).where(table.c.slate_id == slate_id))
        )
        rows = [r for r in rows if r["challenge_id"] not in stored and r["position"] not in taken]
        if rows:
            db.session.execute(insert(table), rows)
        return
    db.session.execute(dialect_insert(table).on_conflict_do_nothing(), rows)


# --- POST /recommendations/event: validation and the all-or-nothing batch insert -----------------

CLIENT_EVENT_TYPES = ("impression", "click", "dismiss")
# ``position`` and ``source`` are accepted, but the card as the server served it is what is stored.
EVENT_FIELDS = ("event_id", "type", "challenge_id", "slate_id", "position", "source")
REQUIRED_FIELDS = ("event_id", "type", "challenge_id", "slate_id")
MAX_ROW_ID = (
    2**31 - 1
)  # the INTEGER column's range: a larger id must be a 400, not a database error
MAX_POSITION = 10_000
MAX_PROBLEMS = 20
_DIGITS = re.compile(r"[0-9]{1,10}")


class InvalidEvents(ValueError):
    """The payload is rejected as a whole; ``problems`` name each field that is wrong."""

    def __init__(self, problems: list[str]):
        self.problems = problems[:MAX_PROBLEMS]
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class IncomingEvent:
    event_id: str
    type: str
    challenge_id: int
    slate_id: str
    position: int | None
    source: str | None = None
    where: str = ""  # "events[3]." in a batch, for error messages


def _uuid(value, _text_numbers: bool) -> str:
    if not isinstance(value, str) or len(value) > 45:
        raise ValueError("must be a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("must be a UUID string") from None


def _integer(value, text_numbers: bool, low: int, high: int) -> int:
    if isinstance(value, str) and text_numbers and _DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}")
    return value


def _source(value, _text_numbers: bool) -> str:
    if value not in SOURCES:
        raise ValueError(f"must be one of {', '.join(SOURCES)}")
    return value


def _event_type(value, _text_numbers: bool) -> str:
    if value not in CLIENT_EVENT_TYPES:
        raise ValueError(f"must be one of {', '.join(CLIENT_EVENT_TYPES)}")
    return value


_CHECKS = {
    "event_id": _uuid,
    "type": _event_type,
    "challenge_id": lambda v, t: _integer(v, t, 1, MAX_ROW_ID),
    "slate_id": _uuid,
    "position": lambda v, t: _integer(v, t, 0, MAX_POSITION - 1),
    "source": _source,
}


def _parse_one(raw, where: str, text_numbers: bool) -> tuple[IncomingEvent | None, list[str]]:
    if not isinstance(raw, dict):
        # ``where`` is a prefix for the event's fields ("events[0]."); the item itself is named
        # as the other problems name a field ("events[0]: ...").
        named = f"{where.removesuffix('.')}: " if where else "body: "
        return None, [f"{named}must be an object with {', '.join(EVENT_FIELDS)}"]
    problems = []
    unknown = sorted(str(key)[:40] for key in raw if key not in EVENT_FIELDS)
    if unknown:
        problems.append(f"{where}unknown field(s): {', '.join(unknown[:5])}")
    values = {}
    for name, check in _CHECKS.items():
        if raw.get(name) is None:
            if name in REQUIRED_FIELDS:
                problems.append(f"{where}{name}: required")
            continue
        try:
            values[name] = check(raw[name], text_numbers)
        except ValueError as exc:
            problems.append(f"{where}{name}: {exc}")
    if problems:
        return None, problems
    optional = {name: values.pop(name, None) for name in ("position", "source")}
    return IncomingEvent(**optional, where=where, **values), []


def _batch_items(payload: dict, limit: int) -> list:
    extra = sorted(str(key)[:40] for key in payload if key != "events")
    if extra:
        raise InvalidEvents([f"unknown field(s) next to events: {', '.join(extra[:5])}"])
    items = payload["events"]
    if not isinstance(items, list):
        raise InvalidEvents(["events: must be a list"])
    if not items:
        raise InvalidEvents(["events: must not be empty"])
    if len(items) > limit:
        raise InvalidEvents([f"events: {len(items)} events in one batch; the limit is {limit}"])
    return items


def parse_events(payload, limit: int, text_numbers: bool = False) -> list[IncomingEvent]:
    """One event or ``{"events": [...]}`` -> events; ``text_numbers`` accepts "12" (form bodies)."""
    if not isinstance(payload, dict):
        raise InvalidEvents(['body: must be one event object or {"events": [...]}'])
    batch = "events" in payload
    items = _batch_items(payload, limit) if batch else [payload]
    parsed, problems, seen = [], [], set()
    for i, raw in enumerate(items):
        event, errors = _parse_one(raw, f"events[{i}]." if batch else "", text_numbers)
        problems += errors
        if event is not None and event.event_id in seen:
            problems.append(f"{event.where}event_id: repeated in this batch")
        elif event is not None:
            seen.add(event.event_id)
            parsed.append(event)
    if problems:
        raise InvalidEvents(problems)
    return parsed


@dataclass(frozen=True)
class _Recorded:
    """What the database holds for a batch: the student's slates it names, the natural keys
    already stored, and (slate, challenge) -> (position, source) of the server's impressions."""

    slates: dict[str, tuple]
    keys: set[tuple]
    impressions: dict[tuple, tuple]
    unchecked: set[str]  # slates with nothing to check events against (see _recorded)


def _recorded(user_id: int, incoming: list[IncomingEvent]) -> _Recorded:
    """The batch's slates (this student's only) with their impressions and clicks of the batch's
    challenges, in one query. Only for pairs the server's impressions do not cover: the cards
    API pages served, then whether a slate without cards ever had a server impression. The
    student's dismissals only when the batch dismisses."""
    challenge_ids = {e.challenge_id for e in incoming}
    shown = (
        select(
            RecommendationSlate.id,
            RecommendationSlate.source,
            RecommendationSlate.model_version,
            RecommendationSlate.arm,
            RecommendationEvent.type,
            RecommendationEvent.challenge_id,
            RecommendationEvent.position,
            RecommendationEvent.source.label("card_source"),
            RecommendationEvent.event_id,
        )
        .outerjoin(
            RecommendationEvent,
            and_(
                RecommendationEvent.slate_id == RecommendationSlate.id,
                RecommendationEvent.type.in_(("impression", "click")),
                RecommendationEvent.challenge_id.in_(challenge_ids),
            ),
        )
        .where(
            RecommendationSlate.id.in_({e.slate_id for e in incoming}),
            RecommendationSlate.user_id == user_id,
        )
    )
    found = _Recorded({}, set(), {}, set())
    for row in db.session.execute(shown):
        slate_id, challenge_id = row.id, row.challenge_id
        found.slates[slate_id] = (row.source, row.model_version, row.arm)
        if row.type is not None:
            found.keys.add((row.type, slate_id, challenge_id))
        # Only the server's own impressions say what a slate showed; a client's could say anything.
        if row.type == "impression" and _is_servers(row.event_id, slate_id, challenge_id):
            found.impressions[(slate_id, challenge_id)] = (row.position, row.card_source)
    uncovered = _uncovered(incoming, found)
    if uncovered:
        _add_api_cards(found, uncovered)
        _mark_unchecked(found, {slate for slate, _ in _uncovered(incoming, found)})
    if any(e.type == "dismiss" for e in incoming):
        # A dismissal the student restored is no duplicate: "not interested" again stands again.
        dismissed = db.session.scalars(
            select(RecommendationEvent.challenge_id).where(
                RecommendationEvent.user_id == user_id,
                RecommendationEvent.type == "dismiss",
                RecommendationEvent.challenge_id.in_(challenge_ids),
                dismissal_stands(),
            )
        )
        found.keys.update(("dismiss", None, challenge_id) for challenge_id in dismissed)
    return found


def _is_servers(event_id: str, slate_id: str, challenge_id: int) -> bool:
    return event_id == natural_event_id("impression", slate_id, challenge_id)


def _uncovered(incoming: list[IncomingEvent], found: _Recorded) -> set[tuple[str, int]]:
    return {
        (e.slate_id, e.challenge_id)
        for e in incoming
        if e.slate_id in found.slates and (e.slate_id, e.challenge_id) not in found.impressions
    }


def _add_api_cards(found: _Recorded, pairs: set[tuple[str, int]]) -> None:
    cards = select(
        RecommendationSlateCard.slate_id,
        RecommendationSlateCard.challenge_id,
        RecommendationSlateCard.position,
        RecommendationSlateCard.source,
    ).where(
        RecommendationSlateCard.slate_id.in_({slate for slate, _ in pairs}),
        RecommendationSlateCard.challenge_id.in_({challenge for _, challenge in pairs}),
    )
    for slate_id, challenge_id, position, card_source in db.session.execute(cards):
        found.impressions[(slate_id, challenge_id)] = (position, card_source)


def _mark_unchecked(found: _Recorded, slates: set[str]) -> None:
    """Slates served, in the last day, before the server kept what API pages served: no stored
    card and no impression of the server's own. Nothing to check their events against, so they
    are taken as before, without a position or source. (A page slate has the server's
    impressions; a newer API slate has cards.)"""
    # Only slates of the last day: a slate from before the upgrade is stale after that, and one
    # whose events were purged must not become a slate that takes anything.
    recent = utcnow() - UNCHECKED_SLATE_WINDOW
    slates = (
        set(
            db.session.scalars(
                select(RecommendationSlate.id).where(
                    RecommendationSlate.id.in_(slates), RecommendationSlate.created_at >= recent
                )
            )
        )
        if slates
        else set()
    )
    if not slates:
        return
    has_cards = set(
        db.session.scalars(
            select(RecommendationSlateCard.slate_id)
            .where(RecommendationSlateCard.slate_id.in_(slates))
            .distinct()
        )
    )
    shown = db.session.execute(
        select(
            RecommendationEvent.slate_id,
            RecommendationEvent.challenge_id,
            RecommendationEvent.event_id,
        ).where(
            RecommendationEvent.slate_id.in_(slates - has_cards),
            RecommendationEvent.type == "impression",
        )
    )
    servers = {slate for slate, challenge, event in shown if _is_servers(event, slate, challenge)}
    found.unchecked.update(slates - has_cards - servers)


def _check_references(incoming: list[IncomingEvent], recorded: _Recorded) -> None:
    statuses = dict(
        db.session.execute(
            select(Challenge.id, Challenge.status).where(
                Challenge.id.in_({e.challenge_id for e in incoming})
            )
        ).all()
    )
    problems = []
    for e in incoming:
        status = statuses.get(e.challenge_id)
        if e.slate_id not in recorded.slates:
            problems.append(f"{e.where}slate_id: no slate {e.slate_id} was shown to you")
        elif status is None or (
            # A card taken back to draft after its slate was served still happened to the
            # student; a draft they were never served stays unknown to them.
            status == ChallengeStatus.DRAFT.value
            and (e.slate_id, e.challenge_id) not in recorded.impressions
        ):
            problems.append(f"{e.where}challenge_id: no challenge {e.challenge_id}")
        elif (
            (e.slate_id, e.challenge_id) not in recorded.impressions
            and e.slate_id not in recorded.unchecked
            # "Not interested" stands whatever slate it names; it is just not credited to one.
            and e.type != "dismiss"
        ):
            problems.append(
                f"{e.where}challenge_id: challenge {e.challenge_id} is not a card of slate "
                f"{e.slate_id}"
            )
    if problems:
        raise InvalidEvents(problems)


def _natural_key(event: IncomingEvent) -> tuple:
    # A card counts once per slate; "not interested" counts once per student and challenge.
    return (event.type, None if event.type == "dismiss" else event.slate_id, event.challenge_id)


def _event_row(user_id: int, e: IncomingEvent, recorded: _Recorded, now: datetime) -> dict:
    _, model_version, arm = recorded.slates[e.slate_id]
    # Where the server put the card, and where it came from: not what the client says.
    served = recorded.impressions.get((e.slate_id, e.challenge_id))
    slate_id = e.slate_id if served is not None or e.slate_id in recorded.unchecked else None
    shown_position, shown_source = served or (None, None)
    return {
        "event_id": e.event_id,
        "user_id": user_id,
        "challenge_id": e.challenge_id,
        "type": e.type,
        "slate_id": slate_id,
        "position": shown_position,
        "source": shown_source,
        "model_version": model_version if slate_id else None,
        "arm": arm if slate_id else None,
        "created_at": now,
    }


def store_events(user_id: int, incoming: list[IncomingEvent]) -> tuple[int, int]:
    """Validate references and insert the batch in one transaction: (stored, duplicates).

    Raises ``InvalidEvents`` (nothing stored) when a slate is not this student's or a challenge does
    not exist. Duplicates are events whose ``event_id`` or natural key is already stored.
    """
    _serialize_student(user_id)
    recorded = _recorded(user_id, incoming)
    _check_references(incoming, recorded)
    now, rows, implied = utcnow(), [], []
    for e in incoming:
        if _natural_key(e) in recorded.keys:
            continue
        recorded.keys.add(_natural_key(e))
        row = _event_row(user_id, e, recorded, now)
        if e.type == "dismiss":
            # Strictly after a restore it follows, as ``record_dismiss`` dates it: one dated as
            # late (the same microsecond, or another server's clock ahead) would take it back.
            row["created_at"] = _after(_dismissal(user_id, e.challenge_id).latest, strictly=True)
        rows.append(row)
        if e.type == "click" and row["position"] is not None:
            implied.extend(_implied_impression(row, recorded))
    try:
        # Not counted in the answer: the client did not send them.
        _insert_ignoring_duplicates(implied)
    except IntegrityError:
        db.session.rollback()
    stored = _insert_new(rows)
    return stored, len(incoming) - stored


def _serialize_student(user_id: int) -> None:
    """Take the student's row lock before looking for duplicates: two batches of one student's
    sent at once are then checked one after the other, so an event both carry (under different
    ids) is stored once. On SQLite a no-op write takes the database's write lock, which the
    batch's insert needs anyway."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(select(User.id).where(User.id == user_id).with_for_update())
    else:
        db.session.execute(text("UPDATE users SET id = id WHERE id = :id"), {"id": user_id})


def _implied_impression(click: dict, recorded: _Recorded) -> list[dict]:
    """A click on a served card whose impression was never reported (an API client that skipped
    it) shows the card was displayed: its impression is stored too, under the server's own id, so
    clicks never outnumber impressions."""
    key = ("impression", click["slate_id"], click["challenge_id"])
    if key in recorded.keys:
        return []
    recorded.keys.add(key)
    return [_impression_of(click)]


def _impression_of(click: dict) -> dict:
    """The impression a click implies, under the server's own id."""
    return {
        **click,
        "event_id": natural_event_id("impression", click["slate_id"], click["challenge_id"]),
        "type": "impression",
    }
