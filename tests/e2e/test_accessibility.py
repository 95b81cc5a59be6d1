"""Every kind of page, checked in Chromium by axe-core against the WCAG 2.1 A and AA rules, in the
states people meet them in: with the recommendations loaded, with form errors, as each role."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Experiment
from tests.e2e.pages import log_in
from tests.helpers import make_category, make_challenge, make_event, make_participation, make_user

pytestmark = pytest.mark.e2e

WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def campus():
    robotics, poetry = make_category("Robotics"), make_category("Poetry")
    professor = make_user("professor")
    challenges = [
        make_challenge(professor, category, title=f"{category.name} challenge {n + 1}")
        for category in (robotics, poetry)
        for n in range(5)
    ]
    student = make_user("student", display_name="Ada Student")
    make_participation(student, challenges[0])
    make_event(student, challenges[1], "impression", source="model", position=0, slate_id="s1")
    db.session.add(Experiment(name="Spring", salt="s", allocation_percent=50))
    db.session.commit()
    return {
        "student": student,
        "professor": professor,
        "admin": make_user("admin"),
        "challenge": challenges[0],
    }


def violations(page, axe_js: str) -> list[str]:
    page.add_script_tag(content=axe_js)
    found = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
        ".then(r => r.violations.map(v => v.id + ' (' + v.impact + '): '"
        " + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', ')))",
        WCAG,
    )
    return found


def _open(open_page, campus, who):
    # axe is injected as a script: the page's CSP would refuse it, as it refuses any injection.
    page = open_page(bypass_csp=True)
    if who:
        log_in(page, campus[who])
    return page


STUDENT_PAGES = [
    "/challenges",
    "/challenges?q=nothing+matches+this",
    "/challenges/{challenge}",
    "/me/challenges",
    "/challenges/recommended",
    "/account/password",
]
PROFESSOR_PAGES = [
    "/professor/challenges",
    "/professor/challenges/new",
    "/professor/challenges/{challenge}/edit",
    "/professor/challenges/{challenge}/participants",
    "/professor/stats",
]
ADMIN_PAGES = [
    "/admin/",
    "/admin/categories",
    "/admin/users",
    "/admin/users/{professor}/challenges",
    "/admin/recommendations",
    "/admin/recommendations/versions",
    "/admin/recommendations/online",
    "/admin/recommendations/preview?q=Ada",
    "/admin/recommendations/experiment",
]


@pytest.mark.parametrize(
    "who, path",
    [(None, "/login"), (None, "/register"), (None, "/no-such-page")]
    + [("student", p) for p in STUDENT_PAGES]
    + [("student", "/admin/")]
    + [("professor", p) for p in PROFESSOR_PAGES]
    + [("admin", p) for p in ADMIN_PAGES],
)
def test_pages_pass_the_wcag_rules(open_page, campus, axe_js, who, path):
    page = _open(open_page, campus, who)
    page.goto(path.format(challenge=campus["challenge"].id, professor=campus["professor"].id))
    if path == "/challenges":
        expect(page.locator("#recommended-slate article").first).to_be_visible()
    assert violations(page, axe_js) == []


def test_the_recommendations_after_show_more_and_not_interested(open_page, campus, axe_js):
    page = _open(open_page, campus, "student")
    page.goto("/challenges")
    cards = page.locator("#recommended-slate article")
    expect(cards.first).to_be_visible()
    page.get_by_role("link", name="Show more").click()
    expect(page.locator("#recs-status")).to_contain_text("Showing recommendations 7")
    cards.first.get_by_role("button", name="Not interested in", exact=False).click()
    expect(page.locator(".recs-dismissed")).to_be_visible()
    assert violations(page, axe_js) == []
    # "Undo" brings the card back; the list of what was marked "Not interested" offers the rest.
    cards.first.get_by_role("button", name="Not interested in", exact=False).click()
    page.get_by_role("button", name="Undo", exact=False).last.click()
    expect(page.locator("#recs-status")).to_contain_text("is back in your recommendations")
    assert violations(page, axe_js) == []
    page.goto("/me/challenges")
    expect(page.get_by_role("heading", name="Not interested")).to_be_visible()
    assert violations(page, axe_js) == []


@pytest.mark.parametrize(
    "who, path, fill",
    [
        (None, "/login", {"email": "nobody@example.edu", "password": "wrong-password"}),
        (None, "/register", {"email": "not an address"}),
        ("professor", "/professor/challenges/new", {"title": ""}),
        ("admin", "/admin/users/{professor}/challenges", {}),
    ],
)
def test_forms_sent_back_with_errors_pass_and_open_on_the_message(
    open_page, campus, axe_js, who, path, fill
):
    page = _open(open_page, campus, who)
    page.goto(path.format(professor=campus["professor"].id))
    for field_id, value in fill.items():
        page.locator(f"#{field_id}").fill(value)
    page.locator("main form button[type=submit]").first.click()
    # The page opens on what went wrong: the error summary, or the flashed error.
    alert = page.locator(":focus[role=alert], :focus [role=alert]")
    expect(alert).to_have_count(1)
    assert violations(page, axe_js) == []


PHONE = {"width": 360, "height": 740}
# For each cell: its text, the width inside its padding, and the width of its longest word.
WORD_WIDTHS = """cells => cells.map(cell => {
    const words = cell.textContent.split(/\\s+/).filter(Boolean);
    const style = getComputedStyle(cell);
    const inner = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const probe = document.createElement('span');
    probe.style.whiteSpace = 'nowrap';
    cell.appendChild(probe);
    let widest = 0;
    for (const word of words) {
        probe.textContent = word;
        widest = Math.max(widest, probe.getBoundingClientRect().width);
    }
    probe.remove();
    return [cell.textContent.trim(), inner, widest];
})"""


@pytest.mark.parametrize(
    "who, path",
    [
        ("student", "/me/challenges"),
        ("professor", "/professor/challenges"),
        ("professor", "/professor/challenges/{challenge}/participants"),
        ("professor", "/professor/stats"),
        ("admin", "/admin/users"),
        ("admin", "/admin/categories"),
        ("admin", "/admin/recommendations/online"),
    ],
)
def test_tables_and_charts_on_a_phone_keep_their_columns_and_scroll_by_keyboard(
    open_page, campus, axe_js, who, path
):
    page = open_page(bypass_csp=True, viewport=PHONE)
    log_in(page, campus[who])
    page.goto(path.format(challenge=campus["challenge"].id))
    page.wait_for_load_state("load")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
    # Every header cell is at least as wide as its longest word: no word broken letter by letter.
    cells = page.locator("th").evaluate_all(WORD_WIDTHS)
    squeezed = [(text, inner, widest) for text, inner, widest in cells if inner + 1 < widest]
    assert cells and not squeezed, squeezed
    boxes = page.locator(".table-wrap, .chart-scroll").evaluate_all(
        "boxes => boxes.map(b => [b.scrollWidth > b.clientWidth + 1, b.tabIndex,"
        " b.getAttribute('aria-label') || ''])"
    )
    assert any(wide for wide, _, _ in boxes), f"nothing on {path} is wider than a phone"
    for wide, tab_index, name in boxes:
        if wide:
            assert tab_index == 0 and name.endswith("(scrolls sideways)"), (path, name)
    assert violations(page, axe_js) == []


def test_a_long_name_in_the_header_does_not_widen_the_page_on_a_phone(open_page):
    page = open_page(viewport=PHONE)
    log_in(page, make_user("student", display_name="Maximiliana" * 8))
    page.goto("/challenges")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0


def test_the_scrolling_script_runs_under_the_pages_own_csp(open_page, campus):
    """The other phone checks bypass the CSP to inject axe; this one keeps it, as users have it."""
    page = open_page(viewport=PHONE)
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    log_in(page, campus["admin"])
    page.goto("/admin/users")
    box = page.locator(".table-wrap").first
    expect(box).to_have_attribute("tabindex", "0")
    expect(box).to_have_attribute("aria-label", "Users (scrolls sideways)")
    assert errors == []
