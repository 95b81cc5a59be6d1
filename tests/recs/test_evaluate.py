"""Splits, ranking metrics against hand-computed values, baselines and the candidate comparison."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import sparse

from app.config import DefaultConfig
from app.recs.data import IdMap, InteractionMatrix, Interactions
from app.recs.evaluate import (
    EvaluationSettings,
    FallbackRanking,
    HeuristicBaseline,
    ItemFeatures,
    catalogue_coverage,
    compare,
    evaluate_model,
    format_table,
    hit_matrix,
    ndcg_at_k,
    precision_at_k,
    random_split,
    recall_at_k,
    time_split,
    topped_up,
    validation_split,
)
from tests.recs.planted_data import planted_interactions

HEURISTIC_WEIGHTS = DefaultConfig.RECS_HEURISTIC_WEIGHTS


def relevance(rows: list[list[int]], n_items: int = 10) -> sparse.csr_matrix:
    dense = np.zeros((len(rows), n_items), dtype=np.float32)
    for row, items in enumerate(rows):
        dense[row, items] = 1
    return sparse.csr_matrix(dense)


def test_metrics_match_hand_computed_values():
    ranked = np.array([[3, 1, 5], [2, 4, 0], [6, 8, -1]])
    relevant = relevance([[1, 5, 7], [9], [8]])
    hits = hit_matrix(ranked, relevant)
    assert hits.tolist() == [[False, True, True], [False, False, False], [False, True, False]]
    n_relevant = np.array([3, 1, 1])
    assert precision_at_k(hits, 3).tolist() == pytest.approx([2 / 3, 0, 1 / 3])
    assert recall_at_k(hits, n_relevant, 3).tolist() == pytest.approx([2 / 3, 0, 1])
    # DCG = 1/log2(3) + 1/log2(4); the ideal puts min(|relevant|, k) = 3 hits first.
    first = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    # One relevant item: the ideal DCG is 1, so a hit at rank 2 scores 1/log2(3).
    assert ndcg_at_k(hits, n_relevant, 3).tolist() == pytest.approx([first, 0.0, 1 / math.log2(3)])


def test_hit_matrix_padding_never_matches_the_previous_users_last_item():
    # Row 1's padding (-1) would be cell 9 of row 0 in a flat (row, item) numbering.
    hits = hit_matrix(np.array([[0, -1], [-1, -1]]), relevance([[9], [0]]))
    assert not hits.any()
    assert hit_matrix(np.array([[1]]), relevance([[]])).tolist() == [[False]]


def test_ndcg_ideal_is_capped_at_k():
    hits = np.array([[True, True]])
    assert ndcg_at_k(hits, np.array([5]), 2).tolist() == pytest.approx([1.0])


def test_catalogue_coverage_counts_distinct_items():
    assert catalogue_coverage(np.array([[1, 2], [2, 3], [-1, -1]]), 6) == pytest.approx(0.5)


def timed_interactions() -> Interactions:
    rows = [
        (user, item, "join", 1.0, float(user * 10 + item))
        for user in range(1, 6)
        for item in range(1, 6)
    ]
    return Interactions.from_rows(rows)


def test_time_split_never_leaks_the_future():
    interactions = planted_interactions(seed=3)
    split = time_split(interactions, 0.25)
    train_times = split.train_events.timestamps
    held_out = len(interactions) - len(split.train_events)
    assert held_out == round(0.25 * len(interactions))
    later = np.sort(interactions.timestamps)[-held_out:]
    assert train_times.max() <= later.min()
    assert split.reference_time == datetime.fromtimestamp(train_times.max(), UTC)
    # Held-out cells are new to the user and rankable (seen in training by someone).
    assert split.test.multiply(split.train.matrix).nnz == 0
    assert np.all(split.candidates[split.test.indices])


def test_time_split_of_a_tiny_log():
    split = time_split(timed_interactions(), 0.2)
    assert sorted(split.train_events.timestamps.tolist())[-1] <= 45.0
    assert split.train.matrix.shape == split.test.shape == (5, 5)


def test_random_split_holds_out_a_fifth_of_each_user_reproducibly():
    interactions = planted_interactions()
    first, again = random_split(interactions, 0.2, seed=7), random_split(interactions, 0.2, seed=7)
    assert (first.test != again.test).nnz == 0
    full = InteractionMatrix.build(interactions).matrix
    per_user = np.diff(full.indptr)
    held = np.diff(first.test.indptr)
    wanted = np.round(per_user * 0.2)
    # Only cells whose item nobody else has in training drop out of the held-out set.
    assert np.all(held <= wanted) and held.sum() >= 0.9 * wanted.sum()
    assert first.test.multiply(first.train.matrix).nnz == 0


def test_validation_split_comes_from_training_data_only():
    split = time_split(planted_interactions(), 0.2)
    validation = validation_split(split, 0.2, seed=42)
    assert len(validation.train_events) + round(0.2 * len(split.train_events)) == len(
        split.train_events
    )
    assert validation.train_events.timestamps.max() <= split.train_events.timestamps.max()


def test_heuristic_baseline_prefers_the_users_category():
    features = ItemFeatures(
        sparse.csr_matrix(np.eye(3, 2, dtype=np.float32) + np.eye(3, 2, -2)),
        np.array([0, 1, 0]),
        np.zeros(3),
    )
    X = sparse.csr_matrix(np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    model = HeuristicBaseline(features, {"affinity": 1.0}, 1.0, np.zeros(3), datetime.now(UTC)).fit(
        X
    )
    scores = model.scores(X)
    assert scores[0, 2] > scores[0, 1] and scores[1, 1] > scores[1, 2]


def test_uniform_and_genre_features():
    items = IdMap([1, 2])
    genres = {1: np.array([0, 1, 1]), 2: np.array([0, 0, 0])}
    features = ItemFeatures.from_genres(items, genres)
    assert features.main_category.tolist() == [1, 0]
    assert features.categories.toarray().tolist() == [[0, 1, 1], [0, 0, 0]]
    assert ItemFeatures.uniform(2).categories.shape == (2, 1)


def test_compare_tunes_every_candidate_and_ranks_them():
    split = random_split(planted_interactions(), 0.2, seed=42)
    settings = EvaluationSettings(heuristic_weights=HEURISTIC_WEIGHTS, ease_max_items=1000)
    steps = []
    comparison = compare(
        split, ItemFeatures.uniform(len(split.train.items)), settings, steps.append
    )
    names = ["popularity", "heuristic", "svd", "knn", "ease", "session_ease"]
    assert [r.name for r in comparison.rows] == names
    assert steps == names
    assert comparison.best in {"svd", "knn", "ease", "session_ease"}
    best = comparison.row(comparison.best)
    assert best.params and best.validation_ndcg is not None
    assert best.test.ndcg > comparison.row("popularity").test.ndcg
    table = format_table(comparison)
    assert "NDCG@10" in table and f"{comparison.best} " in table
    # One column width for every name, the longest included: the figures line up.
    header, *rows = table.splitlines()[1:-1]
    figures_end = len("session_ease ") + 8 + 8 + 9 + 10
    assert header[:figures_end].endswith("coverage")
    for line, row in zip(rows, comparison.rows, strict=True):
        assert line.startswith(row.name + " ")
        assert line[:figures_end].endswith(f"{row.test.coverage:.3f}"), line
    assert comparison.as_dict()["models"]["svd"]["ndcg@10"] == round(
        comparison.row("svd").test.ndcg, 4
    )


class Table:
    """Fixed scores per user row, whatever the row holds."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)

    def scores(self, X_rows):
        return self.table[: X_rows.shape[0]]


def test_topped_up_keeps_the_models_evidence_and_fills_the_rest_in_the_fallbacks_order():
    ranked = np.array([[2, 5, 3], [4, 0, 1]])
    scores = np.array([[0.9, -0.1, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    fallback = FallbackRanking(np.array([[1, 2, 3, 4, 5, -1], [0, 1, 2, -1, -1, -1]]))
    # Row 0: 2 and 5 have evidence (0.9, -0.1); 3 (score 0) gives way to the fallback's best
    # item not listed yet: 1. Row 1: nothing has evidence, the fallback's top three.
    assert topped_up(ranked, scores, fallback).tolist() == [[2, 5, 1], [0, 1, 2]]
    # Fallback and model out of items: padded.
    short = FallbackRanking(np.array([[5, -1], [-1, -1]]))
    assert topped_up(ranked[:, :2], scores[:, :2], short).tolist() == [[2, 5], [-1, -1]]
    with pytest.raises(ValueError):
        topped_up(ranked, scores, FallbackRanking(fallback.ranked[:1]))


def test_topped_up_agrees_with_a_plain_loop_on_random_lists():
    rng = np.random.default_rng(7)
    n_users, k, n_items = 200, 5, 12
    ranked = np.array([rng.permutation(n_items)[:k] for _ in range(n_users)])
    ranked[rng.random(ranked.shape) < 0.1] = -1
    scores = rng.choice([0.0, 0.0, 0.3, -0.2, 1.5], size=ranked.shape).astype(np.float32)
    fill = np.array([rng.permutation(n_items)[: 2 * k] for _ in range(n_users)])
    fill[rng.random(fill.shape) < 0.1] = -1
    expected = []
    for row, row_scores, row_fill in zip(ranked, scores, fill, strict=True):
        kept = [i for i, s in zip(row, row_scores, strict=True) if i >= 0 and s != 0]
        extra = [i for i in row_fill if i >= 0 and i not in kept]
        merged = (kept + extra)[:k]
        expected.append(merged + [-1] * (k - len(merged)))
    assert topped_up(ranked, scores, FallbackRanking(fill)).tolist() == expected


def test_the_fallback_ranks_the_splits_users_without_their_items():
    seen = sparse.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float32))
    split = SimpleNamespace(
        eval_users=np.array([0, 1]),
        train=SimpleNamespace(matrix=seen),
        candidates=np.array([True, True, False, True]),
    )
    fallback = FallbackRanking.of(Table([[4, 3, 2, 1], [4, 3, 2, 1]]), split, 1)
    assert fallback.ranked.tolist() == [[1, 3], [0, 1]]


def test_a_model_without_evidence_is_rated_as_the_heuristic_it_falls_back_to():
    split = random_split(planted_interactions(), 0.2, seed=42)
    n_users, n_items = split.train.matrix.shape
    heuristic = HeuristicBaseline(
        ItemFeatures.uniform(n_items), HEURISTIC_WEIGHTS, 1.0, np.zeros(n_items), datetime.now(UTC)
    ).fit(split.train.matrix)
    silent = Table(np.zeros((n_users, n_items)))
    alone = evaluate_model(heuristic, split)
    fallback = FallbackRanking.of(heuristic, split, 10)
    assert evaluate_model(silent, split, fallback=fallback) == alone
    assert evaluate_model(silent, split).ndcg != alone.ndcg


def test_evaluate_model_with_no_evaluable_users():
    interactions = Interactions.from_rows([(1, 1, "join", 1.0, 0.0)])
    split = time_split(interactions, 0.0)
    metrics = evaluate_model(
        HeuristicBaseline(ItemFeatures.uniform(1), {}, 1.0, np.zeros(1), datetime.now(UTC)).fit(
            split.train.matrix
        ),
        split,
    )
    assert metrics.users == 0 and metrics.ndcg == 0.0


def test_time_split_ranks_only_challenges_still_open_at_the_cutoff():
    split = time_split(timed_interactions(), 0.2)
    epoch = datetime.fromtimestamp(0, UTC)
    ended_early = datetime.fromtimestamp(1, UTC)
    features = ItemFeatures(
        sparse.csr_matrix(np.ones((5, 1), dtype=np.float32)),
        np.zeros(5, dtype=np.int64),
        np.zeros(5),
        [epoch] * 5,
        [ended_early, None, None, None, None],
    )
    opened = split.only_open(features.open_at(split.reference_time))
    assert opened.candidates.tolist() == [False, True, True, True, True]
    assert opened.test[:, 0].nnz == 0 and split.test[:, 0].nnz > 0


def sampled_settings(**kw) -> EvaluationSettings:
    return EvaluationSettings(heuristic_weights=HEURISTIC_WEIGHTS, ease_max_items=1000, **kw)


def test_split_samples_students_beyond_the_cap_reproducibly():
    split = time_split(planted_interactions(n_users=150), 0.2)
    everyone = split.eval_users
    same, record = split.sample_users(len(everyone), seed=1)
    assert same is split and record == {
        "users": len(everyone),
        "evaluated": len(everyone),
        "seed": 1,
    }
    sampled, record = split.sample_users(25, seed=1)
    again, _ = split.sample_users(25, seed=1)
    assert record == {"users": len(everyone), "evaluated": 25, "seed": 1}
    assert len(sampled.eval_users) == 25 and set(sampled.eval_users) <= set(everyone)
    assert sampled.eval_users.tolist() == again.eval_users.tolist()
    # Only the students ranked change: the training data stays whole.
    assert (sampled.train.matrix != split.train.matrix).nnz == 0


def test_compare_ranks_every_model_for_the_same_sample_and_records_it():
    split = time_split(planted_interactions(n_users=150), 0.2)
    settings = sampled_settings(max_eval_users=30, max_validation_users=20)
    features = ItemFeatures.uniform(len(split.train.items))
    comparison = compare(split, features, settings)
    assert {row.test.users for row in comparison.rows} == {30}
    sampling = comparison.as_dict()["sampling"]
    assert sampling["test"] == {"users": len(split.eval_users), "evaluated": 30, "seed": 42}
    assert sampling["validation"]["evaluated"] == 20
    assert compare(split, features, settings).as_dict() == comparison.as_dict()
    assert "a sample of" in format_table(comparison)


def test_compare_ranks_everyone_under_the_cap():
    split = time_split(planted_interactions(), 0.2)
    comparison = compare(split, ItemFeatures.uniform(len(split.train.items)), sampled_settings())
    assert {row.test.users for row in comparison.rows} == {len(split.eval_users)}
    assert "a sample of" not in format_table(comparison)
