"""Events under load: gunicorn with several workers and threads, students posting event batches at
the same time (with CSRF on, as in production), each client keeping a ledger of what the server
acknowledged. Afterwards every acknowledged event is stored exactly once, resent batches added
nothing, and refused batches left nothing behind."""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from app.extensions import db
from app.models import RecommendationEvent, RecommendationSlate
from tests.faults.conftest import ROOT, process_env
from tests.helpers import PASSWORD, make_category, make_challenge, make_user, recorded_slate

STUDENTS = 8
CHALLENGES = 40
API_SLATES = 6  # per student, each of API_K cards: an impression and a click per card
API_K = 20
BATCH = 20
RESEND_SHARE = 0.1  # batches sent again, as a client does when an answer is lost
ATTEMPTS = 5
TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(app, tmp_path):
    """gunicorn on a loopback port, serving the test database with production settings."""
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "w")
    gunicorn = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            *("-w", "3", "-k", "gthread", "--threads", "4"),
            *("-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "wsgi:app"),
        ],
        cwd=ROOT,
        env=process_env(app, FLASK_WTF_CSRF_ENABLED="true"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, gunicorn, tmp_path / "gunicorn.log")
        yield base
    finally:
        gunicorn.send_signal(signal.SIGINT)  # quick shutdown
        try:
            gunicorn.wait(20)
        except subprocess.TimeoutExpired:
            gunicorn.kill()
            gunicorn.wait()
        log.close()


def wait_until_up(base: str, gunicorn: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if gunicorn.poll() is not None:
            pytest.fail(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or still importing the app
            pass
        time.sleep(0.1)
    pytest.fail(f"gunicorn did not answer within 60 s:\n{log.read_text()[-3000:]}")


@dataclass
class Student:
    """One browser-like client: its session, and the ledger of what the server acknowledged."""

    email: str
    base: str
    http: requests.Session = field(default_factory=requests.Session)
    token: str = ""
    acknowledged: dict[str, tuple] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    server_errors: list[str] = field(default_factory=list)

    def csrf_token(self, path: str) -> str:
        page = self.http.get(f"{self.base}{path}", timeout=TIMEOUT).text
        return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def log_in(self) -> None:
        response = self.http.post(
            f"{self.base}/login",
            data={
                "email": self.email,
                "password": PASSWORD,
                "csrf_token": self.csrf_token("/login"),
            },
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        assert response.status_code == 302, response.text[:500]
        # Logging in starts a new session, and with it a new token.
        self.token = self.csrf_token("/challenges")

    def fragment_slate(self) -> tuple[str, list[int]]:
        """A slate from the page's lazy block (the server records its impressions itself)."""
        html = self.http.get(
            f"{self.base}/challenges/recommended", headers={"HX-Request": "true"}, timeout=TIMEOUT
        ).text
        slate = re.search(r"\?slate=([0-9a-f-]{36})", html).group(1)
        return slate, [int(i) for i in re.findall(r'href="/challenges/(\d+)\?slate=', html)]

    def api_slate(self) -> tuple[str, list[int]]:
        """A slate from the API, whose client reports the impressions."""
        body = self.http.get(
            f"{self.base}/api/v1/recommendations", params={"k": API_K}, timeout=TIMEOUT
        ).json()
        return body["slate_id"], [item["challenge_id"] for item in body["items"]]

    def post(self, batch: list[dict]) -> requests.Response | None:
        """Send until the server answers something other than a 5xx (or give up)."""
        for _ in range(ATTEMPTS):
            try:
                response = self.http.post(
                    f"{self.base}/recommendations/event",
                    json={"events": batch},
                    headers={"X-CSRFToken": self.token},
                    timeout=TIMEOUT,
                )
            except requests.RequestException as exc:
                self.server_errors.append(repr(exc))
                continue
            if response.status_code < 500:
                return response
            self.server_errors.append(f"{response.status_code} {response.text[:200]}")
        return None

    def send(self, batch: list[dict]) -> None:
        response = self.post(batch)
        if response is None:
            return
        assert response.status_code in (200, 201), response.text[:500]
        body = response.json()
        assert body["stored"] + body["duplicates"] == len(batch)
        for e in batch:
            self.acknowledged[e["event_id"]] = (e["type"], e["slate_id"], e["challenge_id"])

    def send_refused(self, batch: list[dict]) -> None:
        response = self.post(batch)
        assert response is not None and response.status_code == 400, response
        self.refused.update(e["event_id"] for e in batch)


def event(type_: str, slate: str, challenge: int) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "slate_id": slate,
        "challenge_id": challenge,
    }


def planned_events(student: Student) -> list[dict]:
    """Clicks on the page's cards; impressions and clicks of API slates; a dismiss of each card,
    reported with a slate that served it."""
    slate, cards = student.fragment_slate()
    events, shown = [event("click", slate, c) for c in cards], {c: slate for c in cards}
    for _ in range(API_SLATES):
        api_slate, items = student.api_slate()
        events += [event(kind, api_slate, c) for c in items for kind in ("impression", "click")]
        shown.update({c: api_slate for c in items if c not in shown})
    return events + [event("dismiss", served_by, c) for c, served_by in sorted(shown.items())]


def post_all(student: Student, foreign_slate: str, seed: int) -> None:
    rng = random.Random(seed)
    events = planned_events(student)
    rng.shuffle(events)
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    for batch in batches:
        student.send(batch)
        if rng.random() < RESEND_SHARE:
            student.send(rng.choice(batches[: batches.index(batch) + 1]))
    # All or nothing: one event on another student's slate spoils its whole batch.
    student.send_refused([event("click", foreign_slate, 1), *rng.choice(batches)[:3]])


@pytest.mark.slow
def test_concurrent_event_batches_lose_and_duplicate_nothing(app, server):
    owner, category = make_user("professor"), make_category()
    challenges = [make_challenge(owner=owner, category=category) for _ in range(CHALLENGES)]
    students = [Student(make_user().email, server) for _ in range(STUDENTS)]
    db.session.commit()
    for student in students:
        student.log_in()
    foreign = students[0].fragment_slate()[0]

    with ThreadPoolExecutor(STUDENTS) as pool:
        futures = [
            pool.submit(post_all, student, foreign if i else students[1].fragment_slate()[0], i)
            for i, student in enumerate(students)
        ]
        for future in futures:
            future.result()
    for student in students:
        student.http.close()

    assert [e for s in students for e in s.server_errors] == []
    ledger = {k: v for s in students for k, v in s.acknowledged.items()}
    refused = set().union(*(s.refused for s in students)) - set(ledger)
    assert len(ledger) > 2000 and refused
    assert_stored_exactly_once(ledger, refused, {c.id for c in challenges})


def assert_stored_exactly_once(ledger: dict, refused: set, challenge_ids: set) -> None:
    db.session.rollback()
    rows = db.session.execute(
        select(
            RecommendationEvent.event_id,
            RecommendationEvent.type,
            RecommendationEvent.slate_id,
            RecommendationEvent.challenge_id,
            RecommendationEvent.user_id,
        )
    ).all()
    stored = {row.event_id: (row.type, row.slate_id, row.challenge_id) for row in rows}
    # An impression a click of another batch implied first is stored under the server's id, and
    # the client's own report of it is acknowledged as a duplicate: stored, by what it says.
    said = {(row.type, row.slate_id, row.challenge_id) for row in rows}
    ledger = {
        k: v for k, v in ledger.items() if k in stored or not (v[0] == "impression" and v in said)
    }
    lost = set(ledger) - set(stored)
    assert not lost, f"{len(lost)} acknowledged events are missing, e.g. {sorted(lost)[:3]}"
    assert {k: stored[k] for k in ledger} == ledger
    assert not refused & set(stored), "a refused batch left events behind"
    keys = Counter(
        (row.type, None if row.type == "dismiss" else row.slate_id, row.challenge_id, row.user_id)
        for row in rows
    )
    assert [key for key, n in keys.items() if n > 1] == []
    assert len(stored) == len(rows)
    # Every client-reported row is one the ledger holds: no stray writes from retries.
    client_rows = {k for k, v in stored.items() if v[0] != "impression" or k in ledger}
    assert client_rows == set(ledger)
    owners = dict(
        db.session.execute(select(RecommendationSlate.id, RecommendationSlate.user_id)).all()
    )
    assert all(row.slate_id in owners and owners[row.slate_id] == row.user_id for row in rows)
    assert {row.challenge_id for row in rows} <= challenge_ids


def test_one_card_event_sent_twice_at_once_under_two_ids_is_stored_once(app):
    """The duplicate check and the insert run under the student's lock, one batch after the
    other: without it both batches pass the check and both insert."""
    import threading
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from app.recs import events as recs_events

    owner, category = make_user("professor"), make_category()
    for _ in range(3):
        make_challenge(owner=owner, category=category)
    student = make_user("student")
    slate = recorded_slate(student, k=2)
    card = slate.items[0].challenge_id
    student_id, slate_id = student.id, slate.slate_id
    db.session.commit()
    barrier = threading.Barrier(2)

    def send() -> tuple[int, int]:
        with app.app_context():
            try:
                batch = recs_events.parse_events(
                    {
                        "events": [
                            {
                                "event_id": str(uuid.uuid4()),
                                "type": "click",
                                "challenge_id": card,
                                "slate_id": slate_id,
                            }
                        ]
                    },
                    limit=10,
                )
                barrier.wait(timeout=30)
                return recs_events.store_events(student_id, batch)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [f.result(timeout=60) for f in [pool.submit(send) for _ in range(2)]]
    assert sorted(results) == [(0, 1), (1, 0)]
    db.session.expire_all()
    clicks = db.session.scalar(select(func.count()).where(RecommendationEvent.type == "click"))
    assert clicks == 1
