"""The challenge form professors and admins fill in to create or edit a challenge."""

from __future__ import annotations

from datetime import UTC

from wtforms import HiddenField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields import DateTimeLocalField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    StopValidation,
    ValidationError,
)

from app.forms import PageForm
from app.models import CHALLENGE_STATUSES
from app.text import Visible, clean_line, clean_text

# The browser widget submits "YYYY-MM-DDTHH:MM", the shape the fields render (UTCDateTimeField).
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]
# Postgres INTEGER tops out at 2**31 - 1; a sane cap keeps a typo from becoming a database error.
MAX_REWARD_POINTS = 100_000
UTC_HELP = "Date and time in UTC (not your local time zone)."
# The widget takes any year from 0001 to 9999: a year outside these is a typo ("0202" for "2026").
FIRST_YEAR, LAST_YEAR = 2000, 2100
YEAR_RANGE = {"min": f"{FIRST_YEAR}-01-01T00:00", "max": f"{LAST_YEAR}-12-31T23:59"}


class UTCDateTimeField(DateTimeLocalField):
    """A date and time in UTC, written back as the browser's widget reads it: strftime leaves a
    year before 1000 without its leading zeros ("202-05-06"), which the widget shows as empty."""

    def _value(self) -> str:
        if self.raw_data or not self.data:
            return super()._value()
        value = self.data.astimezone(UTC) if self.data.tzinfo else self.data
        return value.replace(tzinfo=None).isoformat(timespec="minutes")


def within_years(form, field) -> None:
    if field.data and not FIRST_YEAR <= field.data.year <= LAST_YEAR:
        raise ValidationError(
            f"Use a year from {FIRST_YEAR} to {LAST_YEAR} (this says {field.data.year:04d})."
        )


def read_as_number(form, field) -> None:
    """Ends the checks of a number that could not be read: its own message says so, and the
    range's would be false ("between 0 and 100000" for 5.5)."""
    if field.process_errors:
        raise StopValidation()


class ChallengeForm(PageForm):
    title = StringField(
        "Title", filters=[clean_line], validators=[DataRequired(), Visible(), Length(max=200)]
    )
    description = TextAreaField(
        "Description",
        filters=[clean_text],
        validators=[DataRequired(), Visible(), Length(max=10_000)],
    )
    # A choice no longer offered: deleted, or no longer able to own challenges, since the form
    # was opened (the routes also stop the list from quietly falling back to its first entry).
    category_id = SelectField(
        "Category",
        coerce=int,
        validators=[InputRequired()],
        invalid_choice_message="The chosen category no longer exists. Choose another one.",
    )
    reward_points = IntegerField(
        "Reward points",
        default=0,
        validators=[InputRequired(), read_as_number, NumberRange(min=0, max=MAX_REWARD_POINTS)],
    )
    # The edit form: the challenge's version when the form was opened (Challenge.version).
    version = HiddenField()
    # The create form: a one-time token, so submitting the same form twice creates one challenge.
    creation_token = HiddenField()
    starts_at = UTCDateTimeField(
        "Starts at",
        format=DATETIME_FORMATS,
        tz=UTC,
        validators=[InputRequired(), within_years],
        description=UTC_HELP,
        render_kw=YEAR_RANGE,
    )
    ends_at = UTCDateTimeField(
        "Ends at (optional)",
        format=DATETIME_FORMATS,
        tz=UTC,
        validators=[Optional(), within_years],
        description=UTC_HELP + " Leave empty for a challenge without an end.",
        render_kw=YEAR_RANGE,
    )
    # Admins only: the routes remove this field from a professor's form.
    owner_id = SelectField(
        "Owner",
        coerce=int,
        description="The professor (or admin) who manages this challenge.",
        invalid_choice_message="The chosen account can no longer own challenges. Choose another.",
    )
    status = SelectField(
        "Status",
        choices=[SelectChoice(s, s.title()) for s in CHALLENGE_STATUSES],
        default="draft",
        validators=[InputRequired()],
    )

    def validate_reward_points(self, field) -> None:
        # int() reads any script's digits ("٣" is 3); a number field takes the digits it shows.
        raw = (field.raw_data or [""])[0].strip()
        if raw and not field.process_errors and not (raw.isascii() and raw.lstrip("+-").isdigit()):
            raise ValidationError("Write the reward with the digits 0 to 9.")

    def validate_ends_at(self, field) -> None:
        if field.data and self.starts_at.data and field.data <= self.starts_at.data:
            raise ValidationError("The end must be after the start.")
