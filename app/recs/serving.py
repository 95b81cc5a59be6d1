"""``get_recommendations``: one slate type whatever the source; each item keeps the one that
placed it:

- ``model``: the published version's precomputed rows for the student;
- ``fresh``: that version's model re-scoring the student from their current interactions
  (fold-in, ``foldin.py``), instead of the rows when the student joined, left, clicked or
  dismissed something after the version's data was read, or has interactions but no rows;
- ``content``: cold challenges (fewer than ``RECS_COLD_PARTICIPATIONS`` participations) that
  resemble one the student joined (``content.py``). They are pinned at the positions
  ``RECS_CONTENT_POSITIONS`` of the ranked list a page is cut from, the most similar first, when
  their similarity reaches ``RECS_CONTENT_MIN_SIMILARITY``; other sources fill the other places;
- ``heuristic``: the fallback scorer, topping up whatever is still missing.

``_providers_for_arm`` is the one place where an experiment arm decides what a student is served.
Providers pick challenge ids from rows and per-process arrays; the page's challenges are loaded
once, in one query that checks their eligibility again, and only then explained.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from typing import NamedTuple, TypeVar

from flask import current_app
from sqlalchemy import and_, bindparam, select

from app.extensions import db
from app.models import (
    Challenge,
    ModelRun,
    RecommendationSlate,
    RecommendationState,
    User,
    UserRecommendation,
    utcnow,
)
from app.recs import content, events, foldin, heuristic
from app.recs.eligibility import (  # noqa: F401  (re-exported for the pipeline and the admin)
    Fingerprint,
    UserHistory,
    catalogue_fingerprint,
    eligible_challenges,
    excluded_challenge_ids,
    is_eligible,
    is_open,
    load_challenges,
    load_open_challenges,
    load_user_history,
    open_challenge_ids,
)
from app.recs.pipeline import top_n

# "Show more" stops here: past a few pages a slate is browsing, which the list page does better.
MAX_SLATE_ITEMS = 60
MODEL_REASON = "Students with interests like yours joined this"
# A slate is labelled with the most specific source among the cards of its first page.
SLATE_SOURCE_ORDER = ("fresh", "model", "content", "heuristic")
MODEL_SOURCES = frozenset({"model", "fresh"})
STATE_ID = 1
# A page whose cards closed since a cached catalogue was read is ranked again without them; past
# this many rounds the page is served short rather than looping on a catalogue in flux.
MAX_RANKING_ROUNDS = 3


@dataclass(frozen=True)
class SlateItem:
    challenge: Challenge
    challenge_id: int
    score: float
    reason: str
    source: str
    position: int  # absolute in the slate: the first card of "show more" continues the count


@dataclass(frozen=True)
class Slate:
    slate_id: str
    source: str
    model_version: str | None
    arm: str | None
    items: list[SlateItem] = field(default_factory=list)
    offset: int = 0
    has_more: bool = False

    @property
    def next_offset(self) -> int:
        """Where the next page starts: past this page's cards, which a page asked for again may
        hold at places past its own (``_placed``), so the next page skips them too."""
        return max([self.offset + len(self.items)] + [item.position + 1 for item in self.items])


class UnknownSlate(LookupError):
    """The slate id does not exist or belongs to another student."""


@dataclass(frozen=True)
class _Candidate:
    challenge: Challenge
    score: float
    reason: str
    source: str
    slot: int | None = None  # a fixed position in the ranked list; None fills in order


@dataclass(frozen=True)
class _Pick:
    """A provider's choice before the page's challenges are loaded; ``explain`` phrases its reason
    from the loaded challenge."""

    challenge_id: int
    score: float
    source: str
    explain: Callable[[Challenge], str]
    slot: int | None = None  # as in ``_Candidate``


@dataclass
class _Request:
    user_id: int
    history: UserHistory
    now: datetime
    model_version: str | None = None
    # A continued slate keeps the version it started with (None: it had no model cards), so a
    # version published between two pages never mixes into it or is credited to the other.
    continues: bool = False
    slate_version: str | None = None
    # Whether an artifact may be read from disk for this request: not for a continued slate of a
    # version no longer published (its rows still serve, with category reasons), so old slates
    # never push the published model out of the fold-in cache.
    load_artifacts: bool = True
    # The slate position of the ranking's first card: pinned cards (RECS_CONTENT_POSITIONS) are
    # at positions of the slate, so a later page of it pins none the first page already had.
    first_position: int = 0
    _fingerprint: Fingerprint | None = None

    def fingerprint(self) -> Fingerprint:
        """The catalogue's fingerprint, asked once per request for both cached catalogues."""
        if self._fingerprint is None:
            self._fingerprint = catalogue_fingerprint()
        return self._fingerprint


Provider = Callable[[_Request, int, set[int]], list[_Pick]]
_Placed = TypeVar("_Placed", _Pick, _Candidate)


def serving_arm(user_id: int) -> str | None:
    """The student's experiment arm, or None when no experiment module is installed."""
    try:
        from app.recs.experiment import assign_arm
    except ModuleNotFoundError as exc:
        if exc.name != "app.recs.experiment":
            raise
        return None
    return assign_arm(user_id)


def _providers_for_arm(arm: str | None) -> tuple[Provider, ...]:
    # The heuristic arm is the experiment's control: nothing learned, no content model.
    if arm == "heuristic":
        return (_from_heuristic,)
    # Content first: its cards claim their pinned positions before the fill sources run.
    return (_from_content, _from_model, _from_heuristic)


def model_reason(challenge: Challenge, history: UserHistory) -> str:
    count = history.category_counts.get(challenge.category_id, 0)
    return heuristic.affinity_reason(count, challenge.category.name) if count else MODEL_REASON


def _because(history: UserHistory, challenge_id: int | None) -> str | None:
    title = history.titles.get(challenge_id) if challenge_id is not None else None
    if title is None:
        return None
    if challenge_id in history.joined_ids:
        return f"Because you joined {title}"
    return f"Because you looked at {title}"


# --- model and fresh ------------------------------------------------------------------------------


class PublishedRun(NamedTuple):
    """What serving reads of the published ``ModelRun`` (``foldin`` reads the same attributes)."""

    id: int
    version: str
    artifact_path: str | None
    trained_through: datetime | None
    finished_at: datetime | None


class _Row(NamedTuple):
    challenge_id: int
    score: float
    status: str
    ends_at: datetime | None


def published_rows(user_id: int) -> list[tuple[float, str, Challenge]]:
    """(score, model version, challenge) of the published run for this student, best rank first."""
    run, rows = _published_run_and_rows(user_id)
    challenges = load_challenges(row.challenge_id for row in rows)
    # A challenge deleted between the two queries takes its row with it.
    return [
        (row.score, run.version, challenges[row.challenge_id])
        for row in rows
        if row.challenge_id in challenges
    ]


def _published_run_and_rows(
    user_id: int, version: str | None = None
) -> tuple[PublishedRun | None, list[_Row]]:
    """The published run (or the run of ``version``) and its rows for this student, best rank
    first, in one query; the rows as ids and eligibility columns, since serving loads only the
    challenges it shows."""
    run, rows = None, []
    statement, params = _published_statement(), {"user_id": user_id}
    if version is not None:
        statement, params = _version_statement(), {"user_id": user_id, "version": version}
    for record in db.session.execute(statement, params):
        run = PublishedRun(*record[:5])
        if record.challenge_id is not None:
            rows.append(_Row(*record[5:]))
    return run, rows


def _run_with_rows(runs):
    """``runs`` (a select joining ModelRun) with the student's rows of that run, best rank first,
    and the columns serving checks eligibility by."""
    return (
        runs.add_columns(
            UserRecommendation.challenge_id,
            UserRecommendation.score,
            Challenge.status,
            Challenge.ends_at,
        )
        .outerjoin(
            UserRecommendation,
            and_(
                UserRecommendation.model_run_id == ModelRun.id,
                UserRecommendation.user_id == bindparam("user_id"),
            ),
        )
        .outerjoin(Challenge, Challenge.id == UserRecommendation.challenge_id)
        .order_by(UserRecommendation.rank, UserRecommendation.challenge_id)
    )


_RUN_COLUMNS = (
    ModelRun.id,
    ModelRun.version,
    ModelRun.artifact_path,
    ModelRun.trained_through,
    ModelRun.finished_at,
)


@cache
def _version_statement():
    runs = select(*_RUN_COLUMNS).where(ModelRun.version == bindparam("version"))
    return _run_with_rows(runs)


@cache
def _published_statement():
    runs = (
        select(*_RUN_COLUMNS)
        .select_from(RecommendationState)
        .join(ModelRun, ModelRun.id == RecommendationState.published_run_id)
        .where(RecommendationState.id == STATE_ID)
    )
    return _run_with_rows(runs)


def _from_model(req: _Request, need: int, taken: set[int]) -> list[_Pick]:
    if req.continues and req.slate_version is None:
        return []  # the slate started without model cards: it goes on without them
    run, rows = _published_run_and_rows(req.user_id, req.slate_version if req.continues else None)
    if run is None:
        return []
    if req.continues:
        req.load_artifacts = run.id == db.session.scalar(
            select(RecommendationState.published_run_id).where(RecommendationState.id == STATE_ID)
        )
    req.model_version = run.version
    if rows and not foldin.is_stale(run, req.history):
        return _from_rows(req, run, rows, need, taken)
    fresh = _from_fold_in(req, run, need, taken)
    return fresh if fresh is not None else _from_rows(req, run, rows, need, taken)


def _from_rows(
    req: _Request, run: PublishedRun, rows: list[_Row], need: int, taken: set[int]
) -> list[_Pick]:
    kept = [
        (row.score, row.challenge_id)
        for row in rows
        if row.challenge_id not in taken and is_open(row.status, row.ends_at, req.now)
    ][:need]
    model = foldin.model_for(run, load=req.load_artifacts)
    row = model.user_row(req.history, _weights()) if model is not None and kept else None
    return _explained(req, model, row, kept, "model")


def _from_fold_in(
    req: _Request, run: PublishedRun, need: int, taken: set[int]
) -> list[_Pick] | None:
    """The student re-scored from their current row; None when the version has no fold-in state
    (its precomputed rows are then the best it has). A student with no interaction the version
    knows gets no model cards: rows precomputed from interactions since withdrawn (the student
    left the challenges they rested on) would recommend from what the student took back."""
    model = foldin.model_for(run, load=req.load_artifacts)
    if model is None:
        return None
    row = model.user_row(req.history, _weights())
    if not row.nnz:
        return []
    ids, scores = model.ranking(row)
    # No deeper than the rows a published version holds: the heuristic tops up past them.
    picked = _open_in_order(ids.tolist(), taken, min(need, top_n()), req.now)
    score_of = dict(zip(ids.tolist(), scores.tolist(), strict=True))
    return _explained(req, model, row, [(score_of[i], i) for i in picked], "fresh")


def _explained(
    req: _Request,
    model: foldin.FoldInModel | None,
    row,
    scored: list[tuple[float, int]],
    source: str,
) -> list[_Pick]:
    """Picks whose reason names the interaction adding most to their score, else (imported
    versions, negative scores) the category phrase; a pick ranked more for being popular lately
    (the version's trend) than for what the student did says that instead."""
    ids = [i for _, i in scored]
    sources = model.explain(row, ids) if model is not None and scored else {}
    trending = model.trend_led(row, ids) if model is not None and scored else set()
    history = req.history

    def explain(challenge: Challenge) -> str:
        if challenge.id in trending:
            return heuristic.popular_reason(int(round(model.model.trend_days)))
        return _because(history, sources.get(challenge.id)) or model_reason(challenge, history)

    return [_Pick(challenge_id, score, source, explain) for score, challenge_id in scored]


def _open_in_order(ranked_ids: list[int], taken: set[int], limit: int, now: datetime) -> list[int]:
    """The first ``limit`` eligible ids of ``ranked_ids`` not in ``taken``; one query unless many
    of the best ones closed since the version was trained."""
    wanted = [i for i in ranked_ids if i not in taken]
    found: list[int] = []
    start, window = 0, max(2 * limit, 20)
    while len(found) < limit and start < len(wanted):
        chunk = wanted[start : start + window]
        open_ids = open_challenge_ids(chunk, now)
        found.extend(i for i in chunk if i in open_ids)
        start, window = start + window, window * 4
    return found[:limit]


def _weights() -> dict[str, float]:
    return current_app.config["RECS_INTERACTION_WEIGHTS"]


# --- content and heuristic ------------------------------------------------------------------------


def content_positions() -> list[int]:
    raw = current_app.config["RECS_CONTENT_POSITIONS"] or ()
    return sorted({int(p) for p in raw if 0 <= int(p) < MAX_SLATE_ITEMS})


def _from_content(req: _Request, need: int, taken: set[int]) -> list[_Pick]:
    positions = [
        p - req.first_position for p in content_positions() if 0 <= p - req.first_position < need
    ]
    if not req.history.joined_ids or not positions:
        return []
    config = current_app.config
    matches = content.catalogue(req.fingerprint()).cold_matches(
        req.history,
        taken,
        req.now,
        max_participations=int(config["RECS_COLD_PARTICIPATIONS"]),
        min_similarity=float(config["RECS_CONTENT_MIN_SIMILARITY"]),
        limit=len(positions),
    )
    new_since = req.now - timedelta(days=int(config["RECS_CONTENT_NEW_DAYS"]))
    return [
        _Pick(
            match.challenge_id,
            match.similarity,
            "content",
            _content_explainer(match, req.history, new_since),
            slot=position,
        )
        for position, match in zip(positions, matches, strict=False)
    ]


def _content_explainer(
    match: content.ColdMatch, history: UserHistory, new_since: datetime
) -> Callable[[Challenge], str]:
    return lambda challenge: _content_reason(challenge, match, history, new_since)


def _content_reason(
    challenge: Challenge, match: content.ColdMatch, history: UserHistory, new_since: datetime
) -> str:
    if challenge.created_at >= new_since and challenge.category_id in history.category_counts:
        return f"New in {challenge.category.name}"
    return f"Similar to {history.titles.get(match.nearest_id, 'a challenge you joined')}"


def _from_heuristic(req: _Request, need: int, taken: set[int]) -> list[_Pick]:
    picks = heuristic.rank_heuristic(
        req.history, need, exclude_ids=taken, now=req.now, fingerprint=req.fingerprint()
    )
    window_days = int(current_app.config["RECS_POPULAR_WINDOW_DAYS"])
    return [
        _Pick(p.challenge_id, p.score, "heuristic", _heuristic_explainer(p, req, window_days))
        for p in picks
    ]


def _heuristic_explainer(
    pick: heuristic.HeuristicPick, req: _Request, window_days: int
) -> Callable[[Challenge], str]:
    counts, now = req.history.category_counts, req.now
    return lambda challenge: heuristic.heuristic_reason(challenge, pick, counts, window_days, now)


# --- the slate ------------------------------------------------------------------------------------


def _ranked(req: _Request, arm: str | None, skip: Iterable[int], want: int) -> list[_Pick]:
    taken = set(skip) | req.history.excluded_ids
    pinned: dict[int, _Pick] = {}
    filled: list[_Pick] = []
    for provider in _providers_for_arm(arm):
        missing = want - len(filled) - len(pinned)
        if missing <= 0:
            break
        for pick in provider(req, missing, taken):
            taken.add(pick.challenge_id)
            if pick.slot is None:
                filled.append(pick)
            else:
                pinned[pick.slot] = pick
    return _blend(filled, pinned)


def _page(
    req: _Request, arm: str | None, skip: set[int], start: int, k: int
) -> tuple[list[_Candidate], int]:
    """The page's candidates (challenges loaded in one query) and how many were ranked."""
    for _round in range(MAX_RANKING_ROUNDS):
        ranked = _ranked(req, arm, skip, want=start + k + 1)
        page = ranked[start : start + k]
        loaded = load_open_challenges([p.challenge_id for p in page], req.now)
        closed = {p.challenge_id for p in page} - set(loaded)
        if not closed:
            break
        skip = skip | closed
    page = [p for p in page if p.challenge_id in loaded]
    candidates = [
        _Candidate(loaded[p.challenge_id], p.score, p.explain(loaded[p.challenge_id]), p.source)
        for p in page
    ]
    return candidates, len(ranked)


def _blend(filled: list[_Placed], pinned: dict[int, _Placed]) -> list[_Placed]:
    """Pinned cards at their positions, the others in order around them; when the others run
    out, the pinned cards close up rather than leave gaps."""
    blended, queue = [], iter(filled)
    for position, candidate in sorted(pinned.items()):
        while len(blended) < position and (following := next(queue, None)) is not None:
            blended.append(following)
        blended.append(candidate)
    return blended + list(queue)


def _placed(page: list[SlateItem], places: dict[int, tuple[int, str | None]]) -> list[SlateItem]:
    """A page of a slate that already served cards (asked for again: a retry, a reload, the page
    after a dismissal) carries the places its cards were served at: a card served before keeps
    its place and source, and a card new to the slate whose place another card had takes the
    next free one, if the slate has one left (MAX_SLATE_ITEMS). So the positions and sources the
    page gives are those its impressions and cards are stored with, a client's events about them
    match the slate, and the page lists its cards in the order of their places."""
    if not places:
        return page
    taken = {position for position, _ in places.values()}
    following = max(taken) + 1
    placed = []
    for item in page:
        served = places.get(item.challenge_id)
        if served is not None:
            # Its place, and the source its impression and clicks are credited to.
            position, source = served
            placed.append(replace(item, position=position, source=source or item.source))
            continue
        position = item.position
        if position in taken:
            while following in taken:
                following += 1
            position = following
        if position >= MAX_SLATE_ITEMS:
            continue  # the slate is full: no place is left for another card
        taken.add(position)
        placed.append(item if position == item.position else replace(item, position=position))
    # In the order of their places: a page asked for again lists what it listed before.
    return sorted(placed, key=lambda item: item.position)


def _existing_slate(user_id: int, slate_id: str | None) -> RecommendationSlate | None:
    if slate_id is None:
        return None
    slate = events.owned_slate(user_id, slate_id)
    if slate is None:
        raise UnknownSlate(slate_id)
    return slate


def get_recommendations(
    user: User | int,
    k: int | None = None,
    offset: int = 0,
    slate_id: str | None = None,
    now: datetime | None = None,
) -> Slate:
    """The next ``k`` cards of a slate, starting at absolute position ``offset``.

    With ``slate_id`` (which must be this student's, else ``UnknownSlate``) the page continues that
    slate: cards it already showed before ``offset`` are skipped, so a card dismissed on page one
    does not shift page two. Nothing is written: the caller records what it shows (the page its
    impressions, the JSON API its cards), so an admin preview renders a slate without any writes.
    """
    user_id = user if isinstance(user, int) else user.id
    k = current_app.config["RECS_SLATE_SIZE"] if k is None else k
    if k < 0 or offset < 0:
        raise ValueError("k and offset must not be negative")
    now = now or utcnow()
    existing = _existing_slate(user_id, slate_id)
    arm = existing.arm if existing else serving_arm(user_id)
    k = max(0, min(k, MAX_SLATE_ITEMS - offset))
    skip = events.shown_in_slate(existing.id, offset) if existing else set()
    start = max(0, offset - len(skip))
    req = _Request(
        user_id=user_id,
        history=load_user_history(user_id),
        now=now,
        continues=existing is not None,
        slate_version=existing.model_version if existing is not None else None,
        first_position=offset - start,
    )
    candidates, ranked = _page(req, arm, skip, start, k)
    page = [
        SlateItem(c.challenge, c.challenge.id, c.score, c.reason, c.source, offset + i)
        for i, c in enumerate(candidates)
    ]
    has_more = ranked > start + k and offset + k < MAX_SLATE_ITEMS
    if existing is not None:
        continued = Slate(
            existing.id,
            existing.source,
            existing.model_version,
            existing.arm,
            _placed(page, events.served_places(existing.id)),
            offset,
            has_more,
        )
        if continued.next_offset >= MAX_SLATE_ITEMS:
            return replace(continued, has_more=False)
        return continued
    present = {item.source for item in page}
    source = next((s for s in SLATE_SOURCE_ORDER if s in present), "heuristic")
    slate = Slate(
        str(uuid.uuid4()),
        source,
        req.model_version if present & MODEL_SOURCES else None,
        arm,
        page,
        offset,
        has_more,
    )
    return slate
