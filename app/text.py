"""Text as people type or paste it, made fit to store, show and compare: accents in their composed
form (NFC, as most keyboards produce them, so a search for "é" finds a pasted "e" + accent), and
without the invisible characters that can only hide a name or reorder what is shown around it
(zero-width spaces, byte-order marks, bidirectional overrides and isolates, control characters).
Joiners and direction marks, which some scripts and emoji need, are kept."""

from __future__ import annotations

import re
import unicodedata

from wtforms.validators import ValidationError

_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u2060\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)
# Control characters other than tab and line feed (pasted from a terminal or a PDF): they show
# nothing, or a box, and no XML can hold them (the stats chart is an SVG of challenge titles).
# Those that separate words (vertical tab, form feed, next line ...) become a space.
_INVISIBLE.update(
    (code, " " if chr(code).isspace() else None)
    for code in (*range(0x20), *range(0x7F, 0xA0))
    if chr(code) not in "\t\n"
)


def clean_text(value: str | None) -> str | None:
    """Composed, without invisible characters, without surrounding white space, with line breaks
    as line feeds (browsers send a text area's as CR LF); None stays None."""
    if value is None:
        return None
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", value).translate(_INVISIBLE).strip()


def paragraphs(value: str | None) -> list[list[str]]:
    """Typed text as paragraphs (split at blank lines), each as its lines: what a page shows of
    a description. Also reads text stored before line breaks were normalized."""
    text = (value or "").replace("\r\n", "\n").replace("\r", "\n")
    blocks = re.split(r"\n[ \t]*\n", text)
    return [
        lines
        for block in blocks
        if (lines := [line.strip() for line in block.strip().split("\n")]) and any(lines)
    ]


def clean_line(value: str | None) -> str | None:
    """``clean_text`` for one-line fields, with every run of white space as one space."""
    cleaned = clean_text(value)
    return " ".join(cleaned.split()) if cleaned is not None else None


# Letters and marks Unicode counts as such that nonetheless show nothing (default-ignorable or
# blank): Hangul fillers, the braille blank, variation selectors, the combining grapheme joiner.
BLANK_CHARACTERS = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)


def is_blank(character: str) -> bool:
    return character in BLANK_CHARACTERS or unicodedata.category(character).startswith(("C", "Z"))


def has_visible(value: str | None) -> bool:
    """Whether any character shows: not only spaces, controls, joiners, marks of direction, soft
    hyphens (Unicode categories Z* and C*) or the blank letters above."""
    return any(not is_blank(c) for c in value or "")


class Visible:
    """Form validator: a name or a title must show something, or it cannot be told apart."""

    message = "Write at least one visible character."

    def __call__(self, form, field) -> None:
        if field.data and not has_visible(field.data):
            raise ValidationError(self.message)


def counted(count: int, noun: str) -> str:
    """ "1 participant", "3 participants": a count with its noun, for messages."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
