"""Administration forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from app.text import clean_line


class CategoryForm(FlaskForm):
    name = StringField(
        "Category name",
        filters=[clean_line],
        validators=[DataRequired(), Length(min=2, max=80)],
    )
