"""Error pages (HTML for browsers, JSON for API and HTMX callers) and the CSRF failure answer."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

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


def wants_json() -> bool:
    return (
        request.path.startswith(("/api/", "/recommendations/"))
        or request.is_json
        or request.accept_mimetypes.best == "application/json"
    )


def render_error(status: int, message: str | None = None):
    message = message or MESSAGES.get(status, "Error")
    if wants_json():
        # The same shape as the endpoints' own refusals: a summary and the list of problems.
        return jsonify(error=message, status=status, problems=[message]), status
    return render_template("errors/error.html", status=status, message=message), status


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        log.warning("CSRF failure path=%s address=%s reason=%s", request.path, request.remote_addr, exc.description)
        return render_error(400, f"Security token missing or invalid ({exc.description}). Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if exc.code and exc.code >= 500:
            log.error("HTTP %s on %s", exc.code, request.path)
        description = exc.description if exc.code not in MESSAGES or exc.description != type(exc).description else None
        return render_error(exc.code or 500, description)

    @app.errorhandler(Exception)
    def _unhandled(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        from app.extensions import db

        db.session.rollback()
        return render_error(500)
