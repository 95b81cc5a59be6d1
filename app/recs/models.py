"""Collaborative-filtering estimators (PureSVD, item-kNN, EASE, popularity) with the scikit-learn
contract, top-k ranking, and the versioned ``.npz`` + JSON artifact that stores them."""

from __future__ import annotations

import json
import logging
import platform
import shutil
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy
import sklearn
from scipy import sparse
from scipy.linalg import lapack
from sklearn.decomposition import TruncatedSVD

from app.recs.data import IdMap, InteractionMatrix

log = logging.getLogger(__name__)

ARTIFACT_ARRAYS = "model.npz"
ARTIFACT_METADATA = "metadata.json"
SCORE_BATCH_USERS = 2048


class Recommender(ABC):
    """Base class: ``fit(X, times)`` on a users x items CSR matrix (``times``: when each cell
    began, same sparsity, or None; only models that use time read it), ``scores(X_rows)``
    for any users' rows (fold-in: nothing user-specific is learned, so unseen users are scored
    the same way).

    Lists are ranked by ``ranking_scores``: the scores, plus, when a trend is set
    (``with_trend``), what is popular lately. Co-occurrence learned from the whole history does
    not know which challenges are in demand this week; the heuristic does, and on a time split
    that is much of what the next interactions go to."""

    name = "base"
    param_names: tuple[str, ...] = ()
    trend_weight: float = 0.0
    trend_days: float = 0.0
    trend_: np.ndarray | None = None

    def with_trend(self, trend: np.ndarray | None, weight: float, days: float) -> Recommender:
        """``trend``: per item, ``trend_scale``d counts of recent interactions; ``weight`` 0
        (or no trend) ranks by the scores alone."""
        self.trend_ = None if trend is None else np.asarray(trend, dtype=np.float32)
        self.trend_weight, self.trend_days = float(weight), float(days)
        return self

    @property
    def has_trend(self) -> bool:
        return bool(self.trend_weight) and self.trend_ is not None

    def ranking_scores(self, X_rows: sparse.csr_matrix) -> np.ndarray:
        """Each user's scores divided by their largest magnitude (so one weight suits every
        user), plus ``trend_weight`` x the trend on the items the model scores above 0: an item
        the model has nothing for (0) stays 0, so what serving tops up from the heuristic is
        unchanged, and one it scores below 0 is never lifted by the trend."""
        return self.rank_from(self.scores(X_rows))

    def rank_from(self, scores: np.ndarray) -> np.ndarray:
        """``ranking_scores`` from the rows' ``scores``, already computed."""
        scores = np.asarray(scores, dtype=np.float32)
        if not self.has_trend:
            return scores
        scaled, lift = self._scaled_and_lift(scores)
        return (scaled + lift).astype(np.float32)

    def _scaled_and_lift(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row divided by its largest magnitude, and what the trend adds to it (only where
        the model scores above 0)."""
        scale = np.abs(scores).max(axis=1, keepdims=True)
        scale[~(scale > 0)] = 1.0
        lift = np.float32(self.trend_weight) * self.trend_[None, :] * (scores > 0)
        return scores / scale, lift

    def trend_led(self, scores: np.ndarray) -> np.ndarray:
        """Where the trend adds at least as much to ``rank_from(scores)`` as the model's own
        (scaled) score: those places are ranked for being popular lately, and should say so."""
        scores = np.asarray(scores, dtype=np.float32)
        if not self.has_trend:
            return np.zeros(scores.shape, dtype=bool)
        scaled, lift = self._scaled_and_lift(scores)
        return (scores > 0) & (lift >= scaled)

    def get_params(self) -> dict:
        return {p: getattr(self, p) for p in self.param_names}

    @abstractmethod
    def fit(self, X: sparse.csr_matrix, times: sparse.csr_matrix | None = None) -> Recommender: ...

    @classmethod
    def fit_grid(
        cls, X: sparse.csr_matrix, grid: Sequence[dict], times: sparse.csr_matrix | None = None
    ) -> Iterator[tuple[dict, Recommender]]:
        """(params, fitted model) for each grid point, lazily. Subclasses share the work the
        grid points have in common; each model is the one ``fit`` gives (PureSVD's up to its
        randomized solver's precision)."""
        for params in grid:
            yield params, cls(**params).fit(X, times)

    @abstractmethod
    def scores(self, X_rows: sparse.csr_matrix) -> np.ndarray: ...

    def get_state(self) -> dict[str, np.ndarray]:
        """The learned arrays, saved with ``allow_pickle=False``. Baselines that are only ever
        evaluated, never published, have none."""
        raise TypeError(f"{type(self).__name__} has no saveable state")

    @classmethod
    def from_state(cls, params: dict, state: dict[str, np.ndarray]) -> Recommender:
        model = cls(**params)
        model._set_state(state)
        return model

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        raise TypeError(f"{type(self).__name__} cannot be loaded from saved state")


class Popularity(Recommender):
    """Baseline: the same ranking for everyone, by number of students who interacted."""

    name = "popularity"

    def fit(self, X, times=None):
        self.item_counts_ = np.asarray((X > 0).sum(axis=0), dtype=np.float32).ravel()
        return self

    def scores(self, X_rows):
        return np.tile(self.item_counts_, (X_rows.shape[0], 1))

    def get_state(self):
        return {"item_counts": self.item_counts_}

    def _set_state(self, state):
        self.item_counts_ = state["item_counts"]


class PureSVD(Recommender):
    """PureSVD (Cremonesi et al. 2010): truncated SVD of the interaction matrix, a user's scores
    are their row projected on the item factors and back, r_u V V^T."""

    name = "svd"
    param_names = ("n_components", "random_state")

    def __init__(self, n_components: int = 50, random_state: int = 0) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, times=None):
        self.item_factors_ = _item_factors(X, self.n_components, self.random_state)
        return self

    @classmethod
    def fit_grid(cls, X, grid, times=None):
        """One factorisation at the largest rank: the leading singular vectors of a rank-r SVD
        are those of every smaller rank (the randomized solver only gets closer to them with a
        larger subspace)."""
        models = [(params, cls(**params)) for params in grid]
        if not models:
            return
        largest = max(model.n_components for _, model in models)
        factors = _item_factors(X, largest, models[0][1].random_state)
        for params, model in models:
            model.item_factors_ = factors[:, : _svd_rank(X, model.n_components)].copy()
            yield params, model

    def scores(self, X_rows):
        return np.asarray((X_rows @ self.item_factors_) @ self.item_factors_.T, dtype=np.float32)

    def get_state(self):
        return {"item_factors": self.item_factors_}

    def _set_state(self, state):
        self.item_factors_ = state["item_factors"]


def _svd_rank(X, n_components: int) -> int:
    return max(1, min(n_components, min(X.shape) - 1))


def _item_factors(X, n_components: int, random_state: int) -> np.ndarray:
    rank = _svd_rank(X, n_components)
    svd = TruncatedSVD(n_components=rank, n_iter=10, random_state=random_state)
    svd.fit(X.astype(np.float64))
    return svd.components_.T.astype(np.float32)


class ItemKNN(Recommender):
    """Item nearest neighbours: cosine similarity from one sparse product, each item keeping its
    ``n_neighbors`` most similar items; a user's score sums the similarities to their items."""

    name = "knn"
    param_names = ("n_neighbors",)

    def __init__(self, n_neighbors: int = 50) -> None:
        self.n_neighbors = n_neighbors

    def fit(self, X, times=None):
        self.neighbours_ = _keep_top_k_per_row(_cosine_similarity(X), self.n_neighbors)
        return self

    @classmethod
    def fit_grid(cls, X, grid, times=None):
        """One similarity matrix, cut to each grid point's neighbourhood size."""
        similarity = _cosine_similarity(X)
        for params in grid:
            model = cls(**params)
            model.neighbours_ = _keep_top_k_per_row(similarity, model.n_neighbors)
            yield params, model

    def scores(self, X_rows):
        # neighbours_ row j lists the items j is scored from, hence the transpose.
        return np.asarray((X_rows @ self.neighbours_.T).toarray(), dtype=np.float32)

    def get_state(self):
        n = self.neighbours_
        return {
            "neighbour_data": n.data,
            "neighbour_indices": n.indices,
            "neighbour_indptr": n.indptr,
            "neighbour_shape": np.asarray(n.shape),
        }

    def _set_state(self, state):
        self.neighbours_ = sparse.csr_matrix(
            (state["neighbour_data"], state["neighbour_indices"], state["neighbour_indptr"]),
            shape=tuple(state["neighbour_shape"]),
        )


def _cosine_similarity(X) -> sparse.csr_matrix:
    """Item x item cosine similarity, zero diagonal."""
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    normalized = (X @ sparse.diags(inverse)).tocsc()
    similarity = (normalized.T @ normalized).tocsr()
    similarity.setdiag(0)
    similarity.eliminate_zeros()
    return similarity


def _keep_top_k_per_row(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    rows, cols, vals = [], [], []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        data, indices = matrix.data[start:end], matrix.indices[start:end]
        if len(data) > k:
            best = np.argpartition(-data, k - 1)[:k]
            data, indices = data[best], indices[best]
        rows.append(np.full(len(data), row))
        cols.append(indices)
        vals.append(data)
    return sparse.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=matrix.shape,
    )


class _ItemWeights(Recommender):
    """Models whose whole state is a dense items x items matrix W: scores = X_rows @ W."""

    weights_: np.ndarray

    def scores(self, X_rows):
        return np.asarray(X_rows @ self.weights_, dtype=np.float32)

    def get_state(self):
        return {"weights": self.weights_}

    def _set_state(self, state):
        self.weights_ = state["weights"]


class EASE(_ItemWeights):
    """EASE (Steck 2019): a dense item x item weight matrix in closed form,
    B = I - P diagMat(1/diag(P))
    with P = (X^T X + l2 I)^-1 and a zero diagonal. Needs the Gram matrix inverted, so only for
    catalogues up to RECS_EASE_MAX_ITEMS."""

    name = "ease"
    param_names = ("l2",)

    def __init__(self, l2: float = 500.0) -> None:
        self.l2 = l2

    def fit(self, X, times=None):
        self.weights_ = _ease_weights(_gram(X), self.l2)
        return self

    @classmethod
    def fit_grid(cls, X, grid, times=None):
        """One Gram matrix for every l2."""
        gram = _gram(X)
        for params in grid:
            model = cls(**params)
            model.weights_ = _ease_weights(gram, model.l2)
            yield params, model


def _gram(X) -> np.ndarray:
    return (X.T @ X).toarray().astype(np.float64)


def _ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """B = I - P diagMat(1/diag(P)), P = (G + l2 I)^-1. G + l2 I is symmetric positive definite:
    with its Cholesky factor U (U^T U), P = U^-1 U^-T, a triangular inverse and one symmetric
    product, about two thirds of the work of a general inverse, which counts at thousands of
    items and once per l2 of the grid. In single precision (the weights are kept in it anyway)
    it is about three times faster again; the ridge keeps the matrix well enough conditioned
    that the weights agree with double precision's to about 1e-7, and double precision takes
    over should the single-precision factorisation fail."""
    for lapack_potrf, lapack_trtri, dtype in (
        (lapack.spotrf, lapack.strtri, np.float32),
        (lapack.dpotrf, lapack.dtrtri, np.float64),
    ):
        regularized = gram.astype(dtype)  # a copy: the caller's Gram matrix is left as it was
        regularized[np.diag_indices_from(regularized)] += l2
        # clean=1 zeroes the lower triangle, so the arrays are the triangular matrices themselves.
        factor, info = lapack_potrf(regularized, lower=False, clean=1, overwrite_a=True)
        del regularized
        if info == 0:
            factor, info = lapack_trtri(factor, lower=False, overwrite_c=True)
        if info == 0:
            break
    else:
        raise np.linalg.LinAlgError(f"the Gram matrix plus l2={l2} is not positive definite")
    precision = factor @ factor.T
    del factor
    weights = precision / -np.diag(precision)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32, copy=False)


class SessionEASE(_ItemWeights):
    """EASE on a session-weighted Gram matrix. Two challenges a student took up minutes apart say
    more about each other than two taken up a term apart, so each co-occurrence in the Gram
    matrix counts
        (1 - mix) + mix * exp(-|t_i - t_j| / tau)       (tau in seconds)
    instead of 1 (mix = 0 is plain co-occurrence; each student's kernel is positive
    semi-definite, up to the e^-12 cut-off of far pairs, which the ridge dwarfs). Columns are
    scaled by popularity^-a (D^-a, D the items' interaction totals) before the ridge regression
    B, and W = D^-a B: inputs go back to their own scale, outputs stay scaled, so an item's
    score is discounted by its popularity^a, which keeps the most popular items from filling
    every list. Rows are scaled by their totals^-b before the Gram matrix is summed, so each
    co-occurrence of a student with a long history counts for less: the few challenges of a
    short history say more about each other than any two of hundreds. Scoring a row is
    unaffected (one student's scores share one scale). ``l2`` is relative to the mean diagonal
    of the scaled Gram matrix, so one grid suits any data size. Scoring is EASE's, X_rows @ W,
    so fold-in and serving need no times. Without cell times every pair counts as
    simultaneous, and the model is EASE on the scaled rows and columns."""

    name = "session_ease"
    param_names = ("l2", "tau", "mix", "a", "b")

    # b = 0 by default: a model saved before ``b`` existed is rebuilt as it was trained.
    def __init__(
        self, l2: float = 5.0, tau: float = 300.0, mix: float = 0.75, a: float = 0.1, b: float = 0.0
    ):
        self.l2, self.tau, self.mix, self.a, self.b = l2, tau, mix, a, b

    def fit(self, X, times=None):
        ((_, model),) = self.fit_grid(X, [self.get_params()], times)
        self.weights_ = model.weights_
        return self

    @classmethod
    def fit_grid(cls, X, grid, times=None):
        """One session-weighted Gram matrix per (tau, mix, b) (grid points sharing one are best
        kept together), one inverse per grid point."""
        X = sparse.csr_matrix(X, dtype=np.float64)
        totals = np.maximum(np.asarray(X.sum(axis=0)).ravel(), 1.0)
        row_totals = np.maximum(np.asarray(X.sum(axis=1)).ravel(), 1.0)
        grams: dict[tuple[float, float, float], np.ndarray] = {}
        for params in grid:
            model = cls(**params)
            key = (float(model.tau), float(model.mix), float(model.b))
            if key not in grams:
                grams.clear()  # one held at a time: each is items x items
                rows = sparse.csr_matrix(sparse.diags(row_totals ** -float(model.b)) @ X)
                grams[key] = session_gram(rows, times, model.tau, model.mix)
            scale = totals ** -float(model.a)
            scaled = grams[key] * scale[:, None] * scale[None, :]
            l2 = float(model.l2) * max(float(np.mean(np.diag(scaled))), 1e-12)
            model.weights_ = (scale[:, None] * _ease_weights(scaled, l2)).astype(np.float32)
            yield params, model


# Pairs further apart than this many tau weigh under e^-12 of a simultaneous pair: skipped.
SESSION_REACH = 12.0
SESSION_PAIRS_PER_CHUNK = 4_000_000
# Close pairs are summed one by one. Histories stamped with a handful of moments (an import with
# one timestamp for everything) would make that quadratic; past this many pairs the time
# weighting is left out and the Gram matrix is the plain one.
SESSION_MAX_PAIRS = 150_000_000


def session_gram(
    X: sparse.csr_matrix, times: sparse.csr_matrix | None, tau: float, mix: float
) -> np.ndarray:
    """sum over users of x_ui x_uj ((1 - mix) + mix exp(-|t_ui - t_uj| / tau)), dense, float64.
    The diagonal is the plain Gram's (a cell is simultaneous with itself). The time kernel only
    visits pairs within SESSION_REACH * tau of each other: each user's cells in time order,
    compared with the next one, the one after, ... while any pair is still that close."""
    X = sparse.csr_matrix(X, dtype=np.float64)
    gram = _gram(X)
    if times is None or mix == 0:
        return gram
    if tau <= 0 or not 0 <= mix <= 1:
        raise ValueError(f"session weighting needs tau > 0 and 0 <= mix <= 1, not {tau}, {mix}")
    X.sort_indices()
    times = sparse.csr_matrix(times)
    times.sort_indices()
    if not (np.array_equal(times.indptr, X.indptr) and np.array_equal(times.indices, X.indices)):
        raise ValueError("cell times must have the interaction matrix's sparsity")
    users = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    order = np.lexsort((times.data, users))
    users, items = users[order], X.indices[order]
    values, stamps = X.data[order], np.asarray(times.data, dtype=np.float64)[order]
    reach = SESSION_REACH * tau
    if not np.isfinite(stamps).all():
        log.warning("session weighting left out: some interaction times are not finite")
        return gram
    pairs = _close_pair_count(users, stamps, reach)
    if pairs is None or pairs > SESSION_MAX_PAIRS:
        log.warning(
            "session weighting left out: %s pairs of interactions lie within %.0f s of each "
            "other (limit %s); the Gram matrix is the plain one",
            "too many to count" if pairs is None else f"{pairs:,}",
            reach,
            f"{SESSION_MAX_PAIRS:,}",
        )
        return gram
    diagonal = np.diag(gram).copy()
    gram *= 1.0 - mix
    gram[np.diag_indices_from(gram)] = diagonal
    near = sparse.csr_matrix(gram.shape, dtype=np.float64)
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pending_size = 0
    left, step = np.arange(len(users)), 1
    while left.size:
        right = left + step
        keep = right < len(users)
        left, right = left[keep], right[keep]
        gap = stamps[right] - stamps[left]
        # In time order, once a cell's next-but-k is out of reach or another user's, so is
        # every later one: the cell drops out.
        keep = (users[right] == users[left]) & (gap <= reach)
        left, right, gap = left[keep], right[keep], gap[keep]
        if left.size:
            weight = values[left] * values[right] * np.exp(-gap / tau)
            pending.append((items[left], items[right], weight))
            pending_size += left.size
            if pending_size >= SESSION_PAIRS_PER_CHUNK:
                near = near + _pairs_matrix(pending, gram.shape)
                pending, pending_size = [], 0
        step += 1
    near = (near + _pairs_matrix(pending, gram.shape)).tocoo()
    # A user holds an item once, so no pair is on the diagonal; both orders of each pair count.
    np.add.at(gram, (near.row, near.col), mix * near.data)
    np.add.at(gram, (near.col, near.row), mix * near.data)
    return gram


def _close_pair_count(users: np.ndarray, stamps: np.ndarray, reach: float) -> int | None:
    """How many (earlier, later) pairs of one user's cells lie within ``reach`` seconds, for
    cells sorted by (user, time) with finite times: one search per cell on a (user, whole
    seconds) key. None when the times span too much for that key."""
    if not len(users):
        return 0
    seconds = np.floor(stamps - stamps.min()).astype(np.int64)
    width = int(seconds.max()) + int(np.ceil(reach)) + 2
    if int(users.max()) + 1 > np.iinfo(np.int64).max // width:
        return None
    keys = users.astype(np.int64) * width + seconds
    # Whole seconds round each gap by under a second: the count may include a few pairs the
    # walk then skips, never fewer.
    ends = np.searchsorted(keys, keys + int(np.ceil(reach)) + 1, side="left")
    return int((ends - np.arange(len(keys)) - 1).sum())


def _pairs_matrix(pairs, shape) -> sparse.csr_matrix:
    if not pairs:
        return sparse.csr_matrix(shape, dtype=np.float64)
    rows, cols, data = (np.concatenate(column) for column in zip(*pairs, strict=True))
    return sparse.coo_matrix((data, (rows, cols)), shape=shape).tocsr()  # sums duplicates


CANDIDATES: dict[str, type[Recommender]] = {
    "svd": PureSVD,
    "knn": ItemKNN,
    "ease": EASE,
    "session_ease": SessionEASE,
}
ESTIMATORS: dict[str, type[Recommender]] = {**CANDIDATES, "popularity": Popularity}
PARAM_GRIDS: dict[str, list[dict]] = {
    "svd": [{"n_components": k} for k in (8, 16, 32, 64, 128)],
    "knn": [{"n_neighbors": k} for k in (10, 25, 50, 100, 200)],
    "ease": [{"l2": v} for v in (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0)],
    # l2 relative to the mean scaled Gram diagonal; tau 5 minutes: a sitting. Each grid point
    # costs one items x items inverse, so the grid stays at 32 points.
    "session_ease": [
        {"l2": l2, "tau": 300.0, "mix": mix, "a": a, "b": b}
        for mix in (0.5, 0.75)
        for b in (0.0, 0.15)
        for a in (0.1, 0.2)
        for l2 in (3.0, 4.5, 7.0, 10.0)
    ],
}
# Weights of the trend (``Recommender.with_trend``) tried on validation for each candidate's
# chosen parameters; no trend (0) is always one of the choices.
TREND_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
# Keys a candidate's chosen parameters carry for its trend, besides the estimator's own.
TREND_KEYS = ("trend", "trend_days")


def trend_scale(counts: np.ndarray) -> np.ndarray:
    """log1p(count) / log1p(largest count): the heuristic's scale for recent popularity."""
    counts = np.clip(np.asarray(counts, dtype=np.float64), 0.0, None)
    top = np.log1p(counts.max()) if counts.size else 0.0
    return (np.log1p(counts) / top if top > 0 else np.zeros_like(counts)).astype(np.float32)


# Candidates that invert a dense items x items matrix (RECS_EASE_MAX_ITEMS bounds them).
DENSE_CANDIDATES = frozenset({"ease", "session_ease"})


def candidate_names(n_items: int, ease_max_items: int) -> list[str]:
    return [
        name for name in CANDIDATES if name not in DENSE_CANDIDATES or n_items <= ease_max_items
    ]


def top_k(
    model: Recommender,
    X_rows: sparse.csr_matrix,
    k: int,
    exclude: sparse.csr_matrix | None = None,
    candidates: np.ndarray | None = None,
    scores: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the k best item indices, best first, and their scores. Items set in ``exclude``
    (usually the rows themselves: what each user already has) and items outside the
    ``candidates`` mask are never returned; rows with fewer eligible items are padded with index
    -1 and score -inf. ``scores``: the model's scores of ``X_rows`` when already computed (the
    ranking then only adds the trend)."""
    n_users, n_items = X_rows.shape
    # Ranking only the candidate columns: fewer values to partition, and the copy that makes
    # the scores writable is the one that selects them.
    columns = np.arange(n_items) if candidates is None else np.flatnonzero(candidates)
    position = np.full(n_items, -1, dtype=np.int64)
    position[columns] = np.arange(len(columns))
    k = max(0, min(k, n_items))
    indices = np.full((n_users, k), -1, dtype=np.int64)
    values = np.full((n_users, k), -np.inf, dtype=np.float32)
    width = min(k, len(columns))
    if width == 0:
        return indices, values
    # Anything with ``scores`` ranks (a baseline, a stand-in); a Recommender adds its trend.
    rank = getattr(model, "ranking_scores", model.scores)
    for start in range(0, n_users, SCORE_BATCH_USERS):
        stop = min(start + SCORE_BATCH_USERS, n_users)
        if scores is None:
            batch = rank(X_rows[start:stop])
        else:
            batch = model.rank_from(scores[start:stop])
        batch = np.asarray(batch, dtype=np.float32)[:, columns]
        if exclude is not None:
            rows, items = exclude[start:stop].nonzero()
            kept = position[items]
            batch[rows[kept >= 0], kept[kept >= 0]] = -np.inf
        best = (
            np.argpartition(-batch, width - 1, axis=1)[:, :width]
            if width < len(columns)
            else np.tile(np.arange(width), (stop - start, 1))
        )
        best_scores = np.take_along_axis(batch, best, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        best, best_scores = (np.take_along_axis(a, order, axis=1) for a in (best, best_scores))
        best = columns[best]
        best[~np.isfinite(best_scores)] = -1
        indices[start:stop, :width] = best
        values[start:stop, :width] = best_scores
    return indices, values


# --- Artifacts ------------------------------------------------------------------------------------


@dataclass
class Artifact:
    """A trained model with its training matrix and id maps: enough to score any of its users."""

    model: Recommender
    data: InteractionMatrix
    metadata: dict


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }


# An artifact being written; one a killed process left is removed by the next run's pruning.
STAGING_SUFFIX = ".tmp"


def save_artifact(
    directory: Path, model: Recommender, data: InteractionMatrix, metadata: dict
) -> Path:
    """Write ``model.npz`` (learned arrays and the training matrix) and ``metadata.json`` (params,
    id maps, metrics...) into a temporary folder, then rename it into place."""
    directory = Path(directory)
    staging = directory.with_name(directory.name + STAGING_SUFFIX)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write_artifact(staging, model, data, metadata)
    except BaseException:
        # A full disk must not keep half an artifact that no run points at (and so never pruned).
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return directory


def _write_artifact(
    staging: Path, model: Recommender, data: InteractionMatrix, metadata: dict
) -> None:
    arrays = {f"model_{key}": value for key, value in model.get_state().items()}
    if model.has_trend:
        arrays["trend"] = model.trend_
    X = data.matrix
    arrays.update(
        matrix_data=X.data,
        matrix_indices=X.indices,
        matrix_indptr=X.indptr,
        matrix_shape=np.asarray(X.shape),
    )
    np.savez_compressed(staging / ARTIFACT_ARRAYS, **arrays)
    full_metadata = {
        **metadata,
        "algorithm": model.name,
        "params": model.get_params(),
        "trend": {"weight": model.trend_weight, "days": model.trend_days}
        if model.has_trend
        else None,
        "user_ids": data.users.to_json(),
        "item_ids": data.items.to_json(),
        "libraries": library_versions(),
    }
    (staging / ARTIFACT_METADATA).write_text(json.dumps(full_metadata, indent=1, default=str))


# What loading a damaged artifact raises: a file missing, JSON or arrays cut short (an .npz that
# is no zip), metadata of another shape.
UNREADABLE_ARTIFACT = (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile)


def load_artifact(directory: Path) -> Artifact:
    directory = Path(directory)
    metadata = json.loads((directory / ARTIFACT_METADATA).read_text())
    with np.load(directory / ARTIFACT_ARRAYS, allow_pickle=False) as arrays:
        state = {
            key[len("model_") :]: arrays[key] for key in arrays.files if key.startswith("model_")
        }
        trend = arrays["trend"] if "trend" in arrays.files else None
        matrix = sparse.csr_matrix(
            (arrays["matrix_data"], arrays["matrix_indices"], arrays["matrix_indptr"]),
            shape=tuple(arrays["matrix_shape"]),
        )
    model = ESTIMATORS[metadata["algorithm"]].from_state(metadata["params"], state)
    if trend is not None and metadata.get("trend"):
        model.with_trend(trend, metadata["trend"]["weight"], metadata["trend"]["days"])
    data = InteractionMatrix(
        matrix, IdMap.from_json(metadata["user_ids"]), IdMap.from_json(metadata["item_ids"])
    )
    return Artifact(model, data, metadata)
