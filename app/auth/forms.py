"""Account forms."""

from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from app.forms import PageForm
from app.text import Visible, clean_line

# What registration, the login, the password change and `flask users create` all accept.
NAME_MAX = 120
PASSWORD_MIN, PASSWORD_MAX = 8, 200


def _stripped(value: str | None) -> str | None:
    """Without the spaces around it, which an email never holds (the login and `flask users
    create` ignore them too; autocomplete on a phone adds one)."""
    return value.strip() if value else value


class LoginForm(PageForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])


class RegisterForm(PageForm):
    # Shown to admins and professors beside other people's names: no direction overrides or
    # invisible characters to pass for someone else with.
    display_name = StringField(
        "Name",
        filters=[clean_line],
        validators=[DataRequired(), Visible(), Length(min=2, max=NAME_MAX)],
    )
    email = EmailField(
        "University email",
        filters=[_stripped],
        validators=[DataRequired(), Email(), Length(max=254)],
    )
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)]
    )
    confirm = PasswordField(
        "Repeat password",
        validators=[DataRequired(), EqualTo("password", "Passwords do not match.")],
    )


class PasswordChangeForm(PageForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=PASSWORD_MAX)]
    )
    password = PasswordField(
        "New password", validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)]
    )
    confirm = PasswordField(
        "Repeat new password",
        validators=[DataRequired(), EqualTo("password", "Passwords do not match.")],
    )
