"""Fold-in: its cost in the fragment, and its quality against a full retrain.

1. Fragment latency on the demo campus (seed 42, a published model): the same logged-in students
   load ``GET /challenges/recommended`` in process (Flask test client; rendering, impressions and
   all) with the precomputed rows, then with every student re-scored on the fly. The two paths
   alternate round by round; switching is moving the version's ``trained_through`` before everyone's
   latest interaction, which is exactly what makes serving fold a student in. Target: the fold-in
   median within 2x the precomputed median.
2. MovieLens-100k: users are split into ten folds. For each fold, each held-out user's ratings are
   split 80/20 at random; the "stored" model is fitted without the held-out users and folds in
   their 80 %, the "retrained" model is fitted on everyone else plus those 80 %. Both rank the
   catalogue the stored model knows (minus the user's 80 %) and are scored by NDCG@10 on the 20 %.
   Target: the mean NDCG@10 of fold-in within 0.01 of the retrain's.

    .venv/bin/python -m bench.foldin [--students 40] [--rounds 5] [--movielens PATH]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from bench.common import app_config, migrated_app, progress, workdir, write_result

DEFAULT_MOVIELENS = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ml-100k" / "u.data"
)
HTMX = {"HX-Request": "true"}
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
OPEN_GATE_MARGIN = -1.0  # publish whatever wins: the benchmark is about serving the model
LATENCY_TARGET_RATIO = 2.0
NDCG_TARGET = 0.01
K = 10
SEED = 42
FOLDS = 10
HELD_OUT_FRACTION = 0.2
# The best parameters on MovieLens-100k's random split (bench/results/quality.json).
MOVIELENS_PARAMS = {
    "svd": {"n_components": 16},
    "knn": {"n_neighbors": 200},
    "ease": {"l2": 500.0},
    "session_ease": {"l2": 4.5, "tau": 300.0, "mix": 0.75, "a": 0.1},
}


# --- 1. The fragment ------------------------------------------------------------------------------


def fragment_latency(students: int, rounds: int) -> dict:
    from app.demo import DEMO_PASSWORD, seed_demo_campus
    from app.recs import pipeline

    with workdir("foldin") as folder:
        app = migrated_app({**app_config(folder), "RECS_GATE_MARGIN": OPEN_GATE_MARGIN})
        with app.app_context():
            progress("seeding the demo campus and publishing a model")
            summary = seed_demo_campus(seed=SEED)
            result = pipeline.train(trigger="bench")
            if result.status != "published":
                raise RuntimeError(f"the pipeline did not publish: {result.status} {result.reason}")
            algorithm, trained_through = _published(app)
        # Requests run outside that context: a shared one would share Flask-Login's ``g`` user.
        clients = _logged_in_students(app, students, DEMO_PASSWORD)
        modes = {"precomputed": trained_through, "fold-in": trained_through - timedelta(days=3650)}
        checked = {mode: _sources_in(app, moment, clients) for mode, moment in modes.items()}
        timings: dict[str, list[float]] = {mode: [] for mode in modes}
        for moment in modes.values():  # warm-up: artifact, content model, templates
            _set_cutoff(app, moment)
            _load_all(clients)
        for number in range(rounds):
            progress(f"fragment round {number + 1}/{rounds}")
            for mode, moment in modes.items():
                _set_cutoff(app, moment)
                timings[mode].extend(_load_all(clients))
    return _latency_summary(timings, checked, summary, algorithm, students, rounds)


def _published(app) -> tuple[str, object]:
    from app.recs import publish

    run = publish.published_run()
    return run.algorithm, run.trained_through


def _logged_in_students(app, count: int, password: str) -> list:
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Role, User, UserRecommendation

    with app.app_context():
        with_rows = select(UserRecommendation.user_id).distinct()
        users = db.session.execute(
            select(User.id, User.email)
            .where(User.role == Role.STUDENT.value, User.id.in_(with_rows))
            .order_by(User.id)
            .limit(count)
        ).all()
    clients = []
    for user_id, email in users:
        client = app.test_client()
        token = _CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
        response = client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )
        if response.status_code != 302:
            raise RuntimeError(f"login as {email} failed: {response.status_code}")
        client.user_id = user_id
        clients.append(client)
    return clients


def _set_cutoff(app, moment) -> None:
    from app.extensions import db
    from app.recs import publish

    with app.app_context():
        publish.published_run().trained_through = moment
        db.session.commit()


def _sources_in(app, moment, clients) -> dict[str, int]:
    """How many students each slate source serves with this cutoff (to show the mode is real)."""
    from app.recs import serving

    _set_cutoff(app, moment)
    counts: dict[str, int] = {}
    with app.app_context():
        for client in clients:
            source = serving.get_recommendations(client.user_id).source
            counts[source] = counts.get(source, 0) + 1
    return counts


def _load_all(clients) -> list[float]:
    seconds = []
    for client in clients:
        started = time.perf_counter()
        response = client.get("/challenges/recommended", headers=HTMX)
        seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"fragment answered {response.status_code}")
    return seconds


def _latency_summary(timings, checked, summary, algorithm, students, rounds) -> dict:
    def stats(values: list[float]) -> dict:
        ordered = sorted(values)
        return {
            "requests": len(values),
            "median_ms": round(1000 * statistics.median(ordered), 2),
            "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
            "mean_ms": round(1000 * statistics.fmean(ordered), 2),
        }

    table = {mode: stats(values) for mode, values in timings.items()}
    ratio = table["fold-in"]["median_ms"] / table["precomputed"]["median_ms"]
    return {
        "campus": f"seed_demo_campus(seed={SEED}): {summary.students} students, "
        f"{summary.challenges} challenges",
        "algorithm": algorithm,
        "students": students,
        "rounds": rounds,
        "slate_sources": checked,
        "paths": table,
        "median_ratio": round(ratio, 2),
        "target_ratio": LATENCY_TARGET_RATIO,
        "passed": ratio <= LATENCY_TARGET_RATIO,
    }


# --- 2. MovieLens-100k ----------------------------------------------------------------------------


def movielens_agreement(path: Path) -> dict:
    from app.recs.data import read_movielens

    interactions = read_movielens(path)
    rng = np.random.default_rng(SEED)
    users = np.unique(interactions.user_ids)
    fold_of = dict(zip(users.tolist(), rng.permutation(len(users)) % FOLDS, strict=True))
    held_part = _held_out_part(interactions, rng)
    per_model = {}
    for name, params in MOVIELENS_PARAMS.items():
        folded, retrained = [], []
        for fold in range(FOLDS):
            progress(f"MovieLens {name}: fold {fold + 1}/{FOLDS}")
            a, b = _one_fold(interactions, fold_of, held_part, fold, name, params)
            folded.append(a)
            retrained.append(b)
        folded, retrained = np.concatenate(folded), np.concatenate(retrained)
        difference = retrained - folded
        per_model[name] = {
            "params": params,
            "users": int(len(folded)),
            "ndcg_fold_in": round(float(folded.mean()), 4),
            "ndcg_retrain": round(float(retrained.mean()), 4),
            "mean_difference": round(float(difference.mean()), 4),
            "mean_absolute_difference": round(float(np.abs(difference).mean()), 4),
            "passed": abs(float(difference.mean())) <= NDCG_TARGET,
        }
    return {"source": str(path), "k": K, "folds": FOLDS, "target": NDCG_TARGET, "models": per_model}


def _held_out_part(interactions, rng) -> np.ndarray:
    """True for the 20 % of each user's ratings that are held out (kept aside for scoring)."""
    held = np.zeros(len(interactions), dtype=bool)
    order = np.argsort(interactions.user_ids, kind="stable")
    bounds = np.flatnonzero(np.diff(interactions.user_ids[order])) + 1
    for rows in np.split(order, bounds):
        count = max(1, int(round(HELD_OUT_FRACTION * len(rows))))
        held[rng.choice(rows, count, replace=False)] = True
    return held


def _one_fold(interactions, fold_of, held_part, fold, name, params):
    from app.recs.data import IdMap, InteractionMatrix
    from app.recs.evaluate import hit_matrix, ndcg_at_k
    from app.recs.models import CANDIDATES, top_k

    in_fold = np.array([fold_of[u] == fold for u in interactions.user_ids.tolist()])
    others = interactions.take(~in_fold)
    known = InteractionMatrix.build(others)  # the stored version: never saw the fold's users
    items = known.items
    fold_users = IdMap(interactions.user_ids[in_fold])
    seen = InteractionMatrix.build(interactions.take(in_fold & ~held_part), fold_users, items)
    relevant = InteractionMatrix.build(interactions.take(in_fold & held_part), fold_users, items)
    relevant_matrix = relevant.matrix - relevant.matrix.multiply(seen.matrix > 0)
    relevant_matrix.eliminate_zeros()
    evaluated = np.flatnonzero(
        (np.diff(relevant_matrix.indptr) > 0) & (np.diff(seen.matrix.indptr) > 0)
    )

    stored = CANDIDATES[name](**params).fit(known.matrix, known.times)
    both = interactions.take(~in_fold | ~held_part)
    everyone = InteractionMatrix.build(both, IdMap(both.user_ids), items)
    retrained = CANDIDATES[name](**params).fit(everyone.matrix, everyone.times)
    rows = seen.matrix[evaluated]
    positives = relevant_matrix[evaluated]
    n_relevant = np.diff(positives.indptr)
    scores = []
    for model in (stored, retrained):
        # Fold-in and retrain score the same rows; only the item-side state differs.
        ranked, _ = top_k(model, rows, K, exclude=rows)
        scores.append(ndcg_at_k(hit_matrix(ranked, positives), n_relevant, K))
    return scores[0], scores[1]


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=40, help="logged-in students [40]")
    parser.add_argument(
        "--rounds", type=int, default=5, help="fragment loads per student and path [5]"
    )
    parser.add_argument(
        "--movielens",
        type=Path,
        default=DEFAULT_MOVIELENS,
        help=f"MovieLens u.data [default: {DEFAULT_MOVIELENS}]",
    )
    args = parser.parse_args()
    payload = {"fragment": fragment_latency(args.students, args.rounds)}
    if args.movielens.is_file():
        payload["movielens"] = movielens_agreement(args.movielens)
    else:
        progress(f"MovieLens skipped: {args.movielens} not found (pass --movielens PATH)")
    write_result("foldin", payload)
    fragment = payload["fragment"]
    print(
        f"fragment ({fragment['algorithm']}): precomputed median "
        f"{fragment['paths']['precomputed']['median_ms']} ms, fold-in median "
        f"{fragment['paths']['fold-in']['median_ms']} ms, ratio {fragment['median_ratio']} "
        f"(target <= {LATENCY_TARGET_RATIO}); sources {fragment['slate_sources']}"
    )
    for name, row in payload.get("movielens", {}).get("models", {}).items():
        print(
            f"MovieLens {name}: NDCG@{K} fold-in {row['ndcg_fold_in']} retrain "
            f"{row['ndcg_retrain']} mean difference {row['mean_difference']} "
            f"(|.| <= {NDCG_TARGET}: {row['passed']}), users {row['users']}"
        )


if __name__ == "__main__":
    main()
