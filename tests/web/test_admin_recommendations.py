"""The recommendations console and the professors' stats page: access, numbers, actions, charts."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Experiment, ModelRun, RecommendationEvent, RecommendationSlate, UserRecommendation, utcnow
from app.recs.experiment import start_experiment
from tests.helpers import make_challenge, make_participation, make_user

_ids = itertools.count(1)

PAGES = [
    "/admin/recommendations",
    "/admin/recommendations/versions",
    "/admin/recommendations/online",
    "/admin/recommendations/preview",
    "/admin/recommendations/experiment",
    "/admin/recommendations/progress",
    "/admin/recommendations/charts/daily-ctr.svg",
    "/admin/recommendations/charts/daily-join-rate.svg",
    "/admin/recommendations/charts/positions.svg",
    "/admin/recommendations/charts/versions.svg",
]
ACTIONS = [
    "/admin/recommendations/retrain",
    "/admin/recommendations/rollback",
    "/admin/recommendations/experiment/start",
    "/admin/recommendations/experiment/stop",
]


def event(user, challenge, kind, source="model", position=None, slate="s1", at=None):
    db.session.add(RecommendationEvent(
        event_id=f"t{next(_ids)}", user_id=user.id, challenge_id=challenge.id, type=kind, source=source,
        position=position, slate_id=slate, created_at=at or utcnow(),
    ))


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("path", PAGES + ["/professor/stats", "/professor/stats/chart.svg"])
def test_console_pages_are_for_their_audience_only(app, student_client, professor_client, admin_client, path):
    admin_only = path.startswith("/admin/")
    assert student_client.get(path).status_code == 403
    assert professor_client.get(path).status_code == (403 if admin_only else 200)
    assert admin_client.get(path).status_code == (200 if admin_only else 403)


@pytest.mark.parametrize("path", ACTIONS)
def test_console_actions_are_admin_only(student_client, professor_client, path):
    assert student_client.post(path).status_code == 403
    assert professor_client.post(path).status_code == 403


def test_charts_are_svg_images_without_scripts(admin_client):
    for path in [p for p in PAGES if p.endswith(".svg")]:
        response = admin_client.get(path)
        assert response.mimetype == "image/svg+xml", path
        assert b"<svg" in response.data and b"<script" not in response.data
        assert "style-src 'unsafe-inline'" in response.headers["Content-Security-Policy"]
    assert admin_client.get("/admin/recommendations/charts/nope.svg").status_code == 404


def test_online_metrics_page_shows_the_numbers(admin_client):
    student, challenge = make_user(), make_challenge()
    for _ in range(4):
        event(student, challenge, "impression", position=0)
    event(student, challenge, "click", position=0)
    event(student, challenge, "join")
    event(student, challenge, "impression", source="heuristic", position=1)
    db.session.commit()

    page = admin_client.get("/admin/recommendations/online").get_data(as_text=True)
    assert "<td>model</td><td>4</td><td>1</td><td>25.0%</td>" in page
    assert "<td>heuristic</td><td>1</td><td>0</td><td>0.0%</td>" in page
    assert 'src="/admin/recommendations/charts/daily-ctr.svg?from=' in page
    chart = admin_client.get("/admin/recommendations/charts/daily-ctr.svg")
    assert b"model" in chart.data and b"heuristic" in chart.data


@pytest.mark.parametrize("query", ["from=2024-13-01", "from=2024-03-05&to=2024-03-01", "to=yesterday",
                                   "from=2000-01-01&to=2024-01-01"])
def test_bad_date_range_is_a_400_with_a_message(admin_client, professor_client, query):
    response = admin_client.get(f"/admin/recommendations/online?{query}")
    assert response.status_code == 400
    assert 'class="flash flash-error"' in response.get_data(as_text=True)
    assert admin_client.get(f"/admin/recommendations/charts/positions.svg?{query}").status_code == 400
    assert professor_client.get(f"/professor/stats?{query}").status_code == 400


def _published_run(version="v1", **kw) -> ModelRun:
    from app.models import RecommendationState

    run = ModelRun(version=version, status="published", kind="train", published_at=utcnow(), **kw)
    db.session.add(run)
    db.session.flush()
    state = db.session.get(RecommendationState, 1) or RecommendationState(id=1)
    state.published_run_id = run.id
    db.session.add(state)
    db.session.commit()
    return run


def test_preview_compares_model_and_heuristic_and_records_nothing(admin_client):
    student = make_user(display_name="Ada Lovelace", email="ada@uni.test")
    good = make_challenge(title="Good pick")
    joined = make_challenge(title="Already joined")
    ended = make_challenge(title="Long over", starts_at=utcnow() - timedelta(days=9),
                           ends_at=utcnow() - timedelta(days=1))
    archived = make_challenge(title="Archived one", status="archived")
    make_participation(student, joined)
    run = _published_run()
    for rank, challenge in enumerate((good, joined, ended, archived), 1):
        db.session.add(UserRecommendation(model_run_id=run.id, user_id=student.id,
                                          challenge_id=challenge.id, score=1.0 / rank, rank=rank))
    db.session.commit()

    search = admin_client.get("/admin/recommendations/preview?q=lovelace").get_data(as_text=True)
    assert "ada@uni.test" in search and "Published model" in search  # a single match opens at once
    page = admin_client.get(f"/admin/recommendations/preview?user_id={student.id}").get_data(as_text=True)
    assert "Good pick" in page and "Heuristic" in page
    for flag in ("joined", "ended", "archived"):
        assert f'<span class="badge bad">{flag}</span>' in page
    assert "3 of the model rows must not be shown" in page
    assert count(RecommendationEvent) == 0
    assert count(RecommendationSlate) == 0


def test_preview_unknown_student_is_a_400(admin_client):
    professor = make_user("professor")
    for user_id in ("999999", "abc", str(professor.id)):
        response = admin_client.get(f"/admin/recommendations/preview?user_id={user_id}")
        assert response.status_code == 400
        assert "No student with that id." in response.get_data(as_text=True)


def test_experiment_start_show_and_stop(admin_client):
    response = admin_client.post("/admin/recommendations/experiment/start",
                                 data={"name": "Spring test", "allocation_percent": "30"})
    assert response.status_code == 303
    experiment = db.session.scalar(select(Experiment))
    assert (experiment.name, experiment.allocation_percent, experiment.status) == ("Spring test", 30, "running")

    student, challenge = make_user(), make_challenge()
    for _ in range(10):
        db.session.add(RecommendationEvent(event_id=f"x{next(_ids)}", user_id=student.id,
                                           challenge_id=challenge.id, type="impression", arm="model"))
    db.session.add(RecommendationEvent(event_id=f"x{next(_ids)}", user_id=student.id,
                                       challenge_id=challenge.id, type="click", arm="model"))
    db.session.commit()
    page = admin_client.get("/admin/recommendations/experiment").get_data(as_text=True)
    assert "<td>model</td><td>10</td><td>1</td><td>10.00%</td>" in page
    assert "Stop experiment" in page

    response = admin_client.post("/admin/recommendations/experiment/stop", data={"winner": "model"})
    assert response.status_code == 303
    db.session.refresh(experiment)
    assert (experiment.status, experiment.winner) == ("stopped", "model")


@pytest.mark.parametrize("data", [{"allocation_percent": "101"}, {"allocation_percent": "-5"},
                                  {"allocation_percent": "fifty"}, {}])
def test_experiment_start_rejects_bad_allocation(admin_client, data):
    response = admin_client.post("/admin/recommendations/experiment/start", data=data)
    assert response.status_code == 400
    assert "whole number of percent" in response.get_data(as_text=True)
    assert count(Experiment) == 0


def test_experiment_stop_rejects_bad_winner_and_nothing_running(admin_client):
    assert admin_client.post("/admin/recommendations/experiment/stop", data={"winner": "model"}).status_code == 400
    start_experiment("running", 50)
    response = admin_client.post("/admin/recommendations/experiment/stop", data={"winner": "random"})
    assert response.status_code == 400
    assert db.session.scalar(select(Experiment.status)) == "running"
    assert admin_client.post("/admin/recommendations/experiment/start",
                             data={"allocation_percent": "50"}).status_code == 400


def test_professor_stats_shows_only_own_challenges(professor_client):
    own = make_challenge(owner=professor_client.user, title="Mine to watch")
    other = make_challenge(title="Someone else's")
    student = make_user()
    for challenge in (own, other):
        event(student, challenge, "impression", position=0)
    event(student, own, "click", position=0)
    event(student, own, "join")
    db.session.commit()

    page = professor_client.get("/professor/stats").get_data(as_text=True)
    assert "Mine to watch" in page and "Someone else" not in page
    assert "<td>1</td>\n      <td>1</td>\n      <td>100.0%</td>\n      <td>1</td>" in page
    chart = professor_client.get("/professor/stats/chart.svg")
    assert chart.mimetype == "image/svg+xml" and b"Mine to watch" in chart.data
