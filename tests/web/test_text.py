"""Typed text made fit to store and compare (``app/text.py``)."""

from __future__ import annotations

import pytest

from app.text import clean_line, clean_text, has_visible


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Cafe\u0301", "Caf\u00e9"),  # a combining accent is composed
        ("Ro\u200bbotics", "Robotics"),  # zero-width space
        ("\ufeffData", "Data"),  # byte-order mark pasted at the start
        ("abc\u202edef", "abcdef"),  # right-to-left override
        ("\u2066iso\u2069", "iso"),  # direction isolates
        ("word\u2060joiner", "wordjoiner"),
        ("  spaced  ", "spaced"),
        ("\u200e\u00ad\u200d", "\u200e\u00ad\u200d"),  # marks, soft hyphens and joiners stay
        ("\U0001f469\u200d\U0001f4bb", "\U0001f469\u200d\U0001f4bb"),  # an emoji sequence
    ],
)
def test_clean_text(typed, stored):
    assert clean_text(typed) == stored


def test_clean_line_squashes_white_space_and_keeps_none():
    assert clean_line(" a \t b\n\nc ") == "a b c"
    assert clean_text("first\n\nsecond") == "first\n\nsecond"
    assert clean_line(None) is None and clean_text(None) is None


@pytest.mark.parametrize(
    ("value", "visible"),
    [
        ("a", True),
        ("\u0661", True),
        ("\U0001f469\u200d\U0001f4bb", True),
        ("", False),
        (" \t", False),
        ("\u200e\u200f", False),
        ("\u00ad\u200d", False),
        ("\u3000", False),
    ],
)
def test_has_visible(value, visible):
    assert has_visible(value) is visible
