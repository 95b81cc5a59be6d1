"""The fallback scorer: category affinity, popularity, recent joins, reward and timeframe.

``heuristic_scores`` is a pure numpy core shared by serving and by the offline evaluation (where it
is the baseline a trained model must beat); ``recommend_heuristic`` wraps it for one student.

Components, each scaled to [0, 1] before weighting (weights: ``RECS_HEURISTIC_WEIGHTS``):

- ``affinity``: the student's smoothed share of participations in the item's category,
  ``(count + s) / (total + s * n_categories)``; a student without history gets the uniform share
  ``1 / n_categories`` for every item, so it does not change their ranking (cold start = popularity,
  recency and reward).
- ``popularity`` / ``recent_popularity``: ``log1p(count) / log1p(max count)``; the recent count is
  the joins within ``RECS_POPULAR_WINDOW_DAYS``, so recent joins weigh twice (once in each).
- ``reward``: points divided by the largest reward among the candidates.
- ``timeframe``: 1 while running, ``1 / (1 + days_until_start / 7)`` when upcoming.
- ``urgency``: ``1 - days_left / 7`` during a running challenge's last week, else 0. It is its own
  input (``item_urgency``); callers without dates (MovieLens) pass ``item_timeframe = 0.5`` and no
  urgency, which makes both terms constant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import scipy.sparse as sp

WEIGHT_KEYS = ("affinity", "popularity", "recent_popularity", "reward", "timeframe", "urgency")
# Timeframe decays by half for a challenge starting a week from now; urgency covers the last week.
START_HALF_LIFE_DAYS = 7.0
URGENCY_WINDOW_DAYS = 7.0
SECONDS_PER_DAY = 86400.0
# When two components contribute equally, the more specific phrase explains the item better.
REASON_PREFERENCE = (
    "affinity",
    "urgency",
    "recent_popularity",
    "timeframe",
    "popularity",
    "reward",
)


# --- the numpy core -------------------------------------------------------------------------


def _as_vector(values, name: str, n_items: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if n_items is not None and array.shape[0] != n_items:
        raise ValueError(f"{name} has {array.shape[0]} entries, expected {n_items}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _log_scaled(counts: np.ndarray) -> np.ndarray:
    counts = np.clip(counts, 0.0, None)
    top = np.log1p(counts.max()) if counts.size else 0.0
    return np.log1p(counts) / top if top > 0 else np.zeros_like(counts)


def _max_scaled(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, None)
    top = values.max() if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def category_shares(user_category_counts, smoothing: float = 1.0) -> np.ndarray:
    """(n_users x n_categories) smoothed share of each user's participations per category."""
    if smoothing <= 0:
        raise ValueError("smoothing must be positive")
    counts = (
        user_category_counts.toarray()
        if sp.issparse(user_category_counts)
        else np.asarray(user_category_counts)
    )
    counts = np.atleast_2d(counts.astype(np.float64))
    n_categories = counts.shape[1]
    if n_categories == 0:
        raise ValueError("user_category_counts needs at least one category column")
    totals = counts.sum(axis=1, keepdims=True)
    return (counts + smoothing) / (totals + smoothing * n_categories)


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = set(weights) - set(WEIGHT_KEYS)
    if unknown:
        raise ValueError(f"unknown heuristic weight(s): {', '.join(sorted(unknown))}")
    return {key: float(weights.get(key, 0.0)) for key in WEIGHT_KEYS}


def heuristic_components(
    user_category_counts,
    item_category,
    item_popularity,
    item_recent_popularity,
    item_reward,
    item_timeframe,
    smoothing: float = 1.0,
    item_urgency=None,
) -> dict[str, np.ndarray]:
    """Each component before weighting: ``affinity`` is (n_users x n_items), the rest (n_items,)."""
    categories = np.asarray(item_category, dtype=np.int64).ravel()
    n_items = categories.shape[0]
    shares = category_shares(user_category_counts, smoothing)
    if n_items and (categories.min() < 0 or categories.max() >= shares.shape[1]):
        raise ValueError("item_category holds an index outside user_category_counts' columns")
    timeframe = _as_vector(item_timeframe, "item_timeframe", n_items)
    urgency = (
        np.zeros(n_items)
        if item_urgency is None
        else _as_vector(item_urgency, "item_urgency", n_items)
    )
    return {
        "affinity": shares[:, categories],
        "popularity": _log_scaled(_as_vector(item_popularity, "item_popularity", n_items)),
        "recent_popularity": _log_scaled(
            _as_vector(item_recent_popularity, "item_recent_popularity", n_items)
        ),
        "reward": _max_scaled(_as_vector(item_reward, "item_reward", n_items)),
        "timeframe": np.clip(timeframe, 0.0, 1.0),
        "urgency": np.clip(urgency, 0.0, 1.0),
    }


def heuristic_scores(
    user_category_counts,
    item_category,
    item_popularity,
    item_recent_popularity,
    item_reward,
    item_timeframe,
    weights: Mapping[str, float],
    smoothing: float = 1.0,
    item_urgency=None,
) -> np.ndarray:
    """(n_users x n_items) scores; higher is better. See the module docstring for the components.

    The result is dense: for large catalogues call it on chunks of user rows.
    """
    w = _check_weights(weights)
    parts = heuristic_components(
        user_category_counts,
        item_category,
        item_popularity,
        item_recent_popularity,
        item_reward,
        item_timeframe,
        smoothing,
        item_urgency,
    )
    item_part = sum(w[key] * parts[key] for key in WEIGHT_KEYS if key != "affinity")
    return w["affinity"] * parts["affinity"] + item_part[np.newaxis, :]


def timeframe_scores(
    starts_at: Sequence[datetime], ends_at: Sequence[datetime | None], now: datetime
) -> tuple[np.ndarray, np.ndarray]:
    """(timeframe, urgency) per item from its dates; an open-ended challenge never gets urgency."""
    start = np.array([s.timestamp() for s in starts_at], dtype=np.float64)
    end = np.array([np.inf if e is None else e.timestamp() for e in ends_at], dtype=np.float64)
    if start.shape != end.shape:
        raise ValueError("starts_at and ends_at must have the same length")
    return _timeframe_from_epochs(start, end, now.timestamp())


def _timeframe_from_epochs(
    start: np.ndarray, end: np.ndarray, t: float
) -> tuple[np.ndarray, np.ndarray]:
    """``timeframe_scores`` on epoch seconds; an open-ended challenge ends at +inf."""
    days_to_start = np.clip((start - t) / SECONDS_PER_DAY, 0.0, None)
    ended = end <= t
    timeframe = np.where(ended, 0.0, 1.0 / (1.0 + days_to_start / START_HALF_LIFE_DAYS))
    days_left = (end - t) / SECONDS_PER_DAY
    running = (start <= t) & ~ended
    urgency = np.where(
        running & (days_left <= URGENCY_WINDOW_DAYS), 1.0 - days_left / URGENCY_WINDOW_DAYS, 0.0
    )
    return timeframe, np.clip(urgency, 0.0, 1.0)


def rank_order(scores: np.ndarray, item_ids: Sequence[int]) -> np.ndarray:
    """Indices by score desc, then item id asc: the same inputs always give the same slate."""
    return np.lexsort((np.asarray(item_ids), -np.asarray(scores, dtype=np.float64)))


# --- one student's slate from the database --------------------------------------------------


@dataclass(frozen=True)
class ScoredChallenge:
    challenge: object  # app.models.Challenge, category loaded
    score: float
    reason: str


def _days_phrase(prefix: str, moment: datetime, now: datetime) -> str:
    """In calendar days (UTC, as the cards give times): at 23:00, a start at 01:00 is tomorrow,
    and one 25 hours away the day after."""
    days = (moment.astimezone(UTC).date() - now.astimezone(UTC).date()).days
    if days <= 0:
        return f"{prefix} today"
    return f"{prefix} tomorrow" if days == 1 else f"{prefix} in {days} days"


def affinity_reason(count: int, category_name: str) -> str:
    noun = "challenge" if count == 1 else "challenges"
    return f"Because you joined {count} {category_name} {noun}"


def popular_reason(window_days: int) -> str:
    return "Popular this week" if window_days == 7 else f"Popular in the last {window_days} days"


def _reason(
    challenge,
    contributions: dict[str, float],
    category_count: int,
    recent: int,
    window_days: int,
    now: datetime,
) -> str:
    """The phrase for the largest weighted component that has something true to say."""
    candidates: dict[str, str] = {}
    if category_count > 0:
        candidates["affinity"] = affinity_reason(category_count, challenge.category.name)
    if recent > 0:
        candidates["recent_popularity"] = popular_reason(window_days)
    if contributions["urgency"] > 0 and challenge.ends_at is not None:
        candidates["urgency"] = _days_phrase("Ends", challenge.ends_at, now)
    if challenge.starts_at > now:
        candidates["timeframe"] = _days_phrase("Starts", challenge.starts_at, now)
    if challenge.participations_count > 0:
        n = challenge.participations_count
        candidates["popularity"] = f"Joined by {n} student{'' if n == 1 else 's'}"
    if challenge.reward_points > 0:
        candidates["reward"] = f"Worth {challenge.reward_points} points"
    if not candidates:
        return "Open now"
    best = max(candidates, key=lambda key: (contributions[key], -REASON_PREFERENCE.index(key)))
    return candidates[best]


@dataclass(frozen=True)
class HeuristicPick:
    """A ranked challenge before its row is loaded, with what ``heuristic_reason`` needs."""

    challenge_id: int
    score: float
    contributions: dict[str, float]
    recent_joins: int


def _rank_arrays(
    ids: np.ndarray,
    categories: np.ndarray,
    popularity: np.ndarray,
    recent: np.ndarray,
    rewards: np.ndarray,
    starts_at: np.ndarray,
    ends_at: np.ndarray,
    category_counts: Mapping[int, int],
    weights: Mapping[str, float],
    smoothing: float,
    now: datetime,
    k: int | None = None,
) -> list[HeuristicPick]:
    """One student's best ``k`` (all when None) of the given candidates, best first."""
    if not len(ids) or (k is not None and k <= 0):
        return []
    # Affinity's denominator counts the categories among the candidates and the student's own.
    columns = np.union1d(categories, np.fromiter(category_counts, dtype=np.int64))
    user_counts = np.array([[category_counts.get(int(c), 0) for c in columns]], dtype=np.float64)
    timeframe, urgency = _timeframe_from_epochs(starts_at, ends_at, now.timestamp())
    w = _check_weights(weights)
    parts = heuristic_components(
        user_counts,
        np.searchsorted(columns, categories),
        popularity,
        recent,
        rewards,
        timeframe,
        smoothing,
        urgency,
    )
    parts["affinity"] = parts["affinity"][0]
    contributions = {key: w[key] * parts[key] for key in WEIGHT_KEYS}
    scores = sum(contributions.values())
    chosen = np.arange(len(ids))
    if k is not None and k < len(ids):
        # Only the top k are ordered: everything scoring at least the k-th best, ties included.
        cut = np.partition(scores, len(scores) - k)[len(scores) - k]
        chosen = np.flatnonzero(scores >= cut)
    order = chosen[rank_order(scores[chosen], ids[chosen])][:k]
    return [
        HeuristicPick(
            int(ids[i]),
            float(scores[i]),
            {key: float(value[i]) for key, value in contributions.items()},
            int(recent[i]),
        )
        for i in order
    ]


def heuristic_reason(
    challenge, pick: HeuristicPick, category_counts: Mapping[int, int], window_days: int, now
) -> str:
    """The phrase for ``pick``, from its loaded ``challenge`` (category loaded)."""
    return _reason(
        challenge,
        pick.contributions,
        category_counts.get(challenge.category_id, 0),
        pick.recent_joins,
        window_days,
        now,
    )


def score_candidates(
    candidates: Sequence[tuple[object, int]],
    category_counts: Mapping[int, int],
    weights: Mapping[str, float],
    smoothing: float,
    window_days: int,
    now: datetime,
) -> list[ScoredChallenge]:
    """Rank ``(challenge, recent_joins)`` pairs for one student with these per-category counts."""
    if not candidates:
        return []
    challenges = {c.id: c for c, _ in candidates}
    starts = np.array([c.starts_at.timestamp() for c, _ in candidates], dtype=np.float64)
    ends = np.array(
        [np.inf if c.ends_at is None else c.ends_at.timestamp() for c, _ in candidates],
        dtype=np.float64,
    )
    picks = _rank_arrays(
        np.array([c.id for c, _ in candidates], dtype=np.int64),
        np.array([c.category_id for c, _ in candidates], dtype=np.int64),
        np.array([c.participations_count for c, _ in candidates], dtype=np.float64),
        np.array([r for _, r in candidates], dtype=np.float64),
        np.array([c.reward_points for c, _ in candidates], dtype=np.float64),
        starts,
        ends,
        category_counts,
        weights,
        smoothing,
        now,
    )
    return [
        ScoredChallenge(
            challenges[p.challenge_id],
            p.score,
            heuristic_reason(challenges[p.challenge_id], p, category_counts, window_days, now),
        )
        for p in picks
    ]


def rank_heuristic(
    history,
    k: int,
    exclude_ids: Iterable[int] = (),
    now: datetime | None = None,
    fingerprint=None,
) -> list[HeuristicPick]:
    """The student's top ``k`` by the heuristic, from the process's scoring catalogue (no row is
    loaded): challenges the catalogue believes open, minus the student's and ``exclude_ids``.
    ``fingerprint`` (``eligibility.catalogue_fingerprint()``) saves a query when known."""
    from flask import current_app

    from app.models import utcnow
    from app.recs import eligibility

    now = now or utcnow()
    config = current_app.config
    window = timedelta(days=int(config["RECS_POPULAR_WINDOW_DAYS"]))
    catalogue = eligibility.scoring_catalogue(now, window, fingerprint)
    rows = catalogue.open_rows(now, set(exclude_ids) | history.excluded_ids)
    return _rank_arrays(
        catalogue.ids[rows],
        catalogue.category_ids[rows],
        catalogue.participations[rows],
        catalogue.recent_joins[rows],
        catalogue.rewards[rows],
        catalogue.starts_at[rows],
        catalogue.ends_at[rows],
        history.category_counts,
        config["RECS_HEURISTIC_WEIGHTS"],
        float(config["RECS_AFFINITY_SMOOTHING"]),
        now,
        k=max(0, k),
    )


def recommend_heuristic(
    user_id: int, k: int, exclude_ids: Iterable[int] = (), now: datetime | None = None, history=None
) -> list[ScoredChallenge]:
    """The student's top ``k`` eligible challenges by the heuristic, with reasons.

    Joined, dismissed, ended, archived and draft challenges never appear; ``exclude_ids`` removes
    more (e.g. what a slate already holds). ``history`` (an ``eligibility.UserHistory``) saves a
    query when the caller already loaded it.
    """
    from flask import current_app

    from app.models import utcnow
    from app.recs import eligibility

    now = now or utcnow()
    history = history or eligibility.load_user_history(user_id)
    window_days = int(current_app.config["RECS_POPULAR_WINDOW_DAYS"])
    excluded, found = set(exclude_ids), []
    # Ranked from the cached catalogue, checked against the rows: a challenge closed since the
    # catalogue was read is dropped and its place ranked again.
    while len(found) < k:
        picks = rank_heuristic(history, k - len(found), excluded, now)
        loaded = eligibility.load_open_challenges([p.challenge_id for p in picks], now)
        found += [(p, loaded[p.challenge_id]) for p in picks if p.challenge_id in loaded]
        excluded |= {p.challenge_id for p in picks}
        if len(loaded) == len(picks):
            break
    return [
        ScoredChallenge(
            challenge,
            pick.score,
            heuristic_reason(challenge, pick, history.category_counts, window_days, now),
        )
        for pick, challenge in found
    ]
