"""Administration forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


def _squash_spaces(value: str | None) -> str | None:
    return " ".join(value.split()) if value else value


class CategoryForm(FlaskForm):
    name = StringField(
        "Category name",
        filters=[_squash_spaces],
        validators=[DataRequired(), Length(min=2, max=80)],
    )
