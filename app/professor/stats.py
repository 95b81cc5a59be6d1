"""A professor's recommendation stats: impressions, clicks and joins that recommendations brought to
their own challenges. Professors only: admins read the same numbers per source in the console."""

from __future__ import annotations

import logging

from flask import abort, flash, render_template, request
from flask_login import current_user

from app.admin.charts import bar_chart, svg_response
from app.auth import role_required
from app.models import utcnow
from app.professor import bp
from app.recs import metrics

log = logging.getLogger(__name__)

CHART_MAX_CHALLENGES = 12


def _requested_range() -> tuple[metrics.DateRange, str | None]:
    period, error = metrics.range_or_default(
        request.args.get("from"), request.args.get("to"), utcnow().date()
    )
    if error:
        log.info(
            "professor stats: bad date range from=%r to=%r: %s",
            request.args.get("from"),
            request.args.get("to"),
            error,
        )
    return period, error


@bp.route("/stats")
@role_required("professor")
def stats():
    period, error = _requested_range()
    if error:
        flash(error, "error")
    rows = metrics.challenge_counts(current_user.id, period)
    total = sum((row.counts for row in rows), metrics.Counts())
    return render_template(
        "professor/stats.html", rows=rows, total=total, period=period, range_refused=bool(error)
    ), 400 if error else 200


@bp.route("/stats/chart.svg")
@role_required("professor")
def stats_chart():
    period, error = _requested_range()
    if error:
        abort(400, error)
    rows = sorted(
        (
            row
            for row in metrics.challenge_counts(current_user.id, period)
            if row.counts.impressions
        ),
        key=lambda row: (-row.counts.impressions, row.challenge_id),
    )[:CHART_MAX_CHALLENGES]
    svg = bar_chart(
        "From recommendations, busiest challenges",
        [row.title for row in rows],
        {
            "Impressions": [row.counts.impressions for row in rows],
            "Clicks": [row.counts.clicks for row in rows],
            "Joins": [row.counts.joins for row in rows],
        },
    )
    return svg_response(svg)
