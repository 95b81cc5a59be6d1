"""``flask recs ...``: thin commands over app.recs.pipeline; each docstring is its ``--help``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.cli import CommandGroup, first_line
from app.extensions import db
from app.models import ModelRun
from app.recs import pipeline, scheduler
from app.recs.data import DataError, read_csv
from app.recs.evaluate import format_table
from app.recs.models import CANDIDATES, UNREADABLE_ARTIFACT
from app.recs.publish import PublishError, published_run, rollback

log = logging.getLogger(__name__)


def _not_blank(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # An empty value is most often an unset shell variable: never read it as "the default".
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty (leave the option out for the default)")
    return value


recs_cli = CommandGroup(
    "recs", help="Train, evaluate, publish and schedule recommendation models.", logger=log
)

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]


@contextmanager
def _pipeline_lock() -> Iterator[None]:
    """Commands that change versions take the scheduler's lock, so they never overlap a run. A
    database failure on the way (locked, full, gone) ends the command with its reason: whatever
    it left half-done is invisible to serving and cleaned up by the next run."""
    with scheduler.single_runner(current_app._get_current_object()) as acquired:
        if not acquired:
            raise click.ClickException("another recommendation run is in progress; try again later")
        try:
            yield
        except SQLAlchemyError as exc:
            log.debug("recommendation command stopped by a database error", exc_info=True)
            reason = first_line(exc)
            raise click.ClickException(
                f"database error: {reason}. Nothing half-written is served; "
                "`flask recs status` shows the published version"
            ) from exc


def _progressbar(length: int, label: str):
    """On stderr: stdout carries the results (tables, JSON) for whoever pipes them."""
    return click.progressbar(
        length=length, label=label, item_show_func=lambda step: step, file=sys.stderr
    )


def _recommendations_dir() -> Path:
    return Path(current_app.instance_path) / "recommendations"


@recs_cli.command("export")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV to write [default: instance/recommendations/interactions.csv].",
)
@click.option(
    "--since", type=click.DateTime(DATE_FORMATS), help="Only interactions from this date (UTC)."
)
@click.option(
    "--pseudonymize",
    is_flag=True,
    help="Replace user ids by a keyed hash (RECS_PSEUDONYM_KEY, else SECRET_KEY).",
)
def export_command(output: Path | None, since, pseudonymize: bool) -> None:
    """Export interactions (joins, completions, clicks, dismisses) with their training weights as
    CSV: user_id,challenge_id,event,weight,timestamp."""
    output = output or pipeline.default_export_path()
    if since:
        try:  # in UTC, as stored: an offset may carry it out of the calendar (0001-01-01+01:00)
            since = since.replace(tzinfo=since.tzinfo or UTC).astimezone(UTC)
        except OverflowError:
            raise click.BadParameter(
                "must fall between 0001-01-01 and 9999-12-31 in UTC", param_hint="'--since'"
            ) from None
    try:
        count = pipeline.export_interactions(output, since, pseudonymize)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc}") from exc
    click.echo(f"Exported {count} interactions to {output}.")


def _run_training(interactions=None, trigger: str = "cli") -> None:
    with _progressbar(len(pipeline.STAGES), "Training") as bar:
        result = pipeline.train(
            interactions, trigger=trigger, progress=lambda stage: bar.update(1, stage)
        )
    if result.comparison is not None:
        click.echo(format_table(result.comparison))
    if result.status == "published":
        click.echo(
            f"Published version {result.version} ({result.import_report.accepted} recommendations)."
        )
    elif result.status == "rejected":
        click.echo(
            f"Version {result.version} rejected: {str(result.reason).rstrip('.')}. "
            "Serving is unchanged."
        )
    else:
        raise click.ClickException(
            f"version {result.version} failed: {str(result.reason).rstrip('.')}. "
            "Serving is unchanged."
        )


@recs_cli.command("train")
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Train on this export-format CSV instead of the database.",
)
def train_command(input_path: Path | None) -> None:
    """Train on the database (or a CSV), evaluate every candidate against the popularity and
    heuristic baselines, save the artifact, record the run, and publish it if it passes the gate."""
    interactions = None
    if input_path is not None:
        try:
            interactions = read_csv(input_path)
        except DataError as exc:
            raise click.ClickException(str(exc)) from exc
        if not (interactions.weights > 0).any():
            # Nothing to learn from is a mistake in the file, not a run for the gate to reject.
            raise click.ClickException(
                f"{input_path}: no interaction with a positive weight to train on "
                f"({len(interactions)} rows read)"
            )
    with _pipeline_lock():
        _run_training(interactions)


@recs_cli.command("generate")
@click.option(
    "--version",
    callback=_not_blank,
    help="Model version [default: the published one; when it was imported (no artifact), the "
    "newest trained version].",
)
@click.option(
    "--k",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Recommendations per student.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV to write [default: instance/recommendations/model_output.csv].",
)
def generate_command(version: str | None, k: int, output: Path | None) -> None:
    """Write a model's top-k challenges per student: user_id,challenge_id,score."""
    run = pipeline.run_with_artifact(version)
    if run is None or not run.artifact_path:
        raise click.ClickException(f"no model artifact for version {version or '(published)'}")
    output = output or _recommendations_dir() / "model_output.csv"
    try:
        count = pipeline.generate_file(run, k, output)
    except UNREADABLE_ARTIFACT as exc:  # OSError also covers the output file
        raise click.ClickException(f"cannot generate from {run.version}: {exc}") from exc
    click.echo(f"Wrote {count} recommendations of version {run.version} to {output}.")


@recs_cli.command("import")
@click.option(
    "--path",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV user_id,challenge_id,score [default: instance/recommendations/model_output.csv].",
)
@click.option(
    "--allow-fewer-students",
    is_flag=True,
    help="Publish even when the file covers fewer than RECS_IMPORT_MIN_STUDENT_SHARE of the "
    "students the published version covers.",
)
def import_command(path: Path | None, allow_fewer_students: bool) -> None:
    """Validate recommendations made by any tool and publish them as a new version. Bad rows are
    reported by reason; above RECS_IMPORT_MAX_BAD_SHARE the whole file is refused (exit 1) and
    nothing changes, and so is a file covering far fewer students than the published version
    (one cut short or still being written) unless --allow-fewer-students is given."""
    path = path or _recommendations_dir() / "model_output.csv"
    with _pipeline_lock():
        report = pipeline.import_file(path, allow_fewer_students)
    click.echo(report.describe())
    if report.refused:
        raise click.ClickException(f"import refused; the published version is unchanged ({path})")
    click.echo(f"Published version {report.version}.")


@recs_cli.command("pipeline")
@click.option(
    "--if-unpublished", is_flag=True, help="Do nothing when a version is already published."
)
def pipeline_command(if_unpublished: bool) -> None:
    """Export, train, generate and import in one process, through the same code as the separate
    commands, with no files in between."""
    if if_unpublished and published_run() is not None:
        click.echo(f"Version {published_run().version} is already published; nothing to do.")
        return
    with _pipeline_lock():
        _run_training()


@recs_cli.command("rollback")
@click.option(
    "--to",
    "to_version",
    callback=_not_blank,
    help="Version to publish again [default: the newest earlier kept version not rolled back "
    "from].",
)
def rollback_command(to_version: str | None) -> None:
    """Publish an earlier version again (its rows are kept for the last RECS_KEEP_VERSIONS)."""
    with _pipeline_lock():
        try:
            previous, current = rollback(to_version)
        except PublishError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Published version {current.version} again"
        + (f" (was {previous.version})." if previous else ".")
    )


@recs_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_command(as_json: bool) -> None:
    """The published version (age, coverage, metrics), any rule serving every student something
    else (an experiment's winner), a run in progress, recent runs, and the next scheduled run."""
    app = current_app._get_current_object()
    summary = {
        **pipeline.status_summary(),
        "scheduler": {
            "enabled": bool(app.config["RECS_SCHEDULER_ENABLED"]),
            "cron": app.config["RECS_RETRAIN_CRON"],
        },
        "progress": scheduler.retrain_progress(app),
    }
    for run in summary["runs"]:
        run["interrupted"] = (
            run["status"] == "running"
            and run["version"] != (summary["progress"]["version"])
            and _left_unfinished(run)
        )
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    click.echo(_describe_status(summary))


def _left_unfinished(run: dict) -> bool:
    """A run listed as running that is not the one in progress: ended without finishing, unless
    it finished between the two reads. Its row is read again: a live run holds the pipeline's
    lock from before its row was written until after it finished, so one still running now and
    not the run in progress has no process left."""
    db.session.expire_all()
    now = db.session.scalar(select(ModelRun).where(ModelRun.version == run["version"]))
    if now is not None and now.status != "running":
        run.update(pipeline.run_summary(now))
        return False
    return now is not None


def _describe_status(summary: dict) -> str:
    published = summary["published"]
    lines = []
    if published is None:
        lines.append("Published: none (students get the heuristic).")
    else:
        origin = ", ".join(dict.fromkeys(filter(None, (published["kind"], published["algorithm"]))))
        quality = (
            f"NDCG@10 {published['ndcg']} vs heuristic {published['heuristic_ndcg']}"
            if published["ndcg"] is not None
            else "no offline evaluation (imported rows)"
        )
        published_at = (published["published_at"] or "-")[:16]
        lines.append(
            f"Published: {published['version']} ({origin}), {published['age_hours']} h old "
            f"({'imported' if published['kind'] == 'import' else 'trained'} "
            f"{published['started_at'][:16]}, published {published_at})"
        )
        lines.append(
            f"Coverage: {published['covered_active_students']} of {published['active_students']} "
            f"students active in the last 30 days have rows ({published['coverage']:.1%}); the "
            f"version was published with rows for {published['users']} students"
        )
        lines.append(f"Quality: {quality}")
        if published["artifact_missing"]:
            lines.append(
                f"Warning: the saved model of {published['version']} is missing "
                f"({published['artifact_path'] or 'no path recorded'}): its rows still serve, "
                "but students who acted since are not re-scored; retrain or roll back"
            )
    rule = summary["serving_rule"]
    if rule is not None:
        stopped = (rule["stopped_at"] or "-")[:16]
        lines.append(
            f"Serving: every student gets the {rule['winner']}, whatever is published "
            f"(experiment '{rule['experiment']}' stopped {stopped} with that winner; the "
            "console's experiment page hands serving back)"
        )
    progress = summary["progress"]
    if progress["running"]:
        lines.append(
            f"Running: {progress['version']} since {progress['started_at']} ({progress['stage']})"
        )
    state = "on" if summary["scheduler"]["enabled"] else "off in the web process"
    lines.append(
        f"Scheduler: {state}, cron '{summary['scheduler']['cron']}', "
        f"next run {progress['next_run_at']}"
    )
    lines.append("Recent runs:")
    for run in summary["runs"]:
        status = "interrupted" if run["interrupted"] else run["status"]
        detail = (
            run["error"]
            or (
                "the process ended before the run finished; the next run cleans it up"
                if run["interrupted"]
                else None
            )
            or (
                f"NDCG@10 {run['ndcg']} vs {run['heuristic_ndcg']}"
                if run["ndcg"] is not None
                else f"{run['rows']} rows"
            )
        )
        lines.append(
            f"  {run['version']}  {run['kind']:<6} {status:<11} "
            f"{run['algorithm'] or '-':<8} {run['started_at'][:19]}  {detail}"
        )
    return "\n".join(lines)


@recs_cli.command("evaluate")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Interactions file (relative paths from the current directory).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "movielens"]),
    default="csv",
    show_default=True,
    help="csv: our export format; movielens: u.data (genres from u.item beside it).",
)
@click.option(
    "--split",
    "split",
    type=click.Choice(["random", "time", "both"]),
    default="both",
    show_default=True,
    help="random: a random share of each student's items held out; time: the latest share held "
    "out (the share is RECS_HOLDOUT_FRACTION, 20%).",
)
@click.option(
    "--k",
    type=click.IntRange(1, 100),
    default=10,
    show_default=True,
    help="The K of precision, recall and NDCG@K.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=42,
    show_default=True,
    help="Seed of the random split.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def evaluate_command(
    input_path: Path, fmt: str, split: str, k: int, seed: int, as_json: bool
) -> None:
    """Offline evaluation of every candidate and baseline on an interactions file, e.g.
    ``--input ../shared/data/ml-100k/u.data --format movielens``. Changes nothing."""
    splits = ["random", "time"] if split == "both" else [split]
    try:
        with _progressbar(len(splits) * (2 + len(CANDIDATES)), "Evaluating") as bar:
            comparisons = pipeline.evaluate_file(
                input_path, fmt, splits, seed=seed, k=k, progress=lambda step: bar.update(1, step)
            )
    except (DataError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in comparisons], indent=2))
        return
    for comparison in comparisons:
        click.echo(format_table(comparison))


@recs_cli.command("scheduler")
def scheduler_command() -> None:
    """Run the retraining (RECS_RETRAIN_CRON) and event purge (RECS_PURGE_CRON) schedules in this
    process until interrupted, for deployments that set RECS_SCHEDULER_ENABLED=False in the web
    workers."""
    scheduler.run_blocking(current_app._get_current_object())


@recs_cli.command("purge-events")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Keep this many days [default: RECS_EVENT_RETENTION_DAYS].",
)
def purge_events_command(days: int | None) -> None:
    """Delete recommendation events older than the retention period, with every event of a slate
    shown before then (metrics count them on its day), and the cards of API slates as old.
    Dismissals ("Not interested") are kept until their challenge has been over for that long."""
    days = days or int(current_app.config["RECS_EVENT_RETENTION_DAYS"])
    # The scheduled purge's lock: never delete events under a training run's export.
    with _pipeline_lock():
        deleted = pipeline.purge_events(days)
    click.echo(f"Deleted {deleted} events older than {days} days or of slates shown before then.")


def init_app(app: Flask) -> None:
    app.cli.add_command(recs_cli)
