"""Estimators beat popularity on planted structure; ranking; artifacts load without pickle."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from app.recs import models
from app.recs.data import InteractionMatrix
from app.recs.evaluate import evaluate_model, random_split
from app.recs.models import (
    EASE,
    ESTIMATORS,
    ItemKNN,
    Popularity,
    PureSVD,
    SessionEASE,
    candidate_names,
    load_artifact,
    save_artifact,
    top_k,
)
from tests.recs.planted_data import planted_interactions

MODELS = [PureSVD(n_components=3), ItemKNN(n_neighbors=10), EASE(l2=5.0), SessionEASE(l2=1.0)]


@pytest.fixture(scope="module")
def planted_split():
    return random_split(planted_interactions(), 0.2, seed=1)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_each_model_beats_popularity_on_planted_structure(planted_split, model):
    popularity = evaluate_model(Popularity().fit(planted_split.train.matrix), planted_split).ndcg
    train = planted_split.train
    learned = evaluate_model(model.fit(train.matrix, train.times), planted_split).ndcg
    assert learned > popularity + 0.2, (learned, popularity)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_fit_returns_self_and_params_are_stored_not_learned(model):
    data = InteractionMatrix.build(planted_interactions(n_users=12))
    X = data.matrix
    fresh = type(model)(**model.get_params())
    assert fresh.fit(X, data.times) is fresh
    assert fresh.get_params() == model.get_params()
    assert fresh.scores(X[:2]).shape == (2, X.shape[1])


def test_ease_has_zero_diagonal_and_knn_keeps_k_neighbours():
    X = InteractionMatrix.build(planted_interactions(n_users=30)).matrix
    assert np.all(np.diag(EASE(l2=1.0).fit(X).weights_) == 0)
    knn = ItemKNN(n_neighbors=3).fit(X)
    assert np.diff(knn.neighbours_.indptr).max() <= 3
    assert knn.neighbours_.diagonal().sum() == 0


def test_svd_clips_components_to_the_data():
    X = sparse.csr_matrix(np.eye(4, dtype=np.float32))
    assert PureSVD(n_components=50).fit(X).item_factors_.shape == (4, 3)


def test_ease_is_only_a_candidate_for_small_catalogues():
    assert {"ease", "session_ease"} <= set(candidate_names(100, 1000))
    assert candidate_names(5000, 1000) == ["svd", "knn"]


class FixedScores(Popularity):
    def __init__(self, scores):
        self.fixed = np.asarray(scores, dtype=np.float32)

    def scores(self, X_rows):
        return self.fixed[: X_rows.shape[0]]


def test_top_k_orders_excludes_and_pads():
    X = sparse.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    model = FixedScores([[9, 1, 3, 2], [4, 3, 2, 1]])
    candidates = np.array([True, True, True, False])
    indices, scores = top_k(model, X, 3, exclude=X, candidates=candidates)
    assert indices.tolist() == [[2, 1, -1], [0, 1, 2]]
    assert scores[0, :2].tolist() == [3.0, 1.0] and scores[0, 2] == -np.inf


@pytest.mark.parametrize("model", [*MODELS, Popularity()], ids=lambda m: m.name)
def test_artifact_round_trip_without_pickle(tmp_path, model):
    data = InteractionMatrix.build(planted_interactions(n_users=20))
    model.fit(data.matrix, data.times)
    save_artifact(tmp_path / "v1", model, data, {"version": "v1"})
    with np.load(tmp_path / "v1" / "model.npz", allow_pickle=False) as arrays:
        assert all(arrays[key].dtype != object for key in arrays.files)
    loaded = load_artifact(tmp_path / "v1")
    assert isinstance(loaded.model, ESTIMATORS[model.name])
    assert loaded.metadata["version"] == "v1" and "numpy" in loaded.metadata["libraries"]
    assert loaded.data.users.ids.tolist() == data.users.ids.tolist()
    assert loaded.data.items.ids.tolist() == data.items.ids.tolist()
    np.testing.assert_allclose(
        loaded.model.scores(data.matrix), model.scores(data.matrix), rtol=1e-5
    )
    assert not (tmp_path / "v1.tmp").exists()


def test_ease_weights_match_the_closed_form_with_a_general_inverse():
    X = InteractionMatrix.build(planted_interactions(n_users=40)).matrix
    gram = (X.T @ X).toarray().astype(np.float64) + 5.0 * np.eye(X.shape[1])
    precision = np.linalg.inv(gram)
    expected = precision / -np.diag(precision)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(EASE(l2=5.0).fit(X).weights_, expected, rtol=1e-4, atol=1e-7)


def test_ease_weights_fall_back_to_double_precision_when_single_fails(monkeypatch):
    X = InteractionMatrix.build(planted_interactions(n_users=40)).matrix
    expected = EASE(l2=5.0).fit(X).weights_
    monkeypatch.setattr(models.lapack, "spotrf", lambda a, **kw: (a, 1))  # "not definite"
    np.testing.assert_allclose(EASE(l2=5.0).fit(X).weights_, expected, rtol=1e-4, atol=1e-7)


def test_ease_weights_refuse_a_matrix_that_is_not_positive_definite():
    with pytest.raises(np.linalg.LinAlgError, match="l2=-5"):
        models._ease_weights(np.eye(3), -5.0)


@pytest.mark.parametrize(
    "estimator, grid",
    [
        (EASE, [{"l2": 1.0}, {"l2": 50.0}]),
        (ItemKNN, [{"n_neighbors": 2}, {"n_neighbors": 8}]),
    ],
    ids=["ease", "knn"],
)
def test_fit_grid_gives_the_models_fit_gives(estimator, grid):
    X = InteractionMatrix.build(planted_interactions(n_users=40)).matrix
    fitted = list(estimator.fit_grid(X, grid))
    assert [params for params, _ in fitted] == grid
    for params, model in fitted:
        assert model.get_params() == estimator(**params).get_params()
        alone = estimator(**params).fit(X)
        np.testing.assert_allclose(model.scores(X), alone.scores(X), rtol=1e-5, atol=1e-6)


def test_svd_fit_grid_cuts_one_factorisation_to_each_rank():
    X = InteractionMatrix.build(planted_interactions(n_users=60)).matrix
    fitted = dict(
        (params["n_components"], model)
        for params, model in PureSVD.fit_grid(X, [{"n_components": 3}, {"n_components": 8}])
    )
    assert fitted[3].item_factors_.shape == (X.shape[1], 3)
    assert fitted[8].item_factors_.shape == (X.shape[1], 8)
    # The planted groups give three clear directions: the same subspace however it is found.
    alone = PureSVD(n_components=3).fit(X).item_factors_
    shared = fitted[3].item_factors_
    np.testing.assert_allclose(shared @ shared.T, alone @ alone.T, atol=1e-3)
