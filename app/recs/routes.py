from flask import Blueprint, render_template

from app.auth import role_required

bp = Blueprint("recs", __name__)


@bp.route("/challenges/recommended")
@role_required("student")
def fragment():
    return render_template("base.html")
