"""Budgets for failed logins, wrong current passwords and registrations.

Counted in the database (``login_attempts``), so every worker process and host shares them. Each
budget is per window of ``LOGIN_RATE_WINDOW_SECONDS``, and an address is an IPv4 address or an
IPv6 /64 network (``routes._client_address``):

- ``LOGIN_RATE_LIMIT``: failures naming one account from one address.
- ``LOGIN_ACCOUNT_RATE_LIMIT``: failures naming one account from any address. This is the real
  cap on guessing one password: whoever holds many addresses gets this many guesses per window.
  The price is that guessing also keeps the account's owner out: past it, the account's logins
  are refused, even with the right password, for as long as the guessing goes on. The password
  change page, used by someone already logged in, does not count this one.
- ``LOGIN_ADDRESS_RATE_LIMIT``: every failure from one address, against one machine trying
  many accounts. A whole campus behind one NAT address shares it, so it is set well above the
  first.
- ``REGISTRATION_RATE_LIMIT``: registrations from one address.

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


def refusal(address: str, account: str | None, across_addresses: bool = True) -> Refusal | None:
    """Whether an attempt from ``address`` is over a budget, and which: a login or password
    change naming ``account``, or with ``account`` None a registration. Also deletes attempts
    long past every window, committed at once: on SQLite the delete takes the database's write
    lock, which must not be held through the password check (a hash of ~100 ms) that follows."""
    config = current_app.config
    window = timedelta(seconds=config["LOGIN_RATE_WINDOW_SECONDS"])
    now = utcnow()
    db.session.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at < now - 10 * window))
    db.session.commit()
    recent = LoginAttempt.attempted_at >= now - window

    def count(*where) -> int:
        return db.session.scalar(select(func.count(LoginAttempt.id)).where(recent, *where)) or 0

    from_here = LoginAttempt.address == address
    if account is None:
        registrations = count(from_here, LoginAttempt.account.is_(None))
        return Refusal.ADDRESS if registrations >= config["REGISTRATION_RATE_LIMIT"] else None
    if count(LoginAttempt.account == account, from_here) >= config["LOGIN_RATE_LIMIT"]:
        return Refusal.ACCOUNT
    if across_addresses and (
        count(LoginAttempt.account == account) >= config["LOGIN_ACCOUNT_RATE_LIMIT"]
    ):
        return Refusal.ACCOUNT
    if count(from_here, LoginAttempt.account.is_not(None)) >= config["LOGIN_ADDRESS_RATE_LIMIT"]:
        return Refusal.ADDRESS
    return None


def record(address: str, account: str | None) -> None:
    """Counts one failure naming ``account`` (with None, one registration) against the budgets;
    the caller commits."""
    db.session.add(LoginAttempt(address=address, account=account))
