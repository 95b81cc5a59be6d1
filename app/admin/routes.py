from flask import render_template

from app.admin import bp
from app.auth import role_required


@bp.route("/")
@role_required("admin")
def index():
    return render_template("base.html")


@bp.route("/recommendations")
@role_required("admin")
def recommendations():
    return render_template("base.html")
