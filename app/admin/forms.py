"""Administration forms."""

from __future__ import annotations

from wtforms import StringField
from wtforms.validators import DataRequired, Length, ValidationError

from app.forms import PageForm
from app.models import CATEGORY_KEY_LENGTH, category_name_key
from app.text import Visible, clean_line


class CategoryForm(PageForm):
    name = StringField(
        "Category name",
        filters=[clean_line],
        validators=[DataRequired(), Visible(), Length(min=2, max=80)],
    )

    def validate_name(self, field) -> None:
        # A few characters spell out into many when compared (e.g. one ligature into 18 letters).
        if len(category_name_key(field.data)) > CATEGORY_KEY_LENGTH:
            raise ValidationError("This name is too long once its characters are spelled out.")
