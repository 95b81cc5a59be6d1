"""Serving under load: the app under gunicorn (the production command) on 127.0.0.1, driven by wrk
with logged-in sessions, every route measured in the same run as the baseline route.

Two throwaway databases: the demo campus with a published model (the fragment reads model rows),
and a demo campus with 5,000 challenges and no model (the fragment runs the heuristic). Each run of
wrk is bounded (``--duration``); the servers are stopped afterwards whatever happens.

    .venv/bin/python -m bench.serving [--duration 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    REPO,
    app_config,
    migrated_app,
    progress,
    py_spy_available,
    record_profile,
    summarize_profile,
    workdir,
    write_result,
)

GUNICORN_ARGS = ["-w", "2", "-k", "gthread", "--threads", "4"]
SESSIONS = 64
SLATES_PER_SESSION = 200
EVENT_BATCH = 10
# Cards per benchmark slate (a page's worth): events are about these, twelve per slate.
EVENT_CARDS = 6
HEURISTIC_CHALLENGES = 5_000
LUA_SCRIPT = REPO / "bench" / "wrk_session.lua"
# Flask-Login's "strong" session protection ties a session to the client's address and user agent,
# so the login and the load generator present the same one.
USER_AGENT = "campus-bench/1.0"
HTMX = {"HX-Request": "true"}
TARGETS = {"fragment_model": 0.5, "fragment_heuristic": 0.25}
TARGET_EVENTS_PER_SECOND = 2_000
# The gate is opened so the model-rows fragment has rows to read whatever the time split says.
OPEN_GATE_MARGIN = -1.0


# --- Databases ------------------------------------------------------------------------------------


def prepare_model_campus(folder: Path) -> dict:
    """Demo campus, a published model, and slates for the event sessions to refer to."""
    from app.demo import seed_demo_campus
    from app.recs import pipeline

    config = {**app_config(folder), "RECS_GATE_MARGIN": OPEN_GATE_MARGIN}
    app = migrated_app(config)
    with app.app_context():
        summary = seed_demo_campus(seed=42)
        result = pipeline.train(trigger="bench")
        if result.status != "published":
            raise RuntimeError(f"the pipeline did not publish: {result.status} {result.reason}")
        challenges = _event_challenges()
        _add_slates(SESSIONS, SLATES_PER_SESSION, challenges)
    return {
        "config": config,
        "students": summary.students,
        "challenges": summary.challenges,
        "model_version": result.version,
        "event_challenges": challenges,
    }


def prepare_heuristic_campus(folder: Path) -> dict:
    from sqlalchemy import func, select

    from app.demo import seed_demo_campus
    from app.extensions import db
    from app.models import utcnow
    from app.recs.eligibility import eligible_challenges

    config = app_config(folder)
    app = migrated_app(config)
    with app.app_context():
        summary = seed_demo_campus(seed=42, challenges=HEURISTIC_CHALLENGES)
        eligible = db.session.scalar(
            select(func.count()).select_from(eligible_challenges(utcnow()).subquery())
        )
    return {
        "config": config,
        "students": summary.students,
        "challenges": summary.challenges,
        "eligible_challenges": eligible,
    }


def _add_slates(sessions: int, per_session: int, cards: list[int]) -> None:
    """Slates owned by the first students, as if each had been served that many API pages of
    ``cards``: the event endpoint accepts events about the cards a slate served."""
    from sqlalchemy import insert, select

    from app.demo import student_email
    from app.extensions import db
    from app.models import RecommendationSlate, RecommendationSlateCard, User, utcnow

    emails = [student_email(n) for n in range(1, sessions + 1)]
    users = db.session.scalars(select(User.id).where(User.email.in_(emails))).all()
    now = utcnow()
    slates = [
        {"id": _uuid(), "user_id": user_id, "source": "model", "created_at": now}
        for user_id in users
        for _ in range(per_session)
    ]
    db.session.execute(insert(RecommendationSlate), slates)
    db.session.execute(
        insert(RecommendationSlateCard),
        [
            {"slate_id": slate["id"], "challenge_id": challenge, "position": n, "source": "model"}
            for slate in slates
            for n, challenge in enumerate(cards)
        ],
    )
    db.session.commit()


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _event_challenges() -> list[int]:
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Challenge, ChallengeStatus

    return list(
        db.session.scalars(
            select(Challenge.id)
            .where(Challenge.status != ChallengeStatus.DRAFT.value)
            .order_by(Challenge.id)
            .limit(EVENT_CARDS)
        )
    )


def owned_slates(config: dict, emails: list[str]) -> dict[str, list[str]]:
    from sqlalchemy import select

    from app import create_app
    from app.extensions import db
    from app.models import RecommendationSlate, User

    app = create_app(config)
    with app.app_context():
        rows = db.session.execute(
            select(User.email, RecommendationSlate.id)
            .join(RecommendationSlate, RecommendationSlate.user_id == User.id)
            .where(User.email.in_(emails))
        )
        slates: dict[str, list[str]] = {}
        for email, slate_id in rows:
            slates.setdefault(email, []).append(slate_id)
        db.engine.dispose()
    return slates


def stored_events(config: dict, tag: str) -> int:
    from sqlalchemy import func, select

    from app import create_app
    from app.extensions import db
    from app.models import RecommendationEvent

    app = create_app(config)
    with app.app_context():
        count = db.session.scalar(
            select(func.count())
            .select_from(RecommendationEvent)
            .where(RecommendationEvent.event_id.like(f"{tag}-%"))
        )
        db.engine.dispose()
    return int(count or 0)


# --- The server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(port: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS, "-b", f"127.0.0.1:{port}", "wsgi:app"]


@contextmanager
def gunicorn(config: dict, log_path: Path):
    """The production command on a free loopback port; stopped (TERM, then KILL) on the way out."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        {
            f"FLASK_{key}": json.dumps(value) if not isinstance(value, str) else value
            for key, value in config.items()
        }
    )
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            server_command(port),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base, server)
            yield base, server
        finally:
            _stop(server)


def _wait_healthy(base: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not answer /healthz within {timeout:.0f} s")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


# --- Sessions -------------------------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
_FORM_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def login(base: str, email: str, password: str = "demo1234") -> dict:
    """Log in like a browser; returns the session cookie and the CSRF token of that session."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", USER_AGENT)]
    page = opener.open(f"{base}/login", timeout=10).read().decode()
    token = _FORM_CSRF.search(page) or _CSRF.search(page)
    if token is None:
        raise RuntimeError("no CSRF token on /login")
    body = urllib.parse.urlencode(
        {"email": email, "password": password, "csrf_token": token.group(1)}
    ).encode()
    landing = opener.open(f"{base}/login", data=body, timeout=10)
    if "/login" in landing.url:
        raise RuntimeError(f"login as {email} failed (landed on {landing.url})")
    # A page rendered in the logged-in session puts that session's CSRF token in the cookie.
    page = opener.open(f"{base}/challenges", timeout=10).read().decode()
    token = _CSRF.search(page)
    if token is None:
        raise RuntimeError("no csrf-token meta tag on /challenges")
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    return {"email": email, "cookie": cookie, "csrf": token.group(1)}


# --- wrk ------------------------------------------------------------------------------------------


def _lua_value(value) -> str:
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"[{_lua_value(k)}] = {_lua_value(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "{" + ", ".join(_lua_value(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string literal is a valid Lua string literal here


def run_wrk(
    base: str,
    route: dict,
    folder: Path,
    duration: int,
    connections: int,
    profile_pid: int | None = None,
) -> dict:
    config_path = folder / f"wrk-{route['name']}.lua"
    config_path.write_text(
        "return "
        + _lua_value(
            {
                "mode": route.get("mode", "get"),
                "path": route["path"],
                "headers": {**route.get("headers", {}), "User-Agent": USER_AGENT},
                "sessions": route["sessions"],
                "challenges": route.get("challenges", [1]),
                "batch": EVENT_BATCH,
                "tag": route.get("tag", "00000000"),
            }
        )
        + "\n"
    )
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        f"{base}{route['path']}",
        "--",
        str(config_path),
    ]
    sampler = None
    if profile_pid is not None:
        profile_path = folder / f"profile-{route['name']}.txt"
        sampler = record_profile(profile_pid, duration, profile_path, subprocesses=True)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    if sampler is not None:
        sampler.wait(timeout=60)
        return summarize_profile(profile_path) if profile_path.exists() else {}
    line = next(
        (out for out in finished.stdout.splitlines() if out.startswith("BENCH_JSON ")), None
    )
    if finished.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr[-500:]}")
    raw = json.loads(line[len("BENCH_JSON ") :])
    seconds = raw["duration_us"] / 1e6
    return {
        "route": route["name"],
        "method": "POST" if route.get("mode") == "events" else "GET",
        "path": route["path"],
        "requests": raw["requests"],
        "seconds": round(seconds, 2),
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": round(raw["latency_us"]["p50"] / 1000, 2),
        "p99_ms": round(raw["latency_us"]["p99"] / 1000, 2),
        "not_ok": raw["not_ok"],
        "socket_errors": raw["errors"],
        "events": {key: raw[key] for key in ("events_sent", "acked", "duplicates")}
        if route.get("mode") == "events"
        else None,
    }


# --- The runs -------------------------------------------------------------------------------------


def bench_model_server(prepared: dict, folder: Path, args, profile: bool) -> tuple[list, dict]:
    from app.demo import student_email

    emails = [student_email(n) for n in range(1, SESSIONS + 1)]
    slates = owned_slates(prepared["config"], emails)
    tag = secrets.token_hex(4)
    with gunicorn(prepared["config"], folder / "gunicorn-model.log") as (base, server):
        sessions = [login(base, email) for email in emails]
        # Separate slates for the measured and the profiled pass: a (type, slate, challenge)
        # sent twice would be a duplicate, which skips the insert being measured.
        measured = [{**s, "slates": slates[s["email"]][:-50]} for s in sessions]
        profiled = [{**s, "slates": slates[s["email"]][-50:]} for s in sessions]
        routes = [
            {"name": "baseline", "path": "/login", "sessions": [{}]},
            {"name": "challenges", "path": "/challenges", "sessions": sessions},
            {
                "name": "fragment_model",
                "path": "/challenges/recommended",
                "headers": HTMX,
                "sessions": sessions,
            },
            {
                "name": "events",
                "path": "/recommendations/event",
                "mode": "events",
                "sessions": measured,
                "challenges": prepared["event_challenges"],
                "tag": tag,
            },
        ]
        results = _measure_routes(base, routes, folder, args)
        profiles = {}
        if profile:
            for route in routes[1:]:
                progress(f"profiling {route['name']} ({args.profile_seconds} s)")
                if route["name"] == "events":
                    route = {**route, "tag": secrets.token_hex(4), "sessions": profiled}
                profiles[route["name"]] = run_wrk(
                    base,
                    route,
                    folder,
                    args.profile_seconds,
                    args.connections,
                    profile_pid=server.pid,
                )
    events = next(r for r in results if r["route"] == "events")
    stored = stored_events(prepared["config"], tag)
    acked = events["events"]["acked"]
    events["events"].update(
        stored=stored,
        lost=max(0, acked - stored),
        stored_unacknowledged=max(0, stored - acked),
        events_per_second=round(acked / events["seconds"], 1),
    )
    return results, profiles


def bench_heuristic_server(prepared: dict, folder: Path, args, profile: bool) -> tuple[list, dict]:
    from app.demo import student_email

    emails = [student_email(n) for n in range(1, SESSIONS + 1)]
    with gunicorn(prepared["config"], folder / "gunicorn-heuristic.log") as (base, server):
        sessions = [login(base, email) for email in emails]
        routes = [
            {"name": "baseline_5k", "path": "/login", "sessions": [{}]},
            {
                "name": "fragment_heuristic",
                "path": "/challenges/recommended",
                "headers": HTMX,
                "sessions": sessions,
            },
        ]
        results = _measure_routes(base, routes, folder, args)
        profiles = {}
        if profile:
            progress(f"profiling fragment_heuristic ({args.profile_seconds} s)")
            profiles["fragment_heuristic"] = run_wrk(
                base,
                routes[1],
                folder,
                args.profile_seconds,
                args.connections,
                profile_pid=server.pid,
            )
    return results, profiles


def _measure_routes(base: str, routes: list[dict], folder: Path, args) -> list[dict]:
    results = []
    for route in routes:
        progress(f"wrk {route['name']}: {args.duration} s, {args.connections} connections")
        result = run_wrk(base, route, folder, args.duration, args.connections)
        progress(
            f"  {result['rps']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms"
            + (f", {result['not_ok']} not OK" if result["not_ok"] else "")
        )
        results.append(result)
    return results


def summarize(model_results: list[dict], heuristic_results: list[dict]) -> dict:
    baseline = next(r for r in model_results if r["route"] == "baseline")["rps"]
    baseline_5k = next(r for r in heuristic_results if r["route"] == "baseline_5k")["rps"]
    for result in model_results:
        result["ratio"] = round(result["rps"] / baseline, 3)
    for result in heuristic_results:
        # Against the baseline measured on the same server a minute earlier, and the first one.
        result["ratio"] = round(result["rps"] / baseline_5k, 3)
        result["ratio_first_baseline"] = round(result["rps"] / baseline, 3)
    by_name = {r["route"]: r for r in model_results + heuristic_results}
    events = by_name["events"]["events"]
    return {
        "fragment_model": {
            "target": TARGETS["fragment_model"],
            "ratio": by_name["fragment_model"]["ratio"],
            "ok": by_name["fragment_model"]["ratio"] >= TARGETS["fragment_model"],
        },
        "fragment_heuristic": {
            "target": TARGETS["fragment_heuristic"],
            "ratio": by_name["fragment_heuristic"]["ratio"],
            "ok": by_name["fragment_heuristic"]["ratio"] >= TARGETS["fragment_heuristic"],
        },
        "events": {
            "target": TARGET_EVENTS_PER_SECOND,
            "events_per_second": events["events_per_second"],
            "lost": events["lost"],
            "ok": events["events_per_second"] >= TARGET_EVENTS_PER_SECOND
            and events["lost"] == 0
            and by_name["events"]["not_ok"] == 0,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="Seconds per route [%(default)s].")
    parser.add_argument(
        "--connections",
        type=int,
        default=8,
        help="Concurrent connections (gunicorn has 2 x 4 threads) [%(default)s].",
    )
    parser.add_argument(
        "--profile-seconds",
        type=int,
        default=6,
        help="Extra profiled wrk pass per route with py-spy; 0 to skip [%(default)s].",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        progress("wrk not found: install it with apt-get install -y wrk (make bench does as root)")
        return 1
    profile = args.profile_seconds > 0 and py_spy_available()
    with workdir("serving-model") as model_folder, workdir("serving-heuristic") as heuristic_folder:
        progress("seeding the demo campus and publishing a model")
        model_campus = prepare_model_campus(model_folder)
        progress(f"seeding a demo campus with {HEURISTIC_CHALLENGES:,} challenges (no model)")
        heuristic_campus = prepare_heuristic_campus(heuristic_folder)
        model_results, model_profiles = bench_model_server(
            model_campus, model_folder, args, profile
        )
        heuristic_results, heuristic_profiles = bench_heuristic_server(
            heuristic_campus, heuristic_folder, args, profile
        )
    verdict = summarize(model_results, heuristic_results)
    for campus in (model_campus, heuristic_campus):
        campus.pop("config")
    model_campus.pop("event_challenges")
    write_result(
        "serving",
        {
            "server": " ".join(["gunicorn", *GUNICORN_ARGS, "wsgi:app"]),
            "load": f"wrk -t1 -c{args.connections} -d{args.duration}s, {SESSIONS} student sessions",
            "duration": args.duration,
            "connections": args.connections,
            "event_batch": EVENT_BATCH,
            "campus_model": model_campus,
            "campus_heuristic": heuristic_campus,
            "routes": model_results + heuristic_results,
            "verdict": verdict,
            "profiles": {**model_profiles, **heuristic_profiles},
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
