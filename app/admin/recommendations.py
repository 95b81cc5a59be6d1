"""The recommendations console (admins only): status with retrain and roll back, model versions,
online metrics per source, the QA preview and the A/B experiment. Charts are SVG routes shown
through <img>, each beside a table of the same numbers."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select
from sqlalchemy.orm import joinedload

from app.admin import bp
from app.admin.charts import bar_chart, line_chart, svg_response
from app.auth import role_required
from app.extensions import db
from app.models import (
    SOURCES,
    Challenge,
    Experiment,
    ModelRun,
    Participation,
    RecommendationEvent,
    User,
    utcnow,
)
from app.recs import experiment as experiments
from app.recs import heuristic, metrics, pipeline, publish, scheduler, serving
from app.recs.eligibility import UserHistory, load_user_history
from app.text import clean_line, has_visible
from app.web import contains_pattern, database_id

log = logging.getLogger(__name__)

PREVIEW_ROWS = 20
SEARCH_LIMIT = 20
RECENT_EVENTS = 30
WINNER_CHOICES = ("model", "heuristic", "none")
DEFAULT_ALLOCATION_PERCENT = 50
EXPERIMENTS_SHOWN = 20
# Warn when the published version covers this much less of the active students than the one before.
COVERAGE_DROP_WARNING = 0.05


def _admin_route(rule: str, methods: tuple[str, ...] = ("GET",)):
    def register(view):
        return bp.route(rule, methods=list(methods))(role_required("admin")(view))

    return register


def _app():
    return current_app._get_current_object()


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _refuse(message: str, page, *args):
    """Bad input: say why on the page it came from, with a 400, and leave a line in the log."""
    log.info("admin recommendations: refused %s %s: %s", request.method, request.path, message)
    flash(message, "error")
    return page(*args, status=400)


def _requested_range() -> tuple[metrics.DateRange, str | None]:
    return metrics.range_or_default(
        request.args.get("from"), request.args.get("to"), utcnow().date()
    )


def _range_or_400() -> metrics.DateRange:
    period, error = _requested_range()
    if error:
        log.info("admin chart: bad date range %s: %s", request.query_string[:100], error)
        abort(400, error)
    return period


# --- status, versions, retrain and roll back ------------------------------------------------------

PREFERRED_METRICS = ("ndcg", "recall", "precision", "coverage", "validation_ndcg")
BASELINES = ("popularity", "heuristic")
NOT_METRICS = ("users",)  # a count of evaluated students, shown once per version
VERSIONS_SHOWN = 20


@dataclass(frozen=True)
class Health:
    published: ModelRun | None
    age: timedelta | None
    coverage: metrics.Coverage
    previous_coverage: metrics.Coverage | None
    next_run: datetime | None
    warnings: list[str]


def _health(now: datetime, published: ModelRun | None, kept: list[ModelRun]) -> Health:
    config = current_app.config
    age = published.age(now) if published else None
    coverage = metrics.coverage(published.id if published else None, now)
    # The kept version served last before the current one (after a rollback, the one rolled back
    # from): what it covered is the comparison point.
    previous = max(
        (
            run
            for run in kept
            if published and run.id != published.id and run.published_at is not None
        ),
        key=lambda run: run.published_at,
        default=None,
    )
    previous_coverage = metrics.coverage(previous.id, now) if previous else None
    warnings = []
    if published is None:
        warnings.append("No model is published: every student gets the heuristic.")
    elif age > timedelta(hours=config["RECS_STALE_AFTER_HOURS"]):
        warnings.append(
            f"The published model is stale: {_age_text(age)} old "
            f"(limit {config['RECS_STALE_AFTER_HOURS']} hours)."
        )
    if published is not None and pipeline.artifact_missing(published):
        warnings.append(
            f"The saved model of {published.version} is missing "
            f"({published.artifact_path or 'no path recorded'}): its rows still serve, but "
            "students who acted since are not re-scored. Retrain or roll back."
        )
    last = next((run for run in publish.recent_runs(5) if run.status != "running"), None)
    if last is not None and last.status == "failed":
        warnings.append(
            f"The last run ({last.version}) failed: {last.error or 'no error recorded'}"
        )
    ruling = experiments.ruling_experiment()
    if ruling is not None:
        warnings.append(
            f"Every student gets the {ruling.winner}, not the published model: experiment "
            f"“{ruling.name}” was stopped"
            f"{f' on {ruling.stopped_at:%Y-%m-%d}' if ruling.stopped_at else ''} with the "
            f"{ruling.winner} as its winner. The experiment page hands serving back to the model."
        )
    if previous_coverage and coverage.share < previous_coverage.share - COVERAGE_DROP_WARNING:
        warnings.append(
            f"Coverage fell: {coverage.share:.0%} of active students have model rows, "
            f"against {previous_coverage.share:.0%} with the previous version."
        )
    return Health(
        published, age, coverage, previous_coverage, scheduler.next_run_time(_app()), warnings
    )


def _age_text(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    if hours < 1:
        return "under an hour"
    return f"{hours:.0f} hours" if hours < 72 else f"{hours / 24:.0f} days"


def _rollback_choices() -> list[ModelRun]:
    """Superseded versions whose rows are still kept: what ``publish.rollback`` accepts. Newest
    first, except that versions serving was rolled back from come last (the form preselects the
    first, and a plain ``flask recs rollback`` would not return to those either)."""
    kept = db.session.scalars(
        select(ModelRun)
        .where(ModelRun.status == "superseded", ModelRun.rows_count > 0)
        .order_by(ModelRun.id.desc())
    )
    return sorted(kept, key=lambda run: publish.ROLLED_BACK_AT in (run.report or {}))


@_admin_route("/recommendations")
def recommendations():
    return _dashboard()


def _dashboard(status: int = 200):
    published = publish.published_run()
    kept = _rollback_choices()
    health = _health(utcnow(), published, sorted(kept, key=lambda run: -run.id))
    return render_template(
        "admin/recommendations.html",
        health=health,
        age_text=_age_text(health.age) if health.age is not None else None,
        runs=publish.recent_runs(10),
        rollback_choices=kept,
        progress=_progress(),
        model_name=model_name,
    ), status


def _comparison(run: ModelRun) -> dict:
    """The pipeline's ``{"gate": ..., "comparison": {"k", "best", "models": {name: metrics}}}``;
    imported versions have none."""
    raw = run.metrics or {}
    comparison = raw.get("comparison")
    return comparison if isinstance(comparison, dict) else {}


def offline_metrics(run: ModelRun) -> dict[str, dict[str, float]]:
    """{candidate or baseline: {metric: value}} of a run's offline evaluation."""
    models = _comparison(run).get("models")
    if not isinstance(models, dict):
        return {}
    table = {name: _numbers(values) for name, values in models.items() if isinstance(values, dict)}
    return {name: values for name, values in table.items() if values}


def evaluated_students(run: ModelRun) -> int | None:
    models = _comparison(run).get("models")
    counts = [
        values["users"]
        for values in (models.values() if isinstance(models, dict) else [])
        if isinstance(values, dict) and isinstance(values.get("users"), int)
    ]
    return max(counts) if counts else None


def _numbers(values: dict) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and key not in NOT_METRICS
    }


def metric_columns(tables: list[dict[str, dict[str, float]]]) -> list[str]:
    seen = {metric for table in tables for values in table.values() for metric in values}
    preferred = [m for m in seen if m.split("@")[0] in PREFERRED_METRICS]
    preferred.sort(key=lambda m: (PREFERRED_METRICS.index(m.split("@")[0]), m))
    return preferred + sorted(seen - set(preferred))


def model_name(run: ModelRun) -> str | None:
    """The evaluation row of the version's own model (the others are candidates or baselines)."""
    gate = (run.metrics or {}).get("gate")
    chosen = gate.get("model") if isinstance(gate, dict) else None
    return chosen or _comparison(run).get("best") or run.algorithm


SERVED_STATUSES = ("published", "superseded")


def _versions() -> list[ModelRun]:
    return list(
        reversed(
            db.session.scalars(
                select(ModelRun)
                .where(ModelRun.status.in_(SERVED_STATUSES))
                .order_by(ModelRun.id.desc())
                .limit(VERSIONS_SHOWN)
            ).all()
        )
    )


@_admin_route("/recommendations/versions")
def recommendations_versions():
    versions = _versions()
    tables = {run.id: offline_metrics(run) for run in versions}
    return render_template(
        "admin/recommendations_versions.html",
        versions=list(reversed(versions)),
        tables=tables,
        columns=metric_columns(list(tables.values())),
        model_names={run.id: model_name(run) for run in versions},
        evaluated={run.id: evaluated_students(run) for run in versions},
        baselines=BASELINES,
        published=publish.published_run(),
        versions_total=db.session.scalar(
            select(func.count(ModelRun.id)).where(ModelRun.status.in_(SERVED_STATUSES))
        ),
    )


def _versions_chart() -> bytes:
    versions = _versions()
    series: dict[str, list[float | None]] = {}
    for index, run in enumerate(versions):
        table, k = offline_metrics(run), _comparison(run).get("k", 10)
        rows = {"model": table.get(model_name(run) or "", {})}
        rows.update({baseline: table.get(baseline, {}) for baseline in BASELINES})
        for who, values in rows.items():
            for metric in ("ndcg", "recall"):
                line = series.setdefault(f"{who} {metric}@{k}", [None] * len(versions))
                line[index] = values.get(f"{metric}@{k}")
    series = {name: values for name, values in series.items() if any(v is not None for v in values)}
    return line_chart(
        "Offline NDCG@10 and recall@10 per version", [run.version for run in versions], series
    )


def _progress() -> dict:
    progress = scheduler.retrain_progress(_app())
    # Between "Retrain now" and the run's first write only the lock shows that it started.
    progress["starting"] = not progress["running"] and scheduler.is_locked(_app())
    return progress


@_admin_route("/recommendations/retrain", methods=("POST",))
def recommendations_retrain():
    if scheduler.trigger_retrain(_app()):
        log.info("admin started retraining")
        flash("Retraining started. This page follows its progress.", "success")
    else:
        flash(_busy("retrain"), "warning")
    return redirect(url_for("admin.recommendations"), 303)


def _busy(action: str) -> str:
    """The refusal of an action that needs the pipeline lock, naming what holds it: a rollback or
    the event purge holds it as a training run does."""
    holder = scheduler.lock_holder(_app())
    return f"{holder[0].upper()}{holder[1:]} is in progress: {action} once it has finished."


@_admin_route("/recommendations/progress")
def recommendations_progress():
    """The HTMX-polled progress block; reloads the whole page once a run it was following ends."""
    progress = _progress()
    response = current_app.make_response(
        render_template("admin/recommendations_progress.html", progress=progress)
    )
    following = request.args.get("following") or ""
    if following and not (progress["running"] or progress["starting"]):
        # The page reloads with the outcome of the run it was following as its first message,
        # so it is read out; a job that was no run (a rollback, the purge) has none to tell.
        result = progress.get("last_result")
        if result and result.get("version") == following:
            _flash_outcome(result)
        response.headers["HX-Refresh"] = "true"
    return response


def _flash_outcome(result: dict | None) -> None:
    if not result:
        return
    status = result.get("status")
    said = f"Training run {result.get('version')} ended: {status}"
    if result.get("error"):
        said += f" ({result['error']})"
    flash(f"{said}.", {"published": "success", "failed": "error"}.get(status, "warning"))


def _published_since_page() -> str | None:
    """The version published since the page with the form was drawn (a run finished meanwhile),
    if any: rolling back would take down a version the admin never saw. A form without the
    field (a script) rolls back from whatever is published."""
    shown = request.form.get("published")
    current = publish.published_run()
    version = current.version if current else ""
    if shown is None or shown.strip() == version:
        return None
    return version or "none"


@_admin_route("/recommendations/rollback", methods=("POST",))
def recommendations_rollback():
    version = (request.form.get("version") or "").strip()[:64]
    if not version:
        return _refuse("Choose the version to roll back to.", _dashboard)
    # The pipeline's lock, as `flask recs rollback` takes it: a run publishing meanwhile would
    # silently undo the rollback a moment after the page said it was done.
    # The refusals are drawn after the lock is released: drawn while it is held, the dashboard
    # would report a run starting.
    refusal = None
    with scheduler.single_runner(current_app._get_current_object()) as acquired:
        if not acquired:
            refusal = _busy("roll back")
        elif (since := _published_since_page()) is not None:
            refusal = (
                f"Version {since} was published after this page was loaded, and nothing was "
                "rolled back: look at it before rolling back."
            )
        else:
            try:
                previous, target = publish.rollback(version)
            except publish.PublishError as exc:
                refusal = f"Cannot roll back to {version}: {exc}."
    if refusal is not None:
        return _refuse(refusal, _dashboard)
    log.info(
        "admin rolled recommendations back from %s to %s",
        previous.version if previous else None,
        target.version,
    )
    flash(
        f"Version {target.version} is published again"
        f"{f' (was {previous.version})' if previous else ''}.",
        "success",
    )
    return redirect(url_for("admin.recommendations"), 303)


# --- online metrics -------------------------------------------------------------------------------


@_admin_route("/recommendations/online")
def recommendations_online():
    period, error = _requested_range()
    if error:
        return _refuse(error, _online_page, period)
    return _online_page(period)


def _online_page(period: metrics.DateRange, status: int = 200):
    daily = metrics.daily_by_source(period)
    totals = metrics.totals_by_source(daily)
    # Model and heuristic always; the other sources once they have counts in the range.
    shown = [s for s in SOURCES if s in ("model", "heuristic") or totals[s] != metrics.Counts()]
    return render_template(
        "admin/recommendations_online.html",
        period=period,
        daily=daily,
        totals=totals,
        sources=shown,
        positions=metrics.by_position(period),
        range_args=_range_args(period),
        range_refused=status == 400,
    ), status


def _range_args(period: metrics.DateRange) -> dict[str, str]:
    return {"from": period.start.isoformat(), "to": period.end.isoformat()}


def _daily_rate_chart(title: str, rate) -> bytes:
    period = _range_or_400()
    daily = metrics.daily_by_source(period)
    series = {
        source: [rate(days[day]) if days[day].impressions else None for day in period.days]
        for source, days in daily.items()
        if any(counts.impressions for counts in days.values())
    }
    return line_chart(title, [day.isoformat() for day in period.days], series, percent=True)


def _positions_chart() -> bytes:
    positions = metrics.by_position(_range_or_400())
    return bar_chart(
        "Position bias: rates by slate position (1 = first card)",
        [str(position + 1) for position in positions],
        {
            # No impressions at a position: no bar, rather than a 0% one.
            "CTR": [counts.ctr if counts.impressions else None for counts in positions.values()],
            "Join rate": [
                counts.join_rate if counts.impressions else None for counts in positions.values()
            ],
        },
        percent=True,
    )


CHARTS = {
    "versions": _versions_chart,
    "daily-ctr": lambda: _daily_rate_chart(
        "Click-through rate per source and day", lambda c: c.ctr
    ),
    "daily-join-rate": lambda: _daily_rate_chart(
        "Join rate per source and day", lambda c: c.join_rate
    ),
    "positions": _positions_chart,
}


@_admin_route("/recommendations/charts/<name>.svg")
def recommendations_chart(name: str):
    build = CHARTS.get(name)
    if build is None:
        abort(404)
    return svg_response(build())


# --- QA preview -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewRow:
    rank: int
    challenge: Challenge
    score: float
    reason: str
    flags: list[str] = field(default_factory=list)


def _find_students(query: str) -> list[User]:
    pattern = contains_pattern(query)
    return list(
        db.session.scalars(
            select(User)
            .where(
                User.role == "student",
                or_(
                    User.email.ilike(pattern, escape="\\"),
                    User.display_name.ilike(pattern, escape="\\"),
                ),
            )
            # An exact e-mail first, so typing a full address lands on that student.
            .order_by(
                (User.email == User.normalize_email(query)).desc(),
                func.lower(User.display_name),
                User.id,
            )
            # One more than shown, to tell the admin when the list is not all of them.
            .limit(SEARCH_LIMIT + 1)
        )
    )


def _chosen_student(matches: list[User], query: str) -> tuple[User | None, str | None]:
    raw_id = (request.args.get("user_id") or "").strip()
    if raw_id:
        student_id = database_id(raw_id)
        student = db.session.get(User, student_id) if student_id else None
        if student is None or not student.is_student:
            return None, "No student with that id."
        return student, None
    if matches and (len(matches) == 1 or matches[0].email == User.normalize_email(query)):
        return matches[0], None
    return None, None


@_admin_route("/recommendations/preview")
def recommendations_preview():
    query = clean_line(request.args.get("q") or "")[:100]
    matches = _find_students(query) if query else []
    student, error = _chosen_student(matches, query)
    if error:
        return _refuse(error, _preview_page, query, matches, None)
    return _preview_page(query, matches, student)


def _preview_page(query: str, matches: list[User], student: User | None, status: int = 200):
    context = _preview_of(student) if student is not None else {}
    return render_template(
        "admin/recommendations_preview.html",
        q=query,
        matches=matches[:SEARCH_LIMIT],
        more_matches=len(matches) > SEARCH_LIMIT,
        search_limit=SEARCH_LIMIT,
        student=student,
        **context,
    ), status


def _preview_of(student: User) -> dict:
    """Everything the preview shows for one student; reads only, so previewing records nothing."""
    now = utcnow()
    history = load_user_history(student.id)
    published = serving.published_rows(student.id)
    served = serving.get_recommendations(student, now=now)
    published_run = publish.published_run()
    return {
        "model_rows": _model_rows(published[:PREVIEW_ROWS], history, now),
        "model_rows_total": len(published),
        "published_version": published_run.version if published_run else None,
        "trained_through": published_run.trained_through if published_run else None,
        "heuristic_rows": [
            PreviewRow(rank, s.challenge, s.score, s.reason)
            for rank, s in enumerate(
                heuristic.recommend_heuristic(student.id, PREVIEW_ROWS, now=now, history=history), 1
            )
        ],
        "served": served,
        "arm": served.arm,
        "experiment_running": experiments.running_experiment() is not None,
        "participations": _participations(student.id),
        "events": _recent_events(student.id),
    }


def _model_rows(published, history: UserHistory, now: datetime) -> list[PreviewRow]:
    return [
        PreviewRow(
            rank,
            challenge,
            float(score),
            # The category phrase serving falls back to; the "served" column shows the final reason.
            serving.model_reason(challenge, history),
            _row_flags(challenge, history, now),
        )
        for rank, (score, _version, challenge) in enumerate(published, 1)
    ]


def _row_flags(challenge: Challenge, history: UserHistory, now: datetime) -> list[str]:
    """What makes a published row unservable; serving filters these, the preview shows them."""
    flags = [status for status in ("draft", "archived") if challenge.status == status]
    if challenge.has_ended(now):
        flags.append("ended")
    if challenge.id in history.joined_ids:
        flags.append("joined")
    if challenge.id in history.dismissed_ids:
        flags.append("dismissed")
    return flags


def _participations(user_id: int) -> list[Participation]:
    return list(
        db.session.scalars(
            select(Participation)
            .where(Participation.user_id == user_id)
            .options(joinedload(Participation.challenge))
            .order_by(Participation.joined_at.desc())
        )
    )


def _recent_events(user_id: int) -> list[tuple[RecommendationEvent, str]]:
    return [
        (event, title)
        for event, title in db.session.execute(
            select(RecommendationEvent, Challenge.title)
            .join(Challenge, Challenge.id == RecommendationEvent.challenge_id)
            .where(RecommendationEvent.user_id == user_id)
            .order_by(RecommendationEvent.created_at.desc(), RecommendationEvent.id.desc())
            .limit(RECENT_EVENTS)
        )
    ]


# --- A/B experiment -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmComparison:
    """Per-arm counts with the treatment-vs-control z-tests for CTR and join rate."""

    arms: dict[str, experiments.ArmStats]
    ctr_test: tuple[float, float]
    join_test: tuple[float, float]


def _compare_arms(experiment: Experiment) -> ArmComparison:
    stats = experiments.arm_stats(experiment)
    treatment, control = stats[experiment.treatment_arm], stats[experiment.control_arm]
    return ArmComparison(
        stats,
        experiments.two_proportion_test(treatment.ctr, control.ctr),
        experiments.two_proportion_test(treatment.join_rate, control.join_rate),
    )


@_admin_route("/recommendations/experiment")
def recommendations_experiment():
    return _experiment_page()


def _experiment_page(refused: str | None = None, status: int = 200):
    """``refused``: the start form's field a refusal names; the form comes back as typed."""
    latest = experiments.latest_experiment()
    past = db.session.scalars(
        select(Experiment).order_by(Experiment.id.desc()).limit(EXPERIMENTS_SHOWN)
    ).all()
    return render_template(
        "admin/recommendations_experiment.html",
        experiment=latest,
        comparison=_compare_arms(latest) if latest is not None else None,
        past=past,
        experiments_total=db.session.scalar(select(func.count(Experiment.id))),
        winners=WINNER_CHOICES,
        default_allocation=DEFAULT_ALLOCATION_PERCENT,
        refused=refused,
    ), status


@_admin_route("/recommendations/experiment/start", methods=("POST",))
def recommendations_experiment_start():
    raw = (request.form.get("allocation_percent") or "").strip()
    # [0-9]: \d would take other scripts' digits ("５０"), which no form sends.
    if not re.fullmatch(r"[0-9]{1,3}", raw) or not 0 <= int(raw) <= 100:
        return _refuse(
            "Allocation must be a whole number of percent from 0 to 100.",
            _experiment_page,
            "allocation_percent",
        )
    # Cleaned as every name people type: no bidirectional override reorders the page around it.
    name = clean_line(request.form.get("name") or "")
    if name and not has_visible(name):
        return _refuse("Name: write at least one visible character.", _experiment_page, "name")
    try:
        started = experiments.start_experiment(name, int(raw))
    except ValueError as exc:
        return _refuse(_sentence(exc), _experiment_page)
    log.info("experiment %s started: %s%% model", started.id, started.allocation_percent)
    flash(
        f"Experiment “{started.name}” started: "
        f"{started.allocation_percent}% of students get the model.",
        "success",
    )
    return redirect(url_for("admin.recommendations_experiment"), 303)


def _shown_another(experiment: Experiment) -> bool:
    """Whether the form came from a page that showed another experiment than ``experiment``
    (loaded before that one was stopped and this one began): acting on it would change an
    experiment the admin never saw. A form without the field (a script) acts on the current one."""
    shown = request.form.get("experiment")
    return shown is not None and shown.strip() != str(experiment.id)


@_admin_route("/recommendations/experiment/stop", methods=("POST",))
def recommendations_experiment_stop():
    winner = request.form.get("winner") or ""
    if winner not in WINNER_CHOICES:
        return _refuse("Choose the winner: model, heuristic or none.", _experiment_page)
    running = experiments.running_experiment()
    if running is None:
        return _refuse("No experiment is running.", _experiment_page)
    if _shown_another(running):
        return _refuse(
            f"Experiment “{running.name}” started after this page was loaded, and nothing was "
            "stopped: look at its figures below before stopping it.",
            _experiment_page,
        )
    try:
        experiments.stop_experiment(running, None if winner == "none" else winner)
    except ValueError as exc:
        return _refuse(_sentence(exc), _experiment_page)
    log.info("experiment %s stopped, winner=%s", running.id, winner)
    outcome = (
        "everyone now gets the default" if winner == "none" else f"everyone now gets the {winner}"
    )
    flash(f"Experiment stopped: {outcome}.", "success")
    return redirect(url_for("admin.recommendations_experiment"), 303)


@_admin_route("/recommendations/experiment/end-winner", methods=("POST",))
def recommendations_experiment_end_winner():
    """Hand serving back to the default after a stopped experiment's winner served everyone."""
    current = experiments.ruling_experiment()
    if current is None:
        return _refuse("No experiment's winner is being served to everyone.", _experiment_page)
    if _shown_another(current):
        return _refuse(
            f"The winner of experiment “{current.name}”, stopped after this page was loaded, is "
            "served to everyone now, and nothing was changed: look at it below first.",
            _experiment_page,
        )
    winner = current.winner
    experiments.end_winner(current)
    log.info("experiment %s: its winner %s no longer served to everyone", current.id, winner)
    flash(
        f"The {winner} is no longer served to everyone: students get the model where it has "
        "rows for them, else the heuristic.",
        "success",
    )
    return redirect(url_for("admin.recommendations_experiment"), 303)
