"""Who may see what: the login loader and the ``role_required`` guard."""

from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import current_user, login_required

from app.extensions import db, login_manager
from app.models import User

login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see that page."
login_manager.login_message_category = "info"
# "basic", not "strong": strong protection drops the session whenever the client's address
# changes, which logs a phone out each time it moves between campus Wi-Fi and mobile data, and
# the address it checks is the X-Forwarded-For header as sent, which anyone can set. What keeps a
# session to its owner is the cookie (HttpOnly, SameSite=Lax, Secure behind HTTPS) and the
# account's session token, which logout, a password change and deactivation replace.
login_manager.session_protection = "basic"


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    raw_id, _, token = user_id.partition(":")
    if not raw_id.isdigit() or not token:
        return None
    user = db.session.get(User, int(raw_id))
    if user is None or user.session_token != token or not user.active:
        return None
    return user


@login_manager.unauthorized_handler
def _unauthorized():
    from flask import flash, redirect, request, url_for

    from app.errors import login_needed, page_path

    answer = login_needed()
    if answer is not None:
        return answer
    if request.method in ("GET", "HEAD"):
        flash(login_manager.login_message, login_manager.login_message_category)
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    # A form posted from a page opened before the session ended (logged out elsewhere, a
    # password changed on another device, the account deactivated): nothing was done. Back to
    # that page after the login, not to the form's answer, a POST-only address.
    flash("Your session has ended, so that was not done. Log in and try again.", "info")
    return redirect(url_for("auth.login", next=page_path()))


def role_required(*roles: str):
    """Log-in required, then 403 unless the user has one of ``roles``."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        # Read by the login (a next page the account cannot open leads home instead) and by
        # the access-matrix test.
        wrapped.allowed_roles = roles
        return wrapped

    return decorator
