"""The trend: what is popular lately, added to a model's ranking and chosen on validation."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import sparse

from app.recs import eligibility, evaluate, foldin, pipeline, publish, serving
from app.recs.data import InteractionMatrix, Interactions
from app.recs.evaluate import (
    build_candidate,
    evaluate_model,
    time_split,
    tune_and_score,
    validation_split,
    with_trend_of,
)
from app.recs.models import EASE, ItemKNN, load_artifact, save_artifact, top_k, trend_scale
from tests.recs.planted_data import DAY, planted_interactions, seed_planted_campus
from tests.recs.test_models import FixedScores


def test_without_a_trend_the_ranking_is_the_scores():
    data = InteractionMatrix.build(planted_interactions(n_users=30))
    model = EASE(l2=5.0).fit(data.matrix)
    np.testing.assert_array_equal(model.ranking_scores(data.matrix), model.scores(data.matrix))
    model.with_trend(np.ones(data.matrix.shape[1]), 0.0, 7)
    np.testing.assert_array_equal(model.ranking_scores(data.matrix), model.scores(data.matrix))


def test_the_trend_breaks_ties_leaves_no_evidence_alone_and_suits_any_score_scale():
    model = FixedScores([[2.0, 2.0, 0.0, 1.0, -1.0], [200.0, 200.0, 0.0, 100.0, -100.0]])
    model.with_trend(np.array([0.0, 1.0, 1.0, 0.0, 1.0], dtype=np.float32), 0.5, 7)
    ranked = model.ranking_scores(sparse.csr_matrix((2, 5)))
    # Each user's scores are divided by their largest, so both rows rank alike.
    np.testing.assert_allclose(ranked[0], [1.0, 1.5, 0.0, 0.5, -0.5])
    np.testing.assert_allclose(ranked[1], ranked[0])
    # The trendy item wins the tie. An item the model has no evidence for stays at 0, however
    # trendy, so serving still tops the list up from the heuristic there; one it scores below 0
    # is not lifted either.
    indices, _ = top_k(model, sparse.csr_matrix((2, 5)), 3)
    assert indices.tolist() == [[1, 0, 3], [1, 0, 3]]
    # Where the trend adds at least the model's own share, the place is the trend's: item 1
    # gains 0.5 on its own 1.0 (the model's), then 1.0 on 1.0 (the trend's).
    assert not model.trend_led(model.fixed).any()
    model.with_trend(model.trend_, 1.0, 7)
    assert model.trend_led(model.fixed).tolist() == [[False, True, False, False, False]] * 2


def test_the_trend_scale_is_the_heuristics():
    np.testing.assert_allclose(trend_scale([0, 1, 3]), np.log1p([0, 1, 3]) / np.log1p(3))
    assert not trend_scale([0, 0]).any() and trend_scale([]).size == 0


def test_an_artifact_keeps_its_trend(tmp_path):
    data = InteractionMatrix.build(planted_interactions(n_users=20))
    model = ItemKNN(n_neighbors=5).fit(data.matrix)
    trend = np.linspace(0, 1, data.matrix.shape[1]).astype(np.float32)
    model.with_trend(trend, 2.0, 7.0)
    save_artifact(tmp_path / "v1", model, data, {"version": "v1"})
    loaded = load_artifact(tmp_path / "v1").model
    assert (loaded.trend_weight, loaded.trend_days) == (2.0, 7.0)
    np.testing.assert_array_equal(loaded.trend_, trend)
    np.testing.assert_allclose(
        loaded.ranking_scores(data.matrix), model.ranking_scores(data.matrix), rtol=1e-6
    )
    # Without one, none is saved and none comes back.
    save_artifact(tmp_path / "v2", ItemKNN(n_neighbors=5).fit(data.matrix), data, {})
    assert not load_artifact(tmp_path / "v2").model.has_trend


def test_with_trend_of_counts_the_recent_window_of_the_events_given():
    events = Interactions.from_rows(
        [(1, 10, "join", 1.0, 100 * DAY), (2, 10, "join", 1.0, 99 * DAY), (1, 20, "join", 1.0, DAY)]
    )
    data = InteractionMatrix.build(events)
    reference = datetime.fromtimestamp(100 * DAY, UTC)
    model = build_candidate("knn", {"n_neighbors": 5, "trend": 1.0, "trend_days": 7.0})
    model.fit(data.matrix)
    with_trend_of(
        model, {"trend": 1.0, "trend_days": 7.0}, events, data.users, data.items, reference
    )
    assert model.has_trend and model.trend_.tolist() == [1.0, 0.0]  # item 20 is 99 days old
    plain = build_candidate("knn", {"n_neighbors": 5}).fit(data.matrix)
    assert not with_trend_of(
        plain, {"n_neighbors": 5}, events, data.users, data.items, reference
    ).has_trend


def trending_interactions(seed: int = 0) -> Interactions:
    """The planted groups over 100 days, with two waves everyone joins whatever their group:
    one in the first 50 days (items 201 to 204), one in the last 50 (items 101 to 104). Both
    waves are as popular over the whole history, and co-occur with everything; only the
    calendar tells the current one from the old."""
    rng = np.random.default_rng(seed)
    base = planted_interactions(n_users=120, seed=seed)
    rows = list(
        zip(base.user_ids, base.item_ids, base.events, base.weights, base.timestamps, strict=True)
    )
    for user in range(1, 121):
        for wave, (start, end) in (
            ((201, 202, 203, 204), (0, 50)),
            ((101, 102, 103, 104), (50, 100)),
        ):
            for item in rng.choice(wave, size=3, replace=False):
                rows.append((user, int(item), "join", 1.0, float(rng.uniform(start, end) * DAY)))
    return Interactions.from_rows(rows)


def test_validation_chooses_a_trend_where_it_pays_and_the_test_uses_the_splits_own(app):
    split = time_split(trending_interactions(), 0.2)
    validation = validation_split(split, 0.2, 42)
    plain_params, plain_ndcg = evaluate.tune("ease", validation, 10)
    params, validation_ndcg, metrics = tune_and_score("ease", split, validation, 10, trend_days=7.0)
    # Only the current wave is recent, so the trend tells it from the old one: validation gains.
    assert params == {**plain_params, "trend": params["trend"], "trend_days": 7.0}
    assert params["trend"] > 0 and validation_ndcg > plain_ndcg + 0.05
    # The held-out part is ranked with the trend of the split's own training part.
    model = build_candidate("ease", params).fit(split.train.matrix)
    model.with_trend(trend_scale(evaluate.recent_popularity(split, 7.0)), params["trend"], 7.0)
    assert evaluate_model(model, split, 10) == metrics


def test_the_published_model_carries_the_chosen_trend_and_says_when_it_led(app, monkeypatch):
    campus = seed_planted_campus()

    def with_a_trend(name, params, validation_ndcg, *args):
        return {**params, "trend": 1.0, "trend_days": 7.0}, validation_ndcg

    monkeypatch.setattr(evaluate, "tune_trend", with_a_trend)
    app.config["RECS_GATE_MARGIN"] = -1.0
    result = pipeline.train()
    assert result.status == "published", result.reason
    run = publish.published_run()
    assert run.params["trend"] == 1.0
    model = load_artifact(run.artifact_path).model
    assert model.has_trend and model.trend_days == 7.0 and model.trend_.max() == pytest.approx(1.0)
    # A card ranked more for the trend than for what the student did says so; the others keep
    # "Because you joined ...".
    reasons = set()
    for student in campus["students"][:15]:
        slate = serving.get_recommendations(student)
        fold = foldin.model_for(run)
        history = eligibility.load_user_history(student.id)
        row = fold.user_row(history, app.config["RECS_INTERACTION_WEIGHTS"])
        led = fold.trend_led(row, [i.challenge_id for i in slate.items])
        for item in slate.items:
            if item.source != "model":
                continue
            assert (item.reason == "Popular this week") == (item.challenge_id in led)
            reasons.add(item.reason == "Popular this week")
    assert reasons == {True, False}


def test_nothing_recent_means_no_trend_is_tried(monkeypatch):
    split = time_split(planted_interactions(), 0.2)
    validation = validation_split(split, 0.2, 42)
    params, ndcg = evaluate.tune("ease", validation, 10)
    monkeypatch.setattr(evaluate, "_split_trend", lambda split, days: np.zeros(5))
    monkeypatch.setattr(evaluate, "evaluate_model", lambda *a, **k: pytest.fail("ranked"))
    assert evaluate.tune_trend("ease", params, ndcg, validation, 10, None, 7.0) == (params, ndcg)


def test_a_click_then_a_dismiss_in_the_window_is_not_recent_interest():
    events = Interactions.from_rows(
        [
            (1, 10, "click", 1.0, 99 * DAY),
            (1, 10, "dismiss", -2.0, 99.5 * DAY),
            (2, 20, "join", 3.0, 99 * DAY),
            (3, 10, "click", 1.0, 90 * DAY),  # before the window: its later dismiss is alone
            (3, 10, "dismiss", -2.0, 99.7 * DAY),
        ]
    )
    data = InteractionMatrix.build(events)
    reference = datetime.fromtimestamp(100 * DAY, UTC)
    counts = evaluate.recent_counts(events, data.users, data.items, reference, 7.0)
    assert counts.tolist() == [0.0, 1.0]


def test_a_random_split_is_never_given_a_trend(app, monkeypatch):
    """Its held-out interactions are from any moment: "lately" says nothing about them."""
    tried = []
    monkeypatch.setattr(evaluate, "tune_trend", lambda *args: tried.append(args) or args[1:3])
    split = evaluate.random_split(trending_interactions(), 0.2, seed=3)
    params, _, _ = tune_and_score("ease", split, validation_split(split, 0.2, 3), 10)
    assert "trend" not in params and tried == []
    time_based = time_split(trending_interactions(), 0.2)
    tune_and_score("ease", time_based, validation_split(time_based, 0.2, 3), 10)
    assert len(tried) == 1


def test_scores_computed_once_rank_as_scoring_each_time(app, monkeypatch):
    split = time_split(trending_interactions(), 0.2)
    validation = validation_split(split, 0.2, 42)
    params, ndcg = evaluate.tune("ease", validation, 10)
    once = evaluate.tune_trend("ease", params, ndcg, validation, 10, None, 7.0)
    monkeypatch.setattr(evaluate, "TREND_SCORE_CELLS", 0)  # too big to keep: scored per weight
    assert evaluate.tune_trend("ease", params, ndcg, validation, 10, None, 7.0) == once
    model = build_candidate("ease", params).fit(validation.train.matrix)
    model.with_trend(np.linspace(0, 1, model.weights_.shape[0]), 2.0, 7.0)
    rows = validation.train.matrix
    given = top_k(model, rows, 5, exclude=rows, scores=model.scores(rows))
    for a, b in zip(given, top_k(model, rows, 5, exclude=rows), strict=True):
        np.testing.assert_array_equal(a, b)
