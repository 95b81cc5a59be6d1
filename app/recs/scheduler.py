"""Scheduled retraining: the APScheduler wiring, the single-runner lock shared by every process, and
"retrain now" in the background with progress any worker can read (it lives in the ModelRun row).

The in-process scheduler starts with the first request a web process serves, not in
``create_app``: CLI commands (``flask db upgrade``, ``flask recs ...``) never start one, the
Werkzeug reloader's watcher process never serves a request so it never starts one either, and under
gunicorn ``--preload`` the thread is created in each worker after the fork. Every worker schedules
the job; the lock lets exactly one of them run it."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.models import ModelRun

log = logging.getLogger(__name__)

JOB_ID = "recs-retrain"
PURGE_JOB_ID = "recs-purge-events"
LOCK_FILE = "recs-pipeline.lock"
LOCK_RETRY_SECONDS = 0.2
SCHEDULED_LOCK_PATIENCE_SECONDS = 5.0
# PostgreSQL's advisory lock key for the pipeline: any fixed 64-bit number, the same everywhere.
ADVISORY_LOCK_KEY = 0x52454353_50495045

_started: dict[int, BackgroundScheduler] = {}
_start_guard = threading.Lock()


# --- The lock -------------------------------------------------------------------------------------


class RunLock:
    """At most one pipeline run across processes: an ``flock`` on a file beside the database for
    SQLite (same machine), a session advisory lock on PostgreSQL (any machine). Non-blocking:
    a second runner is told "busy" rather than queued behind the first."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._file = None
        self._connection = None

    def acquire(self) -> bool:
        with self.app.app_context():
            if db.engine.dialect.name == "postgresql":
                return self._acquire_advisory()
            return self._acquire_file(_lock_path(self.app))

    def _acquire_file(self, path: Path) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def _acquire_advisory(self) -> bool:
        # The lock belongs to this connection's session: keep it open until release.
        connection = db.engine.connect()
        got = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
        ).scalar()
        connection.commit()
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
                connection.commit()
            except SQLAlchemyError as exc:
                # The connection died during the run (an idle-session timeout, a restart): the
                # server let the lock go with it. What the run did stands; a publish after a
                # clean-up by another run was refused (``publish._still_running``).
                log.warning("the pipeline lock's connection was already gone: %s", exc)
            finally:
                connection.close()


def _lock_path(app: Flask) -> Path:
    """Beside the SQLite file (instance/ by default): the lock guards one database, so two
    apps on different databases, such as parallel test workers, never block each other."""
    database = db.engine.url.database
    if database and database != ":memory:":
        path = Path(database)
        return path.with_name(path.name + "." + LOCK_FILE)
    return Path(app.instance_path) / LOCK_FILE


@contextmanager
def single_runner(app: Flask, patience: float = 0.0) -> Iterator[bool]:
    """``with single_runner(app) as acquired:`` - run only when ``acquired`` is true. With
    ``patience`` (seconds), a lock held only for a moment (``is_locked`` probes by taking it) is
    waited out instead of read as a run in progress."""
    lock = RunLock(app)
    acquired = lock.acquire()
    deadline = time.monotonic() + patience
    while not acquired and time.monotonic() < deadline:
        time.sleep(LOCK_RETRY_SECONDS)
        acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()


def is_locked(app: Flask) -> bool:
    """Whether some process (or thread) is running the pipeline right now."""
    lock = RunLock(app)
    if lock.acquire():
        lock.release()
        return False
    return True


def lock_holder(app: Flask) -> str:
    """What holds the pipeline lock, for a refusal to name: a run the database records as going
    on (the same reading as ``retrain_progress``), else one of the jobs that record nothing."""
    with app.app_context():
        latest = db.session.scalar(select(ModelRun).order_by(ModelRun.id.desc()).limit(1))
    if latest is not None and latest.status == "running":
        return "an import" if latest.kind == "import" else "a training run"
    return "another run (a retrain, an import, a rollback or the event purge)"


# --- Running the pipeline -------------------------------------------------------------------------


def retrain(app: Flask, trigger: str = "schedule"):
    """One guarded pipeline run; returns its PipelineResult, or None when another run holds the
    lock. Exceptions are logged, never raised into the scheduler thread."""
    from app.recs.pipeline import train

    # A scheduled run fires once per slot: a dashboard's probe of the lock at that instant must
    # not cost the night's model.
    patience = SCHEDULED_LOCK_PATIENCE_SECONDS if trigger == "schedule" else 0.0
    with single_runner(app, patience) as acquired:
        if not acquired:
            log.info("retraining (%s) skipped: another run holds the pipeline lock", trigger)
            return None
        with app.app_context():
            try:
                if trigger == "schedule" and _slot_already_run(app):
                    log.info("scheduled retraining skipped: another worker ran this slot")
                    return None
                result = train(trigger=trigger)
            except Exception:
                log.exception("retraining (%s) failed outside the run record", trigger)
                return None
            finally:
                db.session.remove()
        log.info(
            "retraining (%s) finished: %s %s %s",
            trigger,
            result.version,
            result.status,
            result.reason or "",
        )
        return result


def _slot_already_run(app: Flask) -> bool:
    """Whether a scheduled run started at or after this run's slot. Every worker fires the same
    cron; the lock only keeps them from overlapping, and a worker firing a second late, after
    the first run ended, would otherwise train a second time."""
    slot = latest_slot(app)
    if slot is None:
        return False
    started = db.session.scalars(
        select(ModelRun).where(ModelRun.kind == "train", ModelRun.started_at >= slot)
    )
    return any((run.report or {}).get("trigger") == "schedule" for run in started)


def latest_slot(app: Flask, now: datetime | None = None) -> datetime | None:
    """The latest fire time of the retrain cron at or before ``now``, within the misfire grace
    (a job APScheduler runs belongs to a slot no older than that)."""
    trigger = cron_trigger(app)
    now = now or datetime.now(trigger.timezone)
    grace = timedelta(seconds=int(app.config["RECS_MISFIRE_GRACE_SECONDS"]))
    slot, fire = None, trigger.get_next_fire_time(None, now - grace)
    while fire is not None and fire <= now:
        slot, fire = fire, trigger.get_next_fire_time(fire, now)
    return slot


def purge_old_events(app: Flask) -> int | None:
    """The retention job: events older than RECS_EVENT_RETENTION_DAYS go. Each worker's job runs
    it in turn under the pipeline lock (so it never deletes under a training run's export
    either); the later ones find nothing left to delete."""
    from app.recs.pipeline import purge_events

    with single_runner(app, SCHEDULED_LOCK_PATIENCE_SECONDS) as acquired:
        if not acquired:
            log.info("event purge skipped: another run holds the pipeline lock")
            return None
        with app.app_context():
            try:
                return purge_events(int(app.config["RECS_EVENT_RETENTION_DAYS"]))
            except Exception:
                log.exception("event purge failed")
                return None
            finally:
                db.session.remove()


def trigger_retrain(app: Flask) -> bool:
    """Start a run in a background thread ("retrain now"); False when one is already running."""
    from app.recs.pipeline import train

    lock = RunLock(app)
    if not lock.acquire():
        return False

    def run_and_release() -> None:
        try:
            with app.app_context():
                try:
                    train(trigger="manual")
                except Exception:
                    log.exception("manual retraining failed outside the run record")
                finally:
                    db.session.remove()
        finally:
            lock.release()

    threading.Thread(target=run_and_release, name="recs-retrain", daemon=True).start()
    return True


def retrain_progress(app: Flask) -> dict:
    """{running, started_at, stage, version, last_result, next_run_at, next_run_zone}, read from
    the database and the lock, so it is right whichever worker asks."""
    with app.app_context():
        # Any kind: an import holds the same lock while it writes its version.
        latest = db.session.scalar(select(ModelRun).order_by(ModelRun.id.desc()).limit(1))
        finished = db.session.scalar(
            select(ModelRun)
            .where(ModelRun.kind == "train", ModelRun.status != "running")
            .order_by(ModelRun.id.desc())
            .limit(1)
        )
        running = latest is not None and latest.status == "running" and is_locked(app)
        next_run = next_run_time(app)
        return {
            "running": running,
            "started_at": latest.started_at.isoformat() if running else None,
            "stage": (latest.report or {}).get("stage") if running else None,
            "version": latest.version if running else None,
            "last_result": _result_summary(finished),
            "next_run_at": _iso(next_run),
            # The cron's zone (the server's), which the offset alone does not name.
            "next_run_zone": next_run.tzname() if next_run else None,
        }


def _result_summary(run: ModelRun | None) -> dict | None:
    if run is None:
        return None
    gate = (run.metrics or {}).get("gate") or {}
    return {
        "version": run.version,
        "status": run.status,
        "error": run.error,
        "finished_at": _iso(run.finished_at),
        "algorithm": run.algorithm,
        "ndcg": gate.get("model_ndcg"),
        "heuristic_ndcg": gate.get("heuristic_ndcg"),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# --- Scheduling -----------------------------------------------------------------------------------


WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_trigger(app: Flask, key: str = "RECS_RETRAIN_CRON") -> CronTrigger:
    """A schedule from config: a crontab line in the server's local time (the retrain defaults to
    03:00 nightly, the event purge to 03:30)."""
    fields = str(app.config[key]).split()
    if len(fields) != 5:
        raise ValueError(f"{key} needs 5 fields, got {app.config[key]!r}")
    minute, hour, day, month, day_of_week = fields
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_crontab_weekdays(day_of_week),
        )
    except ValueError as exc:
        raise ValueError(
            f"{key} is not a valid crontab line ({exc}): {app.config[key]!r}"
        ) from None


def _crontab_weekdays(field: str) -> str:
    """crontab counts weekdays from Sunday = 0 (or 7), APScheduler 3 from Monday = 0, and its
    ``from_crontab`` does not convert: spell numbers as names so "1" still means Monday."""
    return re.sub(r"(?<![/\d])[0-7](?!\d)", lambda m: WEEKDAYS[int(m.group())], field)


def configure(scheduler, app: Flask):
    scheduler.configure(
        job_defaults={
            "max_instances": 1,  # and the lock for other processes
            "coalesce": True,  # runs missed while down collapse into one
            "misfire_grace_time": int(app.config["RECS_MISFIRE_GRACE_SECONDS"]),
        }
    )
    scheduler.add_job(retrain, cron_trigger(app), args=[app], id=JOB_ID, replace_existing=True)
    scheduler.add_job(
        purge_old_events,
        cron_trigger(app, "RECS_PURGE_CRON"),
        args=[app],
        id=PURGE_JOB_ID,
        replace_existing=True,
    )
    return scheduler


def next_run_time(app: Flask) -> datetime | None:
    scheduler = _started.get(os.getpid())
    job = scheduler.get_job(JOB_ID) if scheduler is not None else None
    if job is not None:
        return job.next_run_time
    trigger = cron_trigger(app)
    return trigger.get_next_fire_time(None, datetime.now(trigger.timezone))


def run_blocking(app: Flask) -> None:
    """``flask recs scheduler``: the same job in a process of its own (until interrupted)."""
    scheduler = configure(BlockingScheduler(), app)
    log.info("recommendation scheduler running: %s", app.config["RECS_RETRAIN_CRON"])
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("recommendation scheduler stopped")


def _start_in_this_process(app: Flask) -> None:
    pid = os.getpid()
    if pid in _started:
        return
    with _start_guard:
        if pid in _started:
            return
        scheduler = configure(BackgroundScheduler(daemon=True), app)
        scheduler.start()
        _started[pid] = scheduler
        log.info(
            "recommendation scheduler started in process %d: %s",
            pid,
            app.config["RECS_RETRAIN_CRON"],
        )


def init_app(app: Flask) -> None:
    # A schedule that cannot be read stops the app at startup, naming it: the scheduler starts on
    # the first request, and it failed every request with a 500 instead.
    for key in ("RECS_RETRAIN_CRON", "RECS_PURGE_CRON"):
        cron_trigger(app, key)
    if not app.config.get("RECS_SCHEDULER_ENABLED"):
        return

    @app.before_request
    def _ensure_scheduler() -> None:
        _start_in_this_process(app)
