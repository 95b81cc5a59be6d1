"""Session-weighted EASE: the time-weighted Gram matrix against a direct computation, its limits
(no times, mix 0), and planted sessions that only time can tell apart."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from app.recs import models
from app.recs.data import InteractionMatrix, Interactions
from app.recs.evaluate import evaluate_model, random_split
from app.recs.models import EASE, SessionEASE, session_gram
from tests.recs.planted_data import DAY


def direct_gram(X: sparse.csr_matrix, times: sparse.csr_matrix, tau: float, mix: float):
    """sum_u x_ui x_uj ((1 - mix) + mix exp(-|t_ui - t_uj| / tau)), user by user, no cut-off."""
    gram = np.zeros((X.shape[1], X.shape[1]))
    for user in range(X.shape[0]):
        row, stamps = X[user], times[user]
        items, values, moments = row.indices, row.data.astype(np.float64), stamps.data
        kernel = (1 - mix) + mix * np.exp(-np.abs(moments[:, None] - moments[None, :]) / tau)
        gram[np.ix_(items, items)] += values[:, None] * values[None, :] * kernel
    return gram


def sessions(
    n_users=60, n_themes=16, per_theme=3, sessions_per_user=8, per_session=3, seed=0, uneven=False
):
    """Each student works through half the themes, one sitting per theme, days apart; within a
    sitting the challenges are minutes apart. With eight sittings each, over a whole history
    nearly everything co-occurs with everything; time tells the themes apart. ``uneven``: the
    students' histories run from 2 to ``sessions_per_user`` sittings."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        sittings = 2 + user % (sessions_per_user - 1) if uneven else sessions_per_user
        themes = rng.choice(n_themes, sittings, replace=False)
        for sitting, theme in enumerate(themes):
            start = sitting * 3 * DAY + rng.uniform(0, DAY)
            picks = rng.choice(per_theme, per_session, replace=False) + theme * per_theme
            for step, item in enumerate(picks):
                rows.append((user, int(item), "join", 1.0, start + 60.0 * step))
    return Interactions.from_rows(rows)


def test_cell_times_are_when_each_cell_began_on_the_matrix_structure():
    data = InteractionMatrix.build(
        Interactions.from_rows(
            [
                (1, 10, "click", 0.5, 100.0),
                (1, 10, "join", 1.0, 50.0),
                (1, 10, "complete", 2.0, 900.0),  # finishing later is not taking it up
                (1, 11, "click", 0.5, 300.0),
                (1, 11, "dismiss", -1.0, 400.0),  # not interested: the cell is dropped
                (2, 10, "dismiss", -0.2, 10.0),  # not a beginning, though the cell stays
                (2, 10, "click", 0.5, 20.0),
                (2, 11, "join", 1.0, 7.0),
            ]
        )
    )
    assert data.times.shape == data.matrix.shape
    assert data.times.indices.tolist() == data.matrix.indices.tolist()
    assert data.times.indptr.tolist() == data.matrix.indptr.tolist()
    assert data.times.toarray().tolist() == [[50.0, 0.0], [20.0, 7.0]]
    rows_only = InteractionMatrix.build(
        Interactions.from_rows([(1, 10, "join", 1.0, 5.0)]), with_times=False
    )
    assert rows_only.times is None and rows_only.nnz == 1


@pytest.mark.parametrize("tau, mix", [(60.0, 0.5), (600.0, 0.75), (5 * DAY, 1.0)])
def test_session_gram_matches_the_direct_sum(monkeypatch, tau, mix):
    # Tiny chunks, so accumulating partial sums is exercised too.
    monkeypatch.setattr(models, "SESSION_PAIRS_PER_CHUNK", 7)
    data = InteractionMatrix.build(sessions(n_users=30))
    expected = direct_gram(data.matrix, data.times, tau, mix)
    # The cut-off leaves out pairs weighing under e^-12 of a simultaneous pair.
    np.testing.assert_allclose(
        session_gram(data.matrix, data.times, tau, mix), expected, atol=mix * 1e-5 * 30, rtol=1e-9
    )


def test_session_gram_without_times_or_weighting_is_the_plain_gram():
    data = InteractionMatrix.build(sessions(n_users=20))
    plain = (data.matrix.T @ data.matrix).toarray()
    np.testing.assert_allclose(session_gram(data.matrix, None, 300.0, 0.75), plain)
    np.testing.assert_allclose(session_gram(data.matrix, data.times, 300.0, 0.0), plain)


def test_session_gram_refuses_times_on_another_structure_and_bad_parameters():
    data = InteractionMatrix.build(sessions(n_users=20))
    other = InteractionMatrix.build(sessions(n_users=20, seed=1))
    with pytest.raises(ValueError, match="sparsity"):
        session_gram(data.matrix, other.times, 300.0, 0.5)
    with pytest.raises(ValueError, match="tau > 0"):
        session_gram(data.matrix, data.times, 0.0, 0.5)


def test_without_time_or_scaling_it_is_ease_with_a_relative_l2():
    data = InteractionMatrix.build(sessions(n_users=40))
    gram = (data.matrix.T @ data.matrix).toarray()
    relative = 2.0
    ease = EASE(l2=relative * float(np.mean(np.diag(gram)))).fit(data.matrix)
    session = SessionEASE(l2=relative, mix=0.0, a=0.0).fit(data.matrix, data.times)
    np.testing.assert_allclose(session.weights_, ease.weights_, rtol=1e-4, atol=1e-6)
    assert np.all(np.diag(session.weights_) == 0)


@pytest.mark.parametrize("b", [0.0, 0.4])
def test_weights_are_the_closed_form_on_the_scaled_session_gram(b):
    data = InteractionMatrix.build(sessions(n_users=40, uneven=True))
    X, times = data.matrix, data.times
    l2, tau, mix, a = 2.0, 600.0, 0.5, 0.3
    totals = np.asarray(X.sum(axis=0)).ravel()
    scale = totals**-a
    rows = X.copy()  # each row scaled in place, so its cells stay in step with their times
    rows.data *= np.repeat(np.asarray(X.sum(axis=1)).ravel() ** -b, np.diff(X.indptr))
    scaled = direct_gram(rows, times, tau, mix) * np.outer(scale, scale)
    precision = np.linalg.inv(scaled + l2 * np.mean(np.diag(scaled)) * np.eye(len(scale)))
    ridge = precision / -np.diag(precision)
    np.fill_diagonal(ridge, 0.0)
    expected = scale[:, None] * ridge
    model = SessionEASE(l2=l2, tau=tau, mix=mix, a=a, b=b).fit(X, times)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-3, atol=1e-6)


def test_non_finite_times_leave_the_time_weighting_out(caplog):
    data = InteractionMatrix.build(sessions(n_users=20))
    times = data.times.copy()
    times.data[3] = np.nan
    plain = (data.matrix.T @ data.matrix).toarray()
    np.testing.assert_allclose(session_gram(data.matrix, times, 300.0, 0.75), plain)
    assert "not finite" in caplog.text


def test_fit_grid_gives_the_models_fit_gives():
    data = InteractionMatrix.build(sessions(n_users=40, uneven=True))
    grid = [
        {"l2": 1.0, "tau": 300.0, "mix": 0.5, "a": 0.0},
        {"l2": 4.0, "tau": 300.0, "mix": 0.5, "a": 0.2},
        {"l2": 4.0, "tau": 300.0, "mix": 0.5, "a": 0.2, "b": 0.3},
        {"l2": 1.0, "tau": 1200.0, "mix": 0.75, "a": 0.1},
    ]
    fitted = list(SessionEASE.fit_grid(data.matrix, grid, data.times))
    assert [params for params, _ in fitted] == grid
    for params, model in fitted:
        alone = SessionEASE(**params).fit(data.matrix, data.times)
        np.testing.assert_allclose(model.weights_, alone.weights_, rtol=1e-5, atol=1e-7)


def test_time_finds_the_planted_sittings_that_co_occurrence_alone_blurs():
    split = random_split(sessions(), 0.25, seed=3)
    X, times = split.train.matrix, split.train.times
    ease = max(evaluate_model(EASE(l2=l2).fit(X), split).ndcg for l2 in (1.0, 3.0, 10.0, 30.0))
    blind = evaluate_model(SessionEASE(l2=1.0, mix=0.75).fit(X), split).ndcg
    timed = evaluate_model(SessionEASE(l2=1.0, mix=0.75).fit(X, times), split).ndcg
    assert timed > max(ease, blind) + 0.08, (timed, ease, blind)


def test_close_pair_count_bounds_the_pairs_the_walk_sums():
    data = InteractionMatrix.build(sessions(n_users=25))
    reach = models.SESSION_REACH * 300.0
    brute = 0
    for user in range(data.times.shape[0]):
        moments = data.times[user].data
        gaps = np.abs(moments[:, None] - moments[None, :])
        brute += int(((gaps <= reach).sum() - len(moments)) // 2)
    users = np.repeat(np.arange(data.times.shape[0]), np.diff(data.times.indptr))
    order = np.lexsort((data.times.data, users))
    counted = models._close_pair_count(users[order], data.times.data[order], reach)
    assert brute > 0 and brute <= counted <= brute * 1.05


def test_too_many_close_pairs_leave_the_time_weighting_out(monkeypatch, caplog):
    rows = [(u, i, "join", 1.0, 1e9 + 100.0 * i) for u in range(30) for i in range(u % 7, 20)]
    data = InteractionMatrix.build(Interactions.from_rows(rows))
    plain = (data.matrix.T @ data.matrix).toarray()
    weighted = session_gram(data.matrix, data.times, 300.0, 0.75)
    assert not np.allclose(weighted, plain)
    monkeypatch.setattr(models, "SESSION_MAX_PAIRS", 100)
    np.testing.assert_allclose(session_gram(data.matrix, data.times, 300.0, 0.75), plain)
    assert "session weighting left out" in caplog.text


def test_a_model_saved_before_row_scaling_existed_loads_as_it_was_trained():
    data = InteractionMatrix.build(sessions(n_users=30, uneven=True))
    params = {"l2": 2.0, "tau": 300.0, "mix": 0.5, "a": 0.1}  # the parameters saved then
    trained = SessionEASE(**params, b=0.0).fit(data.matrix, data.times)
    loaded = SessionEASE.from_state(params, trained.get_state())
    assert loaded.get_params() == {**params, "b": 0.0}
    rescaled = SessionEASE(**params, b=0.5).fit(data.matrix, data.times)
    assert not np.allclose(rescaled.weights_, trained.weights_)
