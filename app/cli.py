"""Operator commands: ``flask users ...`` and ``flask demo seed``."""

from __future__ import annotations

import logging

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.models import (
    ROLES,
    RecommendationEvent,
    RecommendationSlate,
    User,
    UserRecommendation,
)

log = logging.getLogger(__name__)


class CommandGroup(AppGroup):
    """Every command of the group ends the same way on failure: one ``Error:`` line for the
    operator, the same line in the log, and no traceback for a database that is missing, not
    migrated or unreachable."""

    def __init__(self, name: str, *, logger: logging.Logger = log, **attrs) -> None:
        super().__init__(name, **attrs)
        self.log = logger

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError:
            raise  # a mistyped command line: click's usage message says it all
        except click.ClickException as exc:
            command = f"flask {self.name} {ctx.invoked_subcommand or '?'}"
            self.log.warning("%s: %s", command, exc.format_message())
            raise
        except SQLAlchemyError as exc:
            command = f"flask {self.name} {ctx.invoked_subcommand or '?'}"
            self.log.warning("%s: database error: %s", command, first_line(exc))
            self.log.debug("database error in %s", command, exc_info=True)
            raise click.ClickException(
                f"database error: {first_line(exc)} (is DATABASE_URL right, is the database "
                "running, and has `flask db upgrade` been run?)"
            ) from exc


def first_line(exc: Exception) -> str:
    return (str(getattr(exc, "orig", None) or exc).splitlines() or ["unknown"])[0]


users_cli = CommandGroup(
    "users", help="Create, delete and change accounts, and hand over their challenges."
)
demo_cli = CommandGroup("demo", help="Demo data for trying the product.")


def _password_length(ctx: click.Context, param: click.Parameter, password: str) -> str:
    """What registration accepts, checked as it is typed: a refused one is asked for again."""
    from app.auth.forms import PASSWORD_MAX, PASSWORD_MIN

    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise click.BadParameter(f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if not password.strip():  # the login form takes such a password for none at all
        raise click.BadParameter("must not be only spaces")
    return password


@users_cli.command("create")
@click.option("--email", prompt=True, help="Login email (stored lower-cased and composed, NFC).")
@click.option(
    "--name",
    "display_name",
    prompt="Display name",
    help="Name shown in the app (at most 120 characters).",
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="student",
    show_default=True,
    help="What the account may do.",
)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    callback=_password_length,
    help="8 to 200 characters.",
)
def create_user(email: str, display_name: str, role: str, password: str) -> None:
    """Create an account (student, professor or admin)."""
    from email_validator import EmailNotValidError, validate_email

    from app.auth.forms import NAME_MAX
    from app.text import clean_line, has_visible

    # Checked as registration checks them: the login form takes no longer password, and an
    # address with a space in it is one nobody types.
    email = User.normalize_email(email)
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise click.BadParameter(f"not an email address: {exc}", param_hint="--email") from None
    display_name = clean_line(display_name)
    if len(display_name) > NAME_MAX:
        raise click.BadParameter(f"at most {NAME_MAX} characters", param_hint="--name")
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise click.ClickException(f"an account with email {email} already exists")
    # No name: the address stands in, cut to what the name column holds.
    name = display_name if has_visible(display_name) else email[:NAME_MAX]
    user = User(email=email, display_name=name, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    click.echo(f"Created {role} {email} (id {user.id}).")


_ONLY_ADMIN = (
    "{email} is the only active admin; make another account an admin first "
    "(flask users role --email ... --role admin)"
)


@users_cli.command("delete")
@click.option("--email", required=True, help="The account to delete.")
@click.option(
    "--reassign-to",
    "heir_email",
    help="A professor or admin who takes over the challenges the account owns (if it owns any).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_user(email: str, heir_email: str | None, yes: bool) -> None:
    """Delete an account with its participations, recommendation events, slates and rows.

    An account that owns challenges (a professor's or an admin's) is deleted only with
    --reassign-to, which hands every one of them (archived ones too) to another professor or
    admin, so students' participations stay. Refused for the only active admin.
    """
    email = User.normalize_email(email)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        raise click.ClickException(f"no account with email {email}")
    from app.auth.accounts import is_last_active_admin, lock_accounts

    if is_last_active_admin(user):
        raise click.ClickException(_ONLY_ADMIN.format(email=email))
    owned = list(user.challenges)
    # With nothing to hand over, whoever --reassign-to names takes nothing and need not qualify.
    heir = _heir(heir_email, user) if heir_email and owned else None
    if owned and heir is None:
        raise click.ClickException(
            f"{email} owns {len(owned)} challenge(s); pass --reassign-to EMAIL (a professor or "
            "admin) to hand them over"
        )
    if not yes:
        handover = f" and hand {len(owned)} challenge(s) to {heir.email}" if owned else ""
        click.confirm(f"Delete {email} and all of their activity{handover}?", abort=True)
    from app.challenges.service import delete_participations_of

    # Checked again under the accounts' lock: another admin may have been demoted, or the heir,
    # while the prompt waited, and a role change now waits for this.
    lock_accounts()
    db.session.refresh(user)
    if is_last_active_admin(user):
        raise click.ClickException(_ONLY_ADMIN.format(email=email))
    if owned:
        from app.auth.accounts import heir_problem, move_challenges

        db.session.refresh(heir)
        problem = heir_problem(user, heir)
        if problem:
            raise click.ClickException(problem.rstrip("."))
        move_challenges(user.id, heir.id)
        db.session.expire(user, ["challenges"])
    delete_participations_of(user.id)
    for model in (RecommendationEvent, RecommendationSlate, UserRecommendation):
        db.session.execute(delete(model).where(model.user_id == user.id))
    db.session.delete(user)
    db.session.commit()
    if owned:
        click.echo(f"Handed {len(owned)} challenge(s) to {heir.email}.")
    elif heir_email:
        click.echo(f"{email} owns no challenge: nothing was handed over.")
    click.echo(f"Deleted {email} and their activity.")


@users_cli.command("role")
@click.option("--email", required=True, help="The account to change.")
@click.option("--role", type=click.Choice(ROLES), required=True, help="Its new role.")
def set_role(email: str, role: str) -> None:
    """Change an account's role, e.g. make a registered student a professor.

    Refused for the only active admin, and for an account that owns challenges becoming a student.
    """
    from app.auth.accounts import RoleChangeRefused, change_role

    user = _account(email)
    try:
        changed = change_role(user, role)
    except RoleChangeRefused as exc:
        raise click.ClickException(str(exc).rstrip(".")) from None
    article = "an" if role == "admin" else "a"
    click.echo(f"{user.email} is {'now' if changed else 'already'} {article} {role}.")
    _say_if_deactivated(user)


@users_cli.command("deactivate")
@click.option("--email", required=True, help="The account to deactivate.")
def deactivate_user(email: str) -> None:
    """Deactivate an account, as the admin Users page does: it can no longer log in and its
    sessions end; its challenges, participations and history stay (`users activate` lets it in
    again). Refused for the only active admin."""
    _set_active(email, False)


@users_cli.command("activate")
@click.option("--email", required=True, help="The account to activate.")
def activate_user(email: str) -> None:
    """Activate a deactivated account, as the admin Users page does: it can log in again."""
    _set_active(email, True)


def _set_active(email: str, active: bool) -> None:
    from app.auth.accounts import ActivationRefused, set_active

    user = _account(email)
    try:
        changed = set_active(user, active)
    except ActivationRefused as exc:
        raise click.ClickException(str(exc).rstrip(".")) from None
    if not changed:
        click.echo(f"{user.email} is already {'active' if active else 'deactivated'}.")
    elif active:
        click.echo(f"{user.email} activated: it can log in again.")
    else:
        click.echo(f"{user.email} deactivated: it cannot log in, and its sessions were logged out.")


def _account(email: str) -> User:
    email = User.normalize_email(email)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        raise click.ClickException(f"no account with email {email}")
    return user


def _say_if_deactivated(user: User) -> None:
    if not user.active:
        click.echo(
            f"{user.email} is deactivated and cannot log in: "
            f"`flask users activate --email {user.email}` lets it in again."
        )


def _existing_account(ctx: click.Context, param: click.Parameter, email: str) -> str:
    # Checked as the option is read, before the password prompts: an unknown address is said
    # at once, not after the new password was typed twice (flask's commands parse their options
    # inside the app context).
    _account(email)
    return email


@users_cli.command("password")
@click.option(
    "--email",
    required=True,
    callback=_existing_account,
    help="The account whose password is set.",
)
@click.option(
    "--password",
    prompt="New password",
    hide_input=True,
    confirmation_prompt=True,
    callback=_password_length,
    help="8 to 200 characters.",
)
def set_password(email: str, password: str) -> None:
    """Set an account's password, e.g. one its owner forgot, and log out its sessions.

    Without it, an account whose password is lost can only be deleted, with its participations.
    """
    user = _account(email)
    user.set_password(password)  # a new session token: every session of the account ends
    db.session.commit()
    log.info("password of user_id=%s set from the command line", user.id)
    click.echo(f"Password of {user.email} set; its sessions were logged out.")
    _say_if_deactivated(user)


@users_cli.command("hand-over")
@click.option("--from", "owner_email", required=True, help="The account whose challenges move.")
@click.option("--to", "heir_email", required=True, help="An active professor or admin.")
@click.option(
    "--only",
    "only_ids",
    callback=lambda ctx, param, value: _challenge_ids(value),
    help="Only these challenges (ids, comma-separated), those the account still owns: e.g. to "
    "take back a hand-over, with the ids it printed.",
)
def hand_over(owner_email: str, heir_email: str, only_ids: list[int] | None) -> None:
    """Hand every challenge an account owns (drafts and archived ones too) to another professor
    or admin, e.g. before a professor who leaves becomes a student or is deactivated. Students'
    participations stay. Prints the ids moved."""
    from app.auth.accounts import HandOverRefused, hand_over_challenges

    owner_email = User.normalize_email(owner_email)
    owner = db.session.scalar(select(User).where(User.email == owner_email))
    if owner is None:
        raise click.BadParameter(f"no account with email {owner_email}", param_hint="--from")
    heir = _heir(heir_email, owner, "--to")
    try:
        moved = hand_over_challenges(owner, heir, only=only_ids)
    except HandOverRefused as exc:
        raise click.ClickException(str(exc).rstrip(".")) from None
    if not moved:
        what = "none of those challenges" if only_ids else "no challenge"
        click.echo(f"{owner.email} owns {what}: nothing to hand over.")
        return
    # The ids, so that this hand-over alone can be taken back (--only), even after the heir
    # has challenges of their own.
    click.echo(
        f"Handed {len(moved)} challenge(s) of {owner.email} to {heir.email}: "
        + ",".join(map(str, moved))
    )


def _challenge_ids(value: str | None) -> list[int] | None:
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts or not all(
        part.isascii() and part.isdigit() and len(part) <= 10 for part in parts
    ):
        raise click.BadParameter("challenge ids separated by commas, e.g. 12,15,40")
    return sorted({int(part) for part in parts})


def _heir(heir_email: str, leaving: User, option: str = "--reassign-to") -> User:
    """The account that takes over ``leaving``'s challenges: an active professor or admin."""
    from app.auth.accounts import heir_problem

    heir = db.session.scalar(select(User).where(User.email == User.normalize_email(heir_email)))
    if heir is None:
        raise click.BadParameter(f"no account with email {heir_email}", param_hint=option)
    problem = heir_problem(leaving, heir)
    if problem:
        if heir.id == leaving.id:
            problem = "must be another account"
        raise click.BadParameter(problem.rstrip("."), param_hint=option)
    return heir


@demo_cli.command("seed")
@click.option("--seed", "random_seed", type=int, default=42, show_default=True, help="Random seed.")
@click.option(
    "--students",
    type=click.IntRange(min=1),
    default=600,
    show_default=True,
    help="Student accounts to create.",
)
@click.option(
    "--challenges",
    "challenge_count",
    type=click.IntRange(min=1),
    default=150,
    show_default=True,
    help="Challenges to create.",
)
@click.option(
    "--if-empty", is_flag=True, help="Do nothing (and succeed) when the database already has data."
)
def seed(random_seed: int, students: int, challenge_count: int, if_empty: bool) -> None:
    """Fill an empty database with a demo campus and print the demo accounts.

    Same seed, same campus: titles, accounts and participations are identical; dates are relative
    to today.
    """
    from app.demo import DatabaseNotEmpty, existing_rows, seed_demo_campus

    if if_empty:
        rows = existing_rows()
        if any(rows.values()):
            click.echo(f"The database already has data ({rows['users']} users); skipping the seed.")
            return
    try:
        summary = seed_demo_campus(seed=random_seed, students=students, challenges=challenge_count)
    except DatabaseNotEmpty as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(summary.describe())


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(demo_cli)
