"""``get_recommendations``: one slate type whatever the source (published rows, heuristic top-up).

Sources are tried in order until the slate is full; each item keeps the source it came from. To
add a source (e.g. ``fresh`` fold-in scores or ``content`` for new challenges), write a provider
with the signature of ``_from_published_rows`` and list it in ``_providers_for_arm``: the one place
where an experiment arm decides what a student is served.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import select
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
from app.recs import events, heuristic
from app.recs.eligibility import (  # noqa: F401  (re-exported for the pipeline and later sources)
    UserHistory,
    eligible_challenges,
    excluded_challenge_ids,
    is_eligible,
    load_user_history,
)

# "Show more" stops here: past a few pages a slate is browsing, which the list page does better.
MAX_SLATE_ITEMS = 60
MODEL_REASON = "Students with interests like yours joined this"


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
    if arm == "heuristic":
        return (_from_heuristic,)
    return (_from_published_rows, _from_heuristic)


def _model_reason(challenge: Challenge, history: UserHistory) -> str:
    count = history.category_counts.get(challenge.category_id, 0)
    return heuristic.affinity_reason(count, challenge.category.name) if count else MODEL_REASON


def published_rows(user_id: int) -> list[tuple[float, str, Challenge]]:
    """(score, model version, challenge) of the published run for this student, best rank first."""
    published = (
        select(RecommendationState.published_run_id)
        .where(RecommendationState.id == 1)
        .scalar_subquery()
    )
    stmt = (
        select(UserRecommendation.score, ModelRun.version, Challenge)
        .join(ModelRun, ModelRun.id == UserRecommendation.model_run_id)
        .join(Challenge, Challenge.id == UserRecommendation.challenge_id)
        .where(UserRecommendation.model_run_id == published, UserRecommendation.user_id == user_id)
        .order_by(UserRecommendation.rank, UserRecommendation.challenge_id)
        .options(joinedload(Challenge.category))
    )
    return [tuple(row) for row in db.session.execute(stmt)]


def _from_published_rows(req: _Request, need: int, taken: set[int]) -> list[_Candidate]:
    found = []
    for score, version, challenge in published_rows(req.user_id):
        req.model_version = version
        if challenge.id in taken or not is_eligible(challenge, req.now):
            continue
        found.append(
            _Candidate(challenge, float(score), _model_reason(challenge, req.history), "model")
        )
    return found[:need]


def _from_heuristic(req: _Request, need: int, taken: set[int]) -> list[_Candidate]:
    ranked = heuristic.recommend_heuristic(
        req.user_id, need, exclude_ids=taken, now=req.now, history=req.history
    )
    return [_Candidate(s.challenge, s.score, s.reason, "heuristic") for s in ranked]


def _ranked(req: _Request, arm: str | None, skip: Iterable[int], want: int) -> list[_Candidate]:
    taken = set(skip) | req.history.excluded_ids
    ranked: list[_Candidate] = []
    for provider in _providers_for_arm(arm):
        if len(ranked) >= want:
            break
        for candidate in provider(req, want - len(ranked), taken):
            taken.add(candidate.challenge.id)
            ranked.append(candidate)
    return ranked


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
    source = "model" if any(item.source == "model" for item in page) else "heuristic"
    slate = Slate(
        str(uuid.uuid4()),
        source,
        req.model_version if source == "model" else None,
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
