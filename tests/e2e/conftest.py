"""Real-browser fixtures: Playwright drives Debian's Chromium against the app served from a thread.

The htmx CDN URL is answered from the local npm copy that ``make e2e-deps`` fetches, with the CORS
header a CDN sends, so the tests run offline while the browser still checks the SRI hash. Every
other off-site request is refused. A failing test leaves screenshots in tests/e2e/artifacts/.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from app.config import DefaultConfig

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"
HTMX_CACHE = HERE / ".cache"
TIMEOUT_MS = 10_000
AXE_VERSION = "4.14.1"  # axe-core, fetched by `make e2e-deps` (the Makefile reads this line)


def htmx_copy_path(htmx_url: str) -> Path:
    match = re.search(r"htmx\.org@([0-9][0-9.]*)/", htmx_url)
    if match is None:
        pytest.fail(f"HTMX_URL {htmx_url!r} does not pin an htmx.org@VERSION", pytrace=False)
    return HTMX_CACHE / f"htmx.org-{match.group(1)}.min.js"


def sri_sha384(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


@pytest.fixture(scope="session")
def axe_js() -> str:
    path = HTMX_CACHE / f"axe-core-{AXE_VERSION}.min.js"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make e2e-deps` (it runs `npm pack axe-core`)")
    return path.read_text()


@pytest.fixture(scope="session")
def htmx_js() -> bytes:
    path = htmx_copy_path(DefaultConfig.HTMX_URL)
    if not path.is_file():
        pytest.fail(
            f"{path} is missing: run `make e2e-deps` (it runs `npm pack htmx.org`)", pytrace=False
        )
    body = path.read_bytes()
    if sri_sha384(body) != DefaultConfig.HTMX_SRI:
        pytest.fail(
            f"{path} does not match HTMX_SRI; delete it and run `make e2e-deps`", pytrace=False
        )
    return body


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests need Debian's Chromium. Install it with "
            "`sudo apt-get install -y chromium` (or run `make e2e-deps` as root), "
            "or point E2E_CHROMIUM at a Chromium binary.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def app(app):
    """The suite's app, with CSRF checked as in production: the browser must send real tokens."""
    app.config["WTF_CSRF_ENABLED"] = True
    return app


@pytest.fixture
def live_server(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="e2e-live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def _offline_router(live_server: str, htmx_url: str, htmx_body: bytes):
    own_origin = urlsplit(live_server).netloc

    def route(route):
        url = route.request.url
        if url == htmx_url:
            route.fulfill(
                status=200,
                body=htmx_body,
                headers={
                    "Content-Type": "application/javascript; charset=utf-8",
                    # The tag has crossorigin="anonymous": without this header the CORS check, and
                    # so the SRI check, would refuse the script.
                    "Access-Control-Allow-Origin": "*",
                },
            )
        elif urlsplit(url).netloc == own_origin:
            route.continue_()
        else:
            route.abort()

    return route


@pytest.fixture
def open_page(browser, live_server, htmx_js, app, request) -> Iterator[Callable]:
    """``open_page(htmx_body=None)``: a page in a fresh browser context (its own cookies).

    Two calls give two independent users, e.g. a professor and a student side by side.
    """
    contexts = []

    def open_page(htmx_body: bytes | None = None, **context_options):
        context = browser.new_context(base_url=live_server, **context_options)
        context.set_default_timeout(TIMEOUT_MS)
        context.route(
            "**/*", _offline_router(live_server, app.config["HTMX_URL"], htmx_body or htmx_js)
        )
        contexts.append(context)
        return context.new_page()

    yield open_page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        _screenshot_pages(request.node.nodeid, contexts)
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page):
    return open_page()


def _screenshot_pages(nodeid: str, contexts) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)
    pages = [p for context in contexts for p in context.pages]
    for n, page in enumerate(pages, start=1):
        suffix = "" if len(pages) == 1 else f"-{n}"
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"), full_page=True)
        except Exception as exc:  # a crashed page must not hide the test's own failure
            print(f"screenshot of {page.url} failed: {exc}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
