"""Assemble ``docs/benchmarks.md`` from ``bench/results/*.json``: the tables, the machine, the
command behind each table, the targets, and what the profiles say limits each figure.

    .venv/bin/python -m bench.report
"""

from __future__ import annotations

import argparse
import json

from bench.common import REPO, RESULTS_DIR, progress

DOC = REPO / "docs" / "benchmarks.md"
MISSING = "_Not run yet: see the command above._"


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(header: list[str], rows: list[list]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ok(flag) -> str:
    return "n/a" if flag is None else ("met" if flag else "**missed**")


def seconds(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.1f}"


# Why a function of ours costs what it does, printed under a profile while that function is among
# its heaviest: a fixed cost stops being explained once the profile no longer shows it.
KNOWN_COSTS = {
    "app/recs/pipeline.py:_excluded_by_eligibility": (
        "reads every student's joined and dismissed challenges in one query "
        "(`data.excluded_pairs`) and maps them into a sparse matrix with `IdMap.index`."
    ),
    "app/recs/data.py:read_database": (
        "reads participations and click/dismiss events with one query each, straight from the "
        "DB-API cursor into numpy arrays (timestamps parsed in bulk); what remains is SQLite "
        "producing some 5M rows at 100k students."
    ),
    "app/recs/publish.py:write_rows": (
        "inserts about 30 rows per student through the driver's `executemany` on plain tuples, "
        "20,000 rows per commit; what remains (`do_executemany`) is SQLite's own work, including "
        "the table's unique constraint and its two indexes."
    ),
    "app/recs/evaluate.py:tune": (
        "fits every grid point on the validation split (5 SVD ranks, 5 kNN sizes, 7 EASE l2 "
        "values, 16 session-EASE points), sharing what a candidate's grid points have in common "
        "(one SVD at the largest rank, one similarity matrix, one Gram matrix per session "
        "weighting), and ranks a seeded sample of at most 5,000 validation students per grid "
        "point. What remains is one inverse per EASE grid point and the SVD."
    ),
    "app/recs/models.py:_ease_weights": (
        "inverts the dense items x items Gram matrix through its Cholesky factor (LAPACK "
        "`potrf`, `trtri`, then one symmetric product): O(items^3), whatever the number of "
        "students: once per grid point of both EASE variants, once more per variant on the "
        "evaluation's training part, and, when an EASE variant wins, once on all the data."
    ),
    "app/recs/models.py:SessionEASE.fit_grid": (
        "builds a session-weighted Gram matrix per mix value (`session_gram`: each student's "
        "cells in time order, pairs within 12 tau summed) and then, per grid point, scales its "
        "columns and inverts it; the inverses (`_ease_weights`) are nearly all of it."
    ),
    "app/recs/models.py:_item_factors": (
        "is scikit-learn's randomized SVD (10 power iterations with LU normalisation: `lu`, "
        "`qr`) of the users x items matrix; it grows with interactions. It runs once at the "
        "grid's largest rank (128) to tune and once at the chosen rank on the training part."
    ),
    "app/recs/models.py:top_k": (
        "scores blocks of 2,048 students against the candidate items densely and partitions each "
        "row (`np.argpartition`: `_wrapfunc`); in evaluation for at most 10,000 sampled students "
        "per model, in precompute for every student."
    ),
    "app/recs/events.py:record_page": (
        "writes the new slate's row and its 6 impressions in one transaction: two INSERTs and one "
        "commit per fragment. SQLite has one writer, so the server's 8 threads queue on those "
        "commits, and each impression also updates the event table's indexes."
    ),
    "app/recs/events.py:_insert_new": (
        "one `INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING` for the whole batch, then "
        "the commit; SQLite has one writer, so the server's 8 threads queue on that commit."
    ),
    "app/recs/events.py:_recorded": (
        "one query for the batch's slates (this student's only) joined to their impressions and "
        "clicks of the batch's challenges (natural-key duplicates, the card's position and "
        "source), one for the cards API pages served, and one more only when the batch holds a "
        "dismiss."
    ),
    "app/recs/eligibility.py:load_user_history": (
        "one query per request for the student's participations, clicks and dismissals (with the "
        "titles the reasons quote), clicks grouped per challenge in SQL, then a Python pass over "
        "one row per challenge and event. In the profiling pass each student carries a few "
        "hundred of the event pass's clicks: what remains (`fetchone`) is SQLite reading and "
        "grouping them; the rows Python converts no longer grow with clicks."
    ),
    "app/recs/content.py:Catalogue.cold_matches": (
        "compares the open cold challenges (most of a 5,000-challenge catalogue has fewer than "
        "`RECS_COLD_PARTICIPATIONS` joins) with the student's joined ones: a sparse x dense "
        "product per request; their feature rows are kept between requests."
    ),
    "app/recs/heuristic.py:rank_heuristic": (
        "scores every open challenge for the student in numpy from the per-process catalogue "
        "arrays (reread when the catalogue's fingerprint moves, at least every 10 s); no row is "
        "loaded until the page's cards are."
    ),
    "app/recs/eligibility.py:load_open_challenges": (
        "loads the page's cards with their categories: one query by primary key, eligibility "
        "checked again on the loaded rows."
    ),
}
# Functions that wrap everything (the pipeline, the login check, the view) say nothing.
ENVELOPE_SHARE = 95.0
ENVELOPE_NAMES = ("role_required",)


def _inner(profile: dict) -> list[list]:
    return [
        entry
        for entry in profile["ours_inclusive"]
        if entry[1] < ENVELOPE_SHARE and not any(n in entry[0] for n in ENVELOPE_NAMES)
    ]


def _profile_lines(profile: dict | None, top: int = 10) -> list[str]:
    if not profile or not profile.get("ours_inclusive"):
        return ["(no profile recorded)"]
    inner = _inner(profile)[:top]
    lines = [
        f"{profile['samples_in_app']:,} samples in our code (of {profile['samples']:,}). Our "
        f"functions by share of those samples, inclusive (wrappers above {ENVELOPE_SHARE:.0f}% "
        "left out):",
        "",
    ]
    lines += [f"- `{name}` {share}%" for name, share in inner]
    lines += ["", "Where the time is spent (leaf frames):", ""]
    lines += [f"- `{name}` {share}%" for name, share in profile["self"][:top]]
    explained = [(name, share) for name, share in inner if name in KNOWN_COSTS]
    if explained:
        lines += ["", "Why:", ""]
        lines += [
            f"- `{name.split(':', 1)[1]}` ({share}%) {KNOWN_COSTS[name]}"
            for name, share in explained
        ]
    return lines


def _gap(measured: float, target: float, higher_is_better: bool) -> str:
    ratio = measured / target if higher_is_better else target / measured
    return "-" if ratio >= 1 else f"{ratio:.0%} of target"


# --- Sections -------------------------------------------------------------------------------------


def machine_section(results: list[dict]) -> str:
    machine = next((r["machine"] for r in results if r), None)
    if machine is None:
        return "## Machine\n\n" + MISSING
    rows = [
        ["CPUs (nproc)", machine["cpus"]],
        ["CPU", machine["cpu_model"]],
        ["memory", f"{machine['memory_gb']} GB"],
        ["OS", machine["os"]],
        ["Python", machine["python"]],
        ["numpy", machine["numpy"]],
        ["scipy", machine["scipy"]],
        ["scikit-learn", machine["scikit-learn"]],
        ["SQLite", machine["sqlite"]],
    ]
    dates = ", ".join(f"{r['benchmark']} {r['generated_at']}" for r in results if r)
    return "\n\n".join(["## Machine", table(["", "value"], rows), f"Measured: {dates}."])


MOVIELENS_NDCG_TARGET = 0.45


def _movielens_random(quality: dict | None) -> tuple[dict, dict] | None:
    for dataset in (quality or {}).get("datasets", []):
        if dataset["dataset"].startswith("MovieLens"):
            for split in dataset["splits"]:
                if split["kind"] == "random":
                    return dataset, split
    return None


def summary_section(scale: dict | None, serving: dict | None, quality: dict | None = None) -> str:
    rows = []
    found = _movielens_random(quality)
    if found:
        _, split = found
        chosen = next(r for r in split["rows"] if r["name"] == split["best"])
        short = MOVIELENS_NDCG_TARGET - chosen["ndcg"]
        rows.append(
            [
                f"MovieLens-100k NDCG@10, chosen candidate, random split seed {quality['seed']}",
                f">= {MOVIELENS_NDCG_TARGET}",
                f"{chosen['ndcg']:.4f} ({split['best']})",
                ok(short <= 0),
                "-" if short <= 0 else f"{short:.4f} short",
            ]
        )
    if scale:
        verdict = scale["verdict"]
        target = next((s for s in scale["sizes"] if s["students"] == 100_000), None)
        if target:
            p = target["pipeline"]
            rows.append(
                [
                    "pipeline, 100k students, end to end",
                    "<= 120 s",
                    f"{p['seconds']:.0f} s",
                    ok(verdict["seconds_ok"]),
                    _gap(p["seconds"], 120, False),
                ]
            )
            rows.append(
                [
                    "pipeline, 100k students, peak RSS",
                    "<= 4 GB",
                    f"{p['peak_rss_mb'] / 1024:.2f} GB",
                    ok(verdict["rss_ok"]),
                    _gap(p["peak_rss_mb"], 4096, False),
                ]
            )
        growth = ", ".join(
            f"{int(n):,}: {g}x" for n, g in verdict["per_student_time_vs_smallest"].items()
        )
        rows.append(
            [
                "pipeline growth in students",
                "no worse than linear",
                f"time per student vs smallest size: {growth}",
                ok(verdict["linear_ok"]),
                "-",
            ]
        )
    if serving:
        v = serving["verdict"]
        for key, label in (
            ("fragment_model", "model-rows fragment vs baseline"),
            ("fragment_heuristic", "heuristic fragment (5k challenges) vs baseline"),
        ):
            rows.append(
                [
                    label,
                    f">= {v[key]['target']}x",
                    f"{v[key]['ratio']}x",
                    ok(v[key]["ok"]),
                    _gap(v[key]["ratio"], v[key]["target"], True),
                ]
            )
        events = v["events"]
        rows.append(
            [
                "event ingestion, batches of 10",
                ">= 2,000 events/s, 0 lost",
                f"{events['events_per_second']:,.0f} events/s, {events['lost']} lost",
                ok(events["ok"]),
                _gap(events["events_per_second"], events["target"], True),
            ]
        )
    if not rows:
        return "## Targets\n\n" + MISSING
    return "## Targets\n\n" + table(["what", "target", "measured", "status", "gap"], rows)


def quality_section(quality: dict | None) -> str:
    parts = [
        "## 1. Offline quality",
        "Command: `"
        + (quality["command"] if quality else ".venv/bin/python -m bench.quality")
        + "` (`make bench` runs it).",
    ]
    if quality is None:
        return "\n\n".join(parts + [MISSING])
    parts.append(
        f"Every candidate the pipeline can choose and both baselines, through the product's "
        f"`app.recs.evaluate.compare` (the code behind `flask recs evaluate` and the pipeline's "
        f"gate): candidates tuned on a validation split carved from the training part, then "
        f"refit and scored on the held-out part, each candidate's list topped up by the "
        f"heuristic where the model has no evidence (a score of exactly 0), as serving shows it. "
        f"K = {quality['k']}. *random*: per student, "
        f"a random 20% of their (student, item) cells held out (seed {quality['seed']}); "
        f"*time*: the most recent 20% of interactions held out. Fit = one fit on the training "
        f"part with the tuned parameters; scoring = scoring and ranking every evaluated user. "
        f"Coverage = share of the candidate items that appear in some top-{quality['k']}. "
        f"**Bold** = the candidate chosen on validation NDCG."
    )
    for message in quality.get("skipped", []):
        parts.append(f"> {message}")
    for dataset in quality["datasets"]:
        parts.append(
            f"### {dataset['dataset']}\n\n{dataset['source']}: {dataset['users']:,} users, "
            f"{dataset['items']:,} items, {dataset['cells']:,} positive cells."
        )
        for split in dataset["splits"]:
            parts.append(
                f"**{split['kind']} split**: {split['users_evaluated']:,} users evaluated, "
                f"{split['candidates']:,} candidate items; whole comparison "
                f"{split['compare_seconds']} s."
            )
            parts.append(_quality_table(split, quality["k"]))
        if dataset.get("seed_spread"):
            parts.append(_seed_spread(dataset["seed_spread"], quality))
        if dataset.get("ease_ceiling"):
            parts.append(_ease_ceiling(dataset["ease_ceiling"], quality))
    parts.append(_quality_reading(quality))
    return "\n\n".join(parts)


def _seed_spread(spread: list[dict], quality: dict) -> str:
    """Paired EASE vs session EASE figures over other seeds of the random split."""
    names = [key for key in spread[0] if key != "seed"]
    first, second = names[0], names[-1]
    rows = [
        [row["seed"], *(f"{row[n]:.4f}" for n in names), f"{row[second] - row[first]:+.4f}"]
        for row in spread
    ]
    differences = [row[second] - row[first] for row in spread]
    mean = sum(differences) / len(differences)
    spread_sd = (
        (sum((d - mean) ** 2 for d in differences) / (len(differences) - 1)) ** 0.5
        if len(differences) > 1
        else 0.0
    )
    means = [sum(row[n] for row in spread) / len(spread) for n in names]
    rows.append(["mean", *(f"{m:.4f}" for m in means), f"{mean:+.4f}"])
    intro = (
        f"**Other seeds of the random split.** The seed-{quality['seed']} split above is one "
        f"draw. The same protocol on other seeds: each model tuned on that seed's validation "
        f"split, refit, and scored on that seed's held-out part, so each row is a paired "
        f"comparison. Difference = {second} - {first}; its standard deviation over the seeds is "
        f"{spread_sd:.4f}."
    )
    table_text = table(["seed", *names, "difference"], rows)
    return f"{intro}\n\n{table_text}"


def _ease_ceiling(ceiling: list[dict], quality: dict) -> str:
    """Plain EASE's best held-out NDCG per draw, its l2 picked on the held-out part itself."""
    rows = [[row["seed"], f"{row['ndcg']:.4f}", f"{row['l2']:g}"] for row in ceiling]
    intro = (
        f"**Plain EASE's ceiling on each draw.** EASE scored on the held-out part for every l2 "
        f"of a fine sweep, and the best kept: the l2 is picked on the test part itself, so this "
        f"is an upper bound for EASE on that draw, not a result. It shows how much of a figure "
        f"is the draw: EASE's best on the seed-{quality['seed']} split is the first row."
    )
    return f"{intro}\n\n{table(['seed', 'best EASE NDCG@' + str(quality['k']), 'l2'], rows)}"


def _quality_table(split: dict, k: int) -> str:
    heuristic = next((r["ndcg"] for r in split["rows"] if r["name"] == "heuristic"), None)
    rows = []
    for row in split["rows"]:
        name = f"**{row['name']}**" if row["name"] == split["best"] else row["name"]
        params = ", ".join(f"{key}={value}" for key, value in row["params"].items()) or "-"
        versus = f"{row['ndcg'] / heuristic:.2f}x" if heuristic else "-"
        rows.append(
            [
                name,
                params,
                f"{row['precision']:.4f}",
                f"{row['recall']:.4f}",
                f"{row['ndcg']:.4f}",
                versus,
                f"{row['coverage']:.3f}",
                seconds(row["fit_seconds"]),
                seconds(row["score_seconds"]),
            ]
        )
    return table(
        [
            "model",
            "params",
            f"P@{k}",
            f"R@{k}",
            f"NDCG@{k}",
            "NDCG vs heuristic",
            "coverage",
            "fit s",
            "scoring s",
        ],
        rows,
    )


def _quality_reading(quality: dict) -> str:
    lines = ["**Reading.**"]
    for dataset in quality["datasets"]:
        for split in dataset["splits"]:
            by_name = {r["name"]: r for r in split["rows"]}
            best_model = max(
                (r for r in split["rows"] if not r["baseline"]), key=lambda r: r["ndcg"]
            )
            heuristic = by_name["heuristic"]["ndcg"]
            chosen = by_name.get(split["best"])
            verdict = "beats" if chosen and chosen["ndcg"] > heuristic else "does **not** beat"
            lines.append(
                f"- {dataset['dataset']}, {split['kind']} split: the chosen model "
                f"({split['best']}, NDCG@10 {chosen['ndcg']:.4f}) {verdict} the heuristic "
                f"({heuristic:.4f}); the best candidate on the test part is {best_model['name']} "
                f"({best_model['ndcg']:.4f}). Slowest fit: "
                + max(split["rows"], key=lambda r: r["fit_seconds"])["name"]
                + "."
            )
        ceiling = dataset.get("ease_ceiling")
        if ceiling and len(ceiling) > 1:
            first, others = ceiling[0], ceiling[1:]
            l2s = dataset.get("ease_ceiling_l2") or [row["l2"] for row in ceiling]
            sweep = f"{min(l2s):g} to {max(l2s):g}"
            mean = sum(row["ndcg"] for row in others) / len(others)
            lines.append(
                f"- {dataset['dataset']}, random split: on the seed-{first['seed']} draw plain "
                f"EASE peaks at {first['ndcg']:.4f} over an l2 sweep from {sweep} picked on the "
                f"test part; on seeds {', '.join(str(r['seed']) for r in others)} it peaks at "
                f"{mean:.4f} on average: the draw alone moves the same model's best by "
                f"{mean - first['ndcg']:+.4f}."
            )
    lines.append(
        "- What limits the figures: on the random split the collaborative models see each "
        "student's other items and win clearly. On the time split the held-out part is the most "
        "recent interactions, which go to challenges running now; the heuristic scores those up "
        "(timeframe, recent popularity, urgency), and co-occurrences learned from the whole "
        "history do not know what is in demand now. That is what the trend adds: on the time "
        "split, validation may give each candidate a weight of recent popularity (params "
        "trend, trend_days; see docs/architecture.md), and the random split is never offered "
        "one. The pipeline's gate compares on the time split, so the time-split lines above "
        "say whether it would publish; the serving and scale benchmarks open the gate "
        "(RECS_GATE_MARGIN = -1) so that every stage runs "
        "whatever it says. Fit time is dominated by the EASE variants (a dense items x items "
        "inverse; session EASE also sums its time-weighted pairs) and "
        "PureSVD (randomized SVD); scoring by the dense users x items score matrix in `top_k`."
    )
    return "\n".join(lines)


def _has_size(scale: dict, students: int) -> bool:
    return any(run.get("students") == students for run in scale.get("sizes", []))


def scale_section(scale: dict | None) -> str:
    parts = [
        "## 2. The pipeline at scale",
        "Command: `"
        + (scale["command"] if scale else ".venv/bin/python -m bench.pipeline_scale")
        + "`; `make bench` runs 10k and 100k students, "
        "`make bench BENCH_SIZES=10000,100000,300000` adds 300k students. 300k is opt-in because "
        "seeding it writes ~13M event rows (about ten minutes); "
        + (
            "the run below includes it. "
            if scale and _has_size(scale, 300_000)
            else "it was not part of the run below. "
        )
        + "`--campus-cache DIR` keeps seeded databases for reruns while working on the pipeline.",
    ]
    if scale is None:
        return "\n\n".join(parts + [MISSING])
    parts.append(
        f"A synthetic campus with the demo's structure (`app.demo.generate_synthetic_campus`, "
        f"bulk inserts): {scale['challenges']:,} challenges, about "
        f"{scale['participations_per_student']} participations and {scale['events_per_student']} "
        f"recommendation events per student, in a throwaway SQLite file. Then the product's "
        f"`pipeline.train` (what `flask recs pipeline` runs), stages timed by its own progress "
        f"callback: **read** (interactions from the database into a sparse matrix), **evaluate** "
        f"(time split, baselines, every candidate tuned on a validation split; models train on "
        f"every student and are ranked for a seeded sample of at most 10,000 held-out and 5,000 "
        f"validation students, recorded in the run's metrics), **train** (refit "
        f"the winner on everything, save the artifact), **precompute** (top-N for every student, "
        f"eligibility filtering), **publish** (validate rows, bulk insert, flip the version). "
        f"Seeding and the pipeline each run in a child process; peak RSS is that process's "
        f"`ru_maxrss`. The gate is opened (margin {scale['gate_margin']}) so every stage runs; "
        f"*gate* says whether the model would have passed at the default margin."
    )
    rows = []
    for size in scale["sizes"]:
        p, seeded, stages = size["pipeline"], size["seed"], size["pipeline"]["stages"]
        publish = stages.get("publishing", 0.0)
        rows.append(
            [
                f"{size['students']:,}",
                f"{seeded['participations']:,}",
                f"{seeded['events']:,}",
                f"{seeded['seconds']:.0f}",
                *(
                    f"{stages.get(s, 0.0):.1f}"
                    for s in ("loading", "evaluating", "training", "generating", "publishing")
                ),
                f"**{p['seconds']:.1f}**",
                f"{p['rows_published']:,}",
                f"{p['rows_published'] / publish:,.0f}" if publish else "-",
                f"{p['peak_rss_mb']:,.0f}",
                f"{p['algorithm']} {p['model_ndcg']} vs {p['heuristic_ndcg']}"
                + (" (pass)" if p["passes_default_gate"] else " (fail)"),
            ]
        )
    parts.append(
        table(
            [
                "students",
                "participations",
                "events",
                "seed s",
                "read s",
                "evaluate s",
                "train s",
                "precompute s",
                "publish s",
                "total s",
                "rows published",
                "rows/s (publish)",
                "peak RSS MB",
                "gate: model vs heuristic NDCG",
            ],
            rows,
        )
    )
    verdict = scale["verdict"]
    parts.append(
        "Time per student relative to the smallest size: "
        + ", ".join(
            f"{int(n):,} students {g}x" for n, g in verdict["per_student_time_vs_smallest"].items()
        )
        + " (1.0 = linear)."
    )
    profiled = next((s for s in reversed(scale["sizes"]) if s.get("profile")), None)
    if profiled:
        parts.append(f"**Profile** (py-spy, {profiled['students']:,} students, whole pipeline):")
        parts.append("\n".join(_profile_lines(profiled["profile"], top=12)))
    parts.append(_scale_reading(scale, profiled))
    return "\n\n".join(parts)


def _scale_reading(scale: dict, profiled: dict | None) -> str:
    largest = scale["sizes"][-1]
    total = largest["pipeline"]["seconds"]
    stages = largest["pipeline"]["stages"]
    by_share = sorted(stages.items(), key=lambda item: -item[1])
    lines = [
        "**Reading.**",
        f"- At {largest['students']:,} students: "
        + ", ".join(
            f"{STAGE_NAMES.get(name, name)} {sec:.0f} s ({100 * sec / total:.0f}%)"
            for name, sec in by_share
        )
        + ".",
        "- Evaluation ranks a capped sample of students, so past 10,000 students it grows only "
        "with its fits; its largest part is fixed: the EASE variants' O(items^3) inverses (23 "
        "grid points and a refit per variant), the same at any number of students, which is why "
        "time per student falls as the campus grows. The rest (reading, the SVD and kNN fits, "
        "precompute's `top_k`, the inserts) grows linearly with students and interactions.",
    ]
    if profiled:
        lines.append(
            "- Why each of our functions costs what it does, and what of it remains, is under "
            "*Why* in the profile above, heaviest first."
        )
    return "\n".join(lines)


STAGE_NAMES = {
    "loading": "read",
    "evaluating": "evaluate",
    "training": "train",
    "generating": "precompute",
    "publishing": "publish",
}

ROUTE_LABELS = {
    "baseline": "baseline: `GET /login` (anonymous)",
    "challenges": "`GET /challenges` (student)",
    "fragment_model": "`GET /challenges/recommended`, model rows (HTMX)",
    "events": "`POST /recommendations/event`, 10 events per request",
    "baseline_5k": "baseline: `GET /login`, 5k-challenge server",
    "fragment_heuristic": "`GET /challenges/recommended`, heuristic over 5k challenges (HTMX)",
}


def serving_section(serving: dict | None) -> str:
    parts = [
        "## 3. Serving",
        "Command: `"
        + (serving["command"] if serving else ".venv/bin/python -m bench.serving")
        + "` (`make bench` runs it).",
    ]
    if serving is None:
        return "\n\n".join(parts + [MISSING])
    model, heuristic = serving["campus_model"], serving["campus_heuristic"]
    parts.append(
        f"Server: `{serving['server']}` on 127.0.0.1 (the production command), "
        f"`RECS_SCHEDULER_ENABLED=false`, SQLite in WAL mode. Load: {serving['load']} "
        f"(`bench/wrk_session.lua`: each request takes the next session's cookie; event batches "
        f"carry the session's CSRF token in `X-CSRFToken` and unique event ids, an impression "
        f"and a click of each of the 6 cards a slate served), "
        f"{serving['duration']} s per route, routes one after another against the same server. "
        f"Databases: the demo campus ({model['students']} students, {model['challenges']} "
        f"challenges) with a published model; the demo campus with {heuristic['challenges']:,} "
        f"challenges ({heuristic['eligible_challenges']:,} recommendable) and no model. "
        f"Every fragment request records its slate and 6 impressions in one transaction."
    )
    parts.append(
        "Baseline: `GET /login` for an anonymous visitor is our cheapest full page: routing, the "
        "session cookie, a CSRF token, the base layout and a form rendered by Jinja, and no "
        "database query. A ratio against it is what one request of a route costs compared with "
        "the framework's floor on the same machine in the same minute."
    )
    rows = []
    for route in serving["routes"]:
        rows.append(
            [
                ROUTE_LABELS.get(route["route"], route["route"]),
                f"{route['rps']:,.0f}",
                f"{route['p50_ms']:.1f}",
                f"{route['p99_ms']:.1f}",
                f"{route['ratio']:.2f}x",
                route["not_ok"],
            ]
        )
    parts.append(table(["route", "requests/s", "p50 ms", "p99 ms", "vs baseline", "non-2xx"], rows))
    events = next(r for r in serving["routes"] if r["route"] == "events")["events"]
    parts.append(
        f"Events: {events['events_sent']:,} sent, {events['acked']:,} acknowledged as stored, "
        f"{events['duplicates']} reported duplicate, {events['stored']:,} found in the database "
        f"→ **{events['lost']} lost** ({events['stored_unacknowledged']} stored whose response "
        f"was still in flight when wrk stopped); {events['events_per_second']:,.0f} "
        f"acknowledged events/s."
    )
    for name, profile in serving.get("profiles", {}).items():
        parts.append(
            f"**Profile: {ROUTE_LABELS.get(name, name)}** (py-spy on both workers, a "
            f"separate pass after the measured one):"
        )
        parts.append("\n".join(_profile_lines(profile)))
    parts.append(_serving_reading(serving))
    return "\n\n".join(parts)


def _serving_reading(serving: dict) -> str:
    by_name = {r["route"]: r for r in serving["routes"]}
    lines = ["**Reading.**"]
    for name in ("fragment_model", "fragment_heuristic", "events", "challenges"):
        route, profile = by_name.get(name), serving.get("profiles", {}).get(name)
        if route is None or not profile or not profile.get("self"):
            continue
        inner = _inner(profile)[:3]
        lines.append(
            f"- {ROUTE_LABELS.get(name, name)}: {route['ratio']:.2f}x the baseline; most time "
            "under " + ", ".join(f"`{n.split(':', 1)[1]}` ({s}%)" for n, s in inner) + "."
        )
    lines.append(
        "- Two cores carry both wrk and the server, so absolute requests/s are low and move from "
        "run to run; the ratios are the figures to compare. SQLite has a single writer: every "
        "fragment (slate and impressions) and every event batch commits, and the commits of the "
        "8 server threads queue behind one another."
    )
    return "\n".join(lines)


def foldin_section(foldin: dict | None) -> str:
    if foldin is None:
        return "## 4. Fold-in\n\nNo results yet: run `.venv/bin/python -m bench.foldin`."
    fragment, movielens = foldin["fragment"], foldin.get("movielens")
    paths = fragment["paths"]
    ratio = paths["fold-in"]["median_ms"] / paths["precomputed"]["median_ms"]
    lines = [
        "## 4. Fold-in",
        f"Command: `{foldin['command']}` (`make bench` runs it). "
        f"Measured {foldin['generated_at']}.",
        f"**Fragment latency** on the demo campus ({fragment['campus']}; published "
        f"{fragment['algorithm']}), {fragment['students']} students x {fragment['rounds']} rounds "
        "through the app in-process: the same students served from precomputed rows (source "
        "`model`) and re-scored by fold-in (source `fresh`). Target: fold-in within 2x.",
        table(
            ["path", "requests", "median ms", "p95 ms", "mean ms"],
            [
                [name, row["requests"], row["median_ms"], row["p95_ms"], row["mean_ms"]]
                for name, row in paths.items()
            ],
        ),
        f"Fold-in / precomputed median: **{ratio:.2f}x** ({ok(ratio <= 2.0)}).",
    ]
    if movielens:
        lines += [
            f"**Fold-in vs full retrain** on MovieLens-100k ({movielens['source']}), "
            f"{movielens['folds']} folds of held-out users: each fold's users are left out of "
            "training, then scored by folding in their training interactions with the stored "
            "item-side state, against a retrain that includes them. Target: mean NDCG@10 "
            f"difference within {movielens['target']}.",
            table(
                [
                    "model",
                    "params",
                    "users",
                    "NDCG@10 fold-in",
                    "NDCG@10 retrain",
                    "mean difference",
                    "within target",
                ],
                [
                    [
                        name,
                        ", ".join(f"{k}={v}" for k, v in row["params"].items()),
                        row["users"],
                        row["ndcg_fold_in"],
                        row["ndcg_retrain"],
                        row["mean_difference"],
                        ok(row["passed"]),
                    ]
                    for name, row in movielens["models"].items()
                ],
            ),
        ]
    return "\n\n".join(lines)


def build() -> str:
    quality, scale, serving = load("quality"), load("pipeline_scale"), load("serving")
    foldin = load("foldin")
    sections = [
        "# Benchmarks",
        "Generated by `make bench` (`bench/report.py` from `bench/results/*.json`); do not edit "
        "by hand. `make bench` sets up the venv, installs `wrk` when missing (as root), runs "
        "`bench/quality.py`, `bench/pipeline_scale.py`, `bench/serving.py` and `bench/foldin.py`, "
        "then this report. "
        "`.venv/bin/python -m bench.report` rebuilds this page from the last results. The "
        "machines are shared and noisy: compare ratios measured in one run, not absolute "
        "figures across runs.",
        machine_section([quality, scale, serving, foldin]),
        summary_section(scale, serving, quality),
        quality_section(quality),
        scale_section(scale),
        serving_section(serving),
        foldin_section(foldin),
    ]
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(build())
    progress(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
