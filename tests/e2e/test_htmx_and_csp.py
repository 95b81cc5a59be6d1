"""The browser enforces what the headers and the script tag promise: SRI on htmx, CSP on scripts."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

HTMX_LOADED = "typeof window.htmx === 'object' ? window.htmx.version : null"


def test_pinned_htmx_copy_passes_sri_and_loads(page):
    page.goto("/login")
    assert page.evaluate(HTMX_LOADED) == "2.0.4"


def test_tampered_htmx_is_refused_by_sri(open_page, htmx_js):
    page = open_page(htmx_body=htmx_js + b"\nwindow.tampered = true;\n")
    refusals = []
    page.on(
        "console",
        lambda message: refusals.append(message.text) if "integrity" in message.text else None,
    )
    page.goto("/login")
    assert page.evaluate(HTMX_LOADED) is None
    assert page.evaluate("window.tampered === true") is False
    assert refusals, "Chromium reported no integrity failure"


def test_csp_blocks_an_injected_inline_script(page):
    page.goto("/login")
    page.evaluate(
        """() => {
            const script = document.createElement('script');
            script.textContent = 'window.injected = true;';
            document.body.appendChild(script);
        }"""
    )
    assert page.evaluate("window.injected === true") is False
