"""Offline evaluation: time-based and random per-user splits, ranking metrics (precision, recall,
NDCG at K, catalogue coverage), the popularity and heuristic baselines, and hyperparameter tuning on
a validation split carved from the training data."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from scipy import sparse
from sqlalchemy import select

from app.extensions import db
from app.models import Challenge
from app.recs.data import IdMap, InteractionMatrix, Interactions
from app.recs.heuristic import heuristic_scores, timeframe_scores
from app.recs.models import (
    CANDIDATES,
    PARAM_GRIDS,
    TREND_KEYS,
    TREND_WEIGHTS,
    Popularity,
    Recommender,
    candidate_names,
    top_k,
    trend_scale,
)

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


# --- Splits ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Training interactions and held-out positives on shared id maps. ``test`` only keeps cells
    that are new to the user and on ``candidates`` (items seen in training: the only ones a
    collaborative model can rank)."""

    kind: str
    train: InteractionMatrix
    test: sparse.csr_matrix
    candidates: np.ndarray
    train_events: Interactions
    reference_time: datetime

    @property
    def eval_users(self) -> np.ndarray:
        has_test = np.diff(self.test.indptr) > 0
        has_train = np.diff(self.train.matrix.indptr) > 0
        return np.flatnonzero(has_test & has_train)

    def sample_users(self, limit: int, seed: int) -> tuple[Split, dict]:
        """At most ``limit`` evaluated users, drawn uniformly with ``seed``: the models still
        train on everyone, and every model and baseline is ranked for the same students, so
        comparisons stay paired. Returns the split and a record of the sampling."""
        users = self.eval_users
        record = {"users": len(users), "evaluated": len(users), "seed": seed}
        if len(users) <= limit:
            return self, record
        chosen = np.zeros(self.test.shape[0], dtype=np.float32)
        chosen[np.random.default_rng(seed).choice(users, size=limit, replace=False)] = 1.0
        test = (sparse.diags(chosen) @ self.test).tocsr()
        test.eliminate_zeros()
        return replace(self, test=test), {**record, "evaluated": limit}

    def only_open(self, open_items: np.ndarray) -> Split:
        """Rank only items still open at the reference time (a challenge that had ended by
        then could not be joined afterwards), as serving ranks only eligible challenges."""
        candidates = self.candidates & open_items
        test = (self.test @ sparse.diags(candidates.astype(np.float32))).tocsr()
        test.eliminate_zeros()
        return replace(self, candidates=candidates, test=test)


def _make_split(
    kind: str,
    everything: Interactions,
    train_events: Interactions,
    test_events: Interactions,
    maps: tuple[IdMap, IdMap] | None = None,
) -> Split:
    users, items = maps or (IdMap(everything.user_ids), IdMap(everything.item_ids))
    train = InteractionMatrix.build(train_events, users, items)
    held_out = InteractionMatrix.build(test_events, users, items, with_times=False).matrix
    candidates = np.asarray((train.matrix > 0).sum(axis=0)).ravel() > 0
    new_to_user = held_out - held_out.multiply(train.matrix > 0)
    test = (new_to_user @ sparse.diags(candidates.astype(np.float32))).tocsr()
    test.eliminate_zeros()
    reference = train_events.latest or datetime.now(UTC)
    return Split(kind, train, test.astype(np.float32), candidates, train_events, reference)


def time_split(
    interactions: Interactions, fraction: float = 0.2, maps: tuple[IdMap, IdMap] | None = None
) -> Split:
    """The most recent ``fraction`` of interactions are held out; every training interaction is at
    or before every held-out one, so nothing from the future leaks into training."""
    ordered = interactions.in_time_order()
    cut = len(ordered) - int(round(fraction * len(ordered)))
    return _make_split(
        "time", interactions, ordered.take(slice(0, cut)), ordered.take(slice(cut, None)), maps
    )


def random_split(
    interactions: Interactions,
    fraction: float = 0.2,
    seed: int = 42,
    maps: tuple[IdMap, IdMap] | None = None,
) -> Split:
    """The papers' protocol: per user, a random ``fraction`` of their positive (user, item) cells
    is held out, with all of those cells' events."""
    full = InteractionMatrix.build(interactions, with_times=False)
    rng = np.random.default_rng(seed)
    held_out_keys = []
    n_items = len(full.items)
    for user in range(full.matrix.shape[0]):
        cells = full.matrix.indices[full.matrix.indptr[user] : full.matrix.indptr[user + 1]]
        n_test = int(round(fraction * len(cells)))
        if n_test:
            held_out_keys.append(user * n_items + rng.permutation(cells)[:n_test])
    keys = full.users.index(interactions.user_ids) * n_items + full.items.index(
        interactions.item_ids
    )
    in_test = np.isin(keys, np.concatenate(held_out_keys) if held_out_keys else [])
    return _make_split(
        "random", interactions, interactions.take(~in_test), interactions.take(in_test), maps
    )


def validation_split(split: Split, fraction: float, seed: int) -> Split:
    """A split of the training part only, of the same kind and on the same id maps, for
    choosing hyperparameters."""
    maps = (split.train.users, split.train.items)
    if split.kind == "time":
        return time_split(split.train_events, fraction, maps)
    return random_split(split.train_events, fraction, seed + 1, maps)


# --- Metrics --------------------------------------------------------------------------------------


def hit_matrix(ranked: np.ndarray, relevant: sparse.csr_matrix) -> np.ndarray:
    """Boolean (users x K): whether the item at each rank is in that user's relevant row."""
    n_items = np.int64(relevant.shape[1])
    # (row, item) cells as one sorted key each, looked up for every ranked cell at once.
    rows = np.repeat(np.arange(relevant.shape[0], dtype=np.int64), np.diff(relevant.indptr))
    wanted = np.sort(rows * n_items + relevant.indices)
    if not len(wanted):
        return np.zeros(ranked.shape, dtype=bool)
    keys = np.arange(ranked.shape[0], dtype=np.int64)[:, None] * n_items + ranked
    found = wanted[np.searchsorted(wanted, keys).clip(0, len(wanted) - 1)] == keys
    return found & (ranked >= 0)


@dataclass(frozen=True)
class FallbackRanking:
    """A fallback's ranking (the heuristic's) of a split's evaluated users, best first and
    ``depth`` deep: computed once, then used to top up every candidate and grid point."""

    ranked: np.ndarray  # eval users x depth; -1 pads

    @classmethod
    def of(cls, model: Recommender, split: Split, k: int) -> FallbackRanking:
        # 2k deep: after skipping the (at most k) items the model keeps, k are still left.
        users = split.eval_users
        seen = split.train.matrix[users]
        ranked, _ = top_k(model, seen, 2 * k, exclude=seen, candidates=split.candidates)
        return cls(ranked)


def topped_up(ranked: np.ndarray, scores: np.ndarray, fallback: FallbackRanking) -> np.ndarray:
    """``ranked`` (users x K) with the places the model has no evidence for (score exactly 0, or
    nothing at all) filled, in order, by the fallback's best items not already listed, as serving
    tops a student's rows up from the heuristic."""
    if fallback.ranked.shape[0] != ranked.shape[0]:
        raise ValueError("the fallback ranks other users than the model")
    k = ranked.shape[1]
    evidence = (ranked >= 0) & np.isfinite(scores) & (scores != 0)
    fill = fallback.ranked
    # A fallback item the model already lists is not offered twice.
    listed = ((fill[:, :, None] == ranked[:, None, :]) & evidence[:, None, :]).any(axis=2)
    choices = np.concatenate([ranked, fill], axis=1)
    usable = np.concatenate([evidence, (fill >= 0) & ~listed], axis=1)
    # Usable entries first, each side in its own order (a stable sort on "not usable").
    order = np.argsort(~usable, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(choices, order, axis=1)
    out[~np.take_along_axis(usable, order, axis=1)] = -1
    return out


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / k


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / np.maximum(n_relevant, 1)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary relevance; the ideal DCG puts min(|relevant|, k) hits at the top."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.clip(np.minimum(n_relevant, k), 1, k) - 1]
    return np.where(n_relevant > 0, dcg / ideal, 0.0)


def catalogue_coverage(ranked: np.ndarray, n_candidates: int) -> float:
    """Share of the candidate items that appear in at least one user's top K."""
    shown = np.unique(ranked[ranked >= 0])
    return len(shown) / n_candidates if n_candidates else 0.0


@dataclass(frozen=True)
class RankingMetrics:
    precision: float
    recall: float
    ndcg: float
    coverage: float
    users: int

    def as_dict(self, k: int) -> dict[str, float]:
        return {
            f"precision@{k}": round(self.precision, 4),
            f"recall@{k}": round(self.recall, 4),
            f"ndcg@{k}": round(self.ndcg, 4),
            "coverage": round(self.coverage, 4),
            "users": self.users,
        }


def evaluate_model(
    model: Recommender,
    split: Split,
    k: int = 10,
    fallback: FallbackRanking | None = None,
    scores: np.ndarray | None = None,
) -> RankingMetrics:
    """Full ranking over all candidates, excluding each user's training items. With a
    ``fallback`` (``FallbackRanking.of`` the same split), the list is the one serving shows: the
    model's items it has evidence for (a score other than exactly 0), then the fallback's best
    items in the places left."""
    users = split.eval_users
    if not len(users):
        return RankingMetrics(0.0, 0.0, 0.0, 0.0, 0)
    seen = split.train.matrix[users]
    ranked, top = top_k(model, seen, k, exclude=seen, candidates=split.candidates, scores=scores)
    if fallback is not None:
        ranked = topped_up(ranked, top, fallback)
    relevant = split.test[users]
    hits = hit_matrix(ranked, relevant)
    n_relevant = np.diff(relevant.indptr)
    return RankingMetrics(
        float(precision_at_k(hits, k).mean()),
        float(recall_at_k(hits, n_relevant, k).mean()),
        float(ndcg_at_k(hits, n_relevant, k).mean()),
        catalogue_coverage(ranked, int(split.candidates.sum())),
        len(users),
    )


# --- The heuristic as an offline baseline ---------------------------------------------------------


@dataclass(frozen=True)
class ItemFeatures:
    """What the heuristic knows about each item, aligned with an IdMap. ``categories`` is an
    (items x categories) membership matrix; ``main_category`` the one the heuristic scores by."""

    categories: sparse.csr_matrix
    main_category: np.ndarray
    reward: np.ndarray
    starts_at: list[datetime] | None = None  # None: no dates, timeframe is a constant 0.5
    ends_at: list[datetime | None] | None = None

    @classmethod
    def uniform(cls, n_items: int) -> ItemFeatures:
        return cls(
            sparse.csr_matrix(np.ones((n_items, 1), dtype=np.float32)),
            np.zeros(n_items, dtype=np.int64),
            np.zeros(n_items),
        )

    @classmethod
    def from_genres(cls, items: IdMap, genres: Mapping[int, np.ndarray]) -> ItemFeatures:
        """MovieLens: multi-genre membership, the first flagged genre as the main category."""
        width = len(next(iter(genres.values()))) if genres else 1
        flags = np.zeros((len(items), width), dtype=np.float32)
        for index, item_id in enumerate(items.ids.tolist()):
            if item_id in genres:
                flags[index] = genres[item_id]
        main = np.where(flags.any(axis=1), flags.argmax(axis=1), 0)
        return cls(sparse.csr_matrix(flags), main.astype(np.int64), np.zeros(len(items)))

    @classmethod
    def from_database(cls, items: IdMap) -> ItemFeatures:
        """Categories, rewards and dates of the challenges the map knows; ids the database does
        not know get a category of their own and no reward."""
        if items.ids.dtype.kind != "i":
            return cls.uniform(len(items))
        # The whole catalogue rather than an IN list, which would hit bound-parameter limits.
        rows = {c.id: c for c in db.session.scalars(select(Challenge))}
        category_ids = sorted({c.category_id for c in rows.values()})
        column = {cat: i for i, cat in enumerate(category_ids)}
        unknown_column = len(category_ids)
        epoch = datetime.fromtimestamp(0, UTC)
        main, reward, starts, ends = [], [], [], []
        for item_id in items.ids.tolist():
            challenge = rows.get(item_id)
            main.append(column[challenge.category_id] if challenge else unknown_column)
            reward.append(challenge.reward_points if challenge else 0)
            starts.append(challenge.starts_at if challenge else epoch)
            ends.append(challenge.ends_at if challenge else None)
        main_array = np.asarray(main, dtype=np.int64)
        membership = sparse.csr_matrix(
            (np.ones(len(main_array), dtype=np.float32), (np.arange(len(main_array)), main_array)),
            shape=(len(main_array), unknown_column + 1),
        )
        return cls(membership, main_array, np.asarray(reward, dtype=np.float64), starts, ends)

    def open_at(self, moment: datetime) -> np.ndarray:
        """Items not ended at ``moment`` (all of them when there are no dates)."""
        if self.ends_at is None:
            return np.ones(len(self.main_category), dtype=bool)
        return np.array([end is None or end > moment for end in self.ends_at], dtype=bool)


class HeuristicBaseline(Recommender):
    """The serving heuristic (app.recs.heuristic) scored from a training matrix as of ``now``."""

    name = "heuristic"

    def __init__(
        self,
        features: ItemFeatures,
        weights: Mapping[str, float],
        smoothing: float,
        recent_popularity: np.ndarray,
        now: datetime,
    ) -> None:
        self.features = features
        self.weights = weights
        self.smoothing = smoothing
        self.recent_popularity = recent_popularity
        self.now = now

    def fit(self, X, times=None):
        self.popularity_ = np.asarray((X > 0).sum(axis=0), dtype=np.float64).ravel()
        if self.features.starts_at is None:
            self.timeframe_, self.urgency_ = np.full(X.shape[1], 0.5), None
        else:
            self.timeframe_, self.urgency_ = timeframe_scores(
                self.features.starts_at, self.features.ends_at, self.now
            )
        return self

    def scores(self, X_rows):
        category_counts = ((X_rows > 0).astype(np.float32) @ self.features.categories).toarray()
        return heuristic_scores(
            category_counts,
            self.features.main_category,
            self.popularity_,
            self.recent_popularity,
            self.features.reward,
            self.timeframe_,
            self.weights,
            self.smoothing,
            self.urgency_,
        ).astype(np.float32)


def recent_popularity(split: Split, window_days: float) -> np.ndarray:
    """Per item, the users with a positive interaction in the window before the reference time."""
    return recent_counts(
        split.train_events, split.train.users, split.train.items, split.reference_time, window_days
    )


def recent_counts(
    events: Interactions, users: IdMap, items: IdMap, reference: datetime, window_days: float
) -> np.ndarray:
    """Per item of ``items``, the users whose interactions in the ``window_days`` before
    ``reference`` add up to a positive weight: a click then a dismiss in the window is not
    interest, as the training matrix does not count it either."""
    start = (reference - timedelta(days=window_days)).timestamp()
    recent = events.take(events.timestamps >= start)
    matrix = InteractionMatrix.build(recent, users, items, with_times=False).matrix
    return np.asarray((matrix > 0).sum(axis=0), dtype=np.float64).ravel()


# --- Comparing candidates -------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationSettings:
    k: int = 10
    holdout_fraction: float = 0.2
    seed: int = 42
    ease_max_items: int = 20000
    # Students ranked on the held-out and on the validation split; above these, a seeded sample.
    max_eval_users: int = 10_000
    max_validation_users: int = 5_000
    heuristic_weights: Mapping[str, float] = field(default_factory=dict)
    smoothing: float = 1.0
    recent_window_days: float = 7.0

    @classmethod
    def from_config(cls, config: Mapping, **overrides) -> EvaluationSettings:
        values = dict(
            holdout_fraction=float(config["RECS_HOLDOUT_FRACTION"]),
            ease_max_items=int(config["RECS_EASE_MAX_ITEMS"]),
            heuristic_weights=dict(config["RECS_HEURISTIC_WEIGHTS"]),
            smoothing=float(config["RECS_AFFINITY_SMOOTHING"]),
            recent_window_days=float(config["RECS_POPULAR_WINDOW_DAYS"]),
            max_eval_users=int(config.get("RECS_EVAL_MAX_USERS", cls.max_eval_users)),
            max_validation_users=int(
                config.get("RECS_VALIDATION_MAX_USERS", cls.max_validation_users)
            ),
        )
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class ModelEvaluation:
    name: str
    params: dict
    test: RankingMetrics
    validation_ndcg: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Comparison:
    """Every candidate and baseline on one split; ``best`` is chosen on validation NDCG.
    ``sampling`` says how many students were ranked on each split, out of how many."""

    split: str
    k: int
    rows: list[ModelEvaluation]
    best: str | None
    sampling: dict = field(default_factory=dict)

    def row(self, name: str) -> ModelEvaluation | None:
        return next((r for r in self.rows if r.name == name), None)

    def as_dict(self) -> dict:
        return {
            "split": self.split,
            "k": self.k,
            "best": self.best,
            "sampling": self.sampling,
            "models": {
                r.name: {
                    **r.test.as_dict(self.k),
                    "params": r.params,
                    "validation_ndcg": None
                    if r.validation_ndcg is None
                    else round(r.validation_ndcg, 4),
                }
                for r in self.rows
            },
        }


def build_candidate(name: str, params: Mapping) -> Recommender:
    """The estimator of a candidate's chosen parameters (its trend, if any, is set after the
    fit, from the data it was fitted on: ``with_trend_of``)."""
    return CANDIDATES[name](**{k: v for k, v in params.items() if k not in TREND_KEYS})


def with_trend_of(
    model: Recommender,
    params: Mapping,
    events: Interactions,
    users: IdMap,
    items: IdMap,
    reference: datetime,
) -> Recommender:
    """``model`` with the trend its parameters name, counted over ``events`` up to
    ``reference``; unchanged when they name none."""
    weight = float(params.get("trend") or 0.0)
    if not weight:
        return model
    days = float(params["trend_days"])
    counts = recent_counts(events, users, items, reference, days)
    return model.with_trend(trend_scale(counts), weight, days)


# The most score cells (validation students x items) ``tune_trend`` keeps at once (float32: 4
# bytes each); past it, each weight scores again.
TREND_SCORE_CELLS = 60_000_000


def _split_trend(split: Split, days: float) -> np.ndarray:
    return trend_scale(recent_popularity(split, days))


def tune(
    name: str, validation: Split, k: int, fallback: FallbackRanking | None = None
) -> tuple[dict, float]:
    """The grid point with the best validation NDCG@k (first one wins ties); ``fallback`` as in
    ``evaluate_model``."""
    params, ndcg, _ = _tune(name, validation, k, fallback)
    return params, ndcg


def _tune(
    name: str, validation: Split, k: int, fallback: FallbackRanking | None
) -> tuple[dict, float, Recommender | None]:
    """``tune``, with the chosen model as fitted on the validation's training part."""
    best_params, best_ndcg, best_model = {}, -1.0, None
    X = validation.train.matrix
    grid = _grid_for(name, X.shape)
    for params, model in CANDIDATES[name].fit_grid(X, grid, validation.train.times):
        ndcg = evaluate_model(model, validation, k, fallback).ndcg
        if ndcg > best_ndcg:
            best_params, best_ndcg, best_model = dict(params), ndcg, model
    return best_params, best_ndcg, best_model


def tune_and_score(
    name: str,
    split: Split,
    validation: Split,
    k: int,
    fallbacks: tuple[FallbackRanking | None, FallbackRanking | None] = (None, None),
    trend_days: float = 7.0,
) -> tuple[dict, float, RankingMetrics]:
    """One candidate as ``compare`` rates it: tuned on ``validation``, refit on ``split``'s
    training part, scored on its held-out part. ``fallbacks``: the heuristic's rankings of
    ``split`` and of ``validation``, topping the lists up as serving does. (params, validation
    NDCG@k, test metrics)."""
    for_split, for_validation = fallbacks
    params, validation_ndcg, tuned = _tune(name, validation, k, for_validation)
    # The trend predicts what comes next, which only a time split asks for: on a random split
    # the held-out interactions are from any moment, and "lately" means nothing to them.
    if split.kind == "time":
        params, validation_ndcg = tune_trend(
            name, params, validation_ndcg, validation, k, for_validation, trend_days, tuned
        )
    del tuned  # an items x items matrix for the dense candidates: not kept through the refit
    model = build_candidate(name, params).fit(split.train.matrix, split.train.times)
    model = with_trend_of(
        model,
        params,
        split.train_events,
        split.train.users,
        split.train.items,
        split.reference_time,
    )
    return params, validation_ndcg, evaluate_model(model, split, k, for_split)


def tune_trend(
    name: str,
    params: dict,
    validation_ndcg: float,
    validation: Split,
    k: int,
    fallback: FallbackRanking | None,
    trend_days: float,
    model: Recommender | None = None,
) -> tuple[dict, float]:
    """The chosen parameters with the trend weight (of TREND_WEIGHTS) that raises validation
    NDCG@k the most, or as they are when none does: a ranking per weight, of ``model`` (the
    parameters' model fitted on the validation's training part; fitted here when not given)."""
    trend = _split_trend(validation, trend_days)
    if not trend.any():
        return params, validation_ndcg
    if model is None:
        model = build_candidate(name, params).fit(validation.train.matrix, validation.train.times)
    # The scores are the same for every weight: computed once when they fit in memory.
    seen = validation.train.matrix[validation.eval_users]
    cells = seen.shape[0] * seen.shape[1]
    scores = model.scores(seen) if cells <= TREND_SCORE_CELLS else None
    best_weight, best_ndcg = 0.0, validation_ndcg
    for weight in TREND_WEIGHTS:
        model.with_trend(trend, weight, trend_days)
        ndcg = evaluate_model(model, validation, k, fallback, scores)
        if ndcg.ndcg > best_ndcg:
            best_weight, best_ndcg = weight, ndcg.ndcg
    if not best_weight:
        return params, validation_ndcg
    return {**params, "trend": best_weight, "trend_days": trend_days}, best_ndcg


def _grid_for(name: str, shape: tuple[int, int]) -> list[dict]:
    """Drop the grid points the data is too small for (they would all clip to the same model)."""
    if name != "svd":
        return PARAM_GRIDS[name]
    limit = max(1, min(shape) - 1)
    grid = [p for p in PARAM_GRIDS[name] if p["n_components"] <= limit]
    return grid or [{"n_components": limit}]


def heuristic_fallback(
    split: Split, features: ItemFeatures, settings: EvaluationSettings
) -> FallbackRanking:
    """The heuristic baseline, fitted on ``split``'s training part, ranking its evaluated users:
    what serving tops a model's rows up with."""
    heuristic = baselines(split, features, settings)[1].fit(split.train.matrix)
    return FallbackRanking.of(heuristic, split, settings.k)


def baselines(
    split: Split, features: ItemFeatures, settings: EvaluationSettings
) -> list[Recommender]:
    heuristic = HeuristicBaseline(
        features,
        settings.heuristic_weights,
        settings.smoothing,
        recent_popularity(split, settings.recent_window_days),
        split.reference_time,
    )
    return [Popularity(), heuristic]


def compare(
    split: Split,
    features: ItemFeatures,
    settings: EvaluationSettings,
    progress: Progress | None = None,
) -> Comparison:
    """Baselines, then each candidate tuned on a validation split and refit on the whole training
    part, all evaluated on ``split``'s held-out interactions (for at most
    ``settings.max_eval_users`` / ``max_validation_users`` students, a seeded sample)."""
    progress = progress or (lambda step: None)
    validation = validation_split(split, settings.holdout_fraction, settings.seed)
    if split.kind == "time":
        split = split.only_open(features.open_at(split.reference_time))
        validation = validation.only_open(features.open_at(validation.reference_time))
    split, test_sample = split.sample_users(settings.max_eval_users, settings.seed)
    validation, validation_sample = validation.sample_users(
        settings.max_validation_users, settings.seed + 1
    )
    sampling = {"test": test_sample, "validation": validation_sample}
    rows = []
    for baseline in baselines(split, features, settings):
        started = time.perf_counter()
        metrics = evaluate_model(baseline.fit(split.train.matrix), split, settings.k)
        rows.append(
            ModelEvaluation(baseline.name, {}, metrics, None, time.perf_counter() - started)
        )
        progress(baseline.name)
    # Candidates are rated on the lists serving would show: their evidence, then the heuristic.
    fallbacks = (
        heuristic_fallback(split, features, settings),
        heuristic_fallback(validation, features, settings),
    )
    for name in candidate_names(len(split.train.items), settings.ease_max_items):
        started = time.perf_counter()
        params, validation_ndcg, metrics = tune_and_score(
            name, split, validation, settings.k, fallbacks, settings.recent_window_days
        )
        rows.append(
            ModelEvaluation(name, params, metrics, validation_ndcg, time.perf_counter() - started)
        )
        log.info(
            "%s %s: validation ndcg@%d %.4f, test %.4f",
            split.kind,
            name,
            settings.k,
            validation_ndcg,
            metrics.ndcg,
        )
        progress(name)
    tuned = [r for r in rows if r.validation_ndcg is not None]
    best = max(tuned, key=lambda r: r.validation_ndcg).name if tuned else None
    return Comparison(split.kind, settings.k, rows, best, sampling)


def _sample_note(comparison: Comparison) -> str:
    test = comparison.sampling.get("test") or {}
    if test.get("evaluated", 0) >= test.get("users", 0):
        return ""
    return f" (a sample of {test['users']}, seed {test['seed']})"


def format_table(comparison: Comparison) -> str:
    k = comparison.k
    width = max([len("model"), *(len(row.name) for row in comparison.rows)]) + 1
    header = (
        f"{'model':<{width}}{'P@' + str(k):>8}{'R@' + str(k):>8}{'NDCG@' + str(k):>9}"
        f"{'coverage':>10}{'valid':>8}  params"
    )
    lines = [
        f"split: {comparison.split}, users evaluated: "
        f"{comparison.rows[0].test.users if comparison.rows else 0}" + _sample_note(comparison),
        header,
    ]
    for row in comparison.rows:
        marker = " *" if row.name == comparison.best else ""
        valid = "" if row.validation_ndcg is None else f"{row.validation_ndcg:.4f}"
        params = ", ".join(f"{key}={value}" for key, value in row.params.items())
        lines.append(
            f"{row.name:<{width}}{row.test.precision:>8.4f}{row.test.recall:>8.4f}"
            f"{row.test.ndcg:>9.4f}{row.test.coverage:>10.3f}{valid:>8}  {params}{marker}"
        )
    lines.append(
        "* best candidate on the validation split (NDCG); P/R/NDCG/coverage on the test split"
    )
    return "\n".join(lines)
