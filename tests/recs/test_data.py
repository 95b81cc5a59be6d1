"""Interactions in and out: id maps, the weighted matrix, CSV, MovieLens, the database."""

from __future__ import annotations

import hashlib
import hmac
import io

import numpy as np
import pytest

from app.recs.data import (
    EXPORT_HEADER,
    MAX_LINE_CHARACTERS,
    DataError,
    IdMap,
    InteractionMatrix,
    Interactions,
    bounded_lines,
    excluded_pairs,
    parse_csv,
    pseudonym,
    read_csv,
    read_database,
    read_movielens,
    read_movielens_genres,
    spreadsheet_safe,
    write_csv,
)
from tests.helpers import make_challenge, make_participation, make_user
from tests.recs.planted_data import add_event

HEADER = ",".join(EXPORT_HEADER) + "\n"
WEIGHTS = {"join": 3.0, "complete": 4.0, "click": 1.0, "dismiss": -2.0}


def test_id_map_indexes_known_ids_and_marks_unknown_ones():
    ids = IdMap([30, 10, 20, 10])
    assert ids.ids.tolist() == [10, 20, 30]
    assert ids.index([20, 99, 10]).tolist() == [1, -1, 0]
    assert ids.index(np.array(["x"])).tolist() == [-1]
    assert IdMap.from_json(ids.to_json()).ids.tolist() == [10, 20, 30]


def test_id_map_handles_string_ids():
    ids = IdMap(["b", "a"])
    assert ids.index(["a", "c", "b"]).tolist() == [0, -1, 1]


def test_matrix_sums_event_weights_and_drops_non_positive_cells():
    interactions = Interactions.from_rows(
        [
            (1, 10, "join", 3.0, 1.0),
            (1, 10, "complete", 4.0, 2.0),
            (1, 20, "click", 1.0, 3.0),
            (1, 20, "dismiss", -2.0, 4.0),
            (2, 20, "click", 1.0, 5.0),
        ]
    )
    data = InteractionMatrix.build(interactions)
    assert data.matrix.toarray().tolist() == [[7.0, 0.0], [0.0, 1.0]]
    assert data.nnz == 2 and data.active_users() == 2


def test_csv_round_trip_keeps_negative_weights_and_defuses_formulas():
    interactions = Interactions.from_rows(
        [
            (1, 10, "join", 3.0, 1_700_000_000.0),
            (2, 10, "=HYPERLINK(1)", -2.0, 1_700_000_100.0),
        ]
    )
    out = io.StringIO()
    write_csv(interactions, out)
    text = out.getvalue()
    assert text.splitlines()[0] == "user_id,challenge_id,event,weight,timestamp"
    assert "'=HYPERLINK(1)" in text and ",-2," in text
    back = parse_csv(io.StringIO(text))
    assert back.events.tolist() == ["join", "=HYPERLINK(1)"]
    assert back.weights.tolist() == [3.0, -2.0]
    assert back.timestamps.tolist() == interactions.timestamps.tolist()


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-x", "'-x"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-2", "-2"),
        ("join", "join"),
        ("12", "12"),
    ],
)
def test_spreadsheet_safe(cell, expected):
    assert spreadsheet_safe(cell) == expected


def test_pseudonymized_export_uses_keyed_hash():
    interactions = Interactions.from_rows([(7, 10, "join", 3.0, 0.0)])
    out = io.StringIO()
    write_csv(interactions, out, pseudonym_key=b"k")
    expected = hmac.new(b"k", b"7", hashlib.sha256).hexdigest()
    assert out.getvalue().splitlines()[1].startswith(expected + ",10,")
    assert pseudonym(7, b"k") == expected != pseudonym(7, b"other")


@pytest.mark.parametrize(
    "text, message",
    [
        ("user,item\n", "header"),
        ("user_id,challenge_id,event,weight,timestamp\n1,2,join,3\n", ":2: expected 5 columns"),
        ("user_id,challenge_id,event,weight,timestamp\n1,2,join,abc,0\n", ":2:"),
        ("user_id,challenge_id,event,weight,timestamp\n1,2,join,nan,0\n", "not finite"),
        ("user_id,challenge_id,event,weight,timestamp\n1,2,join,1,yesterday\n", "bad timestamp"),
        ("user_id,challenge_id,event,weight,timestamp\n1,2,join,1,nan\n", ":2: timestamp"),
        ("user_id,challenge_id,event,weight,timestamp\n1,2,join,1,inf\n", "years 1 and 9999"),
        ("user_id,challenge_id,event,weight,timestamp\n1,2,join,1,1e300\n", "years 1 and 9999"),
        ("", "the file is empty"),
        (HEADER + "1,2,join,1e39,0\n", ":2: weight '1e39' is out of range"),
        (HEADER + "1,2,join,-2e6,0\n", ":2: weight '-2e6' is out of range"),
        (HEADER + "99999999999999999999999,2,join,1,0\n", ":2: id '9999.*' is too large"),
        (HEADER + "1,2,join,1,0\n1,3,join,1,0\n5.0,2,join,1,0\n", ":4: user_id '5.0' is not"),
        (HEADER + "a,2,join,1,0\nb,2,join,1,0\n7,2,join,1,0\n", ":4: user_id 7 is not"),
        (HEADER + "1,2,join,1,0\n2,1_0,join,1,0\n3,4,join,1,0\n", ":3: challenge_id '1_0'"),
        (HEADER + "1,2,join,1,0\n2,\u0661\u0660,join,1,0\n3,4,join,1,0\n", ":3: challenge_id"),
    ],
)
def test_bad_csv_is_rejected_with_the_line(text, message):
    with pytest.raises(DataError, match=message):
        parse_csv(io.StringIO(text))


def test_text_ids_are_read_as_text():
    text = HEADER + "a1f3,x,join,1,0\nb2e4,y,join,1,0\n"
    assert parse_csv(io.StringIO(text)).user_ids.tolist() == ["a1f3", "b2e4"]


def test_a_line_without_end_is_refused_before_it_fills_memory(tmp_path):
    lines = bounded_lines(io.StringIO("short\n" + "x" * 50), "f.csv", limit=20)
    assert next(lines) == "short\n"
    with pytest.raises(DataError, match="f.csv: a line is longer than 20 characters"):
        next(lines)
    endless = tmp_path / "endless.csv"
    endless.write_text(HEADER + "1" * (MAX_LINE_CHARACTERS + 10))
    with pytest.raises(DataError, match="longer than"):
        read_csv(endless)


def test_read_csv_reports_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_csv(tmp_path / "missing.csv")


def test_csv_accepts_iso_and_epoch_timestamps():
    text = (
        "user_id,challenge_id,event,weight,timestamp\n"
        "1,2,join,3,2024-01-01T00:00:00Z\n1,3,join,3,1704067200\n"
    )
    assert parse_csv(io.StringIO(text)).timestamps.tolist() == [1704067200.0, 1704067200.0]


def test_movielens_files(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n2\t10\t1\t50\n")
    genres = "|".join(["0"] * 5 + ["1"] + ["0"] * 13)
    (tmp_path / "u.item").write_text(
        f"10|Film (1995)|01-Jan-1995||http://x|{genres}\n", encoding="latin-1"
    )
    interactions = read_movielens(tmp_path / "u.data")
    assert interactions.user_ids.tolist() == [1, 2]
    assert interactions.weights.tolist() == [1.0, 1.0]
    assert read_movielens_genres(tmp_path / "u.item")[10].argmax() == 5


def test_movielens_rejects_other_files(tmp_path):
    (tmp_path / "u.data").write_text("a,b\n")
    with pytest.raises(DataError, match="not a MovieLens ratings file: could not convert"):
        read_movielens(tmp_path / "u.data")
    (tmp_path / "u.data").write_text("")
    with pytest.raises(DataError, match="no ratings in the file"):
        read_movielens(tmp_path / "u.data")


def test_read_database_weights_participations_and_events(app):
    student, other = make_user("student"), make_user("student")
    joined, completed, left = make_challenge(), make_challenge(), make_challenge()
    make_participation(student, joined)
    make_participation(student, completed, status="completed")
    make_participation(student, left, status="left")
    add_event(other, joined, "click")
    add_event(other, completed, "dismiss")
    add_event(other, left, "impression")
    interactions = read_database(WEIGHTS)
    events = sorted(
        zip(
            interactions.user_ids.tolist(),
            interactions.item_ids.tolist(),
            interactions.events.tolist(),
            interactions.weights.tolist(),
            strict=True,
        )
    )
    assert events == sorted(
        [
            (student.id, joined.id, "join", 3.0),
            (student.id, completed.id, "join", 3.0),
            (student.id, completed.id, "complete", 4.0),
            (other.id, joined.id, "click", 1.0),
            (other.id, completed.id, "dismiss", -2.0),
        ]
    )


def test_read_database_since_filters_old_interactions(app):
    from datetime import timedelta

    from app.models import utcnow

    student, challenge = make_user("student"), make_challenge()
    make_participation(student, challenge, joined_at=utcnow() - timedelta(days=10))
    add_event(student, challenge, "click", days_ago=1)
    interactions = read_database(WEIGHTS, since=utcnow() - timedelta(days=5))
    assert interactions.events.tolist() == ["click"]


def test_read_database_since_keeps_a_completion_marked_after_it(app):
    """A professor marks a completion long after the join: the completion is an interaction of
    the day it was marked, so a read since then has it (and not the older join)."""
    from datetime import timedelta

    from app.models import utcnow

    student, challenge, earlier = make_user("student"), make_challenge(), make_challenge()
    ten_days_ago = utcnow() - timedelta(days=10)
    make_participation(
        student,
        challenge,
        status="completed",
        joined_at=ten_days_ago,
        updated_at=utcnow() - timedelta(days=1),
    )
    # Completed before the date too: neither its join nor its completion is read.
    make_participation(
        student, earlier, status="completed", joined_at=ten_days_ago, updated_at=ten_days_ago
    )
    interactions = read_database(WEIGHTS, since=utcnow() - timedelta(days=5))
    assert interactions.events.tolist() == ["complete"]
    assert interactions.item_ids.tolist() == [challenge.id]


def test_read_database_dates_each_interaction_like_the_rows_say(app):
    from datetime import timedelta

    from app.models import utcnow

    student, challenge, other = make_user("student"), make_challenge(), make_challenge()
    joined_at = utcnow().replace(microsecond=123456) - timedelta(days=3)
    completed = make_participation(student, challenge, status="completed", joined_at=joined_at)
    completed.updated_at = joined_at + timedelta(hours=5, microseconds=7)
    # A completion whose update predates the join (an edited row) is dated by the join.
    backdated = make_participation(student, other, status="completed", joined_at=joined_at)
    backdated.updated_at = joined_at - timedelta(days=1)
    click = add_event(student, challenge, "click", days_ago=1)
    interactions = read_database(WEIGHTS)
    stamps = {
        (item, event): stamp
        for item, event, stamp in zip(
            interactions.item_ids.tolist(),
            interactions.events.tolist(),
            interactions.timestamps.tolist(),
            strict=True,
        )
    }
    assert stamps == {
        (challenge.id, "join"): joined_at.timestamp(),
        (challenge.id, "complete"): completed.updated_at.timestamp(),
        (other.id, "join"): joined_at.timestamp(),
        (other.id, "complete"): joined_at.timestamp(),
        (challenge.id, "click"): click.created_at.timestamp(),
    }
    assert interactions.user_ids.dtype == np.int64 and interactions.weights.dtype == np.float32


def test_read_database_drops_events_without_a_weight(app):
    student, challenge = make_user("student"), make_challenge()
    make_participation(student, challenge, status="completed")
    add_event(student, challenge, "click")
    interactions = read_database({"join": 3.0, "click": 0.0})
    assert interactions.events.tolist() == ["join"]
    assert interactions.weights.tolist() == [3.0]


def test_excluded_pairs_are_joined_or_dismissed_challenges(app):
    student, other = make_user("student"), make_user("student")
    joined, left, dismissed, clicked = (make_challenge() for _ in range(4))
    make_participation(student, joined)
    make_participation(student, left, status="left")
    add_event(other, dismissed, "dismiss")
    add_event(other, clicked, "click")
    users, challenges = excluded_pairs()
    assert sorted(zip(users.tolist(), challenges.tolist(), strict=True)) == sorted(
        [(student.id, joined.id), (other.id, dismissed.id)]
    )
