"""The benchmark scripts' own logic (profile summaries, verdicts, report tables), on tiny inputs;
the benchmarks themselves run under ``make bench``, never in the suite."""

from __future__ import annotations

import pytest

from bench import report
from bench.common import REPO, Stopwatch, summarize_profile
from bench.pipeline_scale import verdict
from bench.serving import _lua_value, summarize


def _frame(function: str, path: str) -> str:
    return f"{function} ({path})"


def test_profile_ranks_only_stacks_through_our_code(tmp_path):
    ours = str(REPO / "app" / "recs" / "pipeline.py")
    stacks = tmp_path / "profile.txt"
    stacks.write_text(
        "\n".join(
            [
                ";".join(
                    [
                        _frame("<module>", "bench.py"),
                        _frame("train", ours),
                        _frame("inv", "numpy/linalg/_linalg.py"),
                    ]
                )
                + " 30",
                ";".join([_frame("<module>", "bench.py"), _frame("train", ours)]) + " 10",
                ";".join([_frame("run", "gunicorn/app/base.py"), _frame("select", "selectors.py")])
                + " 60",
            ]
        )
        + "\n"
    )

    summary = summarize_profile(stacks)

    assert summary["samples"] == 100
    assert summary["samples_in_app"] == 40
    assert summary["ours_inclusive"] == [["app/recs/pipeline.py:train", 100.0]]
    assert summary["self"] == [
        ["numpy/linalg/_linalg.py:inv", 75.0],
        ["app/recs/pipeline.py:train", 25.0],
    ]


def test_profile_of_nothing_is_empty(tmp_path):
    stacks = tmp_path / "profile.txt"
    stacks.write_text("")
    assert summarize_profile(stacks) == {
        "samples": 0,
        "samples_in_app": 0,
        "ours_inclusive": [],
        "self": [],
    }


def test_stopwatch_keeps_steps_in_order_and_adds_repeats():
    stopwatch = Stopwatch()
    for step in ("loading", "evaluating", "loading", "publishing"):
        stopwatch.mark(step)
    steps = stopwatch.stop()
    assert list(steps) == ["loading", "evaluating", "publishing"]
    assert all(seconds >= 0 for seconds in steps.values())


def test_lua_values_are_quoted_and_nested():
    text = _lua_value({"path": '/a"b', "sessions": [{"slates": ["x"]}], "batch": 10, "on": True})
    assert text == (
        '{["path"] = "/a\\"b", ["sessions"] = {{["slates"] = {"x"}}}, '
        '["batch"] = 10, ["on"] = true}'
    )


def _scale_size(students: int, seconds: float, rss_mb: float) -> dict:
    return {"students": students, "pipeline": {"seconds": seconds, "peak_rss_mb": rss_mb}}


def test_scale_verdict_compares_time_per_student_with_the_smallest_size():
    result = verdict([_scale_size(10_000, 20.0, 500), _scale_size(100_000, 300.0, 3000)])
    assert result["per_student_time_vs_smallest"] == {"10000": 1.0, "100000": 1.5}
    assert result["linear_ok"] is False
    assert result["seconds_ok"] is False
    assert result["rss_ok"] is True


def _route(name: str, rps: float, **extra) -> dict:
    return {"route": name, "rps": rps, "not_ok": 0, **extra}


def test_serving_ratios_use_the_baseline_of_the_same_server():
    events = {"acked": 25_000, "lost": 0, "events_per_second": 2_500.0}
    model = [
        _route("baseline", 1000.0),
        _route("fragment_model", 600.0),
        _route("events", 250.0, events=events),
    ]
    heuristic = [_route("baseline_5k", 800.0), _route("fragment_heuristic", 150.0)]

    result = summarize(model, heuristic)

    assert result["fragment_model"] == {"target": 0.5, "ratio": 0.6, "ok": True}
    assert result["fragment_heuristic"]["ratio"] == 0.188
    assert result["fragment_heuristic"]["ok"] is False
    assert result["events"]["ok"] is True


def test_lost_events_fail_the_ingestion_target_whatever_the_rate():
    events = {"acked": 25_000, "lost": 3, "events_per_second": 2_500.0}
    model = [
        _route("baseline", 1000.0),
        _route("fragment_model", 600.0),
        _route("events", 250.0, events=events),
    ]
    result = summarize(model, [_route("baseline_5k", 800.0), _route("fragment_heuristic", 300.0)])
    assert result["events"]["ok"] is False


def test_report_marks_missed_targets_and_says_what_was_not_run():
    serving = {
        "verdict": {
            "fragment_model": {"target": 0.5, "ratio": 0.3, "ok": False},
            "fragment_heuristic": {"target": 0.25, "ratio": 0.4, "ok": True},
            "events": {"target": 2000, "events_per_second": 2500.0, "lost": 0, "ok": True},
        }
    }
    summary = report.summary_section(None, serving)
    assert (
        "| model-rows fragment vs baseline | >= 0.5x | 0.3x | **missed** | 60% of target |"
        in summary
    )
    assert (
        "| heuristic fragment (5k challenges) vs baseline | >= 0.25x | 0.4x | met | - |" in summary
    )
    assert report.MISSING in report.quality_section(None)
    assert report.MISSING in report.scale_section(None)


def _quality(ndcg: float) -> dict:
    rows = [
        {"name": "heuristic", "ndcg": 0.16, "baseline": True},
        {"name": "session_ease", "ndcg": ndcg, "baseline": False},
    ]
    split = {"kind": "random", "best": "session_ease", "rows": rows}
    return {"seed": 42, "datasets": [{"dataset": "MovieLens-100k", "splits": [split]}]}


@pytest.mark.parametrize(
    "ndcg, status, gap", [(0.4489, "**missed**", "0.0011 short"), (0.4512, "met", "-")]
)
def test_report_states_the_movielens_target_and_the_shortfall(ndcg, status, gap):
    summary = report.summary_section(None, None, _quality(ndcg))
    assert (
        "| MovieLens-100k NDCG@10, chosen candidate, random split seed 42 | >= 0.45 | "
        f"{ndcg:.4f} (session_ease) | {status} | {gap} |" in summary
    )


def test_seed_spread_pairs_the_models_per_seed_and_averages_them():
    spread = [
        {"seed": 0, "ease": 0.44, "session_ease": 0.46},
        {"seed": 1, "ease": 0.45, "session_ease": 0.46},
    ]
    text = report._seed_spread(spread, {"seed": 42})
    assert "| 0 | 0.4400 | 0.4600 | +0.0200 |" in text
    assert "| mean | 0.4450 | 0.4600 | +0.0150 |" in text
    assert "standard deviation over the seeds is 0.0071" in text


def test_ease_ceiling_lists_the_reported_draw_first_and_compares_it_with_the_others():
    ceiling = [
        {"seed": 42, "ndcg": 0.4401, "l2": 300.0},
        {"seed": 0, "ndcg": 0.4478, "l2": 400.0},
        {"seed": 1, "ndcg": 0.4484, "l2": 400.0},
    ]
    quality = _quality(0.4489)
    quality["k"] = 10
    quality["datasets"][0]["ease_ceiling"] = ceiling
    quality["datasets"][0]["ease_ceiling_l2"] = [100.0, 1000.0]
    assert "| 42 | 0.4401 | 300 |" in report._ease_ceiling(ceiling, quality)
    reading = report._quality_reading(
        {**quality, "datasets": [{**quality["datasets"][0], "splits": []}]}
    )
    assert "seed-42 draw plain EASE peaks at 0.4401 over an l2 sweep from 100 to 1000" in reading
    assert "on seeds 0, 1 it peaks at 0.4481 on average" in reading
    assert "moves the same model's best by +0.0080" in reading


def test_report_help_prints_help_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report, "DOC", tmp_path / "benchmarks.md")
    with pytest.raises(SystemExit) as exited:
        report.main(["--help"])
    assert exited.value.code == 0
    assert "usage:" in capsys.readouterr().out
    assert not (tmp_path / "benchmarks.md").exists()
