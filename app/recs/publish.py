"""Model versions in the database: runs, validated recommendation rows, the one-transaction publish,
rollback, and cleanup of orphaned rows and old versions.

Invariant: serving reads only the rows of ``RecommendationState.published_run_id``. New rows are
written under a run whose status is ``running`` (invisible to readers); publishing flips the pointer
and the statuses in one transaction, so readers see either the old version or the new one."""

from __future__ import annotations

import csv
import logging
import re
import secrets
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from sqlalchemy import delete, func, insert, select, update

from app.extensions import db
from app.models import (
    Challenge,
    ModelRun,
    RecommendationState,
    Role,
    User,
    UserRecommendation,
    utcnow,
)
from app.recs.data import ascii_int, bounded_lines, pseudonym
from app.recs.models import STAGING_SUFFIX

log = logging.getLogger(__name__)

OUTPUT_HEADER = ("user_id", "challenge_id", "score")
# Rows per insert and commit: large enough that commits are few, small enough that the write
# lock is held for a fraction of a second at a time.
INSERT_BATCH = 20_000
INSERT_COLUMNS = ("model_run_id", "user_id", "challenge_id", "score", "rank")
PSEUDONYM_PATTERN = re.compile(r"[0-9a-f]{64}")
STATE_ID = 1
EXAMPLE_LINES = 5
# Stands for a challenge id longer than any table's: checked (and reported) as an unknown challenge.
UNKNOWN_ID = -1


class PublishError(RuntimeError):
    """A publish or rollback that cannot happen; nothing was changed."""


# --- Runs -----------------------------------------------------------------------------------------


def new_version() -> str:
    return f"{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def start_run(kind: str, **fields) -> ModelRun:
    run = ModelRun(version=new_version(), kind=kind, status="running", **fields)
    run.report = {"stage": "starting", **(fields.get("report") or {})}
    db.session.add(run)
    db.session.commit()
    return run


def update_report(run: ModelRun, **values) -> None:
    """Merge into the run's report and commit, so other processes can follow the progress."""
    run.report = {**(run.report or {}), **values}
    db.session.commit()


def finish_run(run: ModelRun, status: str, error: str | None = None) -> None:
    run.status = status
    run.error = error
    run.finished_at = utcnow()
    run.report = {**(run.report or {}), "stage": "done"}
    db.session.commit()


def fail_run(run_id: int, error: str) -> None:
    """Record a failure in a fresh transaction and drop whatever rows the run had written."""
    db.session.rollback()
    db.session.execute(delete(UserRecommendation).where(UserRecommendation.model_run_id == run_id))
    run = db.session.get(ModelRun, run_id)
    if run is not None:
        run.rows_count = 0
        finish_run(run, "failed", error[:2000])
    else:
        db.session.commit()


def published_run() -> ModelRun | None:
    state = db.session.get(RecommendationState, STATE_ID)
    return state.published_run if state is not None else None


def recent_runs(limit: int = 10) -> list[ModelRun]:
    return list(db.session.scalars(select(ModelRun).order_by(ModelRun.id.desc()).limit(limit)))


# --- Validating rows (import and pipeline alike) --------------------------------------------------


@dataclass
class ImportReport:
    """What validation found: rows kept, bad rows by reason (with a few line numbers), or why the
    whole input was refused."""

    total: int = 0
    bad: Counter = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)
    refused: str | None = None
    version: str | None = None

    @property
    def bad_rows(self) -> int:
        return sum(self.bad.values())

    @property
    def accepted(self) -> int:
        return self.total - self.bad_rows

    @property
    def bad_share(self) -> float:
        return self.bad_rows / self.total if self.total else 0.0

    def reject(self, line: int, reason: str) -> None:
        self.reject_lines(np.asarray([line]), reason)

    def reject_lines(self, lines: np.ndarray, reason: str) -> None:
        if not len(lines):
            return
        self.bad[reason] += len(lines)
        examples = self.examples.setdefault(reason, [])
        examples.extend(int(n) for n in lines[: max(0, EXAMPLE_LINES - len(examples))])

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "accepted": self.accepted,
            "bad": dict(self.bad),
            "examples": self.examples,
            "refused": self.refused,
            "version": self.version,
        }

    def describe(self) -> str:
        lines = [
            f"rows: {self.total}, accepted: {self.accepted}, bad: {self.bad_rows}"
            f" ({self.bad_share:.2%})"
        ]
        for reason, count in self.bad.most_common():
            examples = self.examples[reason]
            word = "line" if len(examples) == 1 else "lines"
            lines.append(f"  {reason}: {count} ({word} {', '.join(map(str, examples))})")
        if self.refused:
            lines.append(f"refused: {self.refused}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Catalogue:
    """Known students (by id and by pseudonym) and known challenges, loaded once per validation."""

    student_ids: frozenset[int]
    challenge_ids: frozenset[int]
    pseudonyms: dict[str, int]

    @classmethod
    def load(cls, pseudonym_key: bytes | None) -> Catalogue:
        students = frozenset(
            db.session.scalars(select(User.id).where(User.role == Role.STUDENT.value))
        )
        challenges = frozenset(db.session.scalars(select(Challenge.id)))
        pseudonyms = (
            {pseudonym(uid, pseudonym_key): uid for uid in students} if pseudonym_key else {}
        )
        return cls(students, challenges, pseudonyms)

    def student(self, cell: str) -> int | str:
        """The student id, or the reason this cell is not one."""
        if PSEUDONYM_PATTERN.fullmatch(cell):
            return self.pseudonyms.get(cell, "unknown student")
        user_id = ascii_int(cell)
        if user_id is None:
            # More digits than any table's id holds is a number still, of no student of ours.
            digits = cell.isascii() and cell.isdigit()
            return "unknown student" if digits else "user_id not an integer"
        return user_id if user_id in self.student_ids else "unknown student"

    def student_array(self) -> np.ndarray:
        return np.fromiter(self.student_ids, dtype=np.int64, count=len(self.student_ids))

    def challenge_array(self) -> np.ndarray:
        return np.fromiter(self.challenge_ids, dtype=np.int64, count=len(self.challenge_ids))


@dataclass(frozen=True)
class ScoredRows:
    """(user_id, challenge_id, score) rows as parallel arrays, each with the line of the input it
    came from (the pipeline's rows are numbered as the same rows in a file would be)."""

    user_ids: np.ndarray
    challenge_ids: np.ndarray
    scores: np.ndarray
    lines: np.ndarray

    @classmethod
    def from_arrays(cls, user_ids, challenge_ids, scores, first_line: int = 2) -> ScoredRows:
        scores = np.asarray(scores, dtype=np.float64)
        return cls(
            np.asarray(user_ids, dtype=np.int64),
            np.asarray(challenge_ids, dtype=np.int64),
            scores,
            np.arange(first_line, first_line + len(scores), dtype=np.int64),
        )

    @classmethod
    def from_tuples(cls, rows: Iterable[tuple[int, int, float]]) -> ScoredRows:
        columns = list(zip(*rows, strict=True)) or [(), (), ()]
        return cls.from_arrays(*columns)

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, selector: np.ndarray) -> ScoredRows:
        return ScoredRows(
            self.user_ids[selector],
            self.challenge_ids[selector],
            self.scores[selector],
            self.lines[selector],
        )

    def as_tuples(self) -> list[tuple[int, int, float]]:
        return list(
            zip(
                self.user_ids.tolist(),
                self.challenge_ids.tolist(),
                self.scores.tolist(),
                strict=True,
            )
        )


def validate_rows(
    rows: Iterable[tuple[int, list[str]]], catalogue: Catalogue, report: ImportReport
) -> list[tuple[int, int, float]]:
    """Check (line, [user_id, challenge_id, score]) rows; bad ones are counted, not returned."""
    return check_rows(parse_rows(rows, catalogue, report), catalogue, report).as_tuples()


def parse_rows(
    rows: Iterable[tuple[int, list[str]]], catalogue: Catalogue, report: ImportReport
) -> ScoredRows:
    """Text rows as typed arrays. Rows that do not read as (student, integer, number) are
    counted as bad here; ``check_rows`` checks the rest."""
    users, challenges, scores, lines = [], [], [], []
    for line, cells in rows:
        outcome = _parse_row(cells, catalogue)
        if isinstance(outcome, str):
            report.total += 1
            report.reject(line, outcome)
            continue
        users.append(outcome[0])
        challenges.append(outcome[1])
        scores.append(outcome[2])
        lines.append(line)
    return ScoredRows(
        np.asarray(users, dtype=np.int64),
        np.asarray(challenges, dtype=np.int64),
        np.asarray(scores, dtype=np.float64),
        np.asarray(lines, dtype=np.int64),
    )


def _parse_row(cells: list[str], catalogue: Catalogue) -> tuple[int, int, float] | str:
    if len(cells) != len(OUTPUT_HEADER):
        return "wrong number of columns"
    user_cell, challenge_cell, score_cell = (c.strip() for c in cells)
    # The student is checked here, not only in check_rows: an unknown student is the reason
    # given for a row even when its other cells are bad too.
    user_id = catalogue.student(user_cell)
    if isinstance(user_id, str):
        return user_id
    challenge_id = ascii_int(challenge_cell)
    if challenge_id is None and challenge_cell.isascii() and challenge_cell.isdigit():
        challenge_id = UNKNOWN_ID  # more digits than any table's id holds
    if challenge_id is None:
        return "challenge_id not an integer"
    try:
        score = float(score_cell)
    except ValueError:
        return "score not a number"
    return user_id, challenge_id, score


def check_rows(rows: ScoredRows, catalogue: Catalogue, report: ImportReport) -> ScoredRows:
    """The checks every row passes, vectorised (the pipeline publishes millions of rows): a known
    student, a finite score, a known challenge, in that order of precedence, then only the first
    row of each (student, challenge) is kept. Returns the good rows; bad ones go to ``report``."""
    report.total += len(rows)
    checks = (
        ("unknown student", np.isin(rows.user_ids, catalogue.student_array())),
        ("score not finite", np.isfinite(rows.scores)),
        ("unknown challenge", np.isin(rows.challenge_ids, catalogue.challenge_array())),
    )
    good = np.ones(len(rows), dtype=bool)
    for reason, passes in checks:
        report.reject_lines(rows.lines[good & ~passes], reason)
        good &= passes
    rows = rows.take(good)
    repeated = _repeats(rows.user_ids, rows.challenge_ids)
    report.reject_lines(rows.lines[repeated], "duplicate (user_id, challenge_id)")
    return rows.take(~repeated)


def _repeats(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """True for each (first, second) pair already seen in an earlier row."""
    # lexsort is stable: among equal pairs the earliest row comes first.
    order = np.lexsort((second, first))
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (first[order][1:] == first[order][:-1]) & (second[order][1:] == second[order][:-1])
    repeated = np.empty(len(order), dtype=bool)
    repeated[order] = same
    return repeated


def read_output_csv(fh: TextIO, report: ImportReport) -> Iterable[tuple[int, list[str]]] | None:
    """The rows of a ``user_id,challenge_id,score`` file, or None (and ``report.refused``) when the
    header is wrong."""
    reader = csv.reader(bounded_lines(fh, "the file"))
    header = next(reader, None)
    if header is None:
        report.refused = (
            f"the file is empty; the first line must be the header {','.join(OUTPUT_HEADER)}"
        )
        return None
    if tuple(c.strip().lower() for c in header) != OUTPUT_HEADER:
        report.refused = f"header must be {','.join(OUTPUT_HEADER)}, got {header!r}"
        return None
    return ((line, row) for line, row in enumerate(reader, start=2) if row)


@dataclass(frozen=True)
class RankedRows:
    """Rows ready to insert: per student, ranks 1..N."""

    user_ids: np.ndarray
    challenge_ids: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray

    @classmethod
    def from_dicts(cls, rows: list[dict]) -> RankedRows:
        return cls(
            np.asarray([r["user_id"] for r in rows], dtype=np.int64),
            np.asarray([r["challenge_id"] for r in rows], dtype=np.int64),
            np.asarray([r["score"] for r in rows], dtype=np.float64),
            np.asarray([r["rank"] for r in rows], dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.ranks)

    def as_dicts(self) -> list[dict]:
        return self.parameters(None, 0, len(self), None)

    def parameters(
        self, run_id: int | None, start: int, stop: int, order: list[str] | None
    ) -> list[tuple] | list[dict]:
        """Rows ``start:stop`` as insert parameters: tuples in ``order``, or dicts when no order
        is given (the ``model_run_id`` column only with a ``run_id``)."""
        columns = {
            "user_id": self.user_ids[start:stop].tolist(),
            "challenge_id": self.challenge_ids[start:stop].tolist(),
            "score": self.scores[start:stop].tolist(),
            "rank": self.ranks[start:stop].tolist(),
        }
        if run_id is not None:
            columns["model_run_id"] = [run_id] * len(columns["rank"])
        names = order or list(columns)
        rows = zip(*(columns[name] for name in names), strict=True)
        return list(rows) if order else [dict(zip(names, row, strict=True)) for row in rows]


def rank_rows(rows: Iterable[tuple[int, int, float]], top_n: int) -> list[dict]:
    """Rank 1..top_n per student by score (ties: lower challenge id first)."""
    return rank_scored(ScoredRows.from_tuples(rows), top_n).as_dicts()


def rank_scored(rows: ScoredRows, top_n: int) -> RankedRows:
    """Rank 1..top_n per student by score (ties: lower challenge id first)."""
    order = np.lexsort((rows.challenge_ids, -rows.scores, rows.user_ids))
    users = rows.user_ids[order]
    position = np.arange(len(order))
    first_of_user = np.ones(len(order), dtype=bool)
    first_of_user[1:] = users[1:] != users[:-1]
    ranks = position - np.maximum.accumulate(np.where(first_of_user, position, 0)) + 1
    kept = ranks <= top_n
    return RankedRows(
        users[kept], rows.challenge_ids[order][kept], rows.scores[order][kept], ranks[kept]
    )


# --- Writing and publishing -----------------------------------------------------------------------


def write_rows(run: ModelRun, ranked: RankedRows | list[dict]) -> int:
    """Insert under a running run; committed, yet invisible to serving until ``publish``."""
    if run.status != "running":
        raise PublishError(f"run {run.version} is {run.status}, not running")
    if not isinstance(ranked, RankedRows):
        ranked = RankedRows.from_dicts(ranked)
    # The table's insert, compiled once and run as the driver's executemany on plain parameters:
    # at millions of rows, the ORM's (and even Core's) per-row parameter processing costs more
    # than the insert itself. ``inline`` leaves out RETURNING: nothing is read back.
    compiled = (
        insert(UserRecommendation.__table__)
        .inline()
        .compile(dialect=db.session.get_bind().dialect, column_keys=list(INSERT_COLUMNS))
    )
    order = list(compiled.positiontup) if compiled.positional else None
    for start in range(0, len(ranked), INSERT_BATCH):
        batch = ranked.parameters(run.id, start, start + INSERT_BATCH, order)
        db.session.connection().exec_driver_sql(str(compiled), batch)
        # A commit per batch: SQLite has one write lock, and event posts must not wait behind a
        # million-row insert. A crash leaves the rows of a running run, which cleanup_orphans drops.
        db.session.commit()
    run.rows_count = len(ranked)
    run.users_count = len(np.unique(ranked.user_ids))
    db.session.commit()
    return len(ranked)


def publish(run: ModelRun) -> None:
    """Flip the published pointer to ``run`` and supersede the previous version, in one
    transaction. On any error nothing is flipped: the run is marked failed and its rows dropped."""
    # Read before the flip: after a failed flush the session refuses every attribute load.
    run_id, version = run.id, run.version
    try:
        _still_running(run)
        _flip_to(run)
        run.finished_at = run.published_at
        run.report = {**(run.report or {}), "stage": "done"}
        db.session.commit()
    except Exception as exc:
        log.exception("publishing %s failed; the previous version stays published", version)
        fail_run(run_id, f"publish failed: {exc}")
        raise
    log.info(
        "published recommendations %s (%d rows, %d students)",
        run.version,
        run.rows_count,
        run.users_count,
    )


def _still_running(run: ModelRun) -> None:
    """The run, read again and locked until the flip commits, must still be ``running``. On
    PostgreSQL the pipeline's lock is held by a connection of its own; if that connection died
    (an idle-session timeout, a restart, a pooler between), another run may have started and
    cleaned this one up as interrupted, deleting its rows: then it must not be published. The
    row lock orders the flip and that clean-up (``cleanup_orphans``), so one or the other wins."""
    status = db.session.execute(
        select(ModelRun.status).where(ModelRun.id == run.id).with_for_update()
    ).scalar()
    if status != "running":
        raise PublishError(
            f"run {run.version} is {status} (cleaned up by another run), not publishing it"
        )


def _flip_to(run: ModelRun) -> None:
    """The statuses and the pointer; the caller commits (or rolls back) them together."""
    previous = published_run()
    if previous is not None and previous.id != run.id:
        previous.status = "superseded"
    run.status = "published"
    run.published_at = utcnow()
    _point_state_at(run)


def _point_state_at(run: ModelRun) -> None:
    state = db.session.get(RecommendationState, STATE_ID)
    if state is None:
        db.session.add(RecommendationState(id=STATE_ID, published_run_id=run.id))
    else:
        state.published_run_id = run.id
        state.updated_at = utcnow()


def count_rows(run_id: int) -> int:
    return (
        db.session.scalar(
            select(func.count())
            .select_from(UserRecommendation)
            .where(UserRecommendation.model_run_id == run_id)
        )
        or 0
    )


# In a run's report: when serving was rolled back from it.
ROLLED_BACK_AT = "rolled_back_at"


def rollback(to_version: str | None = None) -> tuple[ModelRun | None, ModelRun]:
    """Publish an earlier version again: ``to_version``, or the newest superseded version older
    than the current one that was not itself rolled back from. Returns (previously published,
    now published)."""
    current = published_run()
    target = _rollback_target(current, to_version)
    if not count_rows(target.id):
        raise PublishError(f"{target.version} has no recommendation rows left (pruned)")
    try:
        _flip_to(target)
        if current is not None:
            current.report = {**(current.report or {}), ROLLED_BACK_AT: utcnow().isoformat()}
        # Published again on purpose: a later rollback may return to it.
        target.report = {k: v for k, v in (target.report or {}).items() if k != ROLLED_BACK_AT}
        db.session.commit()
    except Exception:
        # Unlike a new version, the target's rows belong to a good version: keep them.
        db.session.rollback()
        raise
    log.info("rolled back recommendations to %s", target.version)
    return current, target


def _rollback_target(current: ModelRun | None, to_version: str | None) -> ModelRun:
    if to_version:
        target = db.session.scalar(select(ModelRun).where(ModelRun.version == to_version))
        if target is None:
            raise PublishError(f"no version {to_version}")
        if current is not None and target.id == current.id:
            raise PublishError(f"{to_version} is already published")
        if target.status != "superseded":
            raise PublishError(f"{to_version} is {target.status}; only superseded versions return")
        return target
    older = select(ModelRun).where(ModelRun.status == "superseded")
    if current is not None:
        older = older.where(ModelRun.id < current.id)
    # A version the operator rolled back from is not one to return to: the one before it is;
    # nor is one whose rows were pruned.
    for target in db.session.scalars(older.order_by(ModelRun.id.desc())):
        if ROLLED_BACK_AT not in (target.report or {}) and count_rows(target.id):
            return target
    raise PublishError("no earlier version with its rows kept to roll back to")


# --- Cleanup --------------------------------------------------------------------------------------


def cleanup_orphans(current_run_id: int | None = None) -> int:
    """Runs left ``running`` by a process that died: mark them failed and drop their rows. Only
    call while holding the pipeline lock, so no live run is mistaken for an orphan."""
    stale = list(
        db.session.execute(
            select(ModelRun.id, ModelRun.version).where(
                ModelRun.status == "running", ModelRun.id != (current_run_id or -1)
            )
        )
    )
    cleaned = 0
    for run_id, version in stale:
        # Claimed by a conditional update: a run whose process is in fact alive (its lock's
        # connection died, not the process) and publishing now holds its row until the flip
        # commits, and is then no longer running, so its rows stay. The claim and the deletion
        # of the rows commit together, so no failed run is ever left holding rows.
        claimed = db.session.execute(
            update(ModelRun)
            .where(ModelRun.id == run_id, ModelRun.status == "running")
            .values(
                status="failed",
                error=INTERRUPTED,
                finished_at=utcnow(),
                rows_count=0,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            db.session.rollback()
            continue
        db.session.execute(
            delete(UserRecommendation).where(UserRecommendation.model_run_id == run_id)
        )
        run = db.session.get(ModelRun, run_id, populate_existing=True)
        run.report = {**(run.report or {}), "stage": "done"}
        db.session.commit()
        log.warning("run %s was interrupted; its rows were cleaned up", version)
        cleaned += 1
    return cleaned


INTERRUPTED = "interrupted: the process ended before the run finished"


def prune_versions(keep: int, model_dir: Path) -> list[str]:
    """Keep rows and artifacts of the published version and the ``keep`` newest published or
    superseded ones (what rollback can return to); drop the rest."""
    current = published_run()
    servable = list(
        db.session.scalars(
            select(ModelRun.id)
            .where(ModelRun.status.in_(("published", "superseded")))
            .order_by(ModelRun.id.desc())
            .limit(max(keep, 1))
        )
    )
    kept = set(servable) | ({current.id} if current else set())
    stale = list(
        db.session.scalars(
            select(ModelRun)
            .where(ModelRun.status != "running", ModelRun.id.not_in(kept))
            .where((ModelRun.artifact_path.is_not(None)) | (ModelRun.rows_count > 0))
        )
    )
    for run in stale:
        db.session.execute(
            delete(UserRecommendation).where(UserRecommendation.model_run_id == run.id)
        )
        _remove_artifact(run.artifact_path, model_dir)
        run.artifact_path = None
        run.rows_count = 0
    db.session.commit()
    if stale:
        log.info("pruned %d old model version(s)", len(stale))
    _remove_unclaimed_artifacts(model_dir)
    return [run.version for run in stale]


# The folder names save_artifact writes: a version (see new_version), or one being written.
ARTIFACT_FOLDER = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}(" + re.escape(STAGING_SUFFIX) + ")?")


def _remove_unclaimed_artifacts(model_dir: Path) -> None:
    """Artifact folders of this database's runs that their run does not point at: half-written
    ones (``.tmp``) and finished ones the run never recorded, both left by a process killed while
    saving. A folder is matched to its run by its name, the version, not by its full path: an
    installation moved or restored elsewhere keeps its runs' old absolute paths. Folders of
    versions this database does not know are left alone (another database's, sharing the
    folder), and so is a running run's, in the making."""
    folder = Path(model_dir)
    if not folder.is_dir():
        return
    runs = db.session.execute(select(ModelRun.version, ModelRun.status, ModelRun.artifact_path))
    recorded, finished = set(), set()
    for version, status, path in runs:
        if path:
            recorded.add(Path(path).name)
        if status != "running":
            finished.add(version)
    for entry in folder.iterdir():
        if not (
            entry.is_dir() and not entry.is_symlink() and ARTIFACT_FOLDER.fullmatch(entry.name)
        ):
            continue
        version = entry.name.removesuffix(STAGING_SUFFIX)
        half_written = entry.name != version
        if version not in finished or (not half_written and entry.name in recorded):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        log.info("removed model folder %s, which its run does not point at", entry.name)


def _remove_artifact(path: str | None, model_dir: Path) -> None:
    if not path:
        return
    target = Path(path).resolve()
    # Never delete outside the model directory, whatever a row says.
    if Path(model_dir).resolve() in target.parents:
        shutil.rmtree(target, ignore_errors=True)
