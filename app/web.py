"""App-wide web concerns: the home redirect, /healthz, security headers and template globals."""

from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, g, jsonify, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import text
from werkzeug.routing import IntegerConverter

from app.extensions import db
from app.text import counted, paragraphs

log = logging.getLogger(__name__)
bp = Blueprint("web", __name__)


@bp.route("/")
def index():
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    from app.auth.routes import home_for

    return redirect(home_for(current_user))


@bp.route("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
        database = {"ok": True, "backend": db.engine.dialect.name}
    except Exception as exc:  # the point of the endpoint is to report, not to raise
        log.error("health check: database unreachable: %s", exc)
        database = {"ok": False, "backend": db.engine.dialect.name, "error": type(exc).__name__}
    body = {
        "status": "ok" if database["ok"] else "degraded",
        "app": {"ok": True},
        "database": database,
    }
    return jsonify(body), 200 if database["ok"] else 503


MAX_DATABASE_ID = 2**31 - 1


class BoundedIntConverter(IntegerConverter):
    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", MAX_DATABASE_ID)
        super().__init__(url_map, *args, **kwargs)


def database_id(raw: str | None) -> int | None:
    """A positive id from a query string, or None: ASCII digits only (``"²".isdigit()`` is true)
    and small enough for every backend's integer column."""
    raw = (raw or "").strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        return None
    value = int(raw)
    return value if 0 < value <= MAX_DATABASE_ID else None


def is_head() -> bool:
    """A HEAD request (a link checker, a monitor) asks what a GET would answer and shows nobody
    the body: the views that record what a student was shown record nothing for it."""
    return request.method == "HEAD"


def page_arg() -> int:
    """The list page asked for in the query string: 1 for anything that is not a number, at most
    10,000 so an offset stays cheap; a list clamps it to its own last page."""
    try:
        return max(1, min(int(request.args.get("page", 1)), 10_000))
    except ValueError:
        return 1


def contains_pattern(text: str) -> str:
    """A LIKE pattern (escape character ``\\``) matching ``text`` anywhere, with its own ``%``
    and ``_`` searched literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def day(value: datetime) -> str:
    """A date as the pages show it, "06 May 2031": the year always with four digits, which
    strftime's ``%Y`` drops for a year before 1000 on Linux (year 1 read "01 Jan 1")."""
    return f"{value.day:02d} {value:%b} {value.year:04d}"


def day_time(value: datetime) -> str:
    """``day`` with the time to the minute, "06 May 2031 07:08"."""
    return f"{day(value)} {value:%H:%M}"


def _content_security_policy() -> str:
    parts = urlsplit(current_app.config["HTMX_URL"])
    # The pinned file itself, not its whole host: any other package on a public CDN could run.
    cdn = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else ""
    script_src = " ".join(filter(None, ["'self'", cdn]))
    return (
        "default-src 'self'; "
        f"script-src {script_src}; "
        "style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
    )


def _security_headers(response):
    response.headers.setdefault("Content-Security-Policy", _content_security_policy())
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    # A logged-in page is that person's (their challenges, a participants list with emails, the
    # console): no shared or browser cache keeps it. Read only if the request loaded the account
    # already: loading it here could fail again on an error page the database caused.
    user = g.get("_login_user")
    if user is not None and user.is_authenticated and request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "private, no-store")
    return response


def _refuse_nul_characters() -> None:
    """No field needs a NUL character, and PostgreSQL cannot store or even compare text holding
    one (a 500 there, silently stored on SQLite): refuse it as bad input before any query runs."""
    # Only form bodies: other bodies (JSON) are validated by their endpoint, and reading them here
    # would pre-empt that endpoint's own answer to an oversized body.
    forms = request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")
    for fields in (request.args, request.form) if forms else (request.args,):
        if any("\x00" in key or any("\x00" in v for v in values) for key, values in fields.lists()):
            log.warning(
                "refused a NUL character in %s %r address=%s",  # %r: a path may hold a newline
                request.method,
                request.path[:200],
                request.remote_addr,
            )
            abort(400, "Text fields may not contain NUL characters.")


def _refuse_file_uploads() -> None:
    """No form takes a file. A multipart part with a filename would reach the form as a file object
    where text is expected (and fail inside a validator): refuse it as bad input instead."""
    if request.mimetype == "multipart/form-data" and request.files:
        log.warning(
            "refused a file upload in %s %r address=%s",  # %r: a path may hold a newline
            request.method,
            request.path,
            request.remote_addr,
        )
        abort(400, "This form does not take file uploads.")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(_refuse_nul_characters)
    app.before_request(_refuse_file_uploads)
    app.after_request(_security_headers)
    app.add_template_filter(paragraphs)
    app.add_template_filter(day)
    app.add_template_filter(day_time)
    app.add_template_filter(counted)

    @app.context_processor
    def _globals():
        return {
            "htmx_url": current_app.config["HTMX_URL"],
            "htmx_sri": current_app.config["HTMX_SRI"],
            "registration_enabled": current_app.config["REGISTRATION_ENABLED"],
        }
