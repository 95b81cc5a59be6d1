"""Offline quality: every candidate model and both baselines on MovieLens-100k and on the demo
campus, for the random per-user 80/20 split and the time split.

The splits, tuning, baselines and metrics are the product's own (``app.recs.evaluate.compare``, the
code behind ``flask recs evaluate`` and the pipeline's gate); this script adds the timing of each
model's final fit and of scoring every evaluated user, which ``compare`` lumps together, and, on
MovieLens, the spread over other random-split seeds: one seed's split is one draw, and the
difference between two models on the same draws says more than either figure alone. For the same
draws it also records plain EASE's ceiling: the best NDCG@K any l2 of a fine sweep reaches when
picked on the held-out part itself. That is an upper bound for EASE on a draw, not a result.

    .venv/bin/python -m bench.quality [--movielens PATH] [--skip-demo] [--spread-seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import REPO, app_config, migrated_app, progress, workdir, write_result

DEFAULT_MOVIELENS = REPO.parent / "shared" / "data" / "ml-100k" / "u.data"
SPLITS = ("random", "time")
K = 10
SEED = 42
SPREAD_SEEDS = (0, 1, 2, 3, 4)
# EASE (the paper's model) against our best candidate, paired on each seed's split.
SPREAD_MODELS = ("ease", "session_ease")
# Finer than EASE's tuning grid, around where MovieLens-100k peaks.
CEILING_L2 = (100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 500.0, 700.0, 1000.0)


def evaluate_dataset(name: str, interactions, features_for: Callable, settings) -> dict:
    """Both splits of one data set: the product's comparison plus fit and scoring times."""
    from app.recs.data import InteractionMatrix

    full = InteractionMatrix.build(interactions)
    result = {
        "dataset": name,
        "events": len(interactions),
        "users": len(full.users),
        "items": len(full.items),
        "cells": full.nnz,
        "splits": [],
    }
    for kind in SPLITS:
        progress(f"{name}: {kind} split")
        result["splits"].append(_evaluate_split(name, kind, interactions, features_for, settings))
    return result


def _make_split(kind: str, interactions, settings):
    from app.recs.evaluate import random_split, time_split

    if kind == "random":
        return random_split(interactions, settings.holdout_fraction, settings.seed)
    return time_split(interactions, settings.holdout_fraction)


def _evaluate_split(name: str, kind: str, interactions, features_for: Callable, settings) -> dict:
    from app.recs.evaluate import baselines, build_candidate, compare

    split = _make_split(kind, interactions, settings)
    features = features_for(split.train.items)
    started = time.perf_counter()
    comparison = compare(
        split, features, settings, progress=lambda step: progress(f"{name} {kind}: {step} done")
    )
    compare_seconds = time.perf_counter() - started
    fresh_baselines = {b.name: b for b in baselines(split, features, settings)}
    rows = []
    for row in comparison.rows:
        model = fresh_baselines.get(row.name) or build_candidate(row.name, row.params)
        rows.append(
            {
                **_timed_row(model, split, settings.k),
                "name": row.name,
                "params": row.params,
                "validation_ndcg": row.validation_ndcg,
                "baseline": row.name in fresh_baselines,
                **{
                    key: getattr(row.test, key)
                    for key in ("precision", "recall", "ndcg", "coverage")
                },
                "compare_seconds": round(row.seconds, 3),
            }
        )
    return {
        "kind": kind,
        "users_evaluated": comparison.rows[0].test.users if comparison.rows else 0,
        "train_cells": split.train.nnz,
        "test_cells": int(split.test.nnz),
        "candidates": int(split.candidates.sum()),
        "best": comparison.best,
        "compare_seconds": round(compare_seconds, 2),
        "rows": rows,
    }


def _timed_row(model, split, k: int) -> dict:
    """Seconds to fit on the training part, and to score and rank every evaluated user."""
    from app.recs.models import top_k

    started = time.perf_counter()
    model.fit(split.train.matrix, split.train.times)
    fitted = time.perf_counter()
    seen = split.train.matrix[split.eval_users]
    top_k(model, seen, k, exclude=seen, candidates=split.candidates)
    scored = time.perf_counter()
    return {"fit_seconds": round(fitted - started, 4), "score_seconds": round(scored - fitted, 4)}


def _settings(config):
    from app.recs.evaluate import EvaluationSettings

    return EvaluationSettings.from_config(config, seed=SEED, k=K)


def seed_spread(interactions, features_for: Callable, settings, seeds) -> list[dict]:
    """Per split seed, each of SPREAD_MODELS tuned and scored exactly as ``compare`` does it (a
    validation split carved from that seed's training part, lists topped up by the heuristic)."""
    from app.recs.evaluate import (
        heuristic_fallback,
        random_split,
        tune_and_score,
        validation_split,
    )

    rows = []
    for seed in seeds:
        split = random_split(interactions, settings.holdout_fraction, seed)
        validation = validation_split(split, settings.holdout_fraction, seed)
        features = features_for(split.train.items)
        fallbacks = (
            heuristic_fallback(split, features, settings),
            heuristic_fallback(validation, features, settings),
        )
        row = {"seed": seed}
        for name in SPREAD_MODELS:
            _, _, metrics = tune_and_score(name, split, validation, settings.k, fallbacks)
            row[name] = round(metrics.ndcg, 4)
        progress(f"MovieLens-100k random split, seed {seed}: {row}")
        rows.append(row)
    return rows


def ease_ceiling(interactions, settings, seeds) -> list[dict]:
    """Per split seed, plain EASE's best held-out NDCG@k over CEILING_L2, with that l2."""
    from app.recs.evaluate import evaluate_model, random_split
    from app.recs.models import EASE

    rows = []
    for seed in seeds:
        split = random_split(interactions, settings.holdout_fraction, seed)
        grid = [{"l2": l2} for l2 in CEILING_L2]
        scored = [
            (evaluate_model(model, split, settings.k).ndcg, params["l2"])
            for params, model in EASE.fit_grid(split.train.matrix, grid)
        ]
        ndcg, l2 = max(scored)
        rows.append({"seed": seed, "ndcg": round(ndcg, 4), "l2": l2})
        progress(f"MovieLens-100k random split, seed {seed}: EASE ceiling {ndcg:.4f} (l2={l2})")
    return rows


def movielens(path: Path, spread_seeds) -> dict:
    from app.config import DefaultConfig
    from app.recs.pipeline import read_interactions_file

    interactions, features_for = read_interactions_file(path, "movielens")
    config = {key: getattr(DefaultConfig, key) for key in dir(DefaultConfig) if key.isupper()}
    settings = _settings(config)
    result = evaluate_dataset("MovieLens-100k", interactions, features_for, settings)
    result["source"] = str(path)
    result["seed_spread"] = seed_spread(interactions, features_for, settings, spread_seeds)
    ceiling_seeds = [settings.seed, *(s for s in spread_seeds if s != settings.seed)]
    result["ease_ceiling"] = ease_ceiling(interactions, settings, ceiling_seeds)
    result["ease_ceiling_l2"] = list(CEILING_L2)
    return result


def demo_campus() -> dict:
    """The demo campus ``make run`` seeds (600 students, 150 challenges, seed 42), read from the
    database the way the pipeline reads it."""
    from app.demo import seed_demo_campus
    from app.recs.data import read_database
    from app.recs.evaluate import ItemFeatures

    with workdir("quality") as folder:
        app = migrated_app(app_config(folder))
        with app.app_context():
            progress("seeding the demo campus")
            summary = seed_demo_campus(seed=SEED)
            interactions = read_database(app.config["RECS_INTERACTION_WEIGHTS"])
            result = evaluate_dataset(
                "demo campus", interactions, ItemFeatures.from_database, _settings(app.config)
            )
            result["source"] = (
                f"seed_demo_campus(seed={SEED}): {summary.students} students, "
                f"{summary.challenges} challenges, "
                f"{summary.participations} participations"
            )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--movielens",
        type=Path,
        default=DEFAULT_MOVIELENS,
        help=f"MovieLens u.data [default: {DEFAULT_MOVIELENS}]",
    )
    parser.add_argument("--skip-demo", action="store_true", help="Only MovieLens.")
    parser.add_argument(
        "--spread-seeds",
        default=",".join(map(str, SPREAD_SEEDS)),
        help="other random-split seeds to pair EASE and session EASE on [0,1,2,3,4]; '' for none",
    )
    args = parser.parse_args(argv)
    spread_seeds = [int(seed) for seed in args.spread_seeds.split(",") if seed.strip()]

    datasets, skipped = [], []
    if args.movielens.is_file():
        datasets.append(movielens(args.movielens, spread_seeds))
    else:
        message = f"MovieLens skipped: {args.movielens} not found (pass --movielens PATH)"
        progress(message)
        skipped.append(message)
    if not args.skip_demo:
        datasets.append(demo_campus())
    write_result("quality", {"k": K, "seed": SEED, "datasets": datasets, "skipped": skipped})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
