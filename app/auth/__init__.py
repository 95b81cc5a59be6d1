"""Accounts: login, logout, registration, password change and the role guard used by every blueprint."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from app.auth import routes  # noqa: E402,F401
from app.auth.access import role_required  # noqa: E402,F401
