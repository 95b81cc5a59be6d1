"""Administration: categories, users overview, and the recommendations console."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from app.admin import routes  # noqa: E402,F401
from app.admin import recommendations  # noqa: E402,F401
