"""What every benchmark shares: a throwaway migrated database, the machine's description, results
files, progress lines, and py-spy profiles summarised as "which function dominates"."""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
PY_SPY = Path(sys.executable).with_name("py-spy")


def progress(message: str) -> None:
    """One timestamped line on stderr, so long runs show where they are."""
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def command_line() -> str:
    """How this script was started, as a copy-pasteable command from the repository root."""
    module = Path(sys.argv[0]).resolve().relative_to(REPO).with_suffix("")
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    return f".venv/bin/python -m {'.'.join(module.parts)} {args}".strip()


# --- A throwaway database -------------------------------------------------------------------------


def app_config(workdir: Path) -> dict:
    """Settings for a benchmark app: its own SQLite file and model folder, no scheduler."""
    return {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'bench.db'}",
        "SECRET_KEY": secrets.token_hex(32),
        "RECS_MODEL_DIR": str(workdir / "models"),
        "RECS_SCHEDULER_ENABLED": False,
        # A load generator is one client per session far past any person's pace: measured
        # here is the server's throughput, not the per-student budget.
        "RECS_REQUESTS_PER_MINUTE": 0,
        "LOG_LEVEL": "WARNING",
    }


def migrated_app(config: dict):
    """An app on a database built by the migrations, as production builds it."""
    import logging

    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    # The app logs at INFO by default; a benchmark's output is its progress lines and figures.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app = create_app(config)
    with app.app_context():
        upgrade(directory=str(REPO / "migrations"))
        db.engine.dispose()
    return app


@contextmanager
def workdir(prefix: str):
    """A temporary folder, removed afterwards unless BENCH_KEEP=1 (to look at the database)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(path, ignore_errors=True)
        else:
            progress(f"kept {path}")


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (ru_maxrss is KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- The machine ----------------------------------------------------------------------------------


def machine() -> dict:
    import sqlite3

    import numpy
    import scipy
    import sklearn

    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "sqlite": sqlite3.sqlite_version,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_result(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "benchmark": name,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "machine": machine(),
        **payload,
    }
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    progress(f"wrote {path.relative_to(REPO)}")
    return path


class Stopwatch:
    """Wall time per named step, in order, from step marks (the pipeline's progress callback)."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self._current: str | None = None
        self._since = time.perf_counter()

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        if self._current is not None:
            self.steps[self._current] = self.steps.get(self._current, 0.0) + now - self._since
        self._current, self._since = step, now

    def stop(self) -> dict[str, float]:
        self.mark("")
        self.steps.pop("", None)
        return {step: round(seconds, 2) for step, seconds in self.steps.items()}


# --- Profiles -------------------------------------------------------------------------------------


def py_spy_available() -> bool:
    return PY_SPY.exists() or shutil.which("py-spy") is not None


def py_spy_command() -> str:
    return str(PY_SPY) if PY_SPY.exists() else "py-spy"


def record_profile(
    pid: int, seconds: float, output: Path, subprocesses: bool = False
) -> subprocess.Popen:
    """Start sampling ``pid`` (and its children) for ``seconds`` into a collapsed-stack file."""
    args = [
        py_spy_command(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--format",
        "raw",
        "--output",
        str(output),
        "--nolineno",
        "--rate",
        "100",
        "--nonblocking",
    ]
    if subprocesses:
        args.append("--subprocesses")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*)\)$")


def summarize_profile(path: Path, top: int = 12) -> dict:
    """From collapsed stacks, over the samples that pass through our code (``app/``): the functions
    of ours on the stack most often (inclusive) and the leaves where the time goes (self), as
    percentages. Samples outside our code (the server's accept loop, the sampler's own idle
    threads) are counted but not ranked."""
    inclusive: Counter = Counter()
    leaves: Counter = Counter()
    total = ours = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_frame_name(f) for f in stack.split(";") if f]
        mine = {name for name in frames if name.startswith("app/")}
        if not mine:
            continue
        ours += samples
        for name in mine:
            inclusive[name] += samples
        leaves[frames[-1]] += samples

    def shares(counter: Counter) -> list[list]:
        return [[name, round(100 * n / ours, 1)] for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "samples_in_app": ours,
        "ours_inclusive": shares(inclusive) if ours else [],
        "self": shares(leaves) if ours else [],
    }


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    # py-spy shortens paths to the package part: ours read app/..., others e.g. gunicorn/app/...
    ours = str(REPO / "app") + "/"
    if file.startswith(ours):
        file = "app/" + file[len(ours) :]
    return f"{file}:{match['function']}"
