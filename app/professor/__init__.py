"""Professors (and admins) manage challenges."""

from flask import Blueprint

bp = Blueprint("professor", __name__, url_prefix="/professor")

from app.professor import routes, stats  # noqa: E402,F401
