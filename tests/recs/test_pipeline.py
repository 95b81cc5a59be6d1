"""The pipeline on a database: gate, publish, import validation, failures, cleanup, rollback."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    ModelRun,
    RecommendationEvent,
    RecommendationState,
    UserRecommendation,
    utcnow,
)
from app.recs import pipeline, publish
from app.recs.data import InteractionMatrix, Interactions, pseudonym, read_csv
from app.recs.models import Artifact, load_artifact
from tests.recs.planted_data import add_event, seed_planted_campus


@pytest.fixture
def campus(app):
    return seed_planted_campus()


def published_version() -> str | None:
    run = publish.published_run()
    return run.version if run else None


def rows_of(version: str) -> list[UserRecommendation]:
    run = db.session.scalar(select(ModelRun).where(ModelRun.version == version))
    return list(
        db.session.scalars(
            select(UserRecommendation).where(UserRecommendation.model_run_id == run.id)
        )
    )


def run_count() -> int:
    return db.session.scalar(select(func.count()).select_from(ModelRun))


def test_train_publishes_ranked_rows_for_students(app, campus):
    result = pipeline.train()
    assert result.status == "published", result.reason
    assert published_version() == result.version
    run = publish.published_run()
    assert run.metrics["gate"]["passed"] and run.algorithm in {"svd", "knn", "ease", "session_ease"}
    assert run.report["stage"] == "done" and run.report["data"]["students"] == 45
    assert run.trained_through is not None and run.report["peak_memory_mb"] > 0
    rows = rows_of(result.version)
    assert run.rows_count == len(rows) > 0 and run.users_count == 45
    joined = {(p.user_id, p.challenge_id) for s in campus["students"] for p in s.participations}
    by_user: dict[int, list[int]] = {}
    for row in rows:
        assert (row.user_id, row.challenge_id) not in joined
        by_user.setdefault(row.user_id, []).append(row.rank)
    assert all(sorted(ranks) == list(range(1, len(ranks) + 1)) for ranks in by_user.values())
    artifact = load_artifact(Path(run.artifact_path))
    assert artifact.metadata["version"] == result.version
    assert artifact.metadata["data_fingerprint"] and artifact.metadata["libraries"]["scipy"]


def test_training_on_a_pseudonymized_export_publishes_for_the_real_students(app, campus, tmp_path):
    path = tmp_path / "hashed.csv"
    pipeline.export_interactions(path, pseudonymize=True)
    result = pipeline.train(read_csv(path), trigger="test")
    assert result.status == "published", result.reason
    rows = rows_of(result.version)
    assert rows and {r.user_id for r in rows} <= {s.id for s in campus["students"]}
    assert result.import_report.bad_rows == 0


def test_too_little_data_is_rejected_and_nothing_published(app):
    seed_planted_campus(n_students=6)
    result = pipeline.train()
    assert result.status == "rejected" and "not enough data" in result.reason
    assert published_version() is None
    run = db.session.scalar(select(ModelRun))
    assert run.status == "rejected" and run.error == result.reason


def test_gate_rejection_leaves_serving_unchanged(app, campus):
    first = pipeline.train()
    app.config["RECS_GATE_MARGIN"] = 1.0
    second = pipeline.train()
    assert second.status == "rejected" and "does not beat the heuristic" in second.reason
    assert published_version() == first.version
    rejected = db.session.scalar(select(ModelRun).where(ModelRun.version == second.version))
    assert rejected.metrics["gate"]["passed"] is False and rejected.rows_count == 0


def test_a_model_with_nothing_open_to_recommend_is_rejected_not_failed(app, campus):
    """Between terms every challenge may have ended: the nightly run has nothing to publish,
    which is no failure of the pipeline."""
    first = pipeline.train()
    from app.models import Challenge

    for challenge in db.session.scalars(select(Challenge)):
        challenge.ends_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    app.config["RECS_GATE_MARGIN"] = -1.0  # whatever the comparison says
    second = pipeline.train()
    assert second.status == "rejected" and "nothing to publish" in second.reason
    assert published_version() == first.version
    run = db.session.scalar(select(ModelRun).where(ModelRun.version == second.version))
    assert (run.status, run.rows_count) == ("rejected", 0)


def test_exception_while_publishing_keeps_the_old_version(app, campus, monkeypatch):
    first = pipeline.train()

    def broken(run):
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish, "_point_state_at", broken)
    second = pipeline.train()
    assert second.status == "failed" and "disk full" in second.reason
    db.session.expire_all()
    assert published_version() == first.version
    assert publish.published_run().status == "published"
    failed = db.session.scalar(select(ModelRun).where(ModelRun.version == second.version))
    assert failed.status == "failed" and "disk full" in failed.error
    assert rows_of(second.version) == [] and len(rows_of(first.version)) > 0


def test_orphaned_rows_of_an_interrupted_run_are_cleaned(app, campus):
    orphan = publish.start_run("train")
    student, challenge = campus["students"][0], campus["challenges"][0]
    publish.write_rows(
        orphan, [{"user_id": student.id, "challenge_id": challenge.id, "score": 1.0, "rank": 1}]
    )
    result = pipeline.train()
    assert result.status == "published"
    db.session.refresh(orphan)
    assert orphan.status == "failed" and "interrupted" in orphan.error
    assert rows_of(orphan.version) == []


def write_output(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(["user_id,challenge_id,score", *lines]) + "\n")
    return path


def good_lines(campus, count: int) -> list[str]:
    pairs = [(s.id, c.id) for s in campus["students"] for c in campus["challenges"]]
    return [f"{u},{c},{1.0 / (i + 1)}" for i, (u, c) in enumerate(pairs[:count])]


def test_import_refuses_a_malformed_file_and_changes_nothing(app, campus, tmp_path):
    first = pipeline.train()
    before = run_count()
    path = write_output(
        tmp_path / "bad.csv",
        good_lines(campus, 50)
        + [
            "abc,1,0.5",
            f"{campus['students'][0].id},999999,0.5",
            f"{campus['students'][0].id},1,nan",
            "1,2",
            f"{campus['owner'].id},{campus['challenges'][0].id},0.1",
        ],
    )
    report = pipeline.import_file(path)
    assert report.refused and "more than" in report.refused
    assert report.bad == {
        "user_id not an integer": 1,
        "unknown challenge": 1,
        "score not finite": 1,
        "wrong number of columns": 1,
        "unknown student": 1,
    }
    assert report.examples["user_id not an integer"] == [52]
    assert run_count() == before and published_version() == first.version


@pytest.mark.parametrize(
    "content", ["user,challenge,score\n1,2,3\n", "", "user_id,challenge_id,score\n"]
)
def test_import_refuses_bad_header_or_empty_files(app, tmp_path, content):
    path = tmp_path / "out.csv"
    path.write_text(content)
    report = pipeline.import_file(path)
    assert report.refused and report.version is None
    assert run_count() == 0


def test_import_refuses_unreadable_files(app, tmp_path):
    assert "cannot read" in pipeline.import_file(tmp_path / "missing.csv").refused
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00bad")
    assert pipeline.import_file(tmp_path / "binary.csv").refused


def test_import_skips_a_few_bad_rows_and_publishes(app, campus, tmp_path):
    lines = good_lines(campus, 300)
    path = write_output(tmp_path / "out.csv", [*lines, lines[0], "x,y,z"])
    app.config["RECS_IMPORT_MAX_BAD_SHARE"] = 0.01
    report = pipeline.import_file(path)
    assert report.refused is None and report.accepted == 300
    assert report.bad == {"duplicate (user_id, challenge_id)": 1, "user_id not an integer": 1}
    run = publish.published_run()
    assert run.version == report.version and run.kind == "import"
    assert run.report["validation"]["bad"]["duplicate (user_id, challenge_id)"] == 1
    ranks = sorted(r.rank for r in rows_of(run.version) if r.user_id == campus["students"][0].id)
    assert ranks == list(range(1, len(campus["challenges"]) + 1))


def test_import_maps_pseudonymized_students(app, campus, tmp_path):
    key = str(app.config["SECRET_KEY"]).encode()
    student, challenge = campus["students"][0], campus["challenges"][0]
    path = write_output(tmp_path / "out.csv", [f"{pseudonym(student.id, key)},{challenge.id},0.9"])
    report = pipeline.import_file(path)
    assert report.accepted == 1
    assert [(r.user_id, r.challenge_id) for r in rows_of(report.version)] == [
        (student.id, challenge.id)
    ]


def test_generate_rows_skip_joined_dismissed_and_ended_challenges(app, campus):
    pipeline.train()
    run = publish.published_run()
    student = campus["students"][0]
    ended, dismissed = campus["challenges"][1], campus["challenges"][2]
    ended.ends_at = utcnow() - timedelta(days=1)
    add_event(student, dismissed, "dismiss")
    artifact = load_artifact(Path(run.artifact_path))
    rows = pipeline.generate_rows(artifact, 50, user_ids=[student.id])
    recommended = {c for _, c, _ in rows}
    joined = {p.challenge_id for p in student.participations}
    assert recommended and not recommended & (joined | {ended.id, dismissed.id})
    assert {u for u, _, _ in rows} == {student.id}


def test_generated_rows_leave_out_challenges_the_model_gives_no_evidence(app):
    """A score of exactly 0 is no evidence: not a row. A student with none gets no rows at all,
    so serving falls back to the heuristic for them instead of showing arbitrary "model" picks."""

    class Fixed:
        def scores(self, X_rows):
            table = np.array([[0.0, 0.5, 0.0, -0.2], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
            return table[: X_rows.shape[0]]

    rows = [(1, 10, "join", 1.0, 0.0), (2, 11, "join", 1.0, 0.0), (1, 12, "join", 1.0, 0.0)]
    rows.append((2, 13, "join", 1.0, 0.0))
    data = InteractionMatrix.build(Interactions.from_rows(rows))
    user_ids, challenge_ids, scores = pipeline.generate_arrays(Artifact(Fixed(), data, {}), 4)
    # User 1 has 10 and 12: of 11 (0.5) and 13 (-0.2) both have evidence, one against.
    assert list(zip(user_ids.tolist(), challenge_ids.tolist(), strict=True)) == [(1, 11), (1, 13)]
    assert scores.tolist() == pytest.approx([0.5, -0.2])


def test_rollback_returns_to_the_previous_version(app, campus):
    first, second = pipeline.train(), pipeline.train()
    assert published_version() == second.version
    previous, current = publish.rollback()
    assert (previous.version, current.version) == (second.version, first.version)
    assert published_version() == first.version
    assert (
        db.session.scalar(select(ModelRun.status).where(ModelRun.version == second.version))
        == "superseded"
    )
    with pytest.raises(publish.PublishError, match="no earlier version"):
        publish.rollback()
    previous, current = publish.rollback(second.version)
    assert current.version == second.version
    with pytest.raises(publish.PublishError, match="no version"):
        publish.rollback("v-unknown")


def test_rollback_skips_a_version_it_was_rolled_back_from(app, campus):
    a, b = pipeline.train(), pipeline.train()
    publish.rollback()  # b was bad: back to a
    c = pipeline.train()
    _, current = publish.rollback()  # c is bad too: back to a, not to b
    assert current.version == a.version
    # Published again on purpose, b is a place to return to once more.
    publish.rollback(b.version)
    pipeline.train()
    _, current = publish.rollback()
    assert current.version == b.version
    assert c.version != current.version


def test_a_plain_rollback_passes_over_a_pruned_version(app, campus):
    app.config["RECS_KEEP_VERSIONS"] = 2
    a, b = pipeline.train(), pipeline.train()
    publish.rollback()  # b was bad: back to a
    pipeline.train()  # the two newest are kept (this one and b): a's rows are pruned
    assert rows_of(a.version) == [] and rows_of(b.version)
    with pytest.raises(publish.PublishError, match="no earlier version with its rows kept"):
        publish.rollback()  # b was rolled back from, a is pruned: nothing to return to


def test_old_versions_are_pruned(app, campus):
    app.config["RECS_KEEP_VERSIONS"] = 1
    versions = [pipeline.train().version for _ in range(3)]
    runs = {r.version: r for r in db.session.scalars(select(ModelRun))}
    assert runs[versions[0]].artifact_path is None and rows_of(versions[0]) == []
    assert runs[versions[0]].rows_count == 0
    assert not (Path(app.config["RECS_MODEL_DIR"]) / versions[0]).exists()
    assert Path(runs[versions[2]].artifact_path).exists() and rows_of(versions[2])


def test_artifact_folders_a_killed_run_left_are_removed(app, campus):
    models = Path(app.config["RECS_MODEL_DIR"])
    # Runs killed while saving: their process died, and the next run marks them failed.
    for version in ("20261126-223739-d041", "20261126-223740-beef"):
        db.session.add(ModelRun(version=version, kind="train", status="running"))
    db.session.commit()
    half_written = models / "20261126-223739-d041.tmp"  # killed while writing it
    never_recorded = models / "20261126-223740-beef"  # killed before the run recorded it
    another_databases = models / "20261126-223741-cafe"  # a version this database never had
    unrelated = models / "README-notes"
    for folder in (half_written, never_recorded, another_databases, unrelated):
        folder.mkdir(parents=True)
        (folder / "model.npz").write_bytes(b"x")
    result = pipeline.train()
    assert result.status == "published"
    assert not half_written.exists() and not never_recorded.exists()
    assert another_databases.exists() and unrelated.exists()
    assert Path(publish.published_run().artifact_path).is_dir()


def test_an_installation_moved_elsewhere_keeps_its_artifacts(app, campus):
    """Runs record absolute paths; after a move or a restore to another folder, the folders are
    still theirs, found by name."""
    first = pipeline.train()
    run = publish.published_run()
    run.artifact_path = f"/somewhere/else/instance/models/{first.version}"
    db.session.commit()
    pipeline.train()
    assert (Path(app.config["RECS_MODEL_DIR"]) / first.version).is_dir()


def test_status_summary_reports_the_published_version(app, campus):
    result = pipeline.train()
    summary = pipeline.status_summary()
    assert summary["published"]["version"] == result.version
    assert summary["published"]["coverage"] == 1.0
    assert summary["runs"][0]["status"] == "published" and summary["runs"][0]["ndcg"] > 0
    json.dumps(summary)


def test_export_writes_the_training_weights(app, campus, tmp_path):
    output = tmp_path / "deep" / "interactions.csv"
    count = pipeline.export_interactions(output)
    lines = output.read_text().splitlines()
    assert lines[0] == "user_id,challenge_id,event,weight,timestamp" and len(lines) == count + 1
    assert {line.split(",")[2] for line in lines[1:]} == {"join", "complete"}
    assert not list(output.parent.glob(".*.tmp"))


def test_purge_events_deletes_only_old_events(app, campus):
    student, challenge = campus["students"][0], campus["challenges"][0]
    add_event(student, challenge, "impression", days_ago=400)
    add_event(student, challenge, "click", days_ago=10)
    assert pipeline.purge_events(365) == 1
    assert db.session.scalar(select(RecommendationEvent.type)) == "click"


def test_purge_takes_a_slates_clicks_with_its_impressions(app, campus):
    """Metrics count a slate's events on the day it was shown: a click just after the cutoff on a
    card shown just before goes with the impression, or that day would count a click without it."""
    from app.models import utcnow
    from tests.helpers import make_event

    student, challenge, other = campus["students"][0], *campus["challenges"][:2]
    cutoff = utcnow() - timedelta(days=365)
    shown, clicked = cutoff - timedelta(minutes=2), cutoff + timedelta(minutes=2)
    make_event(student, challenge, "impression", slate_id="old", created_at=shown)
    make_event(student, challenge, "click", slate_id="old", created_at=clicked)
    make_event(student, other, "dismiss", slate_id="old", created_at=clicked)  # a standing choice
    make_event(student, other, "impression", slate_id="new", created_at=clicked)
    assert pipeline.purge_events(365, now=cutoff + timedelta(days=365)) == 2
    kept = db.session.execute(select(RecommendationEvent.type, RecommendationEvent.slate_id)).all()
    assert sorted(kept) == [("dismiss", "old"), ("impression", "new")]


def test_purge_keeps_old_dismissals_until_their_challenge_is_long_over(app, campus):
    from app.models import utcnow
    from app.recs.eligibility import load_user_history

    student = campus["students"][0]
    open_ended, archived, ended_lately, long_over = campus["challenges"][:4]
    archived.status = "archived"  # can be published again
    archived.ends_at = None
    open_ended.ends_at = None
    for challenge, days_ago in ((ended_lately, 30), (long_over, 400)):
        challenge.starts_at = utcnow() - timedelta(days=days_ago + 60)
        challenge.ends_at = utcnow() - timedelta(days=days_ago)
    db.session.commit()
    for challenge in (open_ended, archived, ended_lately, long_over):
        add_event(student, challenge, "dismiss", days_ago=500)
    add_event(student, open_ended, "click", days_ago=500)

    assert pipeline.purge_events(365) == 2  # the click and the long-over dismissal
    kept = db.session.execute(
        select(RecommendationEvent.type, RecommendationEvent.challenge_id)
    ).all()
    assert sorted(kept) == sorted(("dismiss", c.id) for c in (open_ended, archived, ended_lately))
    assert {open_ended.id, archived.id} <= load_user_history(student.id).dismissed_ids


def test_purge_drops_the_cards_of_old_api_slates(app, campus):
    from app.models import RecommendationSlate, RecommendationSlateCard, utcnow

    student, challenge = campus["students"][0], campus["challenges"][0]
    for name, age in (("old", 400), ("new", 10)):
        db.session.add(
            RecommendationSlate(
                id=name,
                user_id=student.id,
                source="model",
                created_at=utcnow() - timedelta(days=age),
            )
        )
        db.session.flush()
        db.session.add(
            RecommendationSlateCard(
                slate_id=name, challenge_id=challenge.id, position=0, source="model"
            )
        )
    db.session.commit()
    pipeline.purge_events(365)
    assert db.session.scalars(select(RecommendationSlateCard.slate_id)).all() == ["new"]


def test_state_row_is_created_on_first_publish(app, campus):
    assert db.session.get(RecommendationState, 1) is None
    pipeline.train()
    assert db.session.get(RecommendationState, 1).published_run_id == publish.published_run().id


def test_export_refuses_links_and_devices_and_keeps_an_owners_permissions(app, campus, tmp_path):
    import os
    import stat

    private = tmp_path / "private.csv"
    private.write_text("old\n")
    private.chmod(0o640)
    pipeline.export_interactions(private)
    assert private.read_text().startswith("user_id,")
    assert stat.S_IMODE(private.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.csv"
    pipeline.export_interactions(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600  # personal data: private until said
    # A link planted where the export goes must not redirect it onto another file.
    precious = tmp_path / "precious.db"
    precious.write_text("keep me\n")
    link = tmp_path / "link.csv"
    link.symlink_to(precious)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in (link, fifo, tmp_path / "dangling.csv"):
        if target.name == "dangling.csv":
            target.symlink_to(tmp_path / "somewhere" / "new.pth")
        with pytest.raises(OSError, match="not a regular file"):
            pipeline.export_interactions(target)
    assert precious.read_text() == "keep me\n" and link.is_symlink()
    assert not (tmp_path / "somewhere").exists()
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert not list(tmp_path.glob(".*.tmp"))
