"""The single-runner lock, background "retrain now", progress, and the scheduler wiring."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime

import pytest
from sqlalchemy import select

from app import create_app
from app.extensions import db
from app.models import ModelRun
from app.recs import pipeline, scheduler
from app.recs.publish import finish_run, start_run, update_report


class BlockingTrain:
    """Stands in for pipeline.train: records a running run, then waits to be released."""

    def __init__(self):
        self.entered, self.release, self.calls = threading.Event(), threading.Event(), 0

    def __call__(self, interactions=None, trigger="cli", progress=None):
        self.calls += 1
        run = start_run("train", report={"trigger": trigger})
        update_report(run, stage="evaluating")
        self.entered.set()
        assert self.release.wait(10)
        finish_run(run, "rejected", "test run")
        return pipeline.PipelineResult(run.version, "rejected", "test run")


@pytest.fixture
def blocking_train(monkeypatch):
    fake = BlockingTrain()
    monkeypatch.setattr(pipeline, "train", fake)
    yield fake
    fake.release.set()


def test_lock_lets_one_of_two_concurrent_runs_through(app, blocking_train, monkeypatch):
    monkeypatch.setattr(scheduler, "SCHEDULED_LOCK_PATIENCE_SECONDS", 0.5)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", scheduler.retrain(app)))
    first.start()
    assert blocking_train.entered.wait(10)
    results["second"] = scheduler.retrain(app)
    blocking_train.release.set()
    first.join(10)
    assert results["second"] is None
    assert results["first"].status == "rejected"
    assert blocking_train.calls == 1
    assert not scheduler.is_locked(app)


def test_a_scheduled_run_waits_out_a_moments_probe_of_the_lock(app, monkeypatch):
    runs = []
    monkeypatch.setattr(
        pipeline,
        "train",
        lambda trigger="cli", **kw: runs.append(trigger) or pipeline.PipelineResult("v", "x", ""),
    )
    held, release = threading.Event(), threading.Event()

    def probe():  # a dashboard asking is_locked() takes the lock for a moment
        with scheduler.single_runner(app) as acquired:
            assert acquired
            held.set()
            release.wait(5)

    holder = threading.Thread(target=probe)
    holder.start()
    assert held.wait(5)
    threading.Timer(0.5, release.set).start()
    assert scheduler.retrain(app, trigger="manual") is None  # a manual trigger does not wait
    assert scheduler.retrain(app) is not None  # the scheduled one does
    holder.join(5)
    assert runs == ["schedule"]
    # The scheduled purge waits likewise.
    held.clear()
    release.clear()
    holder = threading.Thread(target=probe)
    holder.start()
    assert held.wait(5)
    threading.Timer(0.5, release.set).start()
    assert scheduler.purge_old_events(app) == 0
    holder.join(5)


FILE_LOCK_HOLDER = (
    "import fcntl, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX);"
    " print('locked', flush=True); sys.stdin.read()"
)
ADVISORY_LOCK_HOLDER = (
    "import psycopg, sys; c = psycopg.connect(sys.argv[1], autocommit=True);"
    " c.execute('SELECT pg_advisory_lock(%s)', (int(sys.argv[2]),));"
    " print('locked', flush=True); sys.stdin.read()"
)


def lock_holder_command(app) -> list[str]:
    """Another process taking the lock the way this database's RunLock does."""
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            return ["-c", ADVISORY_LOCK_HOLDER, url, str(scheduler.ADVISORY_LOCK_KEY)]
        return ["-c", FILE_LOCK_HOLDER, str(scheduler._lock_path(app))]


def test_lock_is_shared_with_other_processes(app):
    holder = subprocess.Popen(
        [sys.executable, *lock_holder_command(app)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert scheduler.is_locked(app)
        with scheduler.single_runner(app) as acquired:
            assert not acquired
    finally:
        holder.communicate("", timeout=10)
    assert not scheduler.is_locked(app)


def test_trigger_retrain_runs_in_the_background_and_reports_progress(app, blocking_train):
    assert scheduler.trigger_retrain(app) is True
    assert blocking_train.entered.wait(10)
    assert scheduler.trigger_retrain(app) is False
    progress = scheduler.retrain_progress(app)
    assert progress["running"] is True and progress["stage"] == "evaluating"
    assert progress["version"] and progress["started_at"]
    blocking_train.release.set()
    for _ in range(100):
        if not scheduler.is_locked(app):
            break
        threading.Event().wait(0.05)
    db.session.expire_all()
    progress = scheduler.retrain_progress(app)
    assert progress["running"] is False
    assert progress["last_result"]["status"] == "rejected"
    assert progress["last_result"]["error"] == "test run"


def test_a_run_left_running_by_a_dead_process_is_not_reported_as_running(app):
    start_run("train")
    assert scheduler.retrain_progress(app)["running"] is False


def test_a_failing_run_is_recorded_with_its_error(app, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("database went away")

    monkeypatch.setattr(pipeline, "read_database", broken)
    result = scheduler.retrain(app)
    assert result.status == "failed"
    run = db.session.scalar(select(ModelRun))
    assert run.status == "failed" and "database went away" in run.error
    assert run.report["trigger"] == "schedule"


class FakeScheduler:
    instances: list[FakeScheduler] = []

    def __init__(self, **kwargs):
        self.jobs, self.defaults, self.started = {}, {}, 0
        FakeScheduler.instances.append(self)

    def configure(self, job_defaults):
        self.defaults = job_defaults

    def add_job(self, func, trigger, args, id, replace_existing):
        self.jobs[id] = (func, trigger, args)

    def get_job(self, job_id):
        return None

    def start(self):
        self.started += 1


def test_configure_sets_the_guards_and_the_cron(app):
    app.config.update(RECS_RETRAIN_CRON="30 2 * * 1", RECS_MISFIRE_GRACE_SECONDS=600)
    fake = scheduler.configure(FakeScheduler(), app)
    assert fake.defaults == {"max_instances": 1, "coalesce": True, "misfire_grace_time": 600}
    func, trigger, args = fake.jobs[scheduler.JOB_ID]
    assert func is scheduler.retrain and args == [app]
    fire = trigger.get_next_fire_time(None, datetime.now(trigger.timezone))
    assert (fire.hour, fire.minute, fire.weekday()) == (2, 30, 0)
    func, trigger, args = fake.jobs[scheduler.PURGE_JOB_ID]
    assert func is scheduler.purge_old_events and args == [app]


def test_scheduled_purge_deletes_only_events_past_retention(app):
    from datetime import timedelta

    from app.models import RecommendationEvent, utcnow
    from tests.helpers import make_challenge, make_event, make_user

    app.config["RECS_EVENT_RETENTION_DAYS"] = 30
    student, challenge = make_user(), make_challenge()
    old = make_event(student, challenge, created_at=utcnow() - timedelta(days=31))
    fresh = make_event(student, challenge, created_at=utcnow() - timedelta(days=29))
    old_id, fresh_id = old.id, fresh.id
    assert scheduler.purge_old_events(app) == 1
    remaining = set(db.session.scalars(select(RecommendationEvent.id)))
    assert remaining == {fresh_id} and old_id not in remaining


def test_next_run_time_follows_the_cron(app):
    app.config["RECS_RETRAIN_CRON"] = "0 3 * * *"
    moment = scheduler.next_run_time(app)
    assert (moment.hour, moment.minute) == (3, 0) and moment > datetime.now(moment.tzinfo)


def test_scheduler_is_off_when_disabled(app, monkeypatch):
    monkeypatch.setattr(scheduler, "BackgroundScheduler", FakeScheduler)
    monkeypatch.setattr(scheduler, "_started", {})
    FakeScheduler.instances = []
    scheduler.init_app(app)  # the test config disables it
    app.test_client().get("/healthz")
    assert FakeScheduler.instances == []


def test_first_request_starts_one_scheduler_per_process(app, monkeypatch):
    monkeypatch.setattr(scheduler, "BackgroundScheduler", FakeScheduler)
    monkeypatch.setattr(scheduler, "_started", {})
    FakeScheduler.instances = []
    app.config["RECS_SCHEDULER_ENABLED"] = True
    scheduler.init_app(app)
    assert FakeScheduler.instances == []  # creating the app (or running a command) starts nothing
    client = app.test_client()
    client.get("/healthz")
    client.get("/healthz")
    (only,) = FakeScheduler.instances
    assert only.started == 1 and scheduler.JOB_ID in only.jobs


@pytest.mark.parametrize(
    "crontab, expected",
    [("1-5", "mon-fri"), ("0,6", "sun,sat"), ("7", "sun"), ("*", "*"), ("mon", "mon")],
)
def test_crontab_weekdays_count_from_sunday(crontab, expected):
    assert scheduler._crontab_weekdays(crontab) == expected


def test_malformed_cron_is_a_clear_error(app):
    app.config["RECS_RETRAIN_CRON"] = "nightly"
    with pytest.raises(ValueError, match="5 fields"):
        scheduler.cron_trigger(app)


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("RECS_RETRAIN_CRON", "nightly", "needs 5 fields"),
        ("RECS_PURGE_CRON", "30 3 * *", "needs 5 fields"),
        ("RECS_RETRAIN_CRON", "61 * * * *", "is not a valid crontab line"),
        ("RECS_PURGE_CRON", "0 25 * * *", "is not a valid crontab line"),
    ],
)
def test_a_schedule_that_cannot_be_read_fails_at_startup(
    database_url, tmp_path, monkeypatch, name, value, expected
):
    # The scheduler starts on a web worker's first request: it was a 500 for every request.
    from tests.conftest import _test_config

    monkeypatch.setenv(f"FLASK_{name}", value)
    with pytest.raises(ValueError, match=rf"^{name} {expected}"):
        create_app({**_test_config(database_url, tmp_path), "RECS_SCHEDULER_ENABLED": True})


def test_a_lock_whose_connection_died_is_let_go_without_an_error(app, caplog):
    """The server ends the lock's session (an idle-session timeout, a restart): the lock went with
    it, and releasing it is not the run's failure."""
    from sqlalchemy import text

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("only PostgreSQL's advisory lock lives on a connection")
    lock = scheduler.RunLock(app)
    assert lock.acquire()
    backend = lock._connection.execute(text("SELECT pg_backend_pid()")).scalar()
    lock._connection.commit()
    with app.app_context():
        db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        db.session.commit()
    caplog.set_level("WARNING", logger="app.recs.scheduler")
    lock.release()
    assert "the pipeline lock's connection was already gone" in caplog.text
    assert not scheduler.is_locked(app)
