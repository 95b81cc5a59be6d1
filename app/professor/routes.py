from flask import render_template

from app.auth import role_required
from app.professor import bp


@bp.route("/challenges")
@role_required("professor", "admin")
def challenges():
    return render_template("base.html")


@bp.route("/stats")
@role_required("professor")
def stats():
    return render_template("base.html")
