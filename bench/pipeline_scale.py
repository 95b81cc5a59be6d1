"""The training pipeline at campus scale: a synthetic campus (demo structure, bulk inserts) of N
students in a throwaway SQLite database, then the product's ``pipeline.train`` end to end (read ->
evaluate -> train -> generate (precompute) -> publish), timed per stage through the pipeline's own
progress callback.

Seeding and the pipeline each run in a child process, so each peak RSS (ru_maxrss) is its own.

    .venv/bin/python -m bench.pipeline_scale [--sizes 10000,100000,300000] [--profile-size N]
        [--campus-cache DIR] [--no-profile]

``--campus-cache DIR`` keeps each seeded database in DIR and copies it for later runs of the same
size (seeding 100k students takes minutes): for iterating on the pipeline. The campus's dates are
relative to when it was seeded, so a published figure comes from a freshly seeded run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    REPO,
    Stopwatch,
    app_config,
    peak_rss_mb,
    progress,
    py_spy_available,
    record_profile,
    summarize_profile,
    workdir,
    write_result,
)

DEFAULT_SIZES = (10_000, 100_000)
CHALLENGES = 5_000
PARTICIPATIONS_PER_STUDENT = 20
EVENTS_PER_STUDENT = 50
SEED = 0
TARGET_STUDENTS, TARGET_SECONDS, TARGET_RSS_MB = 100_000, 120.0, 4096.0
# The gate is opened so that every stage runs whatever the models score on synthetic data; the
# verdict at the configured margin is still computed and reported.
OPEN_GATE_MARGIN = -1.0


def _config(folder: Path) -> dict:
    config = app_config(folder)
    # A fixed key: the seeding and the pipeline processes open the same database.
    config["SECRET_KEY"] = "bench-pipeline-scale"
    config["RECS_GATE_MARGIN"] = OPEN_GATE_MARGIN
    return config


# --- Child processes ------------------------------------------------------------------------------


def child_seed(folder: Path, students: int, challenges: int) -> dict:
    from app.demo import generate_synthetic_campus
    from bench.common import migrated_app

    app = migrated_app(_config(folder))
    with app.app_context():
        started = time.perf_counter()
        summary = generate_synthetic_campus(
            students=students,
            challenges=challenges,
            participations_per_student=PARTICIPATIONS_PER_STUDENT,
            events_per_student=EVENTS_PER_STUDENT,
            seed=SEED,
        )
        seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "students": summary.students,
        "challenges": summary.challenges,
        "participations": summary.participations,
        "slates": summary.slates,
        "events": summary.events,
        "db_mb": round((folder / "bench.db").stat().st_size / 2**20, 1),
    }


def child_pipeline(folder: Path) -> dict:
    from app import create_app
    from app.config import DefaultConfig
    from app.recs import pipeline

    app = create_app(_config(folder))
    with app.app_context():
        stopwatch = Stopwatch()
        started = time.perf_counter()
        # No pipeline lock: this throwaway database has no other runner.
        result = pipeline.train(trigger="bench", progress=stopwatch.mark)
        total = time.perf_counter() - started
        stages = stopwatch.stop()
        run = pipeline.db.session.scalar(
            pipeline.select(pipeline.ModelRun).where(pipeline.ModelRun.version == result.version)
        )
        gate = (run.metrics or {}).get("gate", {})
        report = result.import_report
        return {
            "status": result.status,
            "reason": result.reason,
            "seconds": round(total, 2),
            "stages": stages,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "rows_published": report.accepted if report else 0,
            "students_covered": run.users_count,
            "data": (run.report or {}).get("data"),
            "algorithm": run.algorithm,
            "params": run.params,
            "model_ndcg": gate.get("model_ndcg"),
            "heuristic_ndcg": gate.get("heuristic_ndcg"),
            "passes_default_gate": (gate.get("model_ndcg") or 0)
            > (gate.get("heuristic_ndcg") or 0) + DefaultConfig.RECS_GATE_MARGIN,
        }


def _run_child(args: list[str], profile_to: Path | None = None) -> dict:
    command = [sys.executable, "-m", "bench.pipeline_scale", *args]
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    sampler = record_profile(child.pid, 3600, profile_to) if profile_to else None
    out, _ = child.communicate()
    if sampler is not None:
        sampler.wait(timeout=60)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {child.returncode}")
    return json.loads(out.strip().splitlines()[-1])


# --- The parent -----------------------------------------------------------------------------------


def _campus_key(students: int, challenges: int) -> str:
    """Names a seeded database by its size and by the code that wrote it, so a change to the
    generator or the schema never reuses a stale file."""
    digest = hashlib.sha256()
    sources = [REPO / "app" / "demo.py", REPO / "app" / "demo_plan.py", REPO / "app" / "models.py"]
    sources += sorted((REPO / "migrations" / "versions").glob("*.py"))
    for source in sources:
        if source.exists():
            digest.update(source.read_bytes())
    return f"campus-{students}-{challenges}-{SEED}-{digest.hexdigest()[:12]}"


def _seed(folder: Path, students: int, challenges: int, cache: Path | None) -> dict:
    """Seed ``folder``'s database, or copy it from ``cache`` when an identical one is there."""
    command = ["seed", str(folder), str(students), str(challenges)]
    if cache is None:
        return _run_child(command)
    key = _campus_key(students, challenges)
    cached_db, cached_summary = cache / f"{key}.db", cache / f"{key}.json"
    if not (cached_db.exists() and cached_summary.exists()):
        cache.mkdir(parents=True, exist_ok=True)
        summary = _run_child(command)
        shutil.copyfile(folder / "bench.db", cached_db)
        cached_summary.write_text(json.dumps(summary))
        return summary
    progress(f"{students:,} students: reusing the campus seeded in {cached_db}")
    shutil.copyfile(cached_db, folder / "bench.db")
    return {**json.loads(cached_summary.read_text()), "reused": str(cached_db)}


def measure(students: int, challenges: int, profile: bool, cache: Path | None = None) -> dict:
    with workdir(f"scale-{students}") as folder:
        progress(f"{students:,} students: generating the synthetic campus")
        seeded = _seed(folder, students, challenges, cache)
        progress(
            f"{students:,} students: seeded in {seeded['seconds']} s "
            f"({seeded['participations']:,} participations, {seeded['events']:,} events)"
        )
        progress(
            f"{students:,} students: running the pipeline"
            + (" (profiled with py-spy)" if profile else "")
        )
        profile_path = folder / "pipeline.profile.txt" if profile else None
        ran = _run_child(["pipeline", str(folder)], profile_path)
        progress(
            f"{students:,} students: pipeline {ran['status']} in {ran['seconds']} s, "
            f"peak RSS {ran['peak_rss_mb']:.0f} MB, stages {ran['stages']}"
        )
        result = {"students": students, "seed": seeded, "pipeline": ran}
        if profile_path is not None and profile_path.exists():
            result["profile"] = summarize_profile(profile_path, top=20)
        return result


def verdict(sizes: list[dict]) -> dict:
    """The 100k target, and growth: seconds per student relative to the smallest size."""
    by_size = {s["students"]: s["pipeline"] for s in sizes}
    smallest = min(by_size)
    growth = {
        str(n): round((p["seconds"] / n) / (by_size[smallest]["seconds"] / smallest), 2)
        for n, p in sorted(by_size.items())
    }
    target = by_size.get(TARGET_STUDENTS)
    return {
        "target": f"{TARGET_STUDENTS:,} students <= {TARGET_SECONDS:.0f} s and "
        f"<= {TARGET_RSS_MB / 1024:.0f} GB peak RSS",
        "seconds_ok": None if target is None else target["seconds"] <= TARGET_SECONDS,
        "rss_ok": None if target is None else target["peak_rss_mb"] <= TARGET_RSS_MB,
        "per_student_time_vs_smallest": growth,
        "linear_ok": all(g <= 1.15 for g in growth.values()),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("seed", "pipeline"):
        folder = Path(argv[1])
        result = (
            child_seed(folder, int(argv[2]), int(argv[3]))
            if argv[0] == "seed"
            else child_pipeline(folder)
        )
        print(json.dumps(result, default=str))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="Comma-separated student counts [default: %(default)s].",
    )
    parser.add_argument(
        "--challenges",
        type=int,
        default=CHALLENGES,
        help="Challenges of the synthetic campus [default: %(default)s].",
    )
    parser.add_argument(
        "--profile-size",
        type=int,
        default=None,
        help="Profile the pipeline at this size with py-spy [default: the largest].",
    )
    parser.add_argument("--no-profile", action="store_true", help="Profile no size.")
    parser.add_argument(
        "--campus-cache",
        type=Path,
        default=None,
        help="Keep seeded databases in this folder and reuse them for runs of the same size.",
    )
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    profile_size = None if args.no_profile else args.profile_size or sizes[-1]
    if profile_size and not py_spy_available():
        progress("py-spy not found: no profile (pip install -e '.[dev]')")
        profile_size = None
    results = [measure(n, args.challenges, n == profile_size, args.campus_cache) for n in sizes]
    write_result(
        "pipeline_scale",
        {
            "challenges": args.challenges,
            "participations_per_student": PARTICIPATIONS_PER_STUDENT,
            "events_per_student": EVENTS_PER_STUDENT,
            "gate_margin": OPEN_GATE_MARGIN,
            "sizes": results,
            "verdict": verdict(results),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
