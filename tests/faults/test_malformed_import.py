"""``flask recs import`` fed files that spreadsheets, other tools and accidents produce: wrong
encodings, a byte-order mark, NUL bytes, huge fields, shuffled headers, formula cells. Each file is
refused (nothing changes) or its bad rows are skipped and reported; a refusal never touches the
published version. (tests/recs/test_pipeline.py covers bad values, empty files and duplicates.)"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import ModelRun
from app.recs import pipeline, publish
from tests.recs.planted_data import seed_planted_campus

HEADER = b"user_id,challenge_id,score\n"


@pytest.fixture
def campus(app, tmp_path):
    """A campus with an imported version published, and the good lines of an import file."""
    campus = seed_planted_campus(n_students=12)
    lines = [
        f"{s.id},{c.id},{1.0 / (rank + 1)}\n".encode()
        for s in campus["students"]
        for rank, c in enumerate(campus["challenges"])
    ]
    (tmp_path / "good.csv").write_bytes(HEADER + b"".join(lines))
    assert pipeline.import_file(tmp_path / "good.csv").refused is None
    campus.update(lines=lines, version=publish.published_run().version)
    return campus


def runs() -> int:
    return db.session.scalar(select(func.count()).select_from(ModelRun))


def import_bytes(tmp_path, content: bytes):
    path = tmp_path / "model_output.csv"
    path.write_bytes(content)
    return pipeline.import_file(path)


REFUSED = {
    "latin-1 bytes": (lambda lines: HEADER + b"".join(lines) + b"7,8,0.5 caf\xe9\n", "utf-8"),
    "huge field": (lambda lines: HEADER + b"".join(lines) + b"1,2," + b"9" * 200_000, "limit"),
    "shuffled header": (lambda lines: b"challenge_id,user_id,score\n" + b"".join(lines), "header"),
    "extra column": (
        lambda lines: b"user_id,challenge_id,score,note\n" + b"".join(lines),
        "header",
    ),
    "NUL in the header": (
        lambda lines: b"user_id\x00,challenge_id,score\n" + b"".join(lines),
        "header",
    ),
    "only formulas": (
        lambda lines: HEADER + b'=1+2,=HYPERLINK("x"),@SUM(A1)\n' * 3,
        "no valid rows",
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_refused_files_change_nothing(app, campus, tmp_path, name):
    build, reason = REFUSED[name]
    before = runs()
    report = import_bytes(tmp_path, build(campus["lines"]))
    assert report.refused and reason in report.refused and report.version is None
    assert runs() == before and publish.published_run().version == campus["version"]


SKIPPED = {
    "NUL in a cell": (b"1\x00,2,0.5\n", "user_id not an integer"),
    "formula user": (b"=cmd|' /C calc'!A0,2,0.5\n", "user_id not an integer"),
    "formula challenge": (b"%s,@SUM(A1),0.5\n", "challenge_id not an integer"),
    "formula score": (b"%s,%s,=1/0\n", "score not a number"),
    "plus-prefixed text": (b"+%s abc,%s,0.5\n", "user_id not an integer"),
}


@pytest.mark.parametrize("name", SKIPPED)
def test_a_bad_row_among_good_ones_is_skipped_and_reported(app, campus, tmp_path, name):
    template, reason = SKIPPED[name]
    student, challenge = campus["students"][0].id, campus["challenges"][0].id
    bad = template % tuple(str(v).encode() for v in (student, challenge)[: template.count(b"%s")])
    report = import_bytes(tmp_path, HEADER + b"".join(campus["lines"]) + bad)
    assert report.refused is None and report.bad == {reason: 1}
    assert report.examples[reason] == [len(campus["lines"]) + 2]
    assert report.accepted == len(campus["lines"])
    assert publish.published_run().version == report.version != campus["version"]


def test_a_byte_order_mark_is_read_as_utf8(app, campus, tmp_path):
    report = import_bytes(tmp_path, b"\xef\xbb\xbf" + HEADER + b"".join(campus["lines"]))
    assert report.refused is None and report.bad_rows == 0
    assert report.accepted == len(campus["lines"])


def test_the_command_reports_a_refusal_and_exits_non_zero(app, campus, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER + b"1,2,0.5 caf\xe9\n")
    result = app.test_cli_runner().invoke(args=["recs", "import", "--path", str(path)])
    assert result.exit_code == 1 and "cannot read" in result.output
    assert "published version is unchanged" in result.output
    assert publish.published_run().version == campus["version"]


@pytest.mark.parametrize("kind", ["pipe", "device"])
def test_a_path_that_is_not_a_regular_file_is_refused_at_once(app, campus, tmp_path, kind):
    """A pipe would block the import, holding the pipeline's lock, until something wrote to it."""
    import os
    import threading

    path = {"pipe": tmp_path / "fifo.csv", "device": "/dev/zero"}[kind]
    if kind == "pipe":
        os.mkfifo(path)
        # Were the pipe waited on, a writer turning up later ends the wait, so the test fails
        # (the empty file gets another answer) instead of hanging.
        writer = threading.Timer(10, _open_and_close_for_writing, [path])
        writer.daemon = True
        writer.start()
    before = runs()
    result = app.test_cli_runner().invoke(args=["recs", "import", "--path", str(path)])
    assert result.exit_code == 1
    assert "cannot read" in result.output
    assert runs() == before and publish.published_run().version == campus["version"]
    for command in (["recs", "train", "--input"], ["recs", "evaluate", "--input"]):
        result = app.test_cli_runner().invoke(args=[*command, str(path)])
        assert result.exit_code != 0 and "cannot read" in result.output, result.output


def _open_and_close_for_writing(path) -> None:
    import os

    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # nobody is reading it: nothing to end
        pass


def test_a_symbolic_link_to_a_file_is_read(app, campus, tmp_path):
    target = tmp_path / "real.csv"
    target.write_bytes(HEADER + b"".join(campus["lines"]))
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    report = pipeline.import_file(link)
    assert report.refused is None and report.accepted == len(campus["lines"])
