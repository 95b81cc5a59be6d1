"""Fold-in: score a student from their current interactions with the published version's stored
item-side state (SVD item factors, item-kNN neighbour lists, EASE weights).

None of these models learns anything per user: a user's scores are their row of the interaction
matrix times the item-side state. So a student who joined, left, clicked or dismissed something
since the version was trained is re-scored on the fly from a row rebuilt from the database, and a
student the training never saw is scored the same way. The artifact is loaded once per published
version per process (``.npz`` read with ``allow_pickle=False``), never per request.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from flask import current_app
from scipy import sparse

from app.models import ModelRun
from app.recs.data import IdMap, InteractionMatrix, Interactions
from app.recs.eligibility import UserHistory
from app.recs.models import UNREADABLE_ARTIFACT, Recommender, load_artifact

log = logging.getLogger(__name__)

EXTENSION_KEY = "recs_foldin"
# The published version and the one it replaced: a request that read the pointer just before a
# publish still finds its model, and older versions do not pile up in memory.
CACHED_VERSIONS = 2


@dataclass(frozen=True)
class FoldInModel:
    """A published version's estimator and item ids, enough to score any student's row."""

    version: str
    model: Recommender
    items: IdMap

    def user_row(self, history: UserHistory, weights: dict[str, float]) -> sparse.csr_matrix:
        """The student's 1 x items row, weighted and clipped exactly as the training builds it;
        challenges the version does not know (published since) are left out."""
        rows = [
            (0, challenge_id, event, count * float(weights.get(event, 0.0)), stamp)
            for challenge_id, event, stamp, count in history.interactions
            if weights.get(event, 0.0)
        ]
        interactions = Interactions.from_rows(rows)
        return InteractionMatrix.build(
            interactions, IdMap(np.zeros(1, np.int64)), self.items, with_times=False
        ).matrix

    def ranking(self, row: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """(challenge ids, scores), best first, ties by lower id (as the published rows are
        ranked), without the challenges already in the row, nor those the model gives no evidence
        for (a score of exactly 0, left out of the published rows too)."""
        scores = self.model.ranking_scores(row)[0].astype(np.float64)
        keep = np.isfinite(scores) & (scores != 0)
        keep[row.indices] = False
        ids, scores = self.items.ids[keep], scores[keep]
        order = np.lexsort((ids, -scores))
        return ids[order], scores[order]

    def trend_led(self, row: sparse.csr_matrix, challenge_ids: list[int]) -> set[int]:
        """The challenges ranked where they are more for being popular lately (the model's
        trend) than for what the student did: their reason is the trend's, not "Because you
        joined ..."."""
        if not self.model.has_trend or not challenge_ids:
            return set()
        led = self.model.trend_led(self.model.scores(row))[0]
        targets = self.items.index(np.asarray(challenge_ids, dtype=np.int64))
        return {int(c) for c, t in zip(challenge_ids, targets, strict=True) if t >= 0 and led[t]}

    def explain(self, row: sparse.csr_matrix, challenge_ids: list[int]) -> dict[int, int]:
        """For each challenge, the one in the student's row that adds most to its score.

        The candidate models are linear in the row, so the score splits exactly into one term per
        interacted challenge: its weight times the score a row holding only that challenge gets.
        """
        targets = self.items.index(np.asarray(challenge_ids, dtype=np.int64))
        known = targets >= 0
        if not row.nnz or not known.any():
            return {}
        own = row.indices
        singles = sparse.csr_matrix(
            (row.data, (np.arange(len(own)), own)), shape=(len(own), row.shape[1])
        )
        contributions = self.model.scores(singles)[:, targets[known]]
        best = contributions.argmax(axis=0)
        positive = contributions[best, np.arange(len(best))] > 0
        sources = self.items.ids[own[best]]
        chosen = np.asarray(challenge_ids, dtype=np.int64)[known]
        return {
            int(target): int(source)
            for target, source, ok in zip(chosen, sources, positive, strict=True)
            if ok
        }


def trained_until(run: ModelRun) -> datetime | None:
    """The moment the version's data ends: the latest interaction it read, else when it finished."""
    return run.trained_through or run.finished_at


def is_stale(run: ModelRun, history: UserHistory) -> bool:
    """True when the student acted after the version's data was read."""
    if history.changed_at is None:
        return False
    cutoff = trained_until(run)
    return cutoff is None or history.changed_at > cutoff


def model_for(run: ModelRun, load: bool = True) -> FoldInModel | None:
    """The run's fold-in model, loaded on first use in this process; None without a usable
    artifact (imported versions have none), or when ``load`` is false and it is not loaded yet.
    The cache keeps the versions used last."""
    if not run.artifact_path:
        return None
    cache = _cache()
    key = (run.version, run.artifact_path)
    with cache.lock:
        if key in cache.models:
            cache.models[key] = cache.models.pop(key)  # now the most recently used
            return cache.models[key]
    if not load:
        return None
    # One thread reads the artifact; the server's other threads wait for it, not read it again.
    with cache.loading:
        with cache.lock:
            if key in cache.models:
                return cache.models[key]
        loaded = _load(run)
        with cache.lock:
            cache.models[key] = loaded
            for stale in list(cache.models)[:-CACHED_VERSIONS]:
                del cache.models[stale]
    return loaded


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loading = threading.Lock()
        self.models: dict[tuple[str, str], FoldInModel | None] = {}


def _cache() -> _Cache:
    # Per app, not per module: a process serves one app, while tests build many on one database.
    return current_app.extensions.setdefault(EXTENSION_KEY, _Cache())


def _load(run: ModelRun) -> FoldInModel | None:
    try:
        artifact = load_artifact(Path(run.artifact_path))
    except UNREADABLE_ARTIFACT as exc:
        # Cached as None: the published rows still serve, and the log is not flooded.
        log.warning(
            "fold-in disabled for %s: cannot load %s: %s", run.version, run.artifact_path, exc
        )
        return None
    if artifact.data.items.ids.dtype.kind != "i":
        log.warning("fold-in disabled for %s: its challenge ids are not database ids", run.version)
        return None
    log.info("loaded fold-in state of %s (%s)", run.version, artifact.model.name)
    return FoldInModel(run.version, artifact.model, artifact.data.items)
