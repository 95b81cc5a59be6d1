"""The training pipeline (export -> train -> evaluate -> gate -> generate -> import/publish) and
the operations around it (status, event retention). The ``flask recs`` commands and the scheduler
call these functions; the pipeline generates and imports through the same code as the ``generate``
and ``import`` commands (ranking, the same row checks, ``write_rows``, ``publish``), without
files, and without text in between when its ids are numeric."""

from __future__ import annotations

import csv
import errno
import logging
import os
import resource
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

import numpy as np
from flask import current_app
from scipy import sparse
from sqlalchemy import delete, distinct, exists, func, or_, select

from app.extensions import db
from app.models import (
    Challenge,
    ModelRun,
    RecommendationEvent,
    RecommendationSlate,
    RecommendationSlateCard,
    Role,
    User,
    UserRecommendation,
    utcnow,
)
from app.recs import eligibility, metrics
from app.recs.data import (
    DataError,
    IdMap,
    InteractionMatrix,
    Interactions,
    excluded_pairs,
    fingerprint,
    open_regular_file,
    read_csv,
    read_database,
    read_movielens,
    read_movielens_genres,
    spreadsheet_safe,
    write_csv,
)
from app.recs.evaluate import (
    Comparison,
    EvaluationSettings,
    ItemFeatures,
    build_candidate,
    compare,
    random_split,
    time_split,
    with_trend_of,
)
from app.recs.experiment import ruling_experiment
from app.recs.models import (
    ARTIFACT_ARRAYS,
    ARTIFACT_METADATA,
    Artifact,
    load_artifact,
    save_artifact,
    top_k,
)
from app.recs.publish import (
    OUTPUT_HEADER,
    Catalogue,
    ImportReport,
    ScoredRows,
    check_rows,
    cleanup_orphans,
    fail_run,
    finish_run,
    parse_rows,
    prune_versions,
    publish,
    published_run,
    rank_scored,
    read_output_csv,
    recent_runs,
    start_run,
    update_report,
    write_rows,
)

log = logging.getLogger(__name__)

STAGES = ("loading", "evaluating", "training", "generating", "publishing")
Progress = Callable[[str], None]


def _config(key: str):
    return current_app.config[key]


def model_dir() -> Path:
    return Path(_config("RECS_MODEL_DIR"))


def top_n() -> int:
    """Precomputed rows per student: at least 3 slates, so serve-time filtering never empties it."""
    return max(int(_config("RECS_TOP_N")), 3 * int(_config("RECS_SLATE_SIZE")))


def pseudonym_key() -> bytes:
    return str(_config("RECS_PSEUDONYM_KEY") or _config("SECRET_KEY")).encode()


def default_export_path() -> Path:
    return Path(current_app.instance_path) / "recommendations" / "interactions.csv"


# --- Export ---------------------------------------------------------------------------------------


def export_interactions(
    output: Path, since: datetime | None = None, pseudonymize: bool = False
) -> int:
    """Write the interactions the training reads, with their weights; returns the row count."""
    interactions = read_database(_config("RECS_INTERACTION_WEIGHTS"), since)
    with _atomic_text_file(output) as fh:
        count = write_csv(interactions, fh, pseudonym_key() if pseudonymize else None)
    log.info("exported %d interactions to %s", count, output)
    return count


class _atomic_text_file:
    """Write a sibling temp file, then rename it over the target: readers never see half a file.

    The files hold personal data and may be written into folders others can write to, so:
    - a target that is a symbolic link, a device or a pipe is refused, never followed or
      replaced (a planted link must not redirect the export onto another file);
    - the temp file is created new and private (``mkstemp``: exclusive, mode 0600), so nothing
      planted under its name is written through;
    - an existing file of the operator's keeps its permissions; a new one stays 0600."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> TextIO:
        try:
            existing = self.path.lstat()
        except FileNotFoundError:
            existing = None
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            raise OSError(
                errno.EINVAL,
                "not a regular file (a link, a device or a pipe); name a file to write",
                str(self.path),
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        self.temp = Path(temp)
        try:
            if existing is not None and existing.st_uid == os.getuid():
                os.fchmod(descriptor, stat.S_IMODE(existing.st_mode))
            self.fh = open(descriptor, "w", newline="", encoding="utf-8")
        except OSError:
            os.close(descriptor)
            self.temp.unlink(missing_ok=True)
            raise
        return self.fh

    def __exit__(self, exc_type, exc, tb) -> None:
        self.fh.close()
        if exc_type is None:
            os.replace(self.temp, self.path)
        else:
            self.temp.unlink(missing_ok=True)


# --- Train ----------------------------------------------------------------------------------------


@dataclass
class PipelineResult:
    version: str
    status: str  # published | rejected | failed
    reason: str | None = None
    comparison: Comparison | None = None
    import_report: ImportReport | None = None


def train(
    interactions: Interactions | None = None, trigger: str = "cli", progress: Progress | None = None
) -> PipelineResult:
    """Train on the database (or the given interactions), evaluate every candidate against the
    baselines on a time split, gate, and publish the winner's top-N rows. Call while holding the
    pipeline lock (``scheduler.single_runner``). Failures are recorded on the run, never raised."""
    cleanup_orphans()
    source = "database" if interactions is None else "file"
    run = start_run("train", report={"trigger": trigger, "source": source})
    # Kept apart from ``run``, whose attributes cannot load while a failed flush is pending.
    run_id, version = run.id, run.version
    started = time.perf_counter()
    try:
        result = _train(run, interactions, progress or (lambda stage: None))
    except Exception as exc:
        if isinstance(exc, OSError):
            # The machine's state (a full disk, a folder without permission), not a bug: the
            # reason is the message, and a traceback would bury it.
            log.error("training run %s failed: %s", version, exc)
        else:
            log.exception("training run %s failed", version)
        fail_run(run_id, f"{type(exc).__name__}: {exc}")
        result = PipelineResult(version, "failed", str(exc))
    _record_resources(run_id, time.perf_counter() - started)
    prune_versions(int(_config("RECS_KEEP_VERSIONS")), model_dir())
    return result


def _stage(run: ModelRun, stage: str, progress: Progress) -> None:
    update_report(run, stage=stage, stage_started_at=utcnow().isoformat())
    progress(stage)


def _train(run: ModelRun, interactions: Interactions | None, progress: Progress) -> PipelineResult:
    _stage(run, "loading", progress)
    if interactions is None:
        interactions = read_database(_config("RECS_INTERACTION_WEIGHTS"))
    data = InteractionMatrix.build(interactions)
    # The data ends when it was read: a date after that (a clock set ahead, a file's) would put
    # its end in the future, where no student's change is newer (fold-in off for everyone).
    run.trained_through = interactions.latest and min(interactions.latest, run.started_at)
    update_report(
        run,
        data={
            "events": len(interactions),
            "students": data.active_users(),
            "interactions": data.nnz,
            "challenges": len(data.items),
        },
    )
    too_small = _too_small(data)
    if too_small:
        return _reject(run, too_small)

    _stage(run, "evaluating", progress)
    settings = EvaluationSettings.from_config(current_app.config)
    split = time_split(interactions, settings.holdout_fraction)
    if not len(split.eval_users):
        return _reject(run, "the held-out (most recent) interactions have no student to evaluate")
    comparison = compare(
        split,
        ItemFeatures.from_database(split.train.items),
        settings,
        progress=lambda step: update_report(run, stage=f"evaluating: {step} done"),
    )
    gate = _gate(comparison, float(_config("RECS_GATE_MARGIN")))
    run.algorithm = comparison.best
    run.params = comparison.row(comparison.best).params if comparison.best else None
    run.metrics = {"gate": gate, "comparison": comparison.as_dict()}
    db.session.commit()
    if not gate["passed"]:
        return _reject(run, gate["reason"], comparison)

    _stage(run, "training", progress)
    artifact = _fit_final(run, comparison, data, interactions)

    _stage(run, "generating", progress)
    numeric = data.users.ids.dtype.kind == data.items.ids.dtype.kind == "i"
    # Pseudonymized ids (a file from `export --pseudonymize`) are resolved by the validation.
    students = _artifact_students(artifact, run)
    # Rows can only be published for challenges this database has (an input file may name others).
    users, challenges, scores = generate_arrays(
        artifact, top_n(), user_ids=students, known_only=True
    )

    if not len(users):
        # Between terms every challenge may have ended: nothing to recommend is no failure.
        return _reject(
            run,
            "nothing to publish: no student the model knows has a challenge it knows open now",
            comparison,
        )

    _stage(run, "publishing", progress)
    if numeric:
        report = import_scored(ScoredRows.from_arrays(users, challenges, scores), run=run)
    else:
        rows = zip(users.tolist(), challenges.tolist(), scores.tolist(), strict=True)
        report = import_rows(_as_lines(rows), run=run)
    if report.refused:
        return PipelineResult(run.version, "failed", report.refused, comparison, report)
    return PipelineResult(run.version, "published", None, comparison, report)


def _too_small(data: InteractionMatrix) -> str | None:
    students, interactions = data.active_users(), data.nnz
    need_students, need_interactions = (
        int(_config("RECS_MIN_STUDENTS")),
        int(_config("RECS_MIN_INTERACTIONS")),
    )
    if students < need_students or interactions < need_interactions:
        return (
            f"not enough data: {students} students and {interactions} interactions, "
            f"need {need_students} and {need_interactions}"
        )
    return None


def _gate(comparison: Comparison, margin: float) -> dict:
    """The best candidate (chosen on validation) must beat the heuristic's held-out NDCG by more
    than ``margin``."""
    heuristic = comparison.row("heuristic").test.ndcg
    best = comparison.row(comparison.best) if comparison.best else None
    model = best.test.ndcg if best else 0.0
    passed = best is not None and model > heuristic + margin
    reason = (
        None
        if passed
        else (
            f"{comparison.best or 'no candidate'} NDCG@{comparison.k} {model:.4f} does not beat "
            f"the heuristic's {heuristic:.4f} by more than {margin}"
        )
    )
    return {
        "model": comparison.best,
        "model_ndcg": round(model, 4),
        "heuristic_ndcg": round(heuristic, 4),
        "margin": margin,
        "passed": passed,
        "reason": reason,
        "k": comparison.k,
        "split": comparison.split,
    }


def _reject(run: ModelRun, reason: str, comparison: Comparison | None = None) -> PipelineResult:
    log.info("training run %s rejected: %s", run.version, reason)
    update_report(run, reason=reason)
    finish_run(run, "rejected", reason)
    return PipelineResult(run.version, "rejected", reason, comparison)


def _fit_final(
    run: ModelRun, comparison: Comparison, data: InteractionMatrix, interactions: Interactions
) -> Artifact:
    """Refit the chosen candidate on all the data (the held-out part is the most recent, the most
    useful for tomorrow's slates) and save the artifact."""
    started = time.perf_counter()
    model = build_candidate(comparison.best, run.params).fit(data.matrix, data.times)
    # The trend as of the newest interaction: what is in demand as the slates go out.
    model = with_trend_of(
        model, run.params, interactions, data.users, data.items, run.trained_through or utcnow()
    )
    seconds = time.perf_counter() - started
    metadata = {
        "version": run.version,
        "trained_at": utcnow().isoformat(),
        "trained_through": run.trained_through.isoformat() if run.trained_through else None,
        "training_seconds": round(seconds, 3),
        "data_fingerprint": fingerprint(interactions),
        "metrics": run.metrics,
    }
    path = save_artifact(model_dir() / run.version, model, data, metadata)
    run.artifact_path = str(path)
    db.session.commit()
    return Artifact(model, data, metadata)


def _record_resources(run_id: int, seconds: float) -> None:
    run = db.session.get(ModelRun, run_id)
    if run is None:
        return
    # ru_maxrss is the process's peak so far, in KiB on Linux: an upper bound for this run.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    update_report(run, seconds=round(seconds, 2), peak_memory_mb=round(peak_mb, 1))


def _student_ids(known_by: datetime | None = None) -> list[int]:
    """Active students; with ``known_by``, only accounts created by then. An artifact holds the
    history of the accounts of its time: a deleted student's id can be taken by a new account
    (SQLite reuses the highest id), and the new person must not get the old one's list."""
    query = select(User.id).where(User.role == Role.STUDENT.value, User.active.is_(True))
    if known_by is not None:
        query = query.where(User.created_at <= known_by)
    return list(db.session.scalars(query))


def _artifact_students(artifact: Artifact, run: ModelRun) -> list[int] | None:
    """The artifact's users who may get its rows: active students whose account existed when
    the run began. None for pseudonymized ids, which name no account here."""
    if artifact.data.users.ids.dtype.kind != "i":
        return None
    return _student_ids(known_by=run.started_at)


# --- Generate -------------------------------------------------------------------------------------


def generate_rows(
    artifact: Artifact, k: int, user_ids: Iterable | None = None, now: datetime | None = None
) -> list[tuple]:
    """Top-k (user_id, challenge_id, score) per user of the artifact, over challenges that can be
    recommended now, without what each user already has, joined or dismissed."""
    columns = generate_arrays(artifact, k, user_ids, now)
    return list(zip(*(column.tolist() for column in columns), strict=True))


def generate_arrays(
    artifact: Artifact,
    k: int,
    user_ids: Iterable | None = None,
    now: datetime | None = None,
    known_only: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``generate_rows`` as three columns (user ids, challenge ids, scores), best first per user.
    A score of exactly 0 is no evidence at all (e.g. item-kNN when none of the student's challenges
    has it as a neighbour): such a challenge is left out rather than shown as the model's choice,
    and serving tops the student's slate up from the other sources. ``known_only``: only
    challenges this database has (rows to publish here), not every id the model was trained on."""
    data = artifact.data
    users = np.arange(len(data.users)) if user_ids is None else _known(data.users, user_ids)
    candidates = _recommendable(data.items, now or utcnow(), known_only)
    exclude = data.matrix[users] + _excluded_by_eligibility(data, users)
    ranked, scores = top_k(
        artifact.model, data.matrix[users], k, exclude=exclude, candidates=candidates
    )
    found = (ranked >= 0) & (scores != 0)
    rows = np.broadcast_to(users[:, None], ranked.shape)[found]
    return data.users.ids[rows], data.items.ids[ranked[found]], scores[found]


def _known(users: IdMap, user_ids: Iterable) -> np.ndarray:
    index = users.index(list(user_ids))
    return np.unique(index[index >= 0])


def _recommendable(items: IdMap, now: datetime, known_only: bool = False) -> np.ndarray:
    """Eligible challenges; ids the database does not know (an artifact trained on an outside
    file) stay candidates unless ``known_only``, since nothing says they are closed."""
    if items.ids.dtype.kind != "i":
        return np.ones(len(items), dtype=bool)
    known = set(db.session.scalars(select(Challenge.id)))
    eligible = {c.id for c in db.session.scalars(eligibility.eligible_challenges(now))}
    return np.array(
        [i in eligible or (i not in known and not known_only) for i in items.ids.tolist()],
        dtype=bool,
    )


def _excluded_by_eligibility(data: InteractionMatrix, users: np.ndarray) -> sparse.csr_matrix:
    """Joined and dismissed challenges per user, as the serving rules define them
    (``eligibility.excluded_challenge_ids``), for every user in one query."""
    shape = (len(users), len(data.items))
    if data.users.ids.dtype.kind != "i":
        return sparse.csr_matrix(shape, dtype=np.float32)
    user_ids, challenge_ids = excluded_pairs()
    position = np.full(len(data.users), -1, dtype=np.int64)
    position[users] = np.arange(len(users))
    rows = data.users.index(user_ids)
    rows = np.where(rows >= 0, position[rows], -1)
    cols = data.items.index(challenge_ids)
    keep = (rows >= 0) & (cols >= 0)
    matrix = sparse.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])), shape=shape
    )
    matrix.sum_duplicates()
    return matrix


def write_output_csv(rows: Iterable[tuple], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(OUTPUT_HEADER)
    count = 0
    for user_id, challenge_id, score in rows:
        writer.writerow(
            [
                spreadsheet_safe(str(user_id)),
                spreadsheet_safe(str(challenge_id)),
                repr(float(score)),
            ]
        )
        count += 1
    return count


def generate_file(run: ModelRun, k: int, output: Path) -> int:
    """The artifact's top-k for each of its students who still has this account; an artifact
    trained on pseudonymized ids (``export --pseudonymize``) has no accounts to check: all."""
    artifact = load_artifact(Path(run.artifact_path))
    students = _artifact_students(artifact, run)
    with _atomic_text_file(output) as fh:
        count = write_output_csv(generate_rows(artifact, k, user_ids=students), fh)
    log.info("generated %d recommendations of version %s to %s", count, run.version, output)
    return count


def run_with_artifact(version: str | None) -> ModelRun | None:
    """The named run, else the published one if it has an artifact, else the newest that has."""
    if version:
        return db.session.scalar(select(ModelRun).where(ModelRun.version == version))
    current = published_run()
    if current is not None and current.artifact_path:
        return current
    return db.session.scalar(
        select(ModelRun)
        .where(ModelRun.artifact_path.is_not(None))
        .order_by(ModelRun.id.desc())
        .limit(1)
    )


# --- Import ---------------------------------------------------------------------------------------


def _as_lines(rows: Iterable[tuple]) -> Iterable[tuple[int, list[str]]]:
    """In-process rows in the shape a CSV reader yields, for the same validation as a file."""
    return (
        (line, [str(u), str(c), repr(float(s))]) for line, (u, c, s) in enumerate(rows, start=2)
    )


def import_file(path: Path, allow_fewer_students: bool = False) -> ImportReport:
    """Validate a ``user_id,challenge_id,score`` file and publish it as a new version, unless it
    is refused (unreadable, bad header, no rows, too many bad rows, or, unless allowed, far fewer
    students than the published version covers): then nothing changes."""
    report = ImportReport()
    min_share = None if allow_fewer_students else float(_config("RECS_IMPORT_MIN_STUDENT_SHARE"))
    try:
        with open_regular_file(path, newline="", encoding="utf-8-sig") as fh:
            lines = read_output_csv(fh, report)
            if lines is not None:
                return import_rows(
                    lines, report=report, source=str(path), min_student_share=min_share
                )
    except (OSError, UnicodeDecodeError, csv.Error, DataError) as exc:
        report.refused = f"cannot read {path}: {exc}"
    log.warning("import of %s refused: %s", path, report.refused)
    return report


def import_rows(
    lines: Iterable[tuple[int, list[str]]],
    run: ModelRun | None = None,
    report: ImportReport | None = None,
    source: str = "pipeline",
    min_student_share: float | None = None,
) -> ImportReport:
    """Validate rows and publish the good ones under ``run`` (or a new import run). A refused
    input changes nothing, except that a given run is recorded as failed. ``min_student_share``:
    refuse rows covering fewer students than this share of the published version's."""
    report = report or ImportReport()
    catalogue = Catalogue.load(pseudonym_key())
    rows = parse_rows(lines, catalogue, report)
    return _import(rows, catalogue, run, report, source, min_student_share)


def import_scored(
    rows: ScoredRows, run: ModelRun | None = None, source: str = "pipeline"
) -> ImportReport:
    """``import_rows`` for rows with numeric ids (the pipeline's own), checked the same way
    without a round trip through text."""
    return _import(rows, Catalogue.load(None), run, ImportReport(), source)


def _import(
    rows: ScoredRows,
    catalogue: Catalogue,
    run: ModelRun | None,
    report: ImportReport,
    source: str,
    min_student_share: float | None = None,
) -> ImportReport:
    kept = check_rows(rows, catalogue, report)
    report.refused = _refusal(report, float(_config("RECS_IMPORT_MAX_BAD_SHARE")))
    if not report.refused and min_student_share is not None:
        report.refused = _too_few_students(kept, min_student_share)
    if report.refused:
        log.warning(
            "recommendations from %s refused: %s; %s", source, report.refused, dict(report.bad)
        )
        if run is not None:
            fail_run(run.id, f"import refused: {report.refused}")
        return report
    if run is None:
        cleanup_orphans()
        run = start_run("import", algorithm="import", params={"source": source})
    update_report(run, stage="publishing", validation=report.as_dict())
    write_rows(run, rank_scored(kept, top_n()))
    publish(run)
    report.version = run.version
    if run.kind == "import":
        prune_versions(int(_config("RECS_KEEP_VERSIONS")), model_dir())
    return report


def _too_few_students(kept: ScoredRows, min_share: float) -> str | None:
    """Why rows covering far fewer students than the published version should not replace it: a
    file cut short (a copy interrupted, a file still being written) looks valid row by row."""
    current = published_run()
    if current is None:
        return None
    covered = db.session.scalar(
        select(func.count(distinct(UserRecommendation.user_id))).where(
            UserRecommendation.model_run_id == current.id
        )
    )
    students = len(np.unique(kept.user_ids))
    if not covered or students >= min_share * covered:
        return None
    return (
        f"the file has rows for {students} students, fewer than {min_share:.0%} of the {covered} "
        f"the published version {current.version} covers (cut short, or still being written?); "
        "pass --allow-fewer-students to publish it anyway"
    )


def _refusal(report: ImportReport, max_bad_share: float) -> str | None:
    if report.total == 0:
        return "no rows"
    if report.accepted == 0:
        return "no valid rows"
    if report.bad_share > max_bad_share:
        return (
            f"{report.bad_share:.2%} of the rows are bad, more than the {max_bad_share:.2%} allowed"
        )
    return None


# --- Offline evaluation of a file -----------------------------------------------------------------


def read_interactions_file(
    path: Path, fmt: str
) -> tuple[Interactions, Callable[[IdMap], ItemFeatures]]:
    """Interactions and how to describe their items to the heuristic."""
    if fmt == "movielens":
        interactions = read_movielens(path)
        genres_path = Path(path).with_name("u.item")
        if genres_path.is_file():
            genres = read_movielens_genres(genres_path)
            return interactions, lambda items: ItemFeatures.from_genres(items, genres)
        return interactions, lambda items: ItemFeatures.uniform(len(items))
    return read_csv(path), ItemFeatures.from_database


def evaluate_file(
    path: Path,
    fmt: str,
    splits: Iterable[str],
    seed: int = 42,
    k: int = 10,
    progress: Progress | None = None,
) -> list[Comparison]:
    interactions, features_for = read_interactions_file(path, fmt)
    if not len(interactions):
        raise ValueError(f"{path} holds no interactions")
    settings = EvaluationSettings.from_config(current_app.config, seed=seed, k=k)
    comparisons = []
    for kind in splits:
        split = (
            random_split(interactions, settings.holdout_fraction, seed)
            if kind == "random"
            else time_split(interactions, settings.holdout_fraction)
        )
        if not len(split.eval_users):
            # Every metric would read 0 and the "best" model would be the first one listed.
            raise ValueError(
                f"{path}: on the {kind} split no student has interactions both to train on and "
                f"to hold out ({len(interactions)} interactions); the file is too small to evaluate"
            )
        comparisons.append(compare(split, features_for(split.train.items), settings, progress))
    return comparisons


# --- Status and retention -------------------------------------------------------------------------


def status_summary(now: datetime | None = None, limit: int = 10) -> dict:
    """The published version (age, coverage, metrics) and the latest runs, JSON-ready."""
    now = now or utcnow()
    current = published_run()
    students = (
        db.session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.STUDENT.value, User.active.is_(True))
        )
        or 0
    )
    published = None
    if current is not None:
        # The dashboard's coverage: students active in the last 30 days who have rows.
        covered = metrics.coverage(current.id, now)
        published = {
            **run_summary(current),
            "age_hours": round(current.age(now).total_seconds() / 3600, 1),
            "coverage": round(covered.share, 4),
            "active_students": covered.active_students,
            "covered_active_students": covered.covered,
            "students": students,
            "artifact_path": current.artifact_path,
            "artifact_missing": artifact_missing(current),
        }
    return {
        "published": published,
        "serving_rule": _serving_rule(),
        "runs": [run_summary(r) for r in recent_runs(limit)],
    }


def artifact_missing(run: ModelRun) -> bool:
    """Whether a trained version's saved model is gone (a model folder moved, cleaned or
    restored without it): its rows still serve, but fold-in, ``generate`` and a later rollback's
    fold-in need it. Imported versions have none to miss."""
    if run.kind != "train":
        return False
    if not run.artifact_path:
        return True
    folder = Path(run.artifact_path)
    return not ((folder / ARTIFACT_METADATA).is_file() and (folder / ARTIFACT_ARRAYS).is_file())


def _serving_rule() -> dict | None:
    """A stopped experiment's winner served to every student, whatever is published."""
    ruling = ruling_experiment()
    if ruling is None:
        return None
    return {
        "experiment": ruling.name,
        "winner": ruling.winner,
        "stopped_at": ruling.stopped_at.isoformat() if ruling.stopped_at else None,
    }


def run_summary(run: ModelRun) -> dict:
    gate = (run.metrics or {}).get("gate") or {}
    report = run.report or {}
    return {
        "version": run.version,
        "kind": run.kind,
        "status": run.status,
        "algorithm": run.algorithm,
        "params": run.params,
        "ndcg": gate.get("model_ndcg"),
        "heuristic_ndcg": gate.get("heuristic_ndcg"),
        "rows": run.rows_count,
        "users": run.users_count,
        "stage": report.get("stage"),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "published_at": _iso(run.published_at),
        "seconds": report.get("seconds"),
        "error": run.error,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# A student's standing choices, kept until their challenge is long over (see ``purge_events``).
STANDING_EVENTS = ("dismiss", "restore")


def purge_events(days: int, now: datetime | None = None) -> int:
    """Delete recommendation events older than ``days`` (personal data kept no longer than
    needed); returns how many. A dismissal is the student's standing "never recommend this
    again", not a record of a moment: it stays until the challenge has been over for the whole
    retention period (an archived challenge can be published again, so archiving alone does not
    end it; an end date moved forward after that offers the challenge to everyone again). A
    restore, which takes a dismissal back, is kept as long: without it the dismissal would
    stand again."""
    try:
        cutoff = (now or utcnow()) - timedelta(days=days)
    except OverflowError:  # a retention reaching back before the year 1: nothing is that old
        log.info("purged no recommendation events: %d days reach back before the calendar", days)
        return 0
    long_over = select(Challenge.id).where(Challenge.ends_at < cutoff)
    old_slates = select(RecommendationSlate.id).where(RecommendationSlate.created_at < cutoff)
    old = db.session.execute(
        delete(RecommendationEvent).where(
            RecommendationEvent.created_at < cutoff,
            or_(
                RecommendationEvent.type.not_in(STANDING_EVENTS),
                RecommendationEvent.challenge_id.in_(long_over),
            ),
        )
    )
    # Online metrics count a slate's events on the day it was shown: a click just after the
    # cutoff on a card shown just before goes with its impression, or a day would have clicks
    # without impressions. A statement of its own: inside an OR, PostgreSQL cannot make the
    # slate condition a join, and scans every old slate once per event.
    of_old_slates = db.session.execute(
        delete(RecommendationEvent).where(
            RecommendationEvent.type.not_in(STANDING_EVENTS),
            RecommendationEvent.created_at >= cutoff,
            exists().where(
                RecommendationSlate.id == RecommendationEvent.slate_id,
                RecommendationSlate.created_at < cutoff,
            ),
        )
    )
    deleted = int(old.rowcount or 0) + int(of_old_slates.rowcount or 0)
    # What old API pages served (and where) goes with their events.
    db.session.execute(
        delete(RecommendationSlateCard).where(RecommendationSlateCard.slate_id.in_(old_slates))
    )
    db.session.commit()
    log.info(
        "purged %d recommendation events older than %s or of slates shown before then",
        deleted,
        cutoff.isoformat(),
    )
    return deleted
