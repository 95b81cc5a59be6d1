"""Administration forms."""

from __future__ import annotations

import unicodedata

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


def _squash_spaces(value: str | None) -> str | None:
    """Runs of spaces as one, and letters in their composed form (NFC), as text pasted from some
    systems arrives decomposed: "E" + a combining accent becomes "É"."""
    return unicodedata.normalize("NFC", " ".join(value.split())) if value else value


class CategoryForm(FlaskForm):
    name = StringField(
        "Category name",
        filters=[_squash_spaces],
        validators=[DataRequired(), Length(min=2, max=80)],
    )
