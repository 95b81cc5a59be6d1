"""Who gets what: every route of ``app.url_map`` x {anonymous, student, professor, admin} -> status.

Adding a route? Add its rows to ``ACCESS`` (keyed by endpoint name); ``test_every_route_is_in_the_
matrix`` fails until you do. Paths may use the ``World`` placeholders: {own} (published, owned by
the logged-in professor, joined by a student), {draft} (the professor's draft), {foreign} (another
professor's), {category} (used), {spare_category} (unused), {target_user} (a student), {missing}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from tests.helpers import login, make_category, make_challenge, make_participation, make_user

ANONYMOUS, STUDENT, PROFESSOR, ADMIN = "anonymous", "student", "professor", "admin"
ROLES = (ANONYMOUS, STUDENT, PROFESSOR, ADMIN)
HTMX = {"HX-Request": "true"}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    anonymous: int
    student: int
    professor: int
    admin: int
    data: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    json: dict | None = None

    def expected(self, role: str) -> int:
        return getattr(self, role)


def get(path, *statuses, **kw) -> Case:
    return Case("GET", path, *statuses, **kw)


def post(path, *statuses, **kw) -> Case:
    return Case("POST", path, *statuses, **kw)


# Expected statuses, in order: anonymous, student, professor, admin.
ACCESS: dict[str, list[Case]] = {
    "web.index": [get("/", 302, 302, 302, 302)],
    "web.healthz": [get("/healthz", 200, 200, 200, 200)],
    "auth.login": [
        get("/login", 200, 302, 302, 302),
        post("/login", 401, 302, 302, 302, data={"email": "nobody@uni.test", "password": "wrong"}),
    ],
    "auth.logout": [post("/logout", 302, 302, 302, 302)],
    "auth.register": [
        get("/register", 200, 302, 302, 302),
        post("/register", 400, 302, 302, 302),
    ],
    "auth.change_password": [
        get("/account/password", 302, 200, 200, 200),
        post("/account/password", 302, 400, 400, 400),
    ],
    "challenges.index": [get("/challenges", 302, 200, 403, 403)],
    "challenges.detail": [
        get("/challenges/{own}", 302, 200, 403, 403),
        get("/challenges/{draft}", 302, 404, 403, 403),
        get("/challenges/{missing}", 302, 404, 403, 403),
    ],
    "challenges.join_challenge": [
        post("/challenges/{own}/join", 302, 303, 403, 403),
        post("/challenges/{draft}/join", 302, 404, 403, 403),
    ],
    "challenges.leave_challenge": [post("/challenges/{own}/leave", 302, 303, 403, 403)],
    "challenges.mine": [get("/me/challenges", 302, 200, 403, 403)],
    "recs.fragment": [get("/challenges/recommended", 401, 200, 403, 403, headers=HTMX)],
    "recs.dismiss": [post("/challenges/recommended/{own}/dismiss", 302, 303, 403, 403)],
    "recs.restore": [
        post("/challenges/recommended/{own}/restore", 302, 303, 403, 403),
        post("/challenges/recommended/{draft}/restore", 302, 404, 403, 403),
        post("/challenges/recommended/{missing}/restore", 302, 404, 403, 403),
    ],
    "recs.event": [post("/recommendations/event", 401, 400, 403, 403, json={})],
    "api.recommendations": [
        get("/api/v1/recommendations", 401, 200, 403, 400),
        get("/api/v1/recommendations?user_id={target_user}", 401, 403, 403, 200),
        get("/api/v1/recommendations?user_id={missing}", 401, 403, 403, 404),
    ],
    "api.openapi": [get("/api/v1/openapi.json", 200, 200, 200, 200)],
    "professor.challenges": [get("/professor/challenges", 302, 403, 200, 200)],
    "professor.new_challenge": [
        get("/professor/challenges/new", 302, 403, 200, 200),
        post("/professor/challenges/new", 302, 403, 400, 400),
    ],
    "professor.edit_challenge": [
        get("/professor/challenges/{own}/edit", 302, 403, 200, 200),
        get("/professor/challenges/{foreign}/edit", 302, 403, 403, 200),
        get("/professor/challenges/{missing}/edit", 302, 403, 404, 404),
        post("/professor/challenges/{own}/edit", 302, 403, 400, 400),
        post("/professor/challenges/{foreign}/edit", 302, 403, 403, 400),
    ],
    "professor.publish_challenge": [
        post("/professor/challenges/{draft}/publish", 302, 403, 303, 303),
        post("/professor/challenges/{foreign}/publish", 302, 403, 403, 303),
    ],
    "professor.archive_challenge": [
        post("/professor/challenges/{own}/archive", 302, 403, 303, 303),
        post("/professor/challenges/{foreign}/archive", 302, 403, 403, 303),
    ],
    "professor.participants": [
        get("/professor/challenges/{own}/participants", 302, 403, 200, 200),
        get("/professor/challenges/{foreign}/participants", 302, 403, 403, 200),
    ],
    "professor.mark_participants": [
        post("/professor/challenges/{own}/participants/status", 302, 403, 400, 400),
        post("/professor/challenges/{foreign}/participants/status", 302, 403, 403, 400),
    ],
    "professor.stats": [get("/professor/stats", 302, 403, 200, 403)],
    "professor.stats_chart": [get("/professor/stats/chart.svg", 302, 403, 200, 403)],
    "admin.index": [get("/admin/", 302, 403, 403, 200)],
    "admin.recommendations": [get("/admin/recommendations", 302, 403, 403, 200)],
    "admin.recommendations_versions": [get("/admin/recommendations/versions", 302, 403, 403, 200)],
    "admin.recommendations_online": [
        get("/admin/recommendations/online", 302, 403, 403, 200),
        get("/admin/recommendations/online?from=2024-02-30", 302, 403, 403, 400),
    ],
    "admin.recommendations_preview": [
        get("/admin/recommendations/preview", 302, 403, 403, 200),
        get("/admin/recommendations/preview?q=student", 302, 403, 403, 200),
        get("/admin/recommendations/preview?user_id={target_user}", 302, 403, 403, 200),
        get("/admin/recommendations/preview?user_id={missing}", 302, 403, 403, 400),
    ],
    "admin.recommendations_experiment": [
        get("/admin/recommendations/experiment", 302, 403, 403, 200)
    ],
    "admin.recommendations_experiment_start": [
        post(
            "/admin/recommendations/experiment/start",
            302,
            403,
            403,
            303,
            data={"allocation_percent": "50"},
        ),
        post(
            "/admin/recommendations/experiment/start",
            302,
            403,
            403,
            400,
            data={"allocation_percent": "500"},
        ),
        post("/admin/recommendations/experiment/start", 302, 403, 403, 400),
    ],
    "admin.recommendations_experiment_stop": [
        post(
            "/admin/recommendations/experiment/stop", 302, 403, 403, 400, data={"winner": "model"}
        ),
        post("/admin/recommendations/experiment/stop", 302, 403, 403, 400),
    ],
    "admin.recommendations_experiment_end_winner": [
        post("/admin/recommendations/experiment/end-winner", 302, 403, 403, 400),
    ],
    "admin.recommendations_retrain": [post("/admin/recommendations/retrain", 302, 403, 403, 303)],
    "admin.recommendations_progress": [
        get("/admin/recommendations/progress", 401, 403, 403, 200, headers=HTMX),
    ],
    "admin.recommendations_rollback": [
        post(
            "/admin/recommendations/rollback",
            302,
            403,
            403,
            400,
            data={"version": "no-such-version"},
        ),
    ],
    "admin.recommendations_chart": [
        get("/admin/recommendations/charts/daily-ctr.svg", 302, 403, 403, 200),
        get("/admin/recommendations/charts/unknown.svg", 302, 403, 403, 404),
        get("/admin/recommendations/charts/no-such-chart.svg", 302, 403, 403, 404),
    ],
    "admin.categories": [
        get("/admin/categories", 302, 403, 403, 200),
        post("/admin/categories", 302, 403, 403, 303, data={"name": "Brand new"}),
    ],
    "admin.rename_category": [
        post(
            "/admin/categories/{spare_category}/rename",
            302,
            403,
            403,
            303,
            data={"name": "Renamed"},
        ),
    ],
    "admin.delete_category": [
        post("/admin/categories/{spare_category}/delete", 302, 403, 403, 303),
        post("/admin/categories/{category}/delete", 302, 403, 403, 409),
    ],
    "admin.users": [get("/admin/users", 302, 403, 403, 200)],
    "admin.user_challenges": [
        get("/admin/users/{target_user}/challenges", 302, 403, 403, 200),
        post("/admin/users/{target_user}/challenges", 302, 403, 403, 400, data={"heir_id": ""}),
    ],
    "admin.hand_back_challenges": [
        post("/admin/users/{target_user}/challenges/hand-back", 302, 403, 403, 400),
    ],
    "admin.activate_user": [post("/admin/users/{target_user}/activate", 302, 403, 403, 303)],
    "admin.deactivate_user": [post("/admin/users/{target_user}/deactivate", 302, 403, 403, 303)],
    "admin.change_user_role": [
        post("/admin/users/{target_user}/role", 302, 403, 403, 303, data={"role": "professor"}),
    ],
}

# Placeholder values used where no database is involved (route matching only).
DUMMY_IDS = dict.fromkeys(
    ("own", "draft", "foreign", "category", "spare_category", "target_user", "missing"), 1
)


def _cases():
    for cases in ACCESS.values():
        for case in cases:
            for role in ROLES:
                yield pytest.param(case, role, id=f"{case.method} {case.path} as {role}")


class World:
    """The accounts and rows the placeholders point at; the professor client is the owner."""

    def __init__(self, app):
        self.app = app
        self.owner = make_user("professor")
        rival = make_user("professor")
        category = make_category()
        own = make_challenge(owner=self.owner, category=category)
        make_participation(make_user("student"), own)
        self.ids = {
            "own": own.id,
            "draft": make_challenge(owner=self.owner, category=category, status="draft").id,
            "foreign": make_challenge(owner=rival, category=category).id,
            "category": category.id,
            "spare_category": make_category().id,
            "target_user": make_user("student").id,
            "missing": 10**9,
        }

    def client_for(self, role: str):
        client = self.app.test_client()
        if role == ANONYMOUS:
            return client
        user = self.owner if role == PROFESSOR else make_user(role)
        assert login(client, user).status_code == 302
        return client


@pytest.mark.parametrize(("case", "role"), list(_cases()))
def test_access(app, case: Case, role: str, monkeypatch):
    from app.recs import scheduler

    # Who may start a retrain is checked here; a real one would train in a thread that outlives
    # the test and holds tables the next test's set-up empties (a deadlock on PostgreSQL).
    monkeypatch.setattr(scheduler, "trigger_retrain", lambda app: True)
    world = World(app)
    client = world.client_for(role)
    body = {"json": case.json} if case.json is not None else {"data": case.data}
    response = client.open(
        case.path.format(**world.ids), method=case.method, headers=case.headers, **body
    )
    assert response.status_code == case.expected(role), response.get_data(as_text=True)[:300]
    if role == ANONYMOUS and response.status_code == 302:
        assert urlsplit(response.location).path == "/login"


def test_every_route_is_in_the_matrix(app):
    missing = [
        f"{method} {rule.rule} ({rule.endpoint})"
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
        if method not in {case.method for case in ACCESS.get(rule.endpoint, [])}
    ]
    assert not missing, "add rows to ACCESS in tests/web/test_access_matrix.py for: " + ", ".join(
        missing
    )
    stale = set(ACCESS) - {rule.endpoint for rule in app.url_map.iter_rules()}
    assert not stale, f"ACCESS has rows for endpoints that no longer exist: {sorted(stale)}"


def test_each_row_targets_its_endpoint(app):
    adapter = app.url_map.bind("localhost")
    for endpoint, cases in ACCESS.items():
        for case in cases:
            path = urlsplit(case.path.format(**DUMMY_IDS)).path  # routing ignores the query
            matched, _ = adapter.match(path, method=case.method)
            assert matched == endpoint, (
                f"{case.method} {case.path} is {matched}, listed under {endpoint}"
            )


def test_matrix_agrees_with_role_required(app):
    """A role a view's ``role_required`` excludes must be expected to get 403 on every row."""
    for endpoint, cases in ACCESS.items():
        allowed = getattr(app.view_functions.get(endpoint), "allowed_roles", None)
        if allowed is None:
            continue
        for role in (STUDENT, PROFESSOR, ADMIN):
            if role not in allowed:
                wrong = [c.path for c in cases if c.expected(role) != 403]
                assert not wrong, (
                    f"{endpoint}: {role} is not in {allowed} but expects non-403 on {wrong}"
                )
