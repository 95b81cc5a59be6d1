"""Text as people type or paste it, made fit to store, show and compare: accents in their composed
form (NFC, as most keyboards produce them, so a search for "é" finds a pasted "e" + accent), and
without the invisible characters that can only hide a name or reorder what is shown around it
(zero-width spaces, byte-order marks, bidirectional overrides and isolates). Joiners and
direction marks, which some scripts and emoji need, are kept."""

from __future__ import annotations

import unicodedata

_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u2060\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)


def clean_text(value: str | None) -> str | None:
    """Composed, without invisible characters, without surrounding white space; None stays None."""
    if value is None:
        return None
    return unicodedata.normalize("NFC", value).translate(_INVISIBLE).strip()


def clean_line(value: str | None) -> str | None:
    """``clean_text`` for one-line fields, with every run of white space as one space."""
    cleaned = clean_text(value)
    return " ".join(cleaned.split()) if cleaned is not None else None
