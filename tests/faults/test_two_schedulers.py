"""Two web workers each run the scheduler, so both fire the nightly retrain at the same minute:
exactly one run may happen, whether they start together or one a little late."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ModelRun
from app.recs import pipeline, scheduler
from app.recs.publish import finish_run, start_run
from tests.faults.conftest import ROOT, process_env
from tests.recs.planted_data import seed_planted_campus

# A worker of its own: the app, then wait for the go-file, then the scheduler's job itself.
WORKER = """
import sys, time
from pathlib import Path
from app import create_app
from app.recs import scheduler

app = create_app()
go, deadline = Path(sys.argv[1]), time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
result = scheduler.retrain(app)
print("ran" if result else "skipped", flush=True)
"""
# A schedule slot that stays the same while the test runs: Jan 1, 00:00, looked back to all year.
SCHEDULE = {
    "FLASK_RECS_RETRAIN_CRON": "0 0 1 1 *",
    "FLASK_RECS_MISFIRE_GRACE_SECONDS": str(367 * 86400),
}


def start_worker(app, go) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(go)],
        cwd=ROOT,
        env=process_env(app, **SCHEDULE),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def outcome(worker: subprocess.Popen) -> str:
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output
    return output.strip().splitlines()[-1]


@pytest.mark.slow
def test_workers_firing_the_same_slot_record_one_run(app, tmp_path):
    seed_planted_campus()
    together, late = tmp_path / "together", tmp_path / "late"
    first, second = start_worker(app, together), start_worker(app, together)
    straggler = start_worker(app, late)  # its clock runs behind: it fires after the others end
    together.touch()
    outcomes = sorted([outcome(first), outcome(second)])
    late.touch()
    outcomes.append(outcome(straggler))

    assert outcomes == ["ran", "skipped", "skipped"]
    db.session.rollback()
    runs = db.session.scalars(select(ModelRun)).all()
    assert len(runs) == 1 and runs[0].report["trigger"] == "schedule"


def test_only_a_scheduled_run_of_the_current_slot_makes_a_worker_skip(app, monkeypatch):
    app.config.update(RECS_RETRAIN_CRON="0 3 * * *", RECS_MISFIRE_GRACE_SECONDS=2 * 86400)
    slot = scheduler.latest_slot(app)
    calls = []
    monkeypatch.setattr(
        pipeline,
        "train",
        lambda trigger: calls.append(trigger) or pipeline.PipelineResult("v", "rejected", "fake"),
    )

    def earlier_run(trigger: str, started_at) -> None:
        run = start_run("train", report={"trigger": trigger})
        finish_run(run, "rejected", "earlier")
        run.started_at = started_at
        db.session.commit()

    earlier_run("schedule", slot - timedelta(days=1))  # yesterday's slot
    earlier_run("manual", slot + timedelta(minutes=1))  # "retrain now" is not the schedule
    assert scheduler.retrain(app) is not None and calls == ["schedule"]
    earlier_run("schedule", slot + timedelta(seconds=1))
    assert scheduler.retrain(app) is None and calls == ["schedule"]
    assert scheduler.retrain(app, trigger="manual") is not None
