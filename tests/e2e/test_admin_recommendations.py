"""The recommendations console in a real browser: the SVG charts load and draw under the page CSP,
and the retrain block polls through HTMX until the run ends."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import ModelRun, utcnow
from tests.e2e.pages import log_in, server_view
from tests.helpers import make_challenge, make_event, make_user

pytestmark = pytest.mark.e2e


def _chart_sizes(page) -> list[list]:
    """[src, naturalWidth] of every chart once loaded; a refused or broken SVG has width 0."""
    page.wait_for_function("[...document.querySelectorAll('img.chart')].every(img => img.complete)")
    return page.locator("img.chart").evaluate_all("imgs => imgs.map(i => [i.src, i.naturalWidth])")


def _csp_reports(page) -> list[str]:
    reports = []
    page.on(
        "console", lambda m: reports.append(m.text) if "Content Security Policy" in m.text else None
    )
    return reports


def test_online_metrics_charts_render(page):
    student, challenge = make_user(), make_challenge()
    for kind, source, position in [
        ("impression", "model", 0),
        ("impression", "heuristic", 1),
        ("click", "model", 0),
    ]:
        make_event(student, challenge, kind, source=source, position=position, slate_id="s")
    refusals = _csp_reports(page)
    log_in(page, make_user("admin"))
    page.goto("/admin/recommendations/online")

    sizes = _chart_sizes(page)
    assert len(sizes) == 3
    assert all(width > 0 for _src, width in sizes), sizes
    assert not refusals, refusals


def test_retrain_block_polls_until_the_run_ends(page, monkeypatch):
    from app.recs import scheduler

    run = ModelRun(version="v-e2e", status="running", kind="train", report={"stage": "training"})
    db.session.add(run)
    db.session.commit()
    monkeypatch.setattr(scheduler, "is_locked", lambda app: run_is_running())

    def run_is_running() -> bool:
        return server_view().get(ModelRun, run.id).status == "running"

    log_in(page, make_user("admin"))
    page.goto("/admin/recommendations")
    block = page.locator("#retrain-progress")
    expect(block).to_contain_text("Retraining in progress")
    expect(page.get_by_role("button", name="Retrain now")).to_be_disabled()

    finished = server_view().get(ModelRun, run.id)
    finished.status, finished.error, finished.finished_at = "rejected", "not enough data", utcnow()
    db.session.commit()
    expect(block).to_contain_text("not enough data")
    expect(page.get_by_role("button", name="Retrain now")).to_be_enabled()


PHONE = {"width": 375, "height": 800}


@pytest.mark.parametrize(
    "path",
    [
        "/admin/recommendations",
        "/admin/recommendations/versions",
        "/admin/recommendations/online",
        "/admin/recommendations/preview?q={email}",
        "/admin/recommendations/experiment",
    ],
)
def test_console_pages_fit_a_phone_and_charts_scroll_in_their_box(open_page, path):
    student = make_user()
    challenge = make_challenge()
    make_event(student, challenge, "impression", source="model", position=0, slate_id="s")
    page = open_page(viewport=PHONE)
    log_in(page, make_user("admin"))
    page.goto(path.format(email=student.email))
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 375px"
    # A chart keeps a readable width and scrolls inside its own box instead.
    widths = page.locator("img.chart").evaluate_all("imgs => imgs.map(i => i.clientWidth)")
    assert all(width >= 560 for width in widths), widths
