"""Typed text made fit to store and compare (``app/text.py``)."""

from __future__ import annotations

import pytest

from app.text import clean_line, clean_text, has_visible, paragraphs


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
        ("One\r\n\r\nTwo\rThree", "One\n\nTwo\nThree"),  # a text area's line breaks
        ("Bell\x07\x7f\x9b", "Bell"),  # control characters
        ("form\x0cfeed\x85next", "form feed next"),  # controls that separate words
        ("Tab\tand\nline", "Tab\tand\nline"),  # a text area keeps these
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


def test_paragraphs_split_at_blank_lines_whatever_the_line_breaks():
    assert paragraphs("Intro\r\n\r\nStep 1\r\nStep 2\r\n \r\n\r\nEnd") == [
        ["Intro"],
        ["Step 1", "Step 2"],
        ["End"],
    ]
    assert paragraphs("") == [] and paragraphs(None) == [] and paragraphs("\n\n") == []


def test_a_description_typed_in_a_text_area_keeps_its_paragraphs(professor_client, student_client):
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Challenge
    from tests.helpers import make_category
    from tests.web.test_professor import form_data

    typed = "First <b>part</b>.\r\n\r\nSecond part,\r\nline two."
    data = form_data(make_category(), description=typed, status="published")
    data["starts_at"] = "2020-01-01T00:00"
    assert professor_client.post("/professor/challenges/new", data=data).status_code == 303
    challenge = db.session.scalar(select(Challenge).where(Challenge.title == data["title"]))
    assert challenge.description == "First <b>part</b>.\n\nSecond part,\nline two."
    page = student_client.get(f"/challenges/{challenge.id}").get_data(as_text=True)
    assert (
        '<div class="description"><p>First &lt;b&gt;part&lt;/b&gt;.</p>'
        "<p>Second part,<br>line two.</p></div>"
    ) in page


def test_a_card_says_when_a_challenge_ends_to_the_minute_in_utc(student_client):
    from datetime import UTC, datetime

    from tests.helpers import make_challenge

    make_challenge(title="Night owl", ends_at=datetime(2030, 11, 27, 0, 30, tzinfo=UTC))
    page = student_client.get("/challenges").get_data(as_text=True)
    # Near midnight the day alone can be a day off where the student is.
    assert "ends 27 Nov 2030 00:30 UTC" in page
