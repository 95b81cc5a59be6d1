"""Administration: categories, users overview, and the recommendations console."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from app.admin import recommendations, routes  # noqa: E402,F401
