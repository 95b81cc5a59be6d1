"""The one place that writes recommendation events: impressions, clicks, dismisses and joins."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import RecommendationEvent, RecommendationSlate, utcnow

log = logging.getLogger(__name__)

# A join counts as coming from a slate when the student clicked that slate's card this recently.
ATTRIBUTION_WINDOW = timedelta(hours=24)


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
    shown = db.session.execute(
        select(RecommendationEvent.position, RecommendationEvent.source).where(
            RecommendationEvent.slate_id == slate.id,
            RecommendationEvent.type == "impression",
            RecommendationEvent.challenge_id == challenge_id,
        )
    ).first()
    db.session.add(RecommendationEvent(
        # Deterministic id: two racing requests for the same click collapse on the unique key.
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"click:{slate.id}:{challenge_id}")),
        user_id=user_id, challenge_id=challenge_id, type="click", slate_id=slate.id,
        position=shown.position if shown else None,
        source=shown.source if shown else slate.source,
        model_version=slate.model_version, arm=slate.arm,
    ))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def attribution_for_join(user_id: int, challenge_id: int) -> tuple[str | None, str | None]:
    """The slate (and its card's source) of the student's latest recent click on this challenge."""
    row = db.session.execute(
        select(RecommendationEvent.slate_id, RecommendationEvent.source)
        .where(
            RecommendationEvent.user_id == user_id,
            RecommendationEvent.challenge_id == challenge_id,
            RecommendationEvent.type == "click",
            RecommendationEvent.created_at >= utcnow() - ATTRIBUTION_WINDOW,
        )
        .order_by(RecommendationEvent.created_at.desc(), RecommendationEvent.id.desc())
        .limit(1)
    ).first()
    return (row.slate_id, row.source) if row else (None, None)


def record_join(user_id: int, challenge_id: int, slate_id: str | None, source: str | None) -> None:
    """A ``join`` event, so online metrics read joins from the same table as impressions."""
    slate = owned_slate(user_id, slate_id)
    db.session.add(RecommendationEvent(
        event_id=str(uuid.uuid4()), user_id=user_id, challenge_id=challenge_id, type="join",
        slate_id=slate.id if slate else None, source=source,
        model_version=slate.model_version if slate else None, arm=slate.arm if slate else None,
    ))
    db.session.commit()
