"""Fold-in: the published version re-scores a student who acted since training (source "fresh"),
and agrees with its own precomputed rows when nothing changed."""

import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from app.challenges.service import join
from app.extensions import db
from app.models import Participation, UserRecommendation, utcnow
from app.recs import events, foldin, pipeline, publish, serving
from app.recs.data import InteractionMatrix, read_database
from app.recs.eligibility import load_user_history
from app.recs.models import CANDIDATES, Artifact, load_artifact, save_artifact
from app.recs.publish import rank_rows
from tests.helpers import make_user, recorded_slate
from tests.recs.planted_data import (
    add_event,
    make_student,
    planted_interactions,
    seed_planted_campus,
)

PER_GROUP = 6


@pytest.fixture
def campus(app):
    app.config["RECS_GATE_MARGIN"] = -1.0  # publish whatever wins: these tests are about serving
    # Three of their group's six challenges each: the model has evidence for the other three (and
    # none for other groups' challenges, which it leaves to the heuristic).
    campus = seed_planted_campus(n_students=75, per_group=PER_GROUP, per_student=3)
    result = pipeline.train()
    assert result.status == "published", result.reason
    campus["run"] = publish.published_run()
    campus["group"] = {c.id: i // PER_GROUP for i, c in enumerate(campus["challenges"])}
    return campus


def ids(slate):
    return [item.challenge_id for item in slate.items]


def unjoined(student, campus):
    joined = load_user_history(student.id).joined_ids
    return next(c for c in campus["challenges"] if c.id not in joined)


def row_ids(user_id):
    return [challenge.id for _, _, challenge in serving.published_rows(user_id)]


def from_model(slate):
    """The ids of the cards the model placed; the heuristic tops up past the model's evidence."""
    return [item.challenge_id for item in slate.items if item.source in ("model", "fresh")]


def most_rows(campus, skip=0):
    """Students with the most published rows first (the model scores only what it has evidence
    for, so some students have few)."""
    return sorted(campus["students"], key=lambda s: -len(row_ids(s.id)))[skip]


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_fold_in_ranks_like_the_precomputed_rows(app, tmp_path, name):
    """Per user, folding in their training row gives the published top-k: the same scores in the
    same order (which of several items tied at the cut made the list is arbitrary in both)."""
    data = InteractionMatrix.build(planted_interactions())
    params = {
        "svd": {"n_components": 8},
        "knn": {"n_neighbors": 10},
        "ease": {"l2": 50.0},
        "session_ease": {"l2": 1.0, "tau": 3 * 86400.0},
    }[name]
    model = CANDIDATES[name](**params).fit(data.matrix, data.times)
    path = save_artifact(tmp_path / name, model, data, {"version": name})
    folded = foldin.model_for(publish.ModelRun(version=name, artifact_path=str(path)))
    published: dict[int, list[tuple[int, float]]] = {}
    for row in rank_rows(pipeline.generate_rows(Artifact(model, data, {}), 10), 10):
        published.setdefault(row["user_id"], []).append((row["challenge_id"], row["score"]))
    for index, user_id in enumerate(data.users.ids.tolist()):
        ranked, scores = folded.ranking(data.matrix[index])
        expected_ids, expected_scores = (
            np.asarray(column) for column in zip(*published[user_id], strict=True)
        )
        np.testing.assert_allclose(scores[:10], expected_scores, rtol=1e-6)
        above_cut = expected_scores > expected_scores[-1]
        assert ranked[:10][above_cut].tolist() == expected_ids[above_cut].tolist(), user_id


def test_nothing_changed_serves_the_rows_and_fold_in_agrees(campus, app, monkeypatch):
    run, student = campus["run"], campus["students"][0]
    history = load_user_history(student.id)
    assert not foldin.is_stale(run, history)
    slate = serving.get_recommendations(student, k=6)
    assert slate.source == "model" and {i.source for i in slate.items} <= {"model", "heuristic"}
    model_ids = from_model(slate)
    assert model_ids and model_ids == row_ids(student.id)[: len(model_ids)]
    assert ids(slate)[: len(model_ids)] == model_ids

    model = foldin.model_for(run)
    trained = load_artifact(Path(run.artifact_path)).data
    row = model.user_row(history, app.config["RECS_INTERACTION_WEIGHTS"])
    trained_row = trained.matrix[trained.users.index([student.id])[0]]
    assert np.array_equal(row.toarray(), trained_row.toarray())

    monkeypatch.setattr(foldin, "is_stale", lambda run, history: True)
    fresh = serving.get_recommendations(student, k=6)
    assert fresh.source == "fresh" and fresh.model_version == run.version
    assert ids(fresh) == ids(slate)
    assert [i.reason for i in fresh.items] == [i.reason for i in slate.items]


def test_repeated_clicks_are_one_history_entry_and_weigh_as_in_training(campus, app):
    student, first, second = campus["students"][2], *campus["challenges"][-2:]
    first_clicks = [add_event(student, first, "click", d) for d in (3.0, 2.0, 1.0, 0.5)]
    add_event(student, second, "click", 1.0)
    add_event(student, second, "dismiss", 0.2)
    history = load_user_history(student.id)
    clicks = [entry for entry in history.interactions if entry[1] == "click"]
    assert sorted((cid, count) for cid, _, _, count in clicks) == sorted(
        [(first.id, 4), (second.id, 1)]
    )
    (latest_click,) = [stamp for cid, _, stamp, _ in clicks if cid == first.id]
    assert latest_click == pytest.approx(first_clicks[-1].created_at.timestamp(), abs=1e-3)
    weights = app.config["RECS_INTERACTION_WEIGHTS"]
    trained = InteractionMatrix.build(read_database(weights), with_times=False)
    model = foldin.model_for(campus["run"])
    row = model.user_row(history, weights)
    expected = np.zeros(len(model.items.ids), dtype=np.float32)
    trained_row = trained.matrix[trained.users.index([student.id])[0]]
    for item, value in zip(trained_row.indices, trained_row.data, strict=True):
        position = model.items.index([trained.items.ids[item]])[0]
        if position >= 0:
            expected[position] = value
    np.testing.assert_allclose(row.toarray().ravel(), expected)
    assert row[0, model.items.index([first.id])[0]] >= 4 * weights["click"]


def test_a_join_changes_the_next_slate(campus):
    student, group = campus["students"][0], campus["group"]  # group 0
    before = serving.get_recommendations(student, k=6)
    other_group = [c for c in campus["challenges"] if group[c.id] == 2]
    joined = other_group[0]
    join(student.id, joined)

    after = serving.get_recommendations(student, k=6)
    assert after.source == "fresh" and after.model_version == campus["run"].version
    assert joined.id not in ids(after)
    in_group_2 = [sum(group[i] == 2 for i in ids(slate)) for slate in (before, after)]
    assert in_group_2[1] > in_group_2[0], (ids(before), ids(after))
    reasons = {i.reason for i in after.items if group[i.challenge_id] == 2}
    assert f"Because you joined {joined.title}" in reasons


def test_a_dismiss_changes_the_next_slate(campus):
    student = most_rows(campus)
    before = serving.get_recommendations(student, k=6)
    model_ids = from_model(before)
    assert len(model_ids) >= 2 and before.items[0].source == "model"
    events.record_dismiss(student.id, before.items[0].challenge_id, before.slate_id)
    after = serving.get_recommendations(student, k=6)
    assert after.source == "fresh"
    assert before.items[0].challenge_id not in ids(after)
    assert from_model(after)[: len(model_ids) - 1] == model_ids[1:]


def test_a_student_with_interactions_but_no_rows_is_folded_in(campus):
    newcomer = make_student(999)
    db.session.add(newcomer)
    db.session.flush()
    # Joined before the version's data ends, yet the version has no rows for them.
    joined_at = campus["run"].trained_through - timedelta(days=1)
    for challenge in campus["challenges"][:3]:
        db.session.add(
            Participation(
                user_id=newcomer.id,
                challenge_id=challenge.id,
                joined_at=joined_at,
                updated_at=joined_at,
            )
        )
    db.session.commit()
    assert not row_ids(newcomer.id)
    slate = serving.get_recommendations(newcomer, k=4)
    assert slate.source == "fresh" and {i.source for i in slate.items} <= {"fresh", "heuristic"}
    assert slate.items[0].source == "fresh"
    assert campus["group"][slate.items[0].challenge_id] == 0


def test_a_student_who_left_everything_the_rows_rest_on_gets_no_model_cards(campus):
    """The precomputed rows came from joins the student has since taken back: serving them
    would recommend from what the student withdrew."""
    from sqlalchemy import update

    student = most_rows(campus)
    assert from_model(serving.get_recommendations(student, k=6))
    db.session.execute(  # left them all (completed ones too, which the page would refuse)
        update(Participation)
        .where(Participation.user_id == student.id)
        .values(status="left", updated_at=utcnow())
    )
    db.session.commit()
    assert not load_user_history(student.id).joined_ids
    after = serving.get_recommendations(student, k=6)
    assert after.items and not from_model(after)
    assert {item.source for item in after.items} == {"heuristic"}


def test_an_interaction_dated_in_the_future_leaves_fold_in_on(app):
    """A clock set ahead (a host's, or a file's dates) stamps an interaction after the run read
    it: the version's data must still end when it was read, or no student's change would ever
    be newer and nobody would be folded in until that date."""
    app.config["RECS_GATE_MARGIN"] = -1.0
    campus = seed_planted_campus(n_students=75, per_group=PER_GROUP, per_student=3)
    add_event(campus["students"][-1], campus["challenges"][0], "click", days_ago=-30)
    assert pipeline.train().status == "published"
    run = publish.published_run()
    assert run.trained_through <= run.started_at
    student = most_rows(campus)
    join(student.id, unjoined(student, campus))
    assert serving.get_recommendations(student, k=3).source == "fresh"


def test_a_student_without_interactions_gets_the_heuristic(campus):
    slate = serving.get_recommendations(make_user(), k=4)
    assert slate.source == "heuristic" and slate.model_version is None


def test_the_artifact_is_loaded_once_per_version(campus, monkeypatch):
    loads = []
    monkeypatch.setattr(
        foldin, "load_artifact", lambda path: loads.append(path) or load_artifact(path)
    )
    for student in campus["students"][:3]:
        join(student.id, unjoined(student, campus))
        assert serving.get_recommendations(student, k=3).source == "fresh"
    assert len(loads) == 1
    assert pipeline.train().status == "published"
    serving.get_recommendations(campus["students"][0], k=3)
    assert len(loads) == 2


def test_an_unreadable_artifact_falls_back_to_the_rows(campus, caplog):
    student, run = most_rows(campus), campus["run"]
    run.artifact_path = str(Path(run.artifact_path).with_name("gone"))
    db.session.commit()
    joined = unjoined(student, campus)
    join(student.id, joined)
    with caplog.at_level(logging.WARNING, logger="app.recs.foldin"):
        slate = serving.get_recommendations(student, k=3)
        serving.get_recommendations(student, k=3)
    assert slate.source == "model"
    model_ids = from_model(slate)
    assert model_ids and model_ids == [i for i in row_ids(student.id) if i != joined.id][:3]
    assert sum("fold-in disabled" in r.getMessage() for r in caplog.records) == 1


def test_history_dates_changes_as_the_training_does(campus):
    student = campus["students"][3]
    history = load_user_history(student.id)
    assert history.changed_at <= campus["run"].trained_through
    participation = db.session.scalar(
        select(Participation).where(Participation.user_id == student.id).limit(1)
    )
    participation.status = "left"
    participation.updated_at = utcnow()
    db.session.commit()
    assert foldin.is_stale(campus["run"], load_user_history(student.id))


def test_continuing_a_slate_of_an_older_version_never_loads_its_artifact(campus, app, monkeypatch):
    student = most_rows(campus)
    first = recorded_slate(student, k=2)
    assert first.model_version == campus["run"].version and from_model(first)
    assert pipeline.train().status == "published"  # a new version between two pages
    app.extensions.pop(foldin.EXTENSION_KEY, None)  # as in a freshly started worker
    loads = []
    monkeypatch.setattr(
        foldin, "load_artifact", lambda path: loads.append(path) or load_artifact(path)
    )
    more = serving.get_recommendations(student, k=2, offset=2, slate_id=first.slate_id)
    assert loads == []  # the old version's rows serve, with category reasons
    assert from_model(more)
    assert more.model_version == campus["run"].version
    assert (
        from_model(more)
        == [i for i in row_ids_of(student.id, campus["run"]) if i not in ids(first)][
            : len(from_model(more))
        ]
    )
    serving.get_recommendations(student, k=2)  # a new slate: the published version's artifact
    assert len(loads) == 1


def row_ids_of(user_id, run):
    return [
        challenge_id
        for (challenge_id,) in db.session.execute(
            select(UserRecommendation.challenge_id)
            .where(UserRecommendation.model_run_id == run.id, UserRecommendation.user_id == user_id)
            .order_by(UserRecommendation.rank)
        )
    ]
