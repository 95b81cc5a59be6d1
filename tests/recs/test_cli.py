"""Every ``flask recs`` command through ``app.test_cli_runner()``."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import ModelRun, RecommendationEvent, UserRecommendation, utcnow
from app.recs import metrics, pipeline, publish, scheduler
from app.recs.data import pseudonym, write_csv
from tests.recs.planted_data import add_event, planted_interactions, seed_planted_campus


@pytest.fixture
def runner(app, tmp_path):
    # Default paths (instance/recommendations/...) land in a temporary folder.
    app.instance_path = str(tmp_path / "instance")
    return app.test_cli_runner()


@pytest.fixture
def campus(app):
    return seed_planted_campus()


def invoke(runner, *args, code: int = 0, stdout_only: bool = False):
    result = runner.invoke(args=["recs", *args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.stdout if stdout_only else result.output


def test_every_command_has_help(runner):
    for command in (
        "export",
        "train",
        "generate",
        "import",
        "pipeline",
        "rollback",
        "status",
        "evaluate",
        "scheduler",
        "purge-events",
    ):
        assert "Usage:" in invoke(runner, command, "--help")


def test_export_default_path_and_pseudonyms(app, runner, campus, tmp_path):
    output = invoke(runner, "export")
    path = tmp_path / "instance" / "recommendations" / "interactions.csv"
    assert f"to {path}" in output
    first_user = path.read_text().splitlines()[1].split(",")[0]
    assert int(first_user) in {s.id for s in campus["students"]}
    hashed = tmp_path / "hashed.csv"
    invoke(runner, "export", "--output", str(hashed), "--pseudonymize")
    key = str(app.config["SECRET_KEY"]).encode()
    assert hashed.read_text().splitlines()[1].split(",")[0] in {
        pseudonym(s.id, key) for s in campus["students"]
    }
    app.config["RECS_PSEUDONYM_KEY"] = "another key"
    invoke(runner, "export", "--output", str(hashed), "--pseudonymize")
    assert hashed.read_text().splitlines()[1].split(",")[0] not in {
        pseudonym(s.id, key) for s in campus["students"]
    }


def test_export_since_a_future_date_is_empty(runner, campus, tmp_path):
    assert "Exported 0 interactions" in invoke(
        runner, "export", "--output", str(tmp_path / "x.csv"), "--since", "2999-01-01"
    )


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+0100", "9999-12-31T23:59:59-0100"])
def test_export_since_a_moment_outside_the_calendar_in_utc_is_bad_input(runner, campus, since):
    result = runner.invoke(args=["recs", "export", "--since", since])
    assert result.exit_code == 2
    assert "'--since': must fall between 0001-01-01 and 9999-12-31 in UTC" in result.output
    assert "database error" not in result.output


def test_train_prints_the_table_and_publishes(runner, campus):
    output = invoke(runner, "train")
    assert "NDCG@10" in output and "heuristic" in output and "Published version" in output
    assert publish.published_run() is not None


def test_train_from_an_exported_csv(runner, campus, tmp_path):
    path = tmp_path / "interactions.csv"
    invoke(runner, "export", "--output", str(path))
    assert "Published version" in invoke(runner, "train", "--input", str(path))
    assert publish.published_run().report["source"] == "file"


def test_train_refuses_a_broken_csv(runner, campus, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("user_id,challenge_id,event,weight,timestamp\n1,2,join,heavy,0\n")
    output = invoke(runner, "train", "--input", str(path), code=1)
    assert "broken.csv:2" in output and db.session.scalar(select(func.count(ModelRun.id))) == 0


def test_train_rejection_exits_cleanly(app, runner):
    seed_planted_campus(n_students=4)
    assert "rejected: not enough data" in invoke(runner, "train")


def test_generate_then_import_publishes_a_new_version(runner, campus, tmp_path):
    invoke(runner, "pipeline")
    trained = publish.published_run().version
    output = invoke(runner, "generate", "--k", "3")
    path = tmp_path / "instance" / "recommendations" / "model_output.csv"
    assert f"of version {trained}" in output
    lines = path.read_text().splitlines()
    # Each planted student has joined 5 of their group's 6 challenges: the one left is the only
    # challenge the model has evidence for, and a challenge it scores 0 is not written.
    assert lines[0] == "user_id,challenge_id,score" and len(lines) == 1 + 45
    assert all(float(line.rsplit(",", 1)[1]) != 0 for line in lines[1:])
    output = invoke(runner, "import")
    assert "accepted: 45" in output
    current = publish.published_run()
    assert current.kind == "import" and current.version != trained
    status = invoke(runner, "status")
    assert f"Published: {current.version} (import), " in status and "(imported 20" in status
    assert "Quality: no offline evaluation (imported rows)" in status and "None" not in status


def test_generate_writes_only_accounts_the_model_knew(runner, campus, tmp_path):
    """A deleted student's history stays in the artifact; their id may be a new account's now."""
    from datetime import timedelta

    from app.models import User

    invoke(runner, "pipeline")
    started = publish.published_run().started_at
    deleted, renewed, kept = campus["students"][:3]
    db.session.delete(db.session.get(User, deleted.id))
    # As SQLite gives a deleted highest id to the next account: a newer person, the same id.
    db.session.get(User, renewed.id).created_at = started + timedelta(seconds=1)
    db.session.commit()
    invoke(runner, "generate", "--k", "3")
    path = tmp_path / "instance" / "recommendations" / "model_output.csv"
    users = {int(line.split(",")[0]) for line in path.read_text().splitlines()[1:]}
    assert kept.id in users and not users & {deleted.id, renewed.id}
    assert len(users) == len(campus["students"]) - 2


def test_generate_unknown_version(runner, campus):
    assert "no model artifact" in invoke(runner, "generate", "--version", "nope", code=1)


def test_generate_from_a_damaged_artifact_is_an_error(runner, campus):
    """A model.npz cut short (a copy interrupted, a damaged disk) is what fold-in calls cannot
    load; generate says so in one line too."""
    from pathlib import Path

    invoke(runner, "pipeline")
    arrays = Path(publish.published_run().artifact_path) / "model.npz"
    arrays.write_bytes(arrays.read_bytes()[:100])
    assert "cannot generate from" in invoke(runner, "generate", code=1)


def test_import_refuses_a_malformed_file(runner, campus, tmp_path):
    invoke(runner, "pipeline")
    before = publish.published_run().version
    path = tmp_path / "bad.csv"
    path.write_text("user_id,challenge_id,score\n1,2,3\nx,y,z\n")
    output = invoke(runner, "import", "--path", str(path), code=1)
    assert (
        "refused" in output and "unknown student" in output and "user_id not an integer" in output
    )
    assert publish.published_run().version == before


def test_pipeline_if_unpublished_is_a_no_op_when_published(runner, campus):
    invoke(runner, "pipeline", "--if-unpublished")
    first = publish.published_run().version
    assert "nothing to do" in invoke(runner, "pipeline", "--if-unpublished")
    assert publish.published_run().version == first


def test_rollback_command(runner, campus):
    invoke(runner, "pipeline")
    first = publish.published_run().version
    invoke(runner, "pipeline")
    second = publish.published_run().version
    assert f"Published version {first} again (was {second})" in invoke(runner, "rollback")
    assert "no version nope" in invoke(runner, "rollback", "--to", "nope", code=1)
    invoke(runner, "rollback", "--to", second)
    assert publish.published_run().version == second


def test_status_text_and_json(runner, campus):
    assert "Published: none" in invoke(runner, "status")
    invoke(runner, "pipeline")
    text = invoke(runner, "status")
    assert "Published:" in text and "Recent runs:" in text
    summary = json.loads(invoke(runner, "status", "--json", stdout_only=True))
    published = summary["published"]
    # The dashboard's definition: students active in the last 30 days who have rows.
    covered = metrics.coverage(publish.published_run().id, utcnow())
    assert (published["covered_active_students"], published["active_students"]) == (
        covered.covered,
        covered.active_students,
    )
    assert (
        f"Coverage: {covered.covered} of {covered.active_students} students active in the last "
        f"30 days have rows ({covered.share:.1%})"
    ) in text
    assert f"NDCG@10 {published['ndcg']} vs heuristic" in text
    assert summary["published"]["version"] == publish.published_run().version
    assert summary["progress"]["running"] is False and summary["progress"]["next_run_at"]
    assert summary["runs"][0]["status"] == "published"
    assert summary["serving_rule"] is None and "Serving:" not in text


def test_status_and_the_console_warn_when_the_published_model_is_missing(runner, campus, app):
    import shutil
    from pathlib import Path

    invoke(runner, "pipeline")
    run = publish.published_run()
    assert "is missing" not in invoke(runner, "status")
    shutil.rmtree(Path(run.artifact_path))  # a model folder cleaned or restored without it
    text = invoke(runner, "status")
    assert f"Warning: the saved model of {run.version} is missing ({run.artifact_path})" in text
    summary = json.loads(invoke(runner, "status", "--json", stdout_only=True))
    assert summary["published"]["artifact_missing"] is True
    from tests.helpers import login, make_user

    client = app.test_client()
    login(client, make_user("admin"))
    page = client.get("/admin/recommendations").get_data(as_text=True)
    assert f"The saved model of {run.version} is missing" in page


def test_status_says_when_an_experiments_winner_serves_everyone(runner, campus):
    from app.recs.experiment import start_experiment, stop_experiment

    invoke(runner, "pipeline")
    stop_experiment(start_experiment("Spring", 50), "heuristic")
    text = invoke(runner, "status")
    assert "Serving: every student gets the heuristic, whatever is published" in text
    rule = json.loads(invoke(runner, "status", "--json", stdout_only=True))["serving_rule"]
    assert (rule["experiment"], rule["winner"]) == ("Spring", "heuristic")


def test_evaluate_a_csv_file(runner, tmp_path):
    path = tmp_path / "interactions.csv"
    with open(path, "w") as fh:
        write_csv(planted_interactions(), fh)
    output = invoke(runner, "evaluate", "--input", str(path))
    assert "split: random" in output and "split: time" in output and "ease" in output
    results = json.loads(
        invoke(
            runner,
            "evaluate",
            "--input",
            str(path),
            "--split",
            "random",
            "--json",
            stdout_only=True,
        )
    )
    assert results[0]["split"] == "random"
    assert results[0]["best"] in {"svd", "knn", "ease", "session_ease"}


def test_evaluate_movielens_format(runner, tmp_path):
    interactions = planted_interactions()
    lines = [
        f"{u}\t{i}\t4\t{int(t)}"
        for u, i, t in zip(
            interactions.user_ids, interactions.item_ids, interactions.timestamps, strict=True
        )
    ]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    output = invoke(
        runner,
        "evaluate",
        "--input",
        str(tmp_path / "u.data"),
        "--format",
        "movielens",
        "--split",
        "time",
    )
    assert "split: time" in output and "popularity" in output


def test_evaluate_reports_unreadable_input(runner, tmp_path):
    (tmp_path / "bad.csv").write_text("nonsense\n")
    assert "header must be" in invoke(
        runner, "evaluate", "--input", str(tmp_path / "bad.csv"), code=1
    )
    for fmt in ("csv", "movielens"):
        missing = invoke(
            runner, "evaluate", "--input", str(tmp_path / "none"), "--format", fmt, code=2
        )
        assert "does not exist" in missing and "not a MovieLens" not in missing
    missing = invoke(runner, "train", "--input", str(tmp_path / "none.csv"), code=2)
    assert "does not exist" in missing
    (tmp_path / "u.data").write_text("1\t2\tx\t4\n")
    assert "not a MovieLens ratings file" in invoke(
        runner, "evaluate", "--input", str(tmp_path / "u.data"), "--format", "movielens", code=1
    )


@pytest.mark.parametrize("flag", ["x", "300"])
def test_evaluate_names_a_malformed_u_item_beside_u_data(runner, tmp_path, flag):
    # It ended in "invalid literal for int()" naming no file, or for 300 in a traceback.
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n2\t10\t1\t50\n")
    genres = "|".join(["0"] * 18 + [flag])
    (tmp_path / "u.item").write_text(f"10|Film (1995)|01-Jan-1995||http://x|0|{genres}\n")
    output = invoke(
        runner, "evaluate", "--input", str(tmp_path / "u.data"), "--format", "movielens", code=1
    )
    assert f"Error: {tmp_path / 'u.item'}:1: not a MovieLens u.item line" in output


def test_purge_events_command(runner, campus):
    student, challenge = campus["students"][0], campus["challenges"][0]
    add_event(student, challenge, "impression", days_ago=40)
    add_event(student, challenge, "impression", days_ago=1)
    assert "Deleted 1 events older than 30 days or of slates shown before then" in invoke(
        runner, "purge-events", "--days", "30"
    )
    assert db.session.scalar(select(func.count(RecommendationEvent.id))) == 1
    assert "Deleted 0 events older than 365 days or of slates shown before then" in invoke(
        runner, "purge-events"
    )
    # A retention longer than the calendar reaches back keeps everything; it was a traceback.
    for days in ("3000000", "99999999999"):
        assert f"Deleted 0 events older than {days} days" in invoke(
            runner, "purge-events", "--days", days
        )
    assert db.session.scalar(select(func.count(RecommendationEvent.id))) == 1


def test_scheduler_command_runs_the_blocking_scheduler(app, runner, monkeypatch):
    started = []

    class FakeBlockingScheduler:
        def __init__(self):
            self.jobs, self.defaults = [], {}

        def configure(self, job_defaults):
            self.defaults = job_defaults

        def add_job(self, func, trigger, **kwargs):
            self.jobs.append((func, trigger, kwargs))

        def start(self):
            started.append(self)
            raise KeyboardInterrupt

    monkeypatch.setattr(scheduler, "BlockingScheduler", FakeBlockingScheduler)
    invoke(runner, "scheduler")
    (instance,) = started
    assert instance.defaults == {
        "max_instances": 1,
        "coalesce": True,
        "misfire_grace_time": app.config["RECS_MISFIRE_GRACE_SECONDS"],
    }
    (func, trigger, kwargs) = instance.jobs[0]
    assert func is scheduler.retrain and kwargs["id"] == scheduler.JOB_ID


def test_commands_refuse_to_overlap_a_running_pipeline(app, runner, campus):
    with scheduler.single_runner(app) as acquired:
        assert acquired
        assert "another recommendation run is in progress" in invoke(runner, "pipeline", code=1)
        assert "in progress" in invoke(runner, "import", code=1)
        assert "in progress" in invoke(runner, "purge-events", code=1)
    invoke(runner, "pipeline")


@pytest.mark.parametrize(
    "args", [("rollback", "--to", ""), ("generate", "--version", " "), ("evaluate", "--seed", "-1")]
)
def test_blank_or_negative_options_are_usage_errors(runner, tmp_path, args):
    (tmp_path / "f.csv").write_text("user_id,challenge_id,event,weight,timestamp\n")
    extra = ("--input", str(tmp_path / "f.csv")) if args[0] == "evaluate" else ()
    output = invoke(runner, *args, *extra, code=2)
    assert "must not be empty" in output or "-1 is not in the range" in output


def test_refusals_are_logged_and_database_errors_are_one_line(runner, campus, monkeypatch, caplog):
    from sqlalchemy.exc import OperationalError

    from app.recs import pipeline

    caplog.set_level("WARNING", logger="app.recs.cli")
    invoke(runner, "rollback", code=1)
    assert (
        "flask recs rollback: no earlier version with its rows kept to roll back to" in caplog.text
    )

    def missing_table(*args, **kwargs):
        raise OperationalError("SELECT ...", {}, Exception("no such table: model_runs"))

    monkeypatch.setattr(pipeline, "status_summary", missing_table)
    output = invoke(runner, "status", code=1)
    assert "Error: database error: no such table: model_runs" in output
    assert "flask db upgrade" in output and "Traceback" not in output
    assert "flask recs status: database error: no such table: model_runs" in caplog.text


def test_a_file_too_small_to_evaluate_is_an_error(runner, tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t4\t100\n1\t3\t4\t200\n")
    output = invoke(
        runner, "evaluate", "--input", str(tmp_path / "u.data"), "--format", "movielens", code=1
    )
    assert "too small to evaluate" in output


def test_train_refuses_a_file_with_nothing_to_learn(runner, campus, tmp_path):
    header = "user_id,challenge_id,event,weight,timestamp\n"
    for name, text in (("empty.csv", header), ("negative.csv", header + "1,2,dismiss,-2,0\n")):
        (tmp_path / name).write_text(text)
        output = invoke(runner, "train", "--input", str(tmp_path / name), code=1)
        assert "no interaction with a positive weight" in output
    assert db.session.scalar(select(func.count(ModelRun.id))) == 0


def test_status_names_a_run_its_process_left_unfinished(runner, campus):
    invoke(runner, "pipeline")
    orphan = publish.start_run(kind="train")
    output = invoke(runner, "status")
    line = next(line for line in output.splitlines() if orphan.version in line)
    assert "interrupted" in line and "the next run cleans it up" in line
    runs = json.loads(invoke(runner, "status", "--json", stdout_only=True))["runs"]
    assert [r["interrupted"] for r in runs if r["version"] == orphan.version] == [True]
    assert not any(r["interrupted"] for r in runs if r["version"] != orphan.version)


def test_status_shows_a_run_that_finished_while_it_looked_as_it_ended(runner, campus, monkeypatch):
    """The runs are read, then whether one is in progress: a run finishing in between is not
    an interrupted one."""
    run = publish.start_run(kind="train")
    read_runs = pipeline.status_summary

    def runs_then_the_run_finishes(*args, **kwargs):
        summary = read_runs(*args, **kwargs)
        publish.finish_run(run, "rejected", "the gate said no")
        return summary

    monkeypatch.setattr(pipeline, "status_summary", runs_then_the_run_finishes)
    runs = json.loads(invoke(runner, "status", "--json", stdout_only=True))["runs"]
    [shown] = [r for r in runs if r["version"] == run.version]
    assert (shown["status"], shown["interrupted"], shown["error"]) == (
        "rejected",
        False,
        "the gate said no",
    )


def test_status_names_an_orphan_while_another_run_is_in_progress(app, runner, campus):
    orphan = publish.start_run(kind="train")  # its process died
    lock = scheduler.RunLock(app)
    assert lock.acquire()  # the live run's process
    try:
        live = publish.start_run(kind="train")
        runs = json.loads(invoke(runner, "status", "--json", stdout_only=True))["runs"]
    finally:
        lock.release()
    shown = {r["version"]: r["interrupted"] for r in runs}
    assert shown[orphan.version] is True and shown[live.version] is False


def test_import_refuses_a_file_covering_far_fewer_students(runner, campus, tmp_path, caplog):
    invoke(runner, "pipeline")
    full = tmp_path / "full.csv"
    invoke(runner, "generate", "--output", str(full))
    lines = full.read_text().splitlines()
    cut = tmp_path / "cut.csv"
    cut.write_text("\n".join(lines[: len(lines) // 4]) + "\n")  # a copy interrupted early
    before = publish.published_run().version
    caplog.set_level("WARNING")
    output = invoke(runner, "import", "--path", str(cut), code=1)
    assert "fewer than 50% of the" in output and "--allow-fewer-students" in output
    assert publish.published_run().version == before
    assert "refused" in caplog.text
    assert "Published version" in invoke(
        runner, "import", "--path", str(cut), "--allow-fewer-students"
    )
    # The whole file covers as many students as the published version: no flag needed.
    assert "Published version" in invoke(runner, "import", "--path", str(full))


@pytest.mark.parametrize("export_options", [(), ("--pseudonymize",)])
def test_training_on_a_file_naming_challenges_the_database_lacks_publishes_the_rest(
    runner, campus, tmp_path, export_options
):
    path = tmp_path / "interactions.csv"
    invoke(runner, "export", "--output", str(path), *export_options)
    header, *rows = path.read_text().splitlines()
    users = sorted({row.split(",")[0] for row in rows})
    stamp = rows[0].split(",")[4]
    # Half the students joined three challenges we do not have: popular, so a model would
    # recommend them to the other half, and those rows could not be published.
    rows += [f"{u},{999_001 + n},join,3,{stamp}" for u in users[::2] for n in range(3)]
    path.write_text("\n".join([header, *rows]) + "\n")
    assert "Published version" in invoke(runner, "train", "--input", str(path))
    published = publish.published_run()
    assert publish.count_rows(published.id) > 0
    assert not db.session.scalar(
        select(func.count())
        .select_from(UserRecommendation)
        .where(UserRecommendation.model_run_id == published.id)
        .where(UserRecommendation.challenge_id >= 999_001)
    )
