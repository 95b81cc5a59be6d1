"""Row checks and ranking shared by `flask recs import` and the pipeline: the typed (pipeline) and
the text (file) paths give the same verdicts and the same rows."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ModelRun, UserRecommendation
from app.recs import pipeline, publish
from app.recs.publish import (
    Catalogue,
    ImportReport,
    ScoredRows,
    check_rows,
    parse_rows,
    rank_rows,
    rank_scored,
    validate_rows,
)
from tests.recs.planted_data import seed_planted_campus

CATALOGUE = Catalogue(frozenset({1, 2, 3}), frozenset({10, 20, 30}), {})


def text_rows(*rows: str) -> list[tuple[int, list[str]]]:
    return [(line, row.split(",")) for line, row in enumerate(rows, start=2)]


def test_ids_are_ascii_digits_only():
    report = ImportReport()
    kept = validate_rows(
        text_rows("1_0,10,0.5", "\u0661,10,0.5", "1,1_0,0.5", "1,\u0661\u0660,0.5", "2,20,1"),
        CATALOGUE,
        report,
    )
    assert kept == [(2, 20, 1.0)]
    assert report.bad == {"user_id not an integer": 2, "challenge_id not an integer": 2}


def test_each_bad_row_gets_the_first_reason_that_applies():
    report = ImportReport()
    kept = validate_rows(
        text_rows(
            "1,10,0.5",
            "9,abc,nan",  # unknown student, before the bad challenge and score
            "2,abc,nan",
            "2,10,x",
            "2,99,nan",  # not finite, before the unknown challenge
            "2,99999999999999999999999,0.5",
            "3,30",
            "1,10,0.9",  # a repeat of line 2
        ),
        CATALOGUE,
        report,
    )
    assert kept == [(1, 10, 0.5)]
    assert report.total == 8 and report.accepted == 1
    assert report.bad == {
        "unknown student": 1,
        "challenge_id not an integer": 1,
        "score not a number": 1,
        "score not finite": 1,
        "unknown challenge": 1,
        "wrong number of columns": 1,
        "duplicate (user_id, challenge_id)": 1,
    }
    assert report.examples["score not finite"] == [6]
    assert report.examples["duplicate (user_id, challenge_id)"] == [9]


def test_the_report_names_one_example_line_or_several():
    report = ImportReport(total=10)
    report.reject_lines(np.asarray([3, 7]), "unknown student")
    report.reject(9, "unknown challenge")
    text = report.describe()
    assert "unknown student: 2 (lines 3, 7)" in text
    assert "unknown challenge: 1 (line 9)" in text


def test_a_bad_row_does_not_make_a_later_good_one_a_duplicate():
    report = ImportReport()
    rows = ScoredRows.from_arrays([1, 1, 1], [10, 10, 10], [np.nan, 0.3, 0.2])
    kept = check_rows(rows, CATALOGUE, report)
    assert kept.as_tuples() == [(1, 10, 0.3)]
    assert report.bad == {"score not finite": 1, "duplicate (user_id, challenge_id)": 1}
    assert report.examples == {
        "score not finite": [2],
        "duplicate (user_id, challenge_id)": [4],
    }


def test_typed_rows_get_the_verdicts_of_the_same_rows_as_text():
    rows = [(1, 10, 0.5), (4, 10, 0.5), (2, 40, 0.1), (3, 30, float("inf")), (1, 10, 0.2)]
    typed, text = ImportReport(), ImportReport()
    kept = check_rows(ScoredRows.from_tuples(rows), CATALOGUE, typed)
    lines = text_rows(*(f"{u},{c},{s!r}" for u, c, s in rows))
    assert kept.as_tuples() == validate_rows(lines, CATALOGUE, text)
    assert typed.as_dict() == text.as_dict()


def test_examples_keep_the_first_five_lines_of_each_reason():
    report = ImportReport()
    parse_rows(text_rows(*["x,10,1"] * 7), CATALOGUE, report)
    assert report.bad == {"user_id not an integer": 7}
    assert report.examples["user_id not an integer"] == [2, 3, 4, 5, 6]


def test_ranks_follow_scores_then_lower_challenge_ids_and_stop_at_top_n():
    rows = [(2, 30, 0.1), (1, 30, 0.5), (1, 10, 0.5), (1, 20, 0.9), (2, 10, 0.7)]
    ranked = rank_scored(ScoredRows.from_tuples(rows), top_n=2)
    columns = (ranked.user_ids, ranked.challenge_ids, ranked.ranks)
    assert list(zip(*(c.tolist() for c in columns), strict=True)) == [
        (1, 20, 1),
        (1, 10, 2),
        (2, 10, 1),
        (2, 30, 2),
    ]
    assert rank_rows(rows, 1) == [
        {"user_id": 1, "challenge_id": 20, "score": 0.9, "rank": 1},
        {"user_id": 2, "challenge_id": 10, "score": 0.7, "rank": 1},
    ]
    assert rank_rows([], 3) == []


@pytest.fixture
def campus(app):
    return seed_planted_campus(n_students=6)


def test_pipeline_rows_and_the_same_rows_from_a_file_publish_alike(app, campus, tmp_path):
    students = [s.id for s in campus["students"]]
    challenges = [c.id for c in campus["challenges"]]
    rows = [(u, c, 1.0 / (1 + i)) for u in students for i, c in enumerate(challenges)]
    rows.append((campus["owner"].id, challenges[0], 0.5))  # not a student: skipped
    typed = pipeline.import_scored(ScoredRows.from_tuples(rows))
    first = {(r.user_id, r.challenge_id, r.rank) for r in rows_of(typed.version)}
    path = tmp_path / "out.csv"
    with open(path, "w", encoding="utf-8") as fh:
        pipeline.write_output_csv(rows, fh)
    text = pipeline.import_file(path)
    assert {(r.user_id, r.challenge_id, r.rank) for r in rows_of(text.version)} == first
    assert typed.bad == text.bad == {"unknown student": 1}
    assert publish.published_run().version == text.version


def rows_of(version: str) -> list[UserRecommendation]:
    run = db.session.scalar(select(ModelRun).where(ModelRun.version == version))
    return db.session.scalars(
        select(UserRecommendation).where(UserRecommendation.model_run_id == run.id)
    ).all()


def test_a_run_cleaned_up_by_another_run_is_not_published(app, campus):
    """On PostgreSQL the pipeline's lock lives on a connection of its own; if that connection
    dies mid-run, a second run can start and clean the first up as interrupted (its rows
    deleted). The first run's publish must then be refused, and the version served stays."""
    students = [s.id for s in campus["students"]]
    challenges = [c.id for c in campus["challenges"]]
    served = pipeline.import_scored(
        ScoredRows.from_tuples([(u, c, 1.0) for u in students for c in challenges[:2]])
    )
    first = publish.start_run("train")
    publish.write_rows(
        first,
        [
            {"user_id": u, "challenge_id": c, "score": 1.0, "rank": r}
            for u in students
            for r, c in enumerate(challenges[:3], start=1)
        ],
    )
    second = publish.start_run("train")
    assert publish.cleanup_orphans(second.id) == 1  # the second run, holding the lock now
    with pytest.raises(publish.PublishError, match="cleaned up by another run"):
        publish.publish(first)
    db.session.expire_all()
    assert publish.published_run().version == served.version
    assert db.session.get(ModelRun, first.id).status == "failed"
    assert rows_of(first.version) == []
    # A run already finished when the clean-up comes is left alone.
    assert publish.cleanup_orphans(second.id) == 0
