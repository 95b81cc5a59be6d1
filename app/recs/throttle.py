"""A per-student request budget for the recommendation endpoints.

Every fragment load writes a slate and its impressions, every event batch writes events and every
API page writes its cards, so a script looping on them fills the database and skews the rates
admins read. Each student gets ``RECS_REQUESTS_PER_MINUTE`` of these requests per clock minute
(0 turns the budget off); past it the answer is 429 with ``Retry-After``, and nothing is written.

The count lives in this process's memory: no query and no write per request, which the fragment's
latency budget could not afford. Under gunicorn each worker keeps its own count, so a student can
reach the budget once per worker; the budget is a brake on runaway clients, not an exact quota.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from functools import wraps

from flask import Flask, current_app, render_template, request
from flask_login import current_user

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# Students remembered at once; past it, counts of earlier minutes are dropped first.
MAX_TRACKED = 100_000


class RequestBudget:
    """Fixed one-minute windows per key: ``spend(key)`` says whether this request is within the
    budget, and if not, how many seconds remain until the next window."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[object, tuple[int, int]] = {}  # key -> (window, requests in it)

    def spend(self, key: object) -> tuple[bool, int, bool]:
        """(allowed, seconds until the budget renews, first refusal in this window)."""
        with self._lock:  # the clock too: a late thread must not reopen a finished minute
            now = self._clock()
            window = int(now // WINDOW_SECONDS)
            retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
            seen_window, count = self._counts.get(key, (window, 0))
            if seen_window != window:
                count = 0
            count += 1
            self._counts[key] = (window, count)
            if len(self._counts) > MAX_TRACKED:
                self._forget_before(window)
        return count <= self.per_minute, retry_after, count == self.per_minute + 1

    def _forget_before(self, window: int) -> None:
        for key in [k for k, (w, _) in self._counts.items() if w < window]:
            del self._counts[key]
        if len(self._counts) > MAX_TRACKED:  # all in this minute: start counting afresh
            self._counts.clear()


def init_app(app: Flask) -> None:
    """A setting that is not a whole number fails at startup with its name, not on each request."""
    value = app.config.get("RECS_REQUESTS_PER_MINUTE")
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"RECS_REQUESTS_PER_MINUTE must be a whole number, 0 or more (0 turns the budget "
            f"off), not {value!r}"
        )


def _budget() -> RequestBudget | None:
    per_minute = int(current_app.config["RECS_REQUESTS_PER_MINUTE"])
    if per_minute <= 0:
        return None
    budget = current_app.extensions.get("recs_request_budget")
    if budget is None or budget.per_minute != per_minute:
        budget = current_app.extensions["recs_request_budget"] = RequestBudget(per_minute)
    return budget


def _refusal(message: str):
    """JSON callers get the usual JSON error, browsers without HTMX an error page. HTMX may swap
    a 429 (base.html): a page of cards it asked for becomes a notice with "Try again" in the
    same place; a form it posted ("Not interested") swaps nothing, so the card stays, and the
    notice goes to the block's status line."""
    from app.errors import is_htmx, render_error, wants_json

    if wants_json() or not is_htmx():
        return current_app.make_response(render_error(429, message))
    if request.method != "GET":
        html = render_template(
            "_partials/request_budget_spent.html", message=message, status_line=True
        )
        response = current_app.make_response((html, 429))
        response.headers["HX-Reswap"] = "none"
        return response
    html = render_template(
        "_partials/request_budget_spent.html",
        message=message,
        retry_url=request.full_path.rstrip("?"),
        # "Show more" had focus and is replaced; a first load must not pull focus on arrival.
        focus="slate" in request.args,
    )
    return current_app.make_response((html, 429))


def budgeted(view):
    """Counts the request against the logged-in student's budget (put it under the login
    guard); over it, a 429 (JSON or HTML, as the route's other errors) before the view runs."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        budget = _budget()
        if budget is not None:
            allowed, retry_after, first_refusal = budget.spend(current_user.id)
            if not allowed:
                if first_refusal:  # one line per student and minute, not one per request
                    log.warning(
                        "request budget spent: user_id=%s made more than %s recommendation "
                        "requests this minute to worker pid=%s; refusing until it renews in %s s",
                        current_user.id,
                        budget.per_minute,
                        os.getpid(),
                        retry_after,
                    )
                response = _refusal(
                    "Too many recommendation requests from your account. "
                    f"Wait {retry_after} seconds and try again."
                )
                response.headers["Retry-After"] = str(retry_after)
                return response
        return view(*args, **kwargs)

    return wrapped
