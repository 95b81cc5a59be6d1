"""The recommendations console and the professors' stats page: access, numbers, actions, charts."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Challenge,
    Experiment,
    ModelRun,
    RecommendationEvent,
    RecommendationSlate,
    UserRecommendation,
    utcnow,
)
from app.recs import publish
from app.recs.experiment import start_experiment
from tests.helpers import (
    make_category,
    make_challenge,
    make_event,
    make_participation,
    make_user,
)

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
    "/admin/recommendations/experiment/end-winner",
]


def event(user, challenge, kind, source="model", position=None, slate="s1"):
    make_event(user, challenge, kind, source=source, position=position, slate_id=slate)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("path", PAGES + ["/professor/stats", "/professor/stats/chart.svg"])
def test_console_pages_are_for_their_audience_only(
    app, student_client, professor_client, admin_client, path
):
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
    assert '<th scope="row">model</th><td>4</td><td>1</td><td>25.0%</td>' in page
    assert '<th scope="row">heuristic</th><td>1</td><td>0</td><td>0.0%</td>' in page
    assert 'src="/admin/recommendations/charts/daily-ctr.svg?from=' in page
    chart = admin_client.get("/admin/recommendations/charts/daily-ctr.svg")
    assert b"model" in chart.data and b"heuristic" in chart.data


def test_no_day_shows_a_rate_over_100_percent_when_a_slate_is_clicked_the_next_day(admin_client):
    """Clicked and joined just after midnight, the slate shown just before: the counts stay on
    the slate's day, and the next day has nothing without its impression."""
    import re

    student, challenge = make_user(), make_challenge()
    shown = datetime(2026, 11, 20, 23, 58, tzinfo=UTC)
    after = shown + timedelta(minutes=5)
    for kind in ("impression", "click", "join"):
        make_event(
            student,
            challenge,
            kind,
            source="fresh",
            position=None if kind == "join" else 0,
            slate_id="night",
            created_at=shown if kind == "impression" else after,
        )
    page = admin_client.get("/admin/recommendations/online?from=2026-11-21&to=2026-11-21")
    page = re.sub(r">\s+<", "><", page.get_data(as_text=True))
    assert '<th scope="row">fresh</th>' not in page  # nothing of that source in the range
    assert '<th scope="row">model</th><td>0</td><td>0</td><td>—</td><td>0</td><td>—</td>' in page
    page = admin_client.get("/admin/recommendations/online?from=2026-11-20&to=2026-11-21")
    page = re.sub(r">\s+<", "><", page.get_data(as_text=True))
    assert (
        '<th scope="row">fresh</th><td>1</td><td>1</td><td>100.0%</td><td>1</td><td>100.0%</td>'
        in page
    )


@pytest.mark.parametrize(
    "query",
    [
        "from=2024-13-01",
        "from=2024-03-05&to=2024-03-01",
        "to=yesterday",
        "from=2000-01-01&to=2024-01-01",
    ],
)
def test_bad_date_range_is_a_400_with_a_message(admin_client, professor_client, query):
    response = admin_client.get(f"/admin/recommendations/online?{query}")
    assert response.status_code == 400
    assert 'class="flash flash-error"' in response.get_data(as_text=True)
    assert (
        admin_client.get(f"/admin/recommendations/charts/positions.svg?{query}").status_code == 400
    )
    assert professor_client.get(f"/professor/stats?{query}").status_code == 400


def test_a_refused_range_stays_in_the_fields_to_be_corrected(admin_client, professor_client):
    query = "from=2024-03-05&to=2024-03-01"
    for browser, url in (
        (admin_client, "/admin/recommendations/online"),
        (professor_client, "/professor/stats"),
    ):
        page = browser.get(f"{url}?{query}").get_data(as_text=True)
        assert 'name="from" value="2024-03-05"' in page and 'name="to" value="2024-03-01"' in page
    for browser, url in (
        (admin_client, "/admin/recommendations/online"),
        (professor_client, "/professor/stats"),  # the same form
    ):
        page = browser.get(f"{url}?{query}").get_data(as_text=True)
        assert page.count('aria-invalid="true"') == 2 and "From (UTC day)" in page
        assert "aria-invalid" not in browser.get(url).get_data(True)
    wrong_day = admin_client.get("/admin/recommendations/online?from=2024-02-30").get_data(True)
    assert "From (UTC day): 2024-02-30 is not a day of the calendar." in wrong_day


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
    ended = make_challenge(
        title="Long over",
        starts_at=utcnow() - timedelta(days=9),
        ends_at=utcnow() - timedelta(days=1),
    )
    archived = make_challenge(title="Archived one", status="archived")
    make_participation(student, joined)
    run = _published_run()
    for rank, challenge in enumerate((good, joined, ended, archived), 1):
        db.session.add(
            UserRecommendation(
                model_run_id=run.id,
                user_id=student.id,
                challenge_id=challenge.id,
                score=1.0 / rank,
                rank=rank,
            )
        )
    db.session.commit()

    search = admin_client.get("/admin/recommendations/preview?q=lovelace").get_data(as_text=True)
    assert "ada@uni.test" in search and "Published model" in search  # a single match opens at once
    page = admin_client.get(f"/admin/recommendations/preview?user_id={student.id}").get_data(
        as_text=True
    )
    assert "Good pick" in page and "Heuristic" in page
    for flag in ("joined", "ended", "archived"):
        assert f'<span class="badge bad">{flag}</span>' in page
    assert "3 of the model rows are no longer eligible for this student" in page
    assert count(RecommendationEvent) == 0
    assert count(RecommendationSlate) == 0


def test_preview_names_the_published_version_for_a_student_it_has_no_rows_for(admin_client):
    student = make_user()
    make_challenge(title="Something to offer")
    url = f"/admin/recommendations/preview?user_id={student.id}"
    page = admin_client.get(url).get_data(as_text=True)
    assert "published version: <strong>none</strong>" in page
    assert "No model is published: the slate below shows what they get instead." in page
    _published_run("v7")
    page = admin_client.get(url).get_data(as_text=True)
    assert "published version: <strong>v7</strong> (no rows for this student)" in page
    assert "Version v7 has no rows for this student" in page and "heuristic arm" not in page
    experiment = start_experiment("A/B", 100)
    experiment.treatment_arm = "heuristic"  # everyone in the heuristic arm
    db.session.commit()
    assert "in the experiment's heuristic arm:" in admin_client.get(url).get_data(as_text=True)


def test_preview_unknown_student_is_a_400(admin_client):
    professor = make_user("professor")
    for user_id in ("999999", "abc", str(professor.id)):
        response = admin_client.get(f"/admin/recommendations/preview?user_id={user_id}")
        assert response.status_code == 400
        assert "No student with that id." in response.get_data(as_text=True)


def test_experiment_start_show_and_stop(admin_client):
    response = admin_client.post(
        "/admin/recommendations/experiment/start",
        data={"name": "Spring test", "allocation_percent": "30"},
    )
    assert response.status_code == 303
    experiment = db.session.scalar(select(Experiment))
    assert (experiment.name, experiment.allocation_percent, experiment.status) == (
        "Spring test",
        30,
        "running",
    )

    student, challenge = make_user(), make_challenge()
    slate = RecommendationSlate(id="slate-exp", user_id=student.id, source="model", arm="model")
    db.session.add(slate)
    db.session.commit()
    for kind in ["impression"] * 10 + ["click"]:
        make_event(student, challenge, kind, arm="model", slate_id=slate.id)
    page = admin_client.get("/admin/recommendations/experiment").get_data(as_text=True)
    assert "<td>model</td><td>10</td><td>1</td><td>10.00%</td>" in page
    assert "Stop experiment" in page

    response = admin_client.post("/admin/recommendations/experiment/stop", data={"winner": "model"})
    assert response.status_code == 303
    db.session.refresh(experiment)
    assert (experiment.status, experiment.winner) == ("stopped", "model")


def test_a_heuristic_winner_is_shown_where_operators_look_and_can_be_handed_back(admin_client):
    from app.recs.experiment import assign_arm
    from app.recs.pipeline import status_summary

    student = make_user()
    _published_run("v1")
    admin_client.post("/admin/recommendations/experiment/start", data={"allocation_percent": "50"})
    admin_client.post("/admin/recommendations/experiment/stop", data={"winner": "heuristic"})
    assert assign_arm(student.id) == "heuristic"
    dashboard = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert "Every student gets the heuristic, not the published model" in dashboard
    assert status_summary()["serving_rule"]["winner"] == "heuristic"
    page = admin_client.get("/admin/recommendations/experiment").get_data(as_text=True)
    assert "Serve the default again" in page

    response = admin_client.post("/admin/recommendations/experiment/end-winner")
    assert response.status_code == 303
    experiment = db.session.scalar(select(Experiment))
    assert experiment.winner == "heuristic" and experiment.winner_until is not None  # on record
    assert assign_arm(student.id) is None
    assert "Every student gets" not in admin_client.get("/admin/recommendations").get_data(True)
    assert status_summary()["serving_rule"] is None
    page = admin_client.get("/admin/recommendations/experiment").get_data(as_text=True)
    assert "served to everyone until" in page and "Serve the default again" not in page
    # Nothing left to hand back.
    assert admin_client.post("/admin/recommendations/experiment/end-winner").status_code == 400


def test_a_new_experiment_ends_the_rule_of_the_last_winner_on_record(admin_client):
    from app.recs.experiment import ruling_experiment, stop_experiment

    old = start_experiment("Old", 50)
    stop_experiment(old, "heuristic")
    assert ruling_experiment() == old
    start_experiment("New", 50)
    db.session.refresh(old)
    assert old.winner_until is not None and ruling_experiment() is None
    page = admin_client.get("/admin/recommendations/experiment").get_data(as_text=True)
    assert "(served to everyone)" not in page


@pytest.mark.parametrize(
    "data",
    [
        {"allocation_percent": "101"},
        {"allocation_percent": "-5"},
        {"allocation_percent": "fifty"},
        {"allocation_percent": "\uff15\uff10"},
        {},
    ],
)
def test_experiment_start_rejects_bad_allocation(admin_client, data):
    response = admin_client.post("/admin/recommendations/experiment/start", data=data)
    assert response.status_code == 400
    assert "whole number of percent" in response.get_data(as_text=True)
    assert count(Experiment) == 0


@pytest.mark.parametrize(
    "data, refused",
    [
        ({"name": "Spring pilot", "allocation_percent": "50.5"}, "allocation_percent"),
        ({"name": "\u2800", "allocation_percent": "30"}, "name"),
    ],
)
def test_a_refused_experiment_keeps_what_was_typed_and_marks_the_field(admin_client, data, refused):
    page = admin_client.post("/admin/recommendations/experiment/start", data=data).get_data(
        as_text=True
    )
    fields = {
        name: re.search(rf'<input[^>]*id="{name}"[^>]*>', page).group(0)
        for name in ("name", "allocation_percent")
    }
    for name, tag in fields.items():
        assert f'value="{data[name]}"' in tag, tag
        assert ('aria-invalid="true"' in tag) == (name == refused), tag


def test_experiment_stop_rejects_bad_winner_and_nothing_running(admin_client):
    assert (
        admin_client.post(
            "/admin/recommendations/experiment/stop", data={"winner": "model"}
        ).status_code
        == 400
    )
    start_experiment("running", 50)
    response = admin_client.post(
        "/admin/recommendations/experiment/stop", data={"winner": "random"}
    )
    assert response.status_code == 400
    assert db.session.scalar(select(Experiment.status)) == "running"
    assert (
        admin_client.post(
            "/admin/recommendations/experiment/start", data={"allocation_percent": "50"}
        ).status_code
        == 400
    )


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


def test_a_title_stored_with_a_control_character_before_cleaning_keeps_the_chart_readable(
    professor_client,
):
    # Stored before typed text lost its control characters: the chart leaves them out itself.
    challenge = make_challenge(
        owner=professor_client.user, title="Old\x07title", status="published"
    )
    event(make_user(), challenge, "impression", position=0)
    chart = professor_client.get("/professor/stats/chart.svg")
    assert "Oldtitle" in ET.tostring(ET.fromstring(chart.data), encoding="unicode")


def test_a_title_pasted_with_a_control_character_keeps_the_stats_chart_readable(professor_client):
    category = make_category()
    response = professor_client.post(
        "/professor/challenges/new",
        data={
            "title": "Robo\x07tics\x0blab",  # a bell and a vertical tab, pasted from a terminal
            "description": "Build\x1b[0m a robot.",
            "category_id": str(category.id),
            "reward_points": "5",
            "starts_at": "2030-03-01T09:30",
            "status": "published",
        },
    )
    assert response.status_code == 303
    challenge = db.session.scalar(select(Challenge))
    assert (challenge.title, challenge.description) == ("Robotics lab", "Build[0m a robot.")
    event(make_user(), challenge, "impression", position=0)
    chart = professor_client.get("/professor/stats/chart.svg")
    # A control character is not allowed in XML: the browser would draw no chart at all.
    assert "Robotics lab" in ET.tostring(ET.fromstring(chart.data), encoding="unicode")


def _metrics(model_ndcg: float) -> dict:
    row = {
        "precision@10": 0.1,
        "recall@10": 0.3,
        "coverage": 0.5,
        "users": 40,
        "params": {"factors": 8},
    }
    return {
        "gate": {
            "model": "svd",
            "model_ndcg": model_ndcg,
            "heuristic_ndcg": 0.2,
            "passed": True,
            "k": 10,
        },
        "comparison": {
            "split": "time",
            "k": 10,
            "best": "svd",
            "models": {
                "svd": {**row, "ndcg@10": model_ndcg, "validation_ndcg": 0.3},
                "popularity": {**row, "ndcg@10": 0.15, "validation_ndcg": None},
                "heuristic": {**row, "ndcg@10": 0.2, "validation_ndcg": None},
            },
        },
    }


def _with_rows(run: ModelRun, students, challenge) -> ModelRun:
    for student in students:
        db.session.add(
            UserRecommendation(
                model_run_id=run.id,
                user_id=student.id,
                challenge_id=challenge.id,
                score=0.5,
                rank=1,
            )
        )
    run.rows_count, run.users_count = len(students), len(students)
    db.session.commit()
    return run


def _two_versions():
    """v-old (superseded, covers two active students) and v-new (published, covers one)."""
    students = [make_user(), make_user()]
    challenge = make_challenge()
    for student in students:
        make_participation(student, challenge)
    old = _published_run("v-old", algorithm="svd", metrics=_metrics(0.31))
    _with_rows(old, students, challenge)
    new = _published_run("v-new", algorithm="svd", metrics=_metrics(0.35))
    old.status = "superseded"
    db.session.commit()
    return old, _with_rows(new, students[:1], challenge)


def test_after_a_rollback_the_previous_version_is_the_one_rolled_back_from(admin_client):
    old, new = _two_versions()  # v-old covers both active students, v-new one of them
    publish.rollback()
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert "v-old" in page and "100.0%" in page
    assert "(previous version: 50.0%)" in page


def test_dashboard_shows_version_coverage_and_warnings(admin_client, app):
    old, new = _two_versions()
    new.started_at = utcnow() - timedelta(hours=app.config["RECS_STALE_AFTER_HOURS"] + 5)
    db.session.add(
        ModelRun(
            version="v-broken",
            status="failed",
            kind="train",
            error="MemoryError: boom",
            finished_at=utcnow(),
        )
    )
    db.session.add(
        ModelRun(
            version="v-import",
            status="rejected",
            kind="import",
            finished_at=utcnow(),
            report={
                "stage": "done",
                "validation": {
                    "total": 1000,
                    "accepted": 997,
                    "bad": {"unknown student": 3, "unknown challenge": 1},
                    "examples": {"unknown student": [2, 5, 9], "unknown challenge": [7]},
                    "refused": None,
                },
            },
        )
    )
    db.session.commit()

    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert "v-new" in page and "50.0%" in page
    assert "1 of 2 students active in the last 30 days" in page
    assert "The published model is stale" in page
    assert "The last run (v-import) failed" not in page  # rejected is not failed ...
    assert "MemoryError: boom" in page  # ... but the failed run shows in the list
    assert "Coverage fell: 50% of active students have model rows, against 100%" in page
    assert "997 of 1000 rows accepted" in page
    assert 'unknown student: 3 <span class="muted">(lines 2, 5, 9)</span>' in page
    assert 'unknown challenge: 1 <span class="muted">(line 7)</span>' in page
    assert '<option value="v-old">' in page


def test_dashboard_warns_when_the_last_run_failed_and_nothing_is_published(admin_client):
    db.session.add(ModelRun(version="v-broken", status="failed", kind="train", error="disk full"))
    db.session.commit()
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert "No model is published" in page
    assert "The last run (v-broken) failed: disk full" in page
    assert "nothing to roll back to" in page


def test_latest_runs_show_the_day_a_run_finished(admin_client):
    db.session.add(
        ModelRun(
            version="v-midnight",
            status="rejected",
            kind="train",
            started_at=datetime(2024, 5, 1, 23, 50),
            finished_at=datetime(2024, 5, 2, 0, 10),
        )
    )
    db.session.commit()
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert "<th>Started (UTC)</th><th>Finished (UTC)</th>" in page
    assert "<td>2024-05-01 23:50</td>\n      <td>2024-05-02 00:10</td>" in page


def test_rollback_and_forward_through_the_page(admin_client):
    from app.recs.publish import published_run

    old, new = _two_versions()
    response = admin_client.post("/admin/recommendations/rollback", data={"version": "v-old"})
    assert response.status_code == 303
    assert published_run().version == "v-old"
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert "Version v-old is published again (was v-new)." in page
    assert (
        admin_client.post("/admin/recommendations/rollback", data={"version": "v-new"}).status_code
        == 303
    )
    assert published_run().version == "v-new"


def test_the_rollback_form_offers_a_version_rolled_back_from_last(admin_client):
    old, new = _two_versions()
    assert (
        admin_client.post("/admin/recommendations/rollback", data={"version": "v-old"}).status_code
        == 303
    )  # v-new was bad
    third = _published_run("v-third", algorithm="svd", metrics=_metrics(0.33))
    _with_rows(third, [make_user()], db.session.get(Challenge, _first_challenge_id()))
    old.status = "superseded"
    db.session.commit()
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    form = page[page.index('<select id="version"') : page.index("</select>")]
    assert form.index('value="v-old"') < form.index('value="v-new"')
    assert "rolled back from" in form[form.index('value="v-new"') :]
    assert "rolled back from" not in form[: form.index('value="v-new"')]


def _first_challenge_id() -> int:
    return db.session.scalar(select(func.min(Challenge.id)))


def test_rollback_waits_while_another_run_holds_the_lock(admin_client, app):
    from app.recs import scheduler
    from app.recs.publish import published_run

    _two_versions()
    with scheduler.single_runner(app) as acquired:  # a rollback or the purge: no run recorded
        assert acquired
        response = admin_client.post("/admin/recommendations/rollback", data={"version": "v-old"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert (
        "Another run (a retrain, an import, a rollback or the event purge) is in progress: "
        "roll back once it has finished." in page
    )
    assert "retraining run" not in page  # nothing says this lock holder is training
    assert published_run().version == "v-new"
    after = admin_client.post("/admin/recommendations/rollback", data={"version": "v-old"})
    assert after.status_code == 303 and published_run().version == "v-old"


@pytest.mark.parametrize("version", ["", "v-missing", "v-new"])
def test_rollback_refuses_unknown_or_current_versions(admin_client, version):
    from app.recs.publish import published_run

    _two_versions()
    response = admin_client.post("/admin/recommendations/rollback", data={"version": version})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'class="flash flash-error"' in page
    assert "A recommendation job is running" not in page  # drawn after the lock is let go
    assert published_run().version == "v-new"


def test_versions_page_puts_the_model_beside_the_baselines(admin_client):
    _two_versions()
    page = admin_client.get("/admin/recommendations/versions").get_data(as_text=True)
    headers = ["Model or baseline", "ndcg@10", "recall@10", "precision@10", "catalogue coverage"]
    assert "".join(f'<th scope="col">{h}</th>' for h in headers) in page
    assert 'svd <span class="muted">(model)</span></td><td>0.3500</td>' in page
    assert "<td>popularity</td><td>0.1500</td>" in page
    assert "evaluated on 40 students" in page and "<th>users</th>" not in page
    chart = admin_client.get("/admin/recommendations/charts/versions.svg")
    assert (
        b"model ndcg@10" in chart.data
        and b"heuristic ndcg@10" in chart.data
        and b"v-old" in chart.data
    )


def test_retrain_now_goes_through_the_scheduler(admin_client, monkeypatch):
    from app.recs import scheduler

    started = []
    monkeypatch.setattr(scheduler, "trigger_retrain", lambda app: started.append(app) or True)
    response = admin_client.post("/admin/recommendations/retrain", follow_redirects=True)
    assert len(started) == 1
    assert "Retraining started" in response.get_data(as_text=True)


def test_retrain_now_names_what_holds_the_lock(admin_client, app):
    from app.recs import scheduler

    with scheduler.single_runner(app) as acquired:  # a rollback or the purge: no run recorded
        assert acquired
        page = admin_client.post("/admin/recommendations/retrain", follow_redirects=True)
    page = page.get_data(as_text=True)
    assert (
        "Another run (a retrain, an import, a rollback or the event purge) is in progress: "
        "retrain once it has finished." in page
    )
    assert "training run is" not in page

    db.session.add(ModelRun(version="v-running", status="running", kind="train"))
    db.session.commit()
    with scheduler.single_runner(app):
        page = admin_client.post("/admin/recommendations/retrain", follow_redirects=True)
    assert "A training run is in progress: retrain once it has finished." in page.get_data(True)


@pytest.mark.parametrize("running", [True, False])
def test_progress_without_javascript_offers_a_reload_instead_of_updating(
    admin_client, monkeypatch, running
):
    """The block polls through htmx; with scripts off it says so and links the page to reload."""
    from app.recs import scheduler

    if running:
        db.session.add(ModelRun(version="v-running", status="running", kind="train"))
        db.session.commit()
    monkeypatch.setattr(scheduler, "is_locked", lambda app: True)
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    noscript = re.search(r"<noscript>(.*?)</noscript>", page, re.S)
    assert noscript and 'href="/admin/recommendations"' in noscript.group(1), page


def test_progress_polls_while_running_and_reloads_when_done(admin_client, monkeypatch):
    from app.recs import scheduler

    run = ModelRun(
        version="v-running", status="running", kind="train", report={"stage": "evaluating"}
    )
    db.session.add(run)
    db.session.commit()
    monkeypatch.setattr(scheduler, "is_locked", lambda app: True)
    partial = admin_client.get("/admin/recommendations/progress?following=1")
    body = partial.get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in body and "evaluating" in body and "disabled" in body
    assert "following=v-running" in body  # the run it polls for is named
    assert "HX-Refresh" not in partial.headers

    run.status, run.error, run.finished_at = "rejected", "not enough data", utcnow()
    db.session.commit()
    monkeypatch.setattr(scheduler, "is_locked", lambda app: False)
    # A job that was no run of this page's (a rollback holding the lock) ends without a message.
    other = admin_client.get("/admin/recommendations/progress?following=1")
    assert other.headers["HX-Refresh"] == "true"
    assert "Training run" not in admin_client.get("/admin/recommendations").get_data(True)
    partial = admin_client.get("/admin/recommendations/progress?following=v-running")
    body = partial.get_data(as_text=True)
    assert "hx-trigger" not in body and "not enough data" in body
    assert partial.headers["HX-Refresh"] == "true"
    assert "HX-Refresh" not in admin_client.get("/admin/recommendations/progress").headers
    # The reloaded page opens with the outcome, as an alert, where the focus starts.
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert '<div class="flashes" tabindex="-1" autofocus>' in page
    assert (
        '<p class="flash flash-warning" role="alert">'
        "Training run v-running ended: rejected (not enough data).</p>"
    ) in page
    assert "Training run" not in admin_client.get("/admin/recommendations").get_data(True)


@pytest.mark.parametrize(
    "query",
    ["to=9999-12-31", "from=9999-12-30&to=9999-12-31", "to=0001-01-01", "from=1969-12-31"],
)
def test_dates_at_the_ends_of_the_calendar_are_refused_not_errors(admin_client, query):
    for url in ("/admin/recommendations/online", "/admin/recommendations/charts/positions.svg"):
        response = admin_client.get(f"{url}?{query}")
        assert response.status_code == 400, url
    page = admin_client.get(f"/admin/recommendations/online?{query}").get_data(as_text=True)
    assert "must be between 1970-01-01 and 9998-12-31" in page


def test_professor_stats_refuse_dates_past_the_calendar(professor_client):
    for url in ("/professor/stats", "/professor/stats/chart.svg"):
        assert professor_client.get(f"{url}?to=9999-12-31").status_code == 400, url
        assert professor_client.get(f"{url}?to=0001-01-01").status_code == 400, url


def test_a_rolled_back_version_keeps_its_age(admin_client, app):
    old, new = _two_versions()
    trained = utcnow() - timedelta(hours=app.config["RECS_STALE_AFTER_HOURS"] + 5)
    old.started_at, new.started_at = trained, utcnow()
    db.session.commit()
    assert "The published model is stale" not in admin_client.get("/admin/recommendations").text
    publish.rollback("v-old")
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert "The published model is stale" in page
    assert f"trained {trained.strftime('%Y-%m-%d %H:%M')}" in page


def test_an_arm_without_impressions_shows_no_rate_rather_than_zero(admin_client):
    start_experiment("fresh", 50)
    page = admin_client.get("/admin/recommendations/experiment").get_data(as_text=True)
    row = " ".join(page[page.index("<td>model</td>") :].split("</tr>")[0].split())
    assert (
        row
        == "<td>model</td><td>0</td><td>0</td><td>—</td> <td>—</td><td>0</td><td>—</td> <td>—</td>"
    )
    assert "0.00% – 0.00%" not in page
    assert "no impressions in an arm yet" in page and "not significant" not in page


def test_rates_without_impressions_read_as_no_data_on_every_page(professor_client, admin_client):
    make_challenge(owner=professor_client.user, title="Unseen")
    stats = professor_client.get("/professor/stats").get_data(as_text=True)
    assert "CTR —" in stats and "join rate —" in stats and "0.0%" not in stats
    online = admin_client.get("/admin/recommendations/online").get_data(as_text=True)
    assert "0.0%" not in online


def test_a_model_winner_is_the_default_and_rules_nothing(admin_client):
    from app.recs.experiment import assign_arm, ruling_experiment, stop_experiment
    from app.recs.pipeline import status_summary

    stop_experiment(start_experiment("Won by the model", 50), "model")
    assert assign_arm(make_user().id) == "model" and ruling_experiment() is None
    assert status_summary()["serving_rule"] is None
    page = admin_client.get("/admin/recommendations/experiment").get_data(as_text=True)
    assert "Serve the default again" not in page
    assert admin_client.post("/admin/recommendations/experiment/end-winner").status_code == 400


def test_a_stop_form_of_an_experiment_since_stopped_leaves_the_next_one_running(admin_client):
    from app.recs.experiment import stop_experiment

    first = start_experiment("First", 50)
    page = admin_client.get("/admin/recommendations/experiment").get_data(as_text=True)
    assert f'name="experiment" value="{first.id}"' in page
    # Another tab stops it and starts the next one; this tab's form still names the first.
    stop_experiment(first, None)
    second = start_experiment("Second", 10)
    response = admin_client.post(
        "/admin/recommendations/experiment/stop",
        data={"winner": "heuristic", "experiment": str(first.id)},
    )
    assert response.status_code == 400
    assert "“Second” started after this page was loaded" in response.get_data(as_text=True)
    db.session.refresh(second)
    assert (second.status, second.winner) == ("running", None)


def test_a_hand_back_form_of_an_earlier_winner_leaves_the_later_one_serving(admin_client):
    from app.recs.experiment import end_winner, ruling_experiment, stop_experiment

    first = start_experiment("First", 50)
    stop_experiment(first, "heuristic")
    end_winner(first)
    second = start_experiment("Second", 50)
    stop_experiment(second, "heuristic")
    response = admin_client.post(
        "/admin/recommendations/experiment/end-winner", data={"experiment": str(first.id)}
    )
    assert response.status_code == 400
    assert ruling_experiment() == second


def test_an_experiment_name_is_cleaned_like_every_other_name(admin_client):
    response = admin_client.post(
        "/admin/recommendations/experiment/start",
        data={"name": " Spring\u202e test\n\tB ", "allocation_percent": "50"},
    )
    assert response.status_code == 303
    assert db.session.scalar(select(Experiment.name)) == "Spring test B"


def test_an_experiment_name_that_shows_nothing_is_refused(admin_client):
    response = admin_client.post(
        "/admin/recommendations/experiment/start",
        data={"name": "\u2800\u3164", "allocation_percent": "50"},
    )
    assert response.status_code == 400
    assert "Name: write at least one visible character." in response.get_data(as_text=True)
    assert count(Experiment) == 0


def test_preview_search_says_when_it_shows_only_the_first_matches(admin_client):
    from app.admin.recommendations import SEARCH_LIMIT

    for n in range(SEARCH_LIMIT + 1):
        make_user(display_name=f"Namesake {n:02d}")
    page = admin_client.get("/admin/recommendations/preview?q=namesake").get_data(as_text=True)
    assert page.count('class="button small"') == SEARCH_LIMIT
    assert f"More than {SEARCH_LIMIT} students match “namesake”" in page
    make_user(display_name="Unique Person")
    page = admin_client.get("/admin/recommendations/preview?q=namesake 0").get_data(as_text=True)
    assert "More than" not in page


def test_preview_links_of_namesakes_have_names_of_their_own(admin_client):
    """Two students may share a display name: each "Preview" link says whose e-mail it opens."""
    make_user(display_name="Sam Lee", email="sam.lee@uni.test")
    make_user(display_name="Sam Lee", email="sam.lee2@uni.test")
    page = admin_client.get("/admin/recommendations/preview?q=sam").get_data(as_text=True)
    names = re.findall(r'aria-label="(Preview [^"]*)"', page)
    assert len(names) == 2 and len(set(names)) == 2, names
    assert "sam.lee2@uni.test" in names[0] + names[1]


def test_the_training_block_gives_the_next_run_in_the_zone_the_schedule_is_in(
    admin_client, monkeypatch
):
    from zoneinfo import ZoneInfo

    from app.recs import scheduler

    # The cron runs in the server's local time; the rest of the block is in UTC.
    next_run = datetime(2026, 1, 15, 3, 0, tzinfo=ZoneInfo("America/New_York"))
    monkeypatch.setattr(scheduler, "next_run_time", lambda app: next_run)
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert "Next scheduled run: 2026-01-15 03:00 EST" in page
    # The tests run with the scheduler off in the web process, as a deployment with a separate
    # `flask recs scheduler` does: the time is that process's, which the page says.
    assert "EST (by a separate <code>flask recs scheduler</code>" in page
    assert "so this is when a separate <code>flask recs scheduler</code> would run" in page
    admin_client.application.config["RECS_SCHEDULER_ENABLED"] = True
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert "flask recs scheduler" not in page


def test_a_rollback_form_from_before_a_new_version_was_published_rolls_nothing_back(admin_client):
    from app.recs.publish import published_run

    old, new = _two_versions()
    page = admin_client.get("/admin/recommendations").get_data(as_text=True)
    assert '<input type="hidden" name="published" value="v-new">' in page
    # A run publishes a newer version while the page is open.
    newest = _published_run("v-newest", algorithm="svd", metrics=_metrics(0.4))
    _with_rows(newest, [make_user()], db.session.get(Challenge, _first_challenge_id()))
    new.status = "superseded"
    db.session.commit()
    response = admin_client.post(
        "/admin/recommendations/rollback", data={"version": "v-old", "published": "v-new"}
    )
    assert response.status_code == 400
    assert "Version v-newest was published after this page was loaded" in response.get_data(
        as_text=True
    )
    assert published_run().version == "v-newest"
    assert publish.ROLLED_BACK_AT not in (db.session.get(ModelRun, newest.id).report or {})


def test_the_versions_page_says_it_lists_only_the_latest_versions(admin_client):
    from app.admin.recommendations import VERSIONS_SHOWN

    for n in range(VERSIONS_SHOWN + 1):
        _published_run(f"v{n:02d}").status = "superseded"
    db.session.commit()
    page = admin_client.get("/admin/recommendations/versions").get_data(as_text=True)
    assert "v01" in page and "v00" not in page
    assert f"The last {VERSIONS_SHOWN} versions that were published" in page


def test_the_experiment_list_says_it_shows_only_the_latest(admin_client):
    from app.recs.experiment import stop_experiment

    for n in range(21):
        stop_experiment(start_experiment(f"Run {n:02d}", 50), None)
    page = admin_client.get("/admin/recommendations/experiment").get_data(as_text=True)
    assert "Run 01" in page and "Run 00" not in page
    assert "<h2>The last 20 experiments</h2>" in page
