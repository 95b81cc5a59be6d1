"""Budgets for failed logins, wrong current passwords and registrations.

Counted in the database (``login_attempts``), so every worker process and host shares them. Each
budget is per window of ``LOGIN_RATE_WINDOW_SECONDS``:

- ``LOGIN_RATE_LIMIT``: failures naming one account from one address. This is what stops someone
  guessing a password.
- ``LOGIN_ACCOUNT_RATE_LIMIT``: failures naming one account from any address, against guessing
  spread over many machines. Past it the account's logins are refused for the window, even with
  the right password: whoever spreads guesses can keep one account waiting that long.
- ``LOGIN_ADDRESS_RATE_LIMIT``: every failure and registration from one address, against one
  machine trying many accounts. A whole campus behind one NAT address shares it, so it is
  set well above the first.

An account is named by a keyed hash of the normalized email typed, whether or not an account has
it: the table never holds what was typed (sometimes a password in the email field), and the
answer is the same for emails with and without an account.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from enum import Enum

from flask import current_app
from sqlalchemy import delete, func, select

from app.extensions import db
from app.models import LoginAttempt, User, utcnow


class Refusal(Enum):
    ACCOUNT = "Too many attempts for this account. Wait a minute and try again."
    ADDRESS = "Too many attempts from your address. Wait a minute and try again."


def account_key(email: str | None) -> str | None:
    """The key an email's failures are counted under; None when nothing was typed."""
    normalized = User.normalize_email(email or "")
    if not normalized:
        return None
    secret = str(current_app.config["SECRET_KEY"]).encode()
    message = b"login-attempt:" + normalized.encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def refusal(address: str, account: str | None) -> Refusal | None:
    """Whether an attempt from ``address`` naming ``account`` is over a budget, and which. Also
    deletes attempts long past every window (the caller commits)."""
    config = current_app.config
    window = timedelta(seconds=config["LOGIN_RATE_WINDOW_SECONDS"])
    now = utcnow()
    db.session.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at < now - 10 * window))
    recent = LoginAttempt.attempted_at >= now - window

    def count(*where) -> int:
        return db.session.scalar(select(func.count(LoginAttempt.id)).where(recent, *where)) or 0

    if account is not None:
        from_here = count(LoginAttempt.account == account, LoginAttempt.address == address)
        if from_here >= config["LOGIN_RATE_LIMIT"]:
            return Refusal.ACCOUNT
        if count(LoginAttempt.account == account) >= config["LOGIN_ACCOUNT_RATE_LIMIT"]:
            return Refusal.ACCOUNT
    if count(LoginAttempt.address == address) >= config["LOGIN_ADDRESS_RATE_LIMIT"]:
        return Refusal.ADDRESS
    return None


def record(address: str, account: str | None) -> None:
    """Counts one failure (or, with no account, one registration) against the budgets; the
    caller commits."""
    db.session.add(LoginAttempt(address=address, account=account))
