"""Error pages (HTML for browsers, JSON for API and HTMX callers) and the CSRF failure answer."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Flask, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood.",
    401: "Please log in first.",
    403: "You do not have access to this page.",
    404: "We could not find that page.",
    405: "That action is not allowed here.",
    409: "That conflicts with what is already stored.",
    413: "The request is too large.",
    429: "Too many requests. Wait a moment and try again.",
    500: "Something went wrong on our side. It has been logged.",
}
# Page titles: short, and distinct from one error to the next.
TITLES = {
    400: "Bad request",
    401: "Log in first",
    403: "No access",
    404: "Page not found",
    405: "Not allowed here",
    409: "Conflict",
    413: "Too large",
    429: "Too many requests",
    500: "Server error",
    503: "Try again soon",
}


UNAVAILABLE = "The database is not answering just now. Try again in a moment."


def _unreachable(exc: Exception) -> bool:
    """The database not answering (stopped, restarting, a lost connection, busy or locked, out of
    connections) is not a bug of the page: 503, to try again, as /healthz says. A schema the code
    does not match (no such table: an upgrade without ``flask db upgrade``) is a 500."""
    from sqlalchemy import exc as sa

    if isinstance(exc, sa.TimeoutError):  # no connection free in the pool in time
        return True
    if not isinstance(exc, sa.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    return isinstance(exc, sa.OperationalError) and "no such " not in str(exc.orig)


def _bare_error(status: int, message: str | None):
    """An error page that needs nothing but this module: no layout, no account, no database."""
    from markupsafe import escape

    message = message or MESSAGES.get(status, "Error")
    if wants_json():
        return json_error(status, message)
    title = f"{TITLES.get(status, 'Error')} ({status})"
    from app.auth.routes import safe_next

    # A page asked for with GET can simply be asked for again once the database answers.
    here = safe_next(request.full_path.rstrip("?")) if request.method == "GET" else None
    again = f'<a href="{escape(here)}">Try again</a> · ' if here else ""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · Campus Challenges</title></head>"
        f"<body><main><h1>{escape(title)}</h1><p>{escape(message)}</p>"
        f'<p>{again}<a href="/">Back to Campus Challenges</a></p></main></body></html>'
    )
    return html, status


def wants_json() -> bool:
    return (
        request.path.startswith(("/api/", "/recommendations/"))
        or request.is_json
        or request.accept_mimetypes.best == "application/json"
    )


def json_error(status: int, message: str | None = None):
    """The endpoints' own refusal shape: a summary and the list of problems."""
    message = message or MESSAGES.get(status, "Error")
    return jsonify(error=message, status=status, problems=[message]), status


def render_error(status: int, message: str | None = None):
    message = message or MESSAGES.get(status, "Error")
    if wants_json():
        # The same shape as the endpoints' own refusals: a summary and the list of problems.
        return json_error(status, message)
    title = f"{TITLES.get(status, 'Error')} ({status})"
    return render_template("errors/error.html", status=status, message=message, title=title), status


CSRF_MESSAGE = (
    "Security token missing or invalid: the form had expired or was not sent from this site. "
    "Reload the page and try again."
)
# Anonymous visitors may post these forms; any other form needs a login.
ANONYMOUS_FORMS = frozenset({"auth.login", "auth.register"})


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def page_path() -> str | None:
    """The same-site path of the page the request came from: for an HTMX request the page it was
    made from, otherwise the referring page."""
    from app.auth.routes import safe_next

    source = request.headers.get("HX-Current-URL") or request.referrer
    if not source:
        return None
    try:
        parts = urlsplit(source)
    except ValueError:  # e.g. an unclosed "[" where an IPv6 host would be
        return None
    if parts.netloc and parts.netloc != request.host:
        return None
    path = safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))
    # Only a page: the address of a form's answer (a POST-only URL) is no place to come back to.
    try:
        current_app.url_map.bind(request.host).match(parts.path, method="GET")
    except RequestRedirect:
        pass
    except HTTPException:
        return None
    return path


def login_needed():
    """A logged-out request to a page that needs a login: HTMX is sent to the login page (with
    the page it was on to come back to), JSON callers get 401, a browser is redirected."""
    if is_htmx():
        # JSON, not a page: HTMX follows the header and drops the body, and a rendered page
        # would use up any message waiting to be shown.
        login = url_for("auth.login", next=page_path())
        return _with_header(json_error(401), "HX-Redirect", login)
    if wants_json():
        return json_error(401)
    return None


def _with_header(answer, name: str, value: str):
    response = current_app.make_response(answer)
    response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        from flask_login import current_user

        log.warning(
            "CSRF failure path=%r address=%s logged_in=%s reason=%s",
            request.path,
            request.remote_addr,
            current_user.is_authenticated,
            exc.description,
        )
        if not current_user.is_authenticated and request.endpoint == "auth.logout":
            # Logging out of a session that already ended: what was asked for is done.
            flash("You are logged out.", "info")
            return redirect(url_for("auth.login"), 303)
        if not current_user.is_authenticated and request.endpoint not in ANONYMOUS_FORMS:
            # The session ended (expired, or logged out in another tab) while the page was
            # open: what the form was for needs a login anyway, so say that and offer one.
            answer = login_needed()
            if answer is not None:
                return answer
            flash("Your session has ended. Log in and try again.", "info")
            return redirect(url_for("auth.login", next=page_path()), 303)
        if is_htmx():
            # A page open since before the session changed: reload it with a fresh token.
            flash("The page had expired, so it was reloaded. Try again.", "info")
            # JSON, not a page: rendering one would use up the message meant for after the reload.
            return _with_header(json_error(400, CSRF_MESSAGE), "HX-Refresh", "true")
        return render_error(400, CSRF_MESSAGE)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if exc.code and exc.code >= 500:
            log.error("HTTP %s on %r", exc.code, request.path)
        description = (
            exc.description
            if exc.code not in MESSAGES or exc.description != type(exc).description
            else None
        )
        return render_error(exc.code or 500, description)

    @app.errorhandler(Exception)
    def _unhandled(exc: Exception):
        from app.extensions import db

        log.exception("unhandled error on %s %r", request.method, request.path)
        status, message = (503, UNAVAILABLE) if _unreachable(exc) else (500, None)
        try:
            db.session.rollback()
        except Exception:  # the connection is gone with the database
            log.warning("rolling back after the error failed too", exc_info=True)
        try:
            response = render_error(status, message)
        except Exception:
            # The page's layout reads the logged-in account, which needs the database too.
            log.warning("the error page could not be drawn; answering in plain HTML", exc_info=True)
            response = _bare_error(status, message)
        if status == 503:
            response = current_app.make_response(response)
            response.headers["Retry-After"] = "30"
        return response
