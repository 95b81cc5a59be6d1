"""The student side: browse, search, join and leave challenges."""

from flask import Blueprint

bp = Blueprint("challenges", __name__)

from app.challenges import routes  # noqa: E402,F401
