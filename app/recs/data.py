"""Interactions from the database, our CSV export or MovieLens, turned into a weighted implicit
user x challenge matrix. ``IdMap`` is the one place that maps ids to matrix indices."""

from __future__ import annotations

import csv
import gc
import hashlib
import hmac
import math
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np
from scipy import sparse
from sqlalchemy import ColumnElement, String, or_, select, type_coerce, union_all

from app.extensions import db
from app.models import Participation, ParticipationStatus, RecommendationEvent
from app.recs.eligibility import dismissal_stands

EXPORT_HEADER = ("user_id", "challenge_id", "event", "weight", "timestamp")
# Clicks and dismisses come from the event table; joins and completions from participations, which
# are the source of truth (a "join" event row duplicates the participation it belongs to). A dismiss
# the student took back ("restore") is not read: as if it had never been.
EVENT_TYPES_FROM_LOG = ("click", "dismiss")
MAX_ID_LENGTH = 64
# Weights are small multiples of an interaction (config RECS_INTERACTION_WEIGHTS); far past this a
# value is a typo, and it would overflow the float32 matrix the models train on.
MAX_ABS_WEIGHT = 1e6
# A CSV line longer than this is not one of ours (nor any tool's): a file without line breaks
# would otherwise be read into memory whole before the CSV reader sees it.
MAX_LINE_CHARACTERS = 1 << 20
_ASCII_ID = re.compile(r"[0-9]{1,18}")  # 18 digits always fit an int64
# Leading characters that make spreadsheets evaluate a cell as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class DataError(ValueError):
    """Interactions that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Interactions:
    """One row per interaction event, as parallel arrays (ids int64, or str when not numeric)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    events: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray  # seconds since the epoch, UTC

    def __len__(self) -> int:
        return len(self.weights)

    def take(self, selector: np.ndarray) -> Interactions:
        return Interactions(
            self.user_ids[selector],
            self.item_ids[selector],
            self.events[selector],
            self.weights[selector],
            self.timestamps[selector],
        )

    def in_time_order(self) -> Interactions:
        # A stable sort keeps ties in their original order, so splits are reproducible.
        return self.take(np.argsort(self.timestamps, kind="stable"))

    @property
    def latest(self) -> datetime | None:
        if not len(self):
            return None
        return datetime.fromtimestamp(float(self.timestamps.max()), UTC)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple]) -> Interactions:
        """Rows of (user_id, item_id, event, weight, timestamp)."""
        columns = list(zip(*rows, strict=True)) or [(), (), (), (), ()]
        users, items, events, weights, stamps = columns
        return cls(
            _id_array(users),
            _id_array(items),
            np.asarray(events, dtype=str),
            np.asarray(weights, dtype=np.float32),
            np.asarray(stamps, dtype=np.float64),
        )


def _id_array(values) -> np.ndarray:
    """int64 when every id is an integer, else str; numpy sorts and searches both."""
    values = list(values)
    if all(isinstance(v, (int, np.integer)) for v in values):
        return np.asarray(values, dtype=np.int64)
    return np.asarray([str(v) for v in values], dtype=str)


class IdMap:
    """Sorted unique ids and their matrix indices."""

    def __init__(self, ids: Iterable) -> None:
        self.ids = np.unique(_id_array(ids) if not isinstance(ids, np.ndarray) else ids)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, values: np.ndarray | Iterable) -> np.ndarray:
        """Matrix indices of ``values``; -1 for ids this map does not know."""
        values = np.asarray(values if isinstance(values, np.ndarray) else _id_array(values))
        if not len(self.ids) or not len(values) or values.dtype.kind != self.ids.dtype.kind:
            return np.full(len(values), -1, dtype=np.int64)
        positions = np.searchsorted(self.ids, values).clip(0, len(self.ids) - 1)
        return np.where(self.ids[positions] == values, positions, -1).astype(np.int64)

    def to_json(self) -> list:
        return self.ids.tolist()

    @classmethod
    def from_json(cls, ids: list) -> IdMap:
        return cls(_id_array(ids))


@dataclass(frozen=True)
class InteractionMatrix:
    """Weighted implicit feedback: cell = sum of event weights, kept only where positive.
    ``times``, when known, has the same sparsity as ``matrix``: when each cell began, its
    earliest positive event (seconds since the epoch), for models that weigh co-occurrences by
    how close in time they were. Artifacts do not store it: scoring never needs it."""

    matrix: sparse.csr_matrix
    users: IdMap
    items: IdMap
    times: sparse.csr_matrix | None = None

    @classmethod
    def build(
        cls,
        interactions: Interactions,
        users: IdMap | None = None,
        items: IdMap | None = None,
        with_times: bool = True,
    ) -> InteractionMatrix:
        users = users or IdMap(interactions.user_ids)
        items = items or IdMap(interactions.item_ids)
        rows, cols = users.index(interactions.user_ids), items.index(interactions.item_ids)
        known = (rows >= 0) & (cols >= 0)
        rows, cols = rows[known], cols[known]
        shape = (len(users), len(items))
        matrix = sparse.coo_matrix(
            (interactions.weights[known].astype(np.float64), (rows, cols)), shape=shape
        ).tocsr()  # duplicates are summed here
        # A dismiss outweighing a click means "not interested": no positive signal to learn from.
        matrix.data[matrix.data <= 0] = 0
        matrix.eliminate_zeros()
        matrix.sort_indices()
        times = None
        if with_times:
            positive = interactions.weights[known] > 0
            times = _cell_times(
                matrix, rows[positive], cols[positive], interactions.timestamps[known][positive]
            )
        return cls(matrix.astype(np.float32), users, items, times)

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def active_users(self) -> int:
        return int((np.diff(self.matrix.indptr) > 0).sum())


def _cell_times(
    matrix: sparse.csr_matrix, rows: np.ndarray, cols: np.ndarray, stamps: np.ndarray
) -> sparse.csr_matrix:
    """When each of ``matrix``'s stored cells began: the earliest of the given (positive) events
    on it, on the same structure. The first click or the join is when a student took a
    challenge up; a completion or an edit months later is not."""
    n_items = matrix.shape[1]
    keys = rows.astype(np.int64) * n_items + cols
    order = np.lexsort((stamps, keys))
    keys, stamps = keys[order], np.asarray(stamps, dtype=np.float64)[order]
    first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, dtype=bool)
    keys, stamps = keys[first], stamps[first]
    cell_rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    wanted = cell_rows * n_items + matrix.indices
    # A stored cell has a positive sum, so at least one positive event: each key is found.
    return sparse.csr_matrix(
        (stamps[np.searchsorted(keys, wanted)], matrix.indices.copy(), matrix.indptr.copy()),
        shape=matrix.shape,
    )


def fingerprint(interactions: Interactions) -> str:
    """A short digest of the training data, stored with the artifact to tell data sets apart."""
    digest = hashlib.sha256()
    for column in (
        interactions.user_ids,
        interactions.item_ids,
        interactions.weights,
        interactions.timestamps,
    ):
        digest.update(np.ascontiguousarray(column).tobytes())
    return digest.hexdigest()[:16]


# --- Database -------------------------------------------------------------------------------------


def read_database(weights: dict[str, float], since: datetime | None = None) -> Interactions:
    """Joins and completions (participations not left) plus clicks and dismisses, weighted.
    Two queries read straight into arrays: no ORM objects, no per-row Python tuples."""
    parts = [_participation_events(since), _logged_events(since)]
    user_ids, item_ids, events, stamps = (
        np.concatenate(column) for column in zip(*parts, strict=True)
    )
    event_weights = np.array([float(weights.get(e, 0.0)) for e in EVENT_NAMES], dtype=np.float32)
    codes = events.astype(np.int64)
    keep = event_weights[codes] != 0
    return Interactions(
        user_ids[keep],
        item_ids[keep],
        np.asarray(EVENT_NAMES)[codes[keep]],
        event_weights[codes[keep]],
        stamps[keep],
    )


# The training's event vocabulary, coded by position while reading.
EVENT_NAMES = ("join", "complete", *EVENT_TYPES_FROM_LOG)
JOIN, COMPLETE = 0, 1


def _participation_events(since: datetime | None) -> tuple[np.ndarray, ...]:
    """A "join" per participation not left, followed by its "complete" when completed (dated
    by the later of its update and its join). ``since`` keeps each by its own date: a completion
    marked after it counts even when the join came before."""
    joined_at, joined_epoch = _epoch_column(Participation.joined_at)
    updated_at, updated_epoch = _epoch_column(Participation.updated_at)
    query = select(
        Participation.user_id,
        Participation.challenge_id,
        Participation.status,
        joined_at,
        updated_at,
    ).where(Participation.status != ParticipationStatus.LEFT.value)
    if since is not None:
        query = query.where(
            or_(
                Participation.joined_at >= since,
                (Participation.status == ParticipationStatus.COMPLETED.value)
                & (Participation.updated_at >= since),
            )
        )
    users, items, statuses, joined, updated = _columns(query, 5)
    joined, updated = joined_epoch(joined), updated_epoch(updated)
    completed = np.asarray(statuses, dtype=str) == ParticipationStatus.COMPLETED.value
    # Interleaved (join, complete) pairs keep the row order the training has always read.
    keep = np.column_stack([np.ones(len(completed), dtype=bool), completed]).ravel()
    codes = np.tile(np.array([JOIN, COMPLETE], dtype=np.int8), len(completed))
    stamps = np.column_stack([joined, np.maximum(updated, joined)]).ravel()
    if since is not None:
        keep &= stamps >= since.replace(tzinfo=since.tzinfo or UTC).timestamp()
    return (
        np.repeat(_int_array(users), 2)[keep],
        np.repeat(_int_array(items), 2)[keep],
        codes[keep],
        stamps[keep],
    )


def _logged_events(since: datetime | None) -> tuple[np.ndarray, ...]:
    created_at, created_epoch = _epoch_column(RecommendationEvent.created_at)
    query = select(
        RecommendationEvent.user_id,
        RecommendationEvent.challenge_id,
        RecommendationEvent.type,
        created_at,
    ).where(
        RecommendationEvent.type.in_(EVENT_TYPES_FROM_LOG),
        or_(RecommendationEvent.type != "dismiss", dismissal_stands()),
    )
    if since is not None:
        query = query.where(RecommendationEvent.created_at >= since)
    users, items, types, created = _columns(query, 4)
    types = np.asarray(types, dtype=str)
    codes = np.zeros(len(types), dtype=np.int8)
    for code, name in enumerate(EVENT_NAMES):
        codes[types == name] = code
    return _int_array(users), _int_array(items), codes, created_epoch(created)


def excluded_pairs() -> tuple[np.ndarray, np.ndarray]:
    """(user_ids, challenge_ids) of every joined (not left) or dismissed challenge: what
    ``eligibility.excluded_challenge_ids`` gives one student, for all of them in one query."""
    joined = select(Participation.user_id, Participation.challenge_id).where(
        Participation.status != ParticipationStatus.LEFT.value
    )
    dismissed = select(RecommendationEvent.user_id, RecommendationEvent.challenge_id).where(
        RecommendationEvent.type == "dismiss", dismissal_stands()
    )
    users, items = _columns(union_all(joined, dismissed), 2)
    return _int_array(users), _int_array(items)


def _columns(query, width: int) -> list[tuple]:
    """The query's rows as columns, fetched as the DB-API cursor returns them: no Row object per
    row (millions at campus scale). Only for columns that need no result processing: integers,
    text, and datetimes as ``_epoch_column`` selects them."""
    # Core execution on the session's connection: a CursorResult, not the ORM's result wrapper.
    result = db.session.connection().execute(query)
    try:
        with _collector_paused():
            return list(zip(*result.cursor.fetchall(), strict=True)) or [()] * width
    finally:
        result.close()


@contextmanager
def _collector_paused():
    """Millions of row tuples would each count toward a garbage collection that rescans them
    all; they hold no reference cycles, so there is nothing for it to find."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _int_array(values: tuple) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def _epoch_column(column) -> tuple[ColumnElement, Callable[[tuple], np.ndarray]]:
    """The column to select and how to turn its values into epoch seconds. SQLite keeps UTC
    datetimes as ISO text, which numpy parses in bulk far faster than building a datetime per
    row; other databases return datetimes."""
    if db.session.get_bind().dialect.name == "sqlite":
        return type_coerce(column, String), _epoch_from_iso
    return column, _epoch_from_datetimes


def _epoch_from_iso(values: tuple) -> np.ndarray:
    micros = np.asarray(values, dtype="datetime64[us]").astype(np.int64)
    return micros / 1e6


def _epoch_from_datetimes(values: tuple) -> np.ndarray:
    return np.fromiter((v.timestamp() for v in values), dtype=np.float64, count=len(values))


# --- CSV ------------------------------------------------------------------------------------------


def pseudonym(user_id, key: bytes) -> str:
    """A keyed hash of a user id: stable for one key, meaningless without it."""
    return hmac.new(key, str(user_id).encode(), hashlib.sha256).hexdigest()


def spreadsheet_safe(cell: str) -> str:
    """Defuse cells a spreadsheet would run as a formula; plain numbers (e.g. -2.0) stay numbers,
    since a number is never evaluated as a formula and the weight must round-trip."""
    if cell.startswith(FORMULA_PREFIXES) and not _is_number(cell):
        return "'" + cell
    return cell


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _unescape(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:2] in FORMULA_PREFIXES else cell


def format_timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_csv(interactions: Interactions, out: TextIO, pseudonym_key: bytes | None = None) -> int:
    """Write the export format; returns the number of rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_HEADER)
    for user, item, event, weight, stamp in zip(
        interactions.user_ids.tolist(),
        interactions.item_ids.tolist(),
        interactions.events.tolist(),
        interactions.weights.tolist(),
        interactions.timestamps.tolist(),
        strict=True,
    ):
        user_cell = pseudonym(user, pseudonym_key) if pseudonym_key else str(user)
        writer.writerow(
            [
                spreadsheet_safe(c)
                for c in (
                    user_cell,
                    str(item),
                    str(event),
                    f"{weight:g}",
                    format_timestamp(stamp),
                )
            ]
        )
    return len(interactions)


def ascii_int(cell: str) -> int | None:
    """The integer a cell of ASCII digits spells, else None. Python's int() would also read
    "1_0" as 10 and other scripts' digits, which no id of ours is written with."""
    return int(cell) if _ASCII_ID.fullmatch(cell) else None


def bounded_lines(fh: TextIO, name: str, limit: int = MAX_LINE_CHARACTERS) -> Iterator[str]:
    """``fh``'s lines for csv.reader, refusing (DataError) any longer than ``limit`` characters."""
    while line := fh.readline(limit + 1):
        if len(line) > limit:
            raise DataError(f"{name}: a line is longer than {limit:,} characters")
        yield line


def open_regular_file(path: str | Path, **text_options) -> TextIO:
    """``path`` opened for reading as text, only if it is a regular file (a link to one is
    fine). A pipe would block the reader until something writes to it, holding whatever lock
    the reader holds (the pipeline's), and a device never ends: both are refused with OSError
    at once, without waiting for a writer."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"{path} is not a regular file (a directory, a device or a pipe)")
        os.set_blocking(descriptor, True)
        return open(descriptor, **text_options)  # owns the descriptor from here on
    except BaseException:
        os.close(descriptor)
        raise


def read_csv(path: str | Path) -> Interactions:
    """Read the export format (ours or any tool's); raises DataError naming the bad line."""
    try:
        with open_regular_file(path, newline="", encoding="utf-8-sig") as fh:
            return parse_csv(fh, str(path))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc


def parse_csv(fh: TextIO, name: str = "<csv>") -> Interactions:
    reader = csv.reader(bounded_lines(fh, name))
    header = next(reader, None)
    if header is None:
        raise DataError(
            f"{name}: the file is empty; the first line must be the header "
            f"{','.join(EXPORT_HEADER)}"
        )
    if tuple(c.strip() for c in header) != EXPORT_HEADER:
        raise DataError(f"{name}:1: header must be {','.join(EXPORT_HEADER)}, got {header!r}")
    rows = list(_parse_rows(reader, name))
    for column, label in ((0, "user_id"), (1, "challenge_id")):
        _one_kind_of_id(rows, column, label, name)
    return Interactions.from_rows(row[:5] for row in rows)  # without the line numbers


def _one_kind_of_id(rows: list[tuple], column: int, label: str, name: str) -> None:
    """Ids are all numbers (database ids) or all text (pseudonyms, another tool's ids). A mix is
    a mistake, e.g. one "5.0" among integers, which would turn every id into text."""
    numbers = [isinstance(row[column], int) for row in rows]
    if any(numbers) and not all(numbers):
        odd = numbers.index(False) if sum(numbers) > len(numbers) / 2 else numbers.index(True)
        raise DataError(
            f"{name}:{rows[odd][-1]}: {label} {rows[odd][column]!r} is not the kind of id the "
            f"other rows use ({'numbers' if not isinstance(rows[odd][column], int) else 'text'})"
        )


def _parse_rows(reader, name: str) -> Iterator[tuple]:
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(EXPORT_HEADER):
            raise DataError(f"{name}:{line}: expected {len(EXPORT_HEADER)} columns, got {len(row)}")
        user, item, event, weight, stamp = (_unescape(c.strip()) for c in row)
        try:
            yield (
                _parse_id(user),
                _parse_id(item),
                event or "interaction",
                _parse_weight(weight),
                parse_timestamp(stamp),
                line,
            )
        except ValueError as exc:
            raise DataError(f"{name}:{line}: {exc}") from exc


def _parse_id(cell: str) -> int | str:
    if not cell or len(cell) > MAX_ID_LENGTH:
        raise ValueError(f"bad id {cell[:MAX_ID_LENGTH]!r}")
    number = ascii_int(cell)
    if number is None and cell.isascii() and cell.isdigit():
        raise ValueError(f"id {cell!r} is too large (at most 18 digits)")
    return cell if number is None else number


def _parse_weight(cell: str) -> float:
    weight = float(cell)
    if not math.isfinite(weight):
        raise ValueError(f"weight {cell!r} is not finite")
    if abs(weight) > MAX_ABS_WEIGHT:
        raise ValueError(
            f"weight {cell!r} is out of range (-{MAX_ABS_WEIGHT:g} to {MAX_ABS_WEIGHT:g})"
        )
    return weight


# Seconds since the epoch that a datetime can hold: years 1 to 9999.
EARLIEST_TIMESTAMP = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LATEST_TIMESTAMP = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def parse_timestamp(cell: str) -> float:
    """ISO 8601 (naive means UTC) or seconds since the epoch, within years 1 to 9999."""
    try:
        seconds = float(cell)
    except ValueError:
        try:
            moment = datetime.fromisoformat(cell.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"bad timestamp {cell!r}") from None
        seconds = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    # NaN fails both comparisons too.
    if not EARLIEST_TIMESTAMP <= seconds <= LATEST_TIMESTAMP:
        raise ValueError(f"timestamp {cell!r} is not a date between years 1 and 9999")
    return seconds


# --- MovieLens ------------------------------------------------------------------------------------


def read_movielens(path: str | Path) -> Interactions:
    """MovieLens ``u.data`` (user, item, rating, timestamp; tab-separated): every rating counts as
    implicit feedback of weight 1, as in the usual top-N protocol."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about an empty file; we say so below
            with open_regular_file(path, encoding="latin-1") as fh:
                raw = np.loadtxt(fh, dtype=np.int64, ndmin=2)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    except ValueError as exc:
        # numpy's first sentence names the row and column; what follows is advice for its API.
        reason = str(exc).split(". ")[0].rstrip(".")
        raise DataError(f"{path}: not a MovieLens ratings file: {reason}") from exc
    if raw.size == 0:
        raise DataError(f"{path}: no ratings in the file")
    if raw.shape[1] != 4:
        raise DataError(f"{path}: expected 4 columns (user, item, rating, timestamp)")
    return Interactions(
        raw[:, 0],
        raw[:, 1],
        np.full(len(raw), "rating"),
        np.ones(len(raw), dtype=np.float32),
        raw[:, 3].astype(np.float64),
    )


def read_movielens_genres(path: str | Path) -> dict[int, np.ndarray]:
    """``u.item``: item id -> 19 genre flags (the last 19 '|'-separated fields); raises DataError
    naming the bad line."""
    genres: dict[int, np.ndarray] = {}
    try:
        with open_regular_file(path, encoding="latin-1") as fh:
            reader = csv.reader(fh, delimiter="|")
            for row in reader:
                if len(row) >= 20:
                    genres[int(row[0])] = np.asarray(row[-19:], dtype=np.int8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    except (ValueError, OverflowError, csv.Error) as exc:
        # Read beside u.data: without its name, the error did not say which file was wrong.
        raise DataError(
            f"{path}:{reader.line_num}: not a MovieLens u.item line (an item id, then 19 genre "
            f"flags): {exc}"
        ) from exc
    return genres
