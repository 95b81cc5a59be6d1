"""The platform's tables as typed SQLAlchemy 2 models: accounts, challenges, participations, and the
recommendation tables (model runs, published rows, slates, events, experiments)."""

from __future__ import annotations

import enum
import unicodedata
from datetime import UTC, datetime, timedelta

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.text import BLANK_CHARACTERS


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Role(str, enum.Enum):
    STUDENT = "student"
    PROFESSOR = "professor"
    ADMIN = "admin"


class ChallengeStatus(str, enum.Enum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class ParticipationStatus(str, enum.Enum):
    JOINED = "joined"
    COMPLETED = "completed"
    LEFT = "left"


ROLES = tuple(r.value for r in Role)
CHALLENGE_STATUSES = tuple(s.value for s in ChallengeStatus)
PARTICIPATION_STATUSES = tuple(s.value for s in ParticipationStatus)
# A "restore" takes back the student's earlier "dismiss" of the same challenge (eligibility.py).
EVENT_TYPES = ("impression", "click", "dismiss", "join", "restore")
SOURCES = ("model", "fresh", "content", "heuristic")
RUN_STATUSES = ("running", "published", "rejected", "failed", "superseded")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased and composed (normalize_email), so the unique constraint ignores case and
    # how accents were typed.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16), default=Role.STUDENT.value)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    # Part of the login session's identity: bumping it logs out every session of this user.
    session_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    challenges: Mapped[list[Challenge]] = relationship(back_populates="owner")
    participations: Mapped[list[Participation]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    @staticmethod
    def normalize_email(email: str) -> str:
        """The form an email is stored and looked up in: trimmed, lower-cased, and composed
        (NFC, as RFC 6532 asks of internationalized addresses), so "ü" typed as one character
        or as "u" and a combining mark is the same address."""
        return unicodedata.normalize("NFC", (email or "").strip()).lower()

    def set_password(self, password: str) -> None:
        import secrets

        self.password_hash = generate_password_hash(password)
        self.session_token = secrets.token_hex(16)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def rotate_session_token(self) -> None:
        import secrets

        self.session_token = secrets.token_hex(16)

    # Flask-Login: the id in the session carries the token, so a rotated token ends old sessions.
    def get_id(self) -> str:
        return f"{self.id}:{self.session_token}"

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.active

    @property
    def is_student(self) -> bool:
        return self.role == Role.STUDENT.value

    @property
    def is_professor(self) -> bool:
        return self.role == Role.PROFESSOR.value

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email} {self.role}>"


CATEGORY_KEY_LENGTH = 320


def category_name_key(name: str) -> str:
    """What two category names must not share: compared case-insensitively in any script, with
    compatibility forms and composed or decomposed accents alike, invisible format characters
    (zero-width spaces, direction marks) and blank letters (Hangul fillers and the like) left out
    and runs of spaces as one. So "Robotics",
    "robotics", "ROBOTICS " and "Ro\u200bbotics" are one name."""
    visible = "".join(
        c
        for c in unicodedata.normalize("NFKC", name)
        if unicodedata.category(c) != "Cf" and c not in BLANK_CHARACTERS
    )
    return " ".join(visible.casefold().split())


# Keeps a key apart from every other: category_name_key drops format characters, so no name's key
# contains this one (U+2063, invisible separator), and ids are unique.
_KEY_SEPARATOR = "\u2063"


def distinct_category_key(key: str, category_id: int) -> str:
    """A key for a category whose name is alike to an older one's (the older keeps the plain
    key), or too long for the column."""
    return f"{key[: CATEGORY_KEY_LENGTH - 12]}{_KEY_SEPARATOR}{category_id}"


class Category(db.Model):
    __tablename__ = "categories"
    __table_args__ = (Index("uq_categories_name_key", "name_key", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    # Unique, so two admins creating look-alike names at the same moment cannot both succeed.
    # Case folding can lengthen a name (ß -> ss), hence the room. The validator below sets it. A
    # row written without one (by the previous release, still serving while the migration that
    # added the column ran) has none until the category pages fill it in (app/admin/routes.py).
    name_key: Mapped[str | None] = mapped_column(String(CATEGORY_KEY_LENGTH))

    challenges: Mapped[list[Challenge]] = relationship(back_populates="category")

    @validates("name")
    def _keep_key(self, _key: str, name: str) -> str:
        self.name_key = category_name_key(name)
        return name

    def __repr__(self) -> str:
        return f"<Category {self.name}>"


class Challenge(db.Model):
    __tablename__ = "challenges"
    __table_args__ = (
        CheckConstraint("reward_points >= 0", name="reward_non_negative"),
        CheckConstraint("participations_count >= 0", name="count_non_negative"),
        CheckConstraint(_in("status", CHALLENGE_STATUSES), name="status"),
        CheckConstraint("ends_at IS NULL OR ends_at > starts_at", name="ends_after_start"),
        Index("ix_challenges_status_starts_at", "status", "starts_at"),
        # Serving's cache fingerprint reads max(updated_at) on every recommendation request.
        Index("ix_challenges_updated_at", "updated_at"),
        Index("uq_challenges_creation_token", "creation_token", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), index=True
    )
    reward_points: Mapped[int] = mapped_column(Integer, default=0)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=ChallengeStatus.DRAFT.value)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    participations_count: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped by every ORM update of the row (edits, status changes, owner changes; not the
    # SQL-side participation counts). The edit form carries it, so a save made from an older copy
    # is refused instead of overwriting what someone else saved meanwhile.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    # The create form's one-time token: a form submitted twice creates one challenge.
    creation_token: Mapped[str | None] = mapped_column(String(36))

    __mapper_args__ = {"version_id_col": version}

    category: Mapped[Category] = relationship(back_populates="challenges")
    owner: Mapped[User] = relationship(back_populates="challenges")
    participations: Mapped[list[Participation]] = relationship(back_populates="challenge")

    def has_ended(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.ends_at is not None and self.ends_at <= now

    def has_started(self, now: datetime | None = None) -> bool:
        return self.starts_at <= (now or utcnow())

    def is_joinable(self, now: datetime | None = None) -> bool:
        return self.status == ChallengeStatus.PUBLISHED.value and not self.has_ended(now)

    def __repr__(self) -> str:
        return f"<Challenge {self.id} {self.title!r}>"


class Participation(db.Model):
    __tablename__ = "participations"
    __table_args__ = (
        UniqueConstraint("user_id", "challenge_id", name="uq_participations_user_challenge"),
        CheckConstraint(_in("status", PARTICIPATION_STATUSES), name="status"),
        Index("ix_participations_challenge_id", "challenge_id"),
        Index("ix_participations_joined_at", "joined_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=ParticipationStatus.JOINED.value)
    # Attribution: the recommendation slate (and its source) the student joined from, if any.
    slate_id: Mapped[str | None] = mapped_column(String(36))
    source: Mapped[str | None] = mapped_column(String(16))

    user: Mapped[User] = relationship(back_populates="participations")
    challenge: Mapped[Challenge] = relationship(back_populates="participations")

    @property
    def is_active(self) -> bool:
        return self.status != ParticipationStatus.LEFT.value


class LoginAttempt(db.Model):
    """Failed logins, wrong current passwords and registrations, kept briefly so the budgets of
    ``app/auth/attempts.py`` hold across worker processes. ``account`` is a keyed hash of the
    email a failure named (None for a registration)."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_address_at", "address", "attempted_at"),
        Index("ix_login_attempts_account_at", "account", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    account: Mapped[str | None] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- Recommendations -----------------------------------------------------------------------------


class ModelRun(db.Model):
    """One training or import attempt; a published run is a servable model version."""

    __tablename__ = "model_runs"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index("ix_model_runs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="train")  # train | import
    status: Mapped[str] = mapped_column(String(16), default="running")
    algorithm: Mapped[str | None] = mapped_column(String(32))
    params: Mapped[dict | None] = mapped_column(JSON)
    metrics: Mapped[dict | None] = mapped_column(JSON)
    report: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    artifact_path: Mapped[str | None] = mapped_column(String(500))
    rows_count: Mapped[int] = mapped_column(Integer, default=0)
    users_count: Mapped[int] = mapped_column(Integer, default=0)
    trained_through: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def age(self, now: datetime) -> timedelta:
        """How old the version is: since its run started reading interactions (an import: since
        the import). Publishing it again (a rollback) does not make an old version new."""
        return now - self.started_at


class IdHighWater(db.Model):
    """The highest id ever given to a row of a table whose deleted rows must not lend their id to
    a newcomer. SQLite gives a new row the highest id in the table plus one, so deleting the
    newest account would hand its id to the next one, and whatever still names that id (model
    artifacts, exported files, logs) would then name a different person. PostgreSQL's sequences
    never go back: there the table stays empty."""

    __tablename__ = "id_high_water"

    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


@event.listens_for(User, "after_delete")
def _remember_deleted_user_id(_mapper, connection, target: User) -> None:
    if connection.dialect.name != "sqlite":
        return
    connection.execute(
        text(
            "INSERT INTO id_high_water (table_name, value) VALUES ('users', :id) "
            "ON CONFLICT (table_name) DO UPDATE SET value = MAX(value, excluded.value)"
        ),
        {"id": target.id},
    )


@event.listens_for(User, "before_insert")
def _never_reuse_a_user_id(_mapper, connection, target: User) -> None:
    """Once an account was deleted, new ones are numbered past every id ever given out."""
    if connection.dialect.name != "sqlite" or target.id is not None:
        return
    high = connection.scalar(text("SELECT value FROM id_high_water WHERE table_name = 'users'"))
    if high is None:
        return
    top = connection.scalar(text("SELECT COALESCE(MAX(id), 0) FROM users")) or 0
    target.id = max(high, top) + 1
    # Several accounts inserted in one flush are numbered here, one after the other.
    connection.execute(
        text("UPDATE id_high_water SET value = :id WHERE table_name = 'users'"), {"id": target.id}
    )


class RecommendationState(db.Model):
    """A single row (id=1) holding the published-version pointer; flipping it is one UPDATE."""

    __tablename__ = "recommendation_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    published_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_runs.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    published_run: Mapped[ModelRun | None] = relationship()


class UserRecommendation(db.Model):
    __tablename__ = "user_recommendations"
    __table_args__ = (
        UniqueConstraint(
            "model_run_id", "user_id", "challenge_id", name="uq_user_recommendations_row"
        ),
        Index("ix_user_recommendations_run_user_rank", "model_run_id", "user_id", "rank"),
        Index("ix_user_recommendations_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_run_id: Mapped[int] = mapped_column(ForeignKey("model_runs.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)


class RecommendationSlate(db.Model):
    """A slate shown to a student; events and attributed joins point back to it."""

    __tablename__ = "recommendation_slates"
    __table_args__ = (
        Index("ix_recommendation_slates_user_created", "user_id", "created_at"),
        # Online metrics pick a range's slates by the day they were shown.
        Index("ix_recommendation_slates_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str | None] = mapped_column(String(64))
    arm: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecommendationSlateCard(db.Model):
    """A card the JSON API served in a slate. The API records no impressions (its clients report
    what they display), so these are what the event endpoint checks a client's events against,
    and where a card's position and source come from. Fragment slates need none: the server's
    own impressions say the same."""

    __tablename__ = "recommendation_slate_cards"
    # One card per place: a page asked for again after a dismissal must not put a second card
    # where one was already served.
    __table_args__ = (
        Index("uq_recommendation_slate_cards_position", "slate_id", "position", unique=True),
    )

    slate_id: Mapped[str] = mapped_column(
        ForeignKey("recommendation_slates.id", ondelete="CASCADE"), primary_key=True
    )
    challenge_id: Mapped[int] = mapped_column(
        ForeignKey("challenges.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))


class RecommendationEvent(db.Model):
    __tablename__ = "recommendation_events"
    __table_args__ = (
        CheckConstraint(_in("type", EVENT_TYPES), name="type"),
        Index("ix_recommendation_events_user_created", "user_id", "created_at"),
        # Serving reads a student's clicks and dismissals on every request, not their impressions.
        Index("ix_recommendation_events_user_type", "user_id", "type"),
        Index("ix_recommendation_events_slate", "slate_id", "type"),
        Index("ix_recommendation_events_type_created", "type", "created_at"),
        # Whether a dismissal stands (eligibility.dismissal_stands) is asked of every dismiss the
        # training reads; only restores are indexed, so the pages' impressions write nothing more.
        Index(
            "ix_recommendation_events_restores",
            "user_id",
            "challenge_id",
            "created_at",
            sqlite_where=text("type = 'restore'"),
            postgresql_where=text("type = 'restore'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))
    slate_id: Mapped[str | None] = mapped_column(String(36))
    position: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(String(16))
    model_version: Mapped[str | None] = mapped_column(String(64))
    arm: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Experiment(db.Model):
    """An A/B test of the model against the heuristic; at most one is running at a time."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    salt: Mapped[str] = mapped_column(String(64))
    allocation_percent: Mapped[int] = mapped_column(Integer, default=50)
    control_arm: Mapped[str] = mapped_column(String(32), default="heuristic")
    treatment_arm: Mapped[str] = mapped_column(String(32), default="model")
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | stopped
    winner: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the winner stopped serving everyone: an admin handed serving back to the default, or
    # a newer experiment began. Until then the winner serves everyone.
    winner_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def winner_in_force(self) -> str | None:
        """The arm every student gets because of this experiment's outcome, if any."""
        if self.status == "stopped" and self.winner_until is None:
            return self.winner
        return None

    __table_args__ = (
        # At most one running, even when two admins press Start at the same moment.
        Index(
            "uq_experiments_one_running",
            "status",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )


def count_active_participations(challenge_id: int) -> int:
    return (
        db.session.scalar(
            db.select(func.count(Participation.id)).where(
                Participation.challenge_id == challenge_id,
                Participation.status != ParticipationStatus.LEFT.value,
            )
        )
        or 0
    )
