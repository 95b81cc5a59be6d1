"""The content model for cold challenges: TF-IDF of title and description, a category one-hot and
the normalised reward, so a challenge with too few participations for collaborative filtering is
placed near the challenges a student joined.

``ContentModel`` is a plain estimator over ``ChallengeText`` rows. ``catalogue()`` keeps one fitted
per process, refreshed on the first request after the catalogue's fingerprint (challenge count,
latest ``updated_at``) moves: a join only bumps a counter, so it updates the cached counts without
refitting; a new or edited challenge refits (milliseconds for a campus-sized catalogue).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
from flask import current_app
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize
from sqlalchemy import select

from app.extensions import db
from app.models import Challenge, ChallengeStatus
from app.recs.eligibility import Fingerprint, UserHistory, catalogue_fingerprint

EXTENSION_KEY = "recs_content"
# Updates committed out of timestamp order (a slow transaction) are re-read within this margin.
LATE_COMMIT_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class ChallengeText:
    id: int
    title: str
    description: str
    category_id: int
    reward_points: int

    @property
    def digest(self) -> str:
        text = "\x1f".join(
            (self.title, self.description, str(self.category_id), str(self.reward_points))
        )
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class ContentModel:
    """Rows: TF-IDF (sublinear tf, English stop words) times ``text_weight``, category one-hot
    times ``category_weight``, reward / max reward times ``reward_weight``; then each row is L2
    normalised, so a dot product is a cosine similarity in [0, 1]."""

    def __init__(
        self,
        text_weight: float = 1.0,
        category_weight: float = 0.5,
        reward_weight: float = 0.2,
        max_features: int = 20000,
    ) -> None:
        self.text_weight = text_weight
        self.category_weight = category_weight
        self.reward_weight = reward_weight
        self.max_features = max_features

    def fit(self, challenges: Sequence[ChallengeText]) -> ContentModel:
        rows = sorted(challenges, key=lambda c: c.id)
        self.ids_ = np.asarray([c.id for c in rows], dtype=np.int64)
        self.vectorizer_ = TfidfVectorizer(
            stop_words="english",
            sublinear_tf=True,
            max_features=self.max_features,
            dtype=np.float32,
        )
        texts = [f"{c.title}\n{c.description}" for c in rows]
        try:
            text = self.vectorizer_.fit_transform(texts)
        except ValueError:  # no usable word at all (empty catalogue, or only stop words)
            text = sparse.csr_matrix((len(rows), 0), dtype=np.float32)
        categories = sorted({c.category_id for c in rows})
        column = {category: i for i, category in enumerate(categories)}
        one_hot = sparse.csr_matrix(
            (
                np.ones(len(rows), dtype=np.float32),
                ([*range(len(rows))], [column[c.category_id] for c in rows]),
            ),
            shape=(len(rows), len(categories)),
        )
        rewards = np.asarray([max(c.reward_points, 0) for c in rows], dtype=np.float32)
        top = rewards.max() if len(rewards) else 0.0
        reward = sparse.csr_matrix((rewards / top if top > 0 else rewards)[:, np.newaxis])
        features = sparse.hstack(
            [
                self.text_weight * text,
                self.category_weight * one_hot,
                self.reward_weight * reward,
            ],
            format="csr",
        )
        # sklearn's normalize refuses an empty matrix; an empty catalogue has nothing to scale.
        self.features_ = (normalize(features) if len(rows) else features).astype(np.float32)
        return self

    def index(self, challenge_ids: Iterable[int]) -> np.ndarray:
        """Row of each id; -1 for ids the model was not fitted on."""
        ids = np.asarray(list(challenge_ids), dtype=np.int64)
        if not len(self.ids_) or not len(ids):
            return np.full(len(ids), -1, dtype=np.int64)
        at = np.searchsorted(self.ids_, ids).clip(0, len(self.ids_) - 1)
        return np.where(self.ids_[at] == ids, at, -1)

    def similarity(self, rows: np.ndarray, to_rows: np.ndarray) -> np.ndarray:
        """Cosine similarity of model rows ``rows`` (n) to rows ``to_rows`` (m): n x m."""
        return similarity(self.features_[rows], self.features_[to_rows])


def similarity(features: sparse.csr_matrix, to_features: sparse.csr_matrix) -> np.ndarray:
    # Sparse times a dense block of the few ``to_features`` rows: no sparse product to assemble.
    return np.asarray(features @ to_features.T.toarray())


@dataclass(frozen=True)
class ColdMatch:
    challenge_id: int
    similarity: float
    nearest_id: int  # the student's joined challenge it resembles most


@dataclass(frozen=True)
class Catalogue:
    """A fitted model plus, per model row, what decides whether a challenge is a cold candidate."""

    fingerprint: Fingerprint
    model: ContentModel
    digests: dict[int, str]
    published: np.ndarray
    ends_at: np.ndarray  # epoch seconds, +inf when open-ended
    participations: np.ndarray
    # The last open cold rows and their features: the same for most requests, and slicing them
    # out of the whole matrix costs more than the similarity itself. Shared by the refreshed
    # copies of this catalogue, whose model (and so features) is the same.
    _cold_rows: dict = field(default_factory=dict, compare=False, repr=False)

    def cold_matches(
        self,
        history: UserHistory,
        exclude_ids: Iterable[int],
        now: datetime,
        max_participations: int,
        min_similarity: float,
        limit: int,
    ) -> list[ColdMatch]:
        """Open challenges with fewer than ``max_participations`` participations, not excluded,
        whose similarity to one of the student's joined challenges reaches ``min_similarity``;
        most similar first (ties: lower id), at most ``limit``."""
        profile = self.model.index(sorted(history.joined_ids))
        profile = profile[profile >= 0]
        if not len(profile) or limit <= 0:
            return []
        rows, features = self._open_cold(now, max_participations)
        if not len(rows):
            return []
        similar_to = similarity(features, self.model.features_[profile])
        best = similar_to.max(axis=1)
        nearest = profile[similar_to.argmax(axis=1)]
        ids = self.model.ids_[rows]
        excluded = np.fromiter(exclude_ids, dtype=np.int64)
        similar = np.flatnonzero((best >= min_similarity) & ~np.isin(ids, excluded))
        order = similar[np.lexsort((ids[similar], -best[similar]))][:limit]
        return [
            ColdMatch(int(ids[i]), float(best[i]), int(self.model.ids_[nearest[i]])) for i in order
        ]

    def _open_cold(
        self, now: datetime, max_participations: int
    ) -> tuple[np.ndarray, sparse.csr_matrix]:
        """Rows of the published, open challenges with fewer than ``max_participations``
        participations, and their features."""
        rows = np.flatnonzero(
            self.published
            & (self.ends_at > now.timestamp())
            & (self.participations < max_participations)
        )
        last_rows, features = self._cold_rows.get("last", (None, None))
        if last_rows is None or not np.array_equal(last_rows, rows):
            features = self.model.features_[rows]
            self._cold_rows["last"] = (rows, features)
        return rows, features


def fingerprint() -> Fingerprint:
    return catalogue_fingerprint()


def catalogue(current: Fingerprint | None = None) -> Catalogue:
    """The process's content model for the current catalogue; one aggregate query when nothing
    changed, none when the caller passes the ``fingerprint()`` it already read."""
    cache = _cache()
    current = fingerprint() if current is None else current
    cached = cache.catalogue
    if cached is not None and cached.fingerprint == current:
        return cached
    # One thread refreshes; the server's other threads wait for it rather than fit it again.
    with cache.lock:
        cached = cache.catalogue
        if cached is not None and cached.fingerprint == current:
            return cached
        refreshed = _without_refit(cached, current) if cached is not None else None
        cache.catalogue = refreshed or _fit(current)
        return cache.catalogue


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.catalogue: Catalogue | None = None


def _cache() -> _Cache:
    return current_app.extensions.setdefault(EXTENSION_KEY, _Cache())


_COLUMNS = (
    Challenge.id,
    Challenge.title,
    Challenge.description,
    Challenge.category_id,
    Challenge.reward_points,
    Challenge.status,
    Challenge.ends_at,
    Challenge.participations_count,
)


def _split(row) -> tuple[ChallengeText, tuple[bool, float, int]]:
    id_, title, description, category_id, reward, status, ends_at, count = row
    text = ChallengeText(id_, title or "", description or "", category_id, reward or 0)
    facts = (
        status == ChallengeStatus.PUBLISHED.value,
        ends_at.timestamp() if ends_at is not None else np.inf,
        int(count or 0),
    )
    return text, facts


def _fit(current: Fingerprint) -> Catalogue:
    texts, facts = [], {}
    for row in db.session.execute(select(*_COLUMNS)):
        text, fact = _split(row)
        texts.append(text)
        facts[text.id] = fact
    settings = current_app.config
    model = ContentModel(
        category_weight=float(settings["RECS_CONTENT_CATEGORY_WEIGHT"]),
        reward_weight=float(settings["RECS_CONTENT_REWARD_WEIGHT"]),
    ).fit(texts)
    ordered = [facts[int(i)] for i in model.ids_]
    return Catalogue(
        current,
        model,
        {t.id: t.digest for t in texts},
        np.asarray([f[0] for f in ordered], dtype=bool),
        np.asarray([f[1] for f in ordered], dtype=np.float64),
        np.asarray([f[2] for f in ordered], dtype=np.int64),
    )


def _without_refit(cached: Catalogue, current: Fingerprint) -> Catalogue | None:
    """The cached model with the changed challenges' status, end and counts updated, or None when
    a challenge was added, removed or edited (its text, category or reward)."""
    count, latest = current
    previous_latest = cached.fingerprint[1]
    if count != cached.fingerprint[0] or latest is None or previous_latest is None:
        return None
    changed = db.session.execute(
        select(*_COLUMNS).where(Challenge.updated_at >= previous_latest - LATE_COMMIT_MARGIN)
    )
    published, ends_at, participations = (
        cached.published.copy(),
        cached.ends_at.copy(),
        cached.participations.copy(),
    )
    for row in changed:
        text, (is_published, ends, joins) = _split(row)
        if cached.digests.get(text.id) != text.digest:
            return None
        at = int(cached.model.index([text.id])[0])
        published[at], ends_at[at], participations[at] = is_published, ends, joins
    return replace(
        cached,
        fingerprint=current,
        published=published,
        ends_at=ends_at,
        participations=participations,
    )
