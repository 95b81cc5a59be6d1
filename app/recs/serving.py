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
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, select
from sqlalchemy.orm import joinedload

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
    UserHistory,
    eligible_challenges,
    excluded_challenge_ids,
    is_eligible,
    load_user_history,
)
from app.recs.pipeline import top_n

# "Show more" stops here: past a few pages a slate is browsing, which the list page does better.
MAX_SLATE_ITEMS = 60
MODEL_REASON = "Students with interests like yours joined this"
# A slate is labelled with the most specific source among the cards of its first page.
SLATE_SOURCE_ORDER = ("fresh", "model", "content", "heuristic")
MODEL_SOURCES = frozenset({"model", "fresh"})
STATE_ID = 1


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
        return self.offset + len(self.items)


class UnknownSlate(LookupError):
    """The slate id does not exist or belongs to another student."""


@dataclass(frozen=True)
class _Candidate:
    challenge: Challenge
    score: float
    reason: str
    source: str
    slot: int | None = None  # a fixed position in the ranked list; None fills in order


@dataclass
class _Request:
    user_id: int
    history: UserHistory
    now: datetime
    model_version: str | None = None


Provider = Callable[[_Request, int, set[int]], list[_Candidate]]


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


def _published_run_and_rows(user_id: int) -> tuple[ModelRun | None, list[tuple[float, Challenge]]]:
    """The published run and its rows for this student, best rank first, in one query."""
    stmt = (
        select(ModelRun, UserRecommendation.score, Challenge)
        .select_from(RecommendationState)
        .join(ModelRun, ModelRun.id == RecommendationState.published_run_id)
        .outerjoin(
            UserRecommendation,
            and_(
                UserRecommendation.model_run_id == ModelRun.id,
                UserRecommendation.user_id == user_id,
            ),
        )
        .outerjoin(Challenge, Challenge.id == UserRecommendation.challenge_id)
        .where(RecommendationState.id == STATE_ID)
        .order_by(UserRecommendation.rank, UserRecommendation.challenge_id)
        .options(joinedload(Challenge.category))
    )
    run, rows = None, []
    for published, score, challenge in db.session.execute(stmt):
        run = published
        if challenge is not None:
            rows.append((float(score), challenge))
    return run, rows


def published_rows(user_id: int) -> list[tuple[float, str, Challenge]]:
    """(score, model version, challenge) of the published run for this student, best rank first."""
    run, rows = _published_run_and_rows(user_id)
    return [(score, run.version, challenge) for score, challenge in rows]


def _from_model(req: _Request, need: int, taken: set[int]) -> list[_Candidate]:
    run, rows = _published_run_and_rows(req.user_id)
    if run is None:
        return []
    req.model_version = run.version
    if rows and not foldin.is_stale(run, req.history):
        return _from_rows(req, run, rows, need, taken)
    fresh = _from_fold_in(req, run, need, taken)
    return fresh if fresh is not None else _from_rows(req, run, rows, need, taken)


def _from_rows(
    req: _Request, run: ModelRun, rows: list[tuple[float, Challenge]], need: int, taken: set[int]
) -> list[_Candidate]:
    kept = [
        (score, challenge)
        for score, challenge in rows
        if challenge.id not in taken and is_eligible(challenge, req.now)
    ][:need]
    model = foldin.model_for(run)
    row = model.user_row(req.history, _weights()) if model is not None else None
    return _explained(req, model, row, kept, "model")


def _from_fold_in(
    req: _Request, run: ModelRun, need: int, taken: set[int]
) -> list[_Candidate] | None:
    """The student re-scored from their current row; None when the version has no fold-in state
    or the student has no positive interaction it knows."""
    model = foldin.model_for(run)
    if model is None:
        return None
    row = model.user_row(req.history, _weights())
    if not row.nnz:
        return None
    ids, scores = model.ranking(row)
    # No deeper than the rows a published version holds: the heuristic tops up past them.
    picked = _open_in_order(ids.tolist(), taken, min(need, top_n()), req.now)
    score_of = dict(zip(ids.tolist(), scores.tolist(), strict=True))
    return _explained(req, model, row, [(score_of[c.id], c) for c in picked], "fresh")


def _explained(
    req: _Request,
    model: foldin.FoldInModel | None,
    row,
    scored: list[tuple[float, Challenge]],
    source: str,
) -> list[_Candidate]:
    """Candidates whose reason names the interaction adding most to their score, else (imported
    versions, negative scores) the category phrase."""
    sources = model.explain(row, [c.id for _, c in scored]) if model is not None else {}
    return [
        _Candidate(
            challenge,
            score,
            _because(req.history, sources.get(challenge.id))
            or model_reason(challenge, req.history),
            source,
        )
        for score, challenge in scored
    ]


def _open_in_order(ranked_ids: list[int], taken: set[int], limit: int, now: datetime):
    """The first ``limit`` eligible challenges of ``ranked_ids`` not in ``taken``; one query unless
    many of the best ones closed since the version was trained."""
    wanted = [i for i in ranked_ids if i not in taken]
    found: list[Challenge] = []
    start, window = 0, max(2 * limit, 20)
    while len(found) < limit and start < len(wanted):
        chunk = wanted[start : start + window]
        loaded = {
            c.id: c
            for c in db.session.scalars(
                eligible_challenges(now)
                .where(Challenge.id.in_(chunk))
                .options(joinedload(Challenge.category))
            )
        }
        found.extend(loaded[i] for i in chunk if i in loaded)
        start, window = start + window, window * 4
    return found[:limit]


def _weights() -> dict[str, float]:
    return current_app.config["RECS_INTERACTION_WEIGHTS"]


# --- content and heuristic ------------------------------------------------------------------------


def content_positions() -> list[int]:
    raw = current_app.config["RECS_CONTENT_POSITIONS"] or ()
    return sorted({int(p) for p in raw if 0 <= int(p) < MAX_SLATE_ITEMS})


def _from_content(req: _Request, need: int, taken: set[int]) -> list[_Candidate]:
    positions = [p for p in content_positions() if p < need]
    if not req.history.joined_ids or not positions:
        return []
    config = current_app.config
    matches = content.catalogue().cold_matches(
        req.history,
        taken,
        req.now,
        max_participations=int(config["RECS_COLD_PARTICIPATIONS"]),
        min_similarity=float(config["RECS_CONTENT_MIN_SIMILARITY"]),
        limit=len(positions),
    )
    if not matches:
        return []
    loaded = {
        c.id: c
        for c in db.session.scalars(
            eligible_challenges(req.now)
            .where(Challenge.id.in_([m.challenge_id for m in matches]))
            .options(joinedload(Challenge.category))
        )
    }
    new_since = req.now - timedelta(days=int(config["RECS_CONTENT_NEW_DAYS"]))
    found = [(m, loaded[m.challenge_id]) for m in matches if m.challenge_id in loaded]
    return [
        _Candidate(
            challenge,
            match.similarity,
            _content_reason(challenge, match, req.history, new_since),
            "content",
            slot=position,
        )
        for position, (match, challenge) in zip(positions, found, strict=False)
    ]


def _content_reason(
    challenge: Challenge, match: content.ColdMatch, history: UserHistory, new_since: datetime
) -> str:
    if challenge.created_at >= new_since and challenge.category_id in history.category_counts:
        return f"New in {challenge.category.name}"
    return f"Similar to {history.titles.get(match.nearest_id, 'a challenge you joined')}"


def _from_heuristic(req: _Request, need: int, taken: set[int]) -> list[_Candidate]:
    ranked = heuristic.recommend_heuristic(
        req.user_id, need, exclude_ids=taken, now=req.now, history=req.history
    )
    return [_Candidate(s.challenge, s.score, s.reason, "heuristic") for s in ranked]


# --- the slate ------------------------------------------------------------------------------------


def _ranked(req: _Request, arm: str | None, skip: Iterable[int], want: int) -> list[_Candidate]:
    taken = set(skip) | req.history.excluded_ids
    pinned: dict[int, _Candidate] = {}
    filled: list[_Candidate] = []
    for provider in _providers_for_arm(arm):
        missing = want - len(filled) - len(pinned)
        if missing <= 0:
            break
        for candidate in provider(req, missing, taken):
            taken.add(candidate.challenge.id)
            if candidate.slot is None:
                filled.append(candidate)
            else:
                pinned[candidate.slot] = candidate
    return _blend(filled, pinned)


def _blend(filled: list[_Candidate], pinned: dict[int, _Candidate]) -> list[_Candidate]:
    """Pinned cards at their positions, the others in order around them; when the others run
    out, the pinned cards close up rather than leave gaps."""
    blended, queue = [], iter(filled)
    for position, candidate in sorted(pinned.items()):
        while len(blended) < position and (following := next(queue, None)) is not None:
            blended.append(following)
        blended.append(candidate)
    return blended + list(queue)


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
    record: bool = False,
    now: datetime | None = None,
) -> Slate:
    """The next ``k`` cards of a slate, starting at absolute position ``offset``.

    With ``slate_id`` (which must be this student's, else ``UnknownSlate``) the page continues that
    slate: cards it already showed before ``offset`` are skipped, so a card dismissed on page one
    does not shift page two. ``record=True`` commits the new slate's row (nothing else); recording
    impressions is the caller's job, so an admin preview can render a slate without any writes.
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
    req = _Request(user_id=user_id, history=load_user_history(user_id), now=now)
    ranked = _ranked(req, arm, skip, want=start + k + 1)
    page = [
        SlateItem(c.challenge, c.challenge.id, c.score, c.reason, c.source, offset + i)
        for i, c in enumerate(ranked[start : start + k])
    ]
    has_more = len(ranked) > start + k and offset + k < MAX_SLATE_ITEMS
    if existing is not None:
        return Slate(
            existing.id,
            existing.source,
            existing.model_version,
            existing.arm,
            page,
            offset,
            has_more,
        )
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
    if record and page:
        _save_slate(user_id, slate, now)
    return slate


def _save_slate(user_id: int, slate: Slate, now: datetime) -> None:
    db.session.add(
        RecommendationSlate(
            id=slate.slate_id,
            user_id=user_id,
            source=slate.source,
            model_version=slate.model_version,
            arm=slate.arm,
            created_at=now,
        )
    )
    db.session.commit()
