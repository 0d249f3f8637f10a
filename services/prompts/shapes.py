"""Text shapes every lint check shares: quoted speech, words in any Latin script, clipping.

Kept apart from the checks so the hedge finder (which must skip quoted speech) and the
dialogue detector (which treats quoted speech as the strongest sign of a turn) agree on what a
quotation is.
"""

from __future__ import annotations

import re

__all__ = ["QUOTE", "QUOTE_CHARS", "QUOTE_RE", "WORD_RE", "clip", "unquote"]

# A quoted utterance in straight, curly, low-9 („…“ as in German), or guillemet quotes (with or
# without the French inner spaces); an apostrophe inside a word (I'm, don't, l'aide) does not
# close a single-quoted one.
QUOTE = (
    r"(?:\"[^\"\n]{1,600}+\"|“[^“”\n]{1,600}+”|„[^„“”\n]{1,600}+[“”]"
    r"|\u2018[^\u2018\u2019\n]{1,600}+\u2019|(?<![\w'])'(?:[^'\n]|'(?=\w)){1,600}+'(?!\w)"
    r"|«[^«»\n]{1,600}+»|\u2039[^\u2039\u203a\n]{1,600}+\u203a|「[^「」\n]{1,600}+」)"
)
QUOTE_RE = re.compile(QUOTE)
QUOTE_CHARS = "\"“”„\u2018\u2019'«»\u2039\u203a「」 \u00a0"

# A word in any alphabet (accented Latin, Cyrillic, Greek…), with inner apostrophes and hyphens.
WORD_RE = re.compile(r"[^\W_][\w'\u2019-]*")


def clip(text: str, limit: int = 120) -> str:
    """One line of at most ``limit`` characters, for excerpts and quoted utterances."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def unquote(text: str) -> str:
    """The text without surrounding quotation marks or spaces."""
    return text.strip().strip(QUOTE_CHARS).strip()
