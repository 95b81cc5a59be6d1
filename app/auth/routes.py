"""Login, logout, registration and password change."""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from app.auth import attempts, bp
from app.auth.attempts import Refusal
from app.auth.forms import LoginForm, PasswordChangeForm, RegisterForm
from app.extensions import db
from app.models import Role, User

log = logging.getLogger(__name__)
# A hash of the same kind as the accounts' (same method and work), checked when no account has the
# email, so both answers take as long.
_UNKNOWN_ACCOUNT_HASH = generate_password_hash("no account has this password")


def home_for(user: User) -> str:
    if user.is_admin:
        return url_for("admin.index")
    if user.is_professor:
        return url_for("professor.challenges")
    return url_for("challenges.index")


def safe_next(target: str | None) -> str | None:
    """Only same-site relative paths; anything with a scheme or host is an open redirect, and a
    control character (a newline would split the Location header) is never part of a path."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def next_for(user: User, target: str | None) -> str | None:
    """``safe_next``, and only a page this account may open: a student sent to log in from a
    professor's link would otherwise land on "forbidden" right after logging in."""
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import RequestRedirect

    target = safe_next(target)
    if target is None:
        return None
    adapter = current_app.create_url_adapter(request)
    path = urlsplit(target).path
    try:
        try:
            endpoint, _ = adapter.match(path, method="GET")
        except RequestRedirect as moved:  # e.g. a missing trailing slash: where it leads
            endpoint, _ = adapter.match(urlsplit(moved.new_url).path, method="GET")
    except HTTPException:  # no such page, not one a browser can open, or redirected twice
        return None
    roles = getattr(current_app.view_functions.get(endpoint), "allowed_roles", None)
    if roles is not None and user.role not in roles:
        log.info("login next %r is not open to user_id=%s: home instead", target[:80], user.id)
        return None
    return target


def _client_address() -> str:
    """Who the budgets count an attempt against: the IPv4 address, or the IPv6 /64 network (one
    host is usually given a whole /64, and could change address within it at every attempt)."""
    raw = request.remote_addr or "unknown"
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw[:64]
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def _throttled(action: str, template: str, form, refused: Refusal, who: str = ""):
    """A refusal by a budget; ``who`` (``email=...`` or ``user_id=...``) names the account the
    attempt was about, so the log tells whose password is being guessed."""
    log.warning(
        "%s rate limit hit (%s) for address=%s%s",
        action,
        refused.name.lower(),
        _client_address(),
        f" {who}" if who else "",
    )
    flash(refused.value, "error")
    return render_template(template, form=form), 429


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        # A second tab sent here before the first one logged in: on to the page it was for.
        # Someone else's email typed there is not logged in, and is told so, never silently
        # carried on as the account already in this browser.
        typed = request.form.get("email", "") if request.method == "POST" else ""
        if typed.strip() and User.normalize_email(typed) != current_user.email:
            flash(
                f"You are already logged in as {current_user.email}. "
                "Log out first to log in as someone else.",
                "warning",
            )
        return redirect(next_for(current_user, request.args.get("next")) or home_for(current_user))
    form = LoginForm()
    if request.method == "POST":
        address = _client_address()
        account = attempts.account_key(form.email.data)
        # No email typed: the form refuses it below, and there is no account to count against.
        refused = attempts.refusal(address, account) if account else None
        if refused:
            email = User.normalize_email(form.email.data)
            return _throttled("login", "auth/login.html", form, refused, f"email={email[:80]!r}")
        if form.validate_on_submit():
            email = User.normalize_email(form.email.data)
            user = db.session.scalar(select(User).where(User.email == email))
            if user is not None:
                password_ok = user.check_password(form.password.data)
            else:
                # The same work for an unknown email: how long the answer takes must not tell
                # which addresses have accounts.
                check_password_hash(_UNKNOWN_ACCOUNT_HASH, form.password.data)
                password_ok = False
            if password_ok and user.active:
                # A fresh session on login: nothing from the anonymous session carries over.
                session.clear()
                login_user(user)
                log.info("login user_id=%s", user.id)
                return redirect(next_for(user, request.args.get("next")) or home_for(user))
            attempts.record(address, account)
            db.session.commit()
            log.warning("failed login for email=%r address=%s", email[:80], address)
            # Only someone who knows the password learns that the account exists but is disabled.
            if password_ok:
                flash("This account is disabled. Ask an administrator.", "error")
            else:
                flash("Wrong email or password.", "error")
            return render_template("auth/login.html", form=form), 401
        log.info("login refused address=%s: %s", address, _fields(form))
        return render_template("auth/login.html", form=form), 400
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        # The session lives in a signed cookie the server cannot revoke; rotating the token the
        # cookie carries is what makes a copied pre-logout cookie useless (and ends the user's
        # other sessions too).
        current_user.rotate_session_token()
        db.session.commit()
        log.info("logout user_id=%s", current_user.id)
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/register", methods=["GET", "POST"])
def register():
    if not current_app.config["REGISTRATION_ENABLED"]:
        abort(404)
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = RegisterForm()
    if request.method == "POST":
        address = _client_address()
        refused = attempts.refusal(address, None)
        if refused:
            return _throttled("registration", "auth/register.html", form, refused)
        attempts.record(address, None)
        db.session.commit()
    if form.validate_on_submit():
        email = User.normalize_email(form.email.data)
        user = User(
            email=email, display_name=form.display_name.data.strip(), role=Role.STUDENT.value
        )
        user.set_password(form.password.data)
        db.session.add(user)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            log.info("registration refused for email=%r: it has an account", email[:80])
            form.email.errors.append("An account with this email already exists.")
            return render_template("auth/register.html", form=form), 409
        session.clear()
        login_user(user)
        log.info("registered user_id=%s", user.id)
        flash("Welcome! Your account is ready.", "success")
        return redirect(url_for("challenges.index"))
    if request.method == "POST":
        log.info("registration refused address=%s: %s", address, _fields(form))
        return render_template("auth/register.html", form=form), 400
    return render_template("auth/register.html", form=form)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = PasswordChangeForm()
    if request.method == "POST":
        # Wrong current passwords count with failed logins: someone holding a stolen session
        # must not get to guess the password behind it at leisure.
        address = _client_address()
        account = attempts.account_key(current_user.email)
        # Not the account's budget across addresses: someone flooding the login with guesses
        # must not keep its owner, logged in, from changing the password.
        refused = attempts.refusal(address, account, across_addresses=False)
        if refused:
            return _throttled(
                "password change",
                "auth/password.html",
                form,
                refused,
                f"user_id={current_user.id}",
            )
    if form.validate_on_submit():
        if not current_user.check_password(form.current_password.data):
            attempts.record(address, account)
            db.session.commit()
            log.warning("wrong current password user_id=%s address=%s", current_user.id, address)
            form.current_password.errors.append("That is not your current password.")
            return render_template("auth/password.html", form=form), 400
        current_user.set_password(form.password.data)  # rotates the token: other sessions end
        db.session.commit()
        session.clear()
        # The proxy itself would recurse in g._login_user.
        login_user(current_user._get_current_object())
        flash("Password changed. Other sessions were logged out.", "success")
        return redirect(home_for(current_user))
    if request.method == "POST":
        log.info("password change refused user_id=%s: %s", current_user.id, _fields(form))
        return render_template("auth/password.html", form=form), 400
    return render_template("auth/password.html", form=form)


def _fields(form) -> str:
    """The fields a form was refused for: their names, never what was typed in them."""
    return ", ".join(form.errors)
