"""Hedges ("typically", "try to", "si es posible", "peut-être", "möglichst") in the language
the prompt is written in, and which language that is.

The model reads a hedge as a hint, not a rule, so a hedged instruction is followed about half
the time over a long session, whatever the language. The persona's declared ``language`` picks
the list; a raw prompt with no declared language is matched against stop-word profiles, and
when nothing fits well it is taken for English, the language of the compiled frame. English is
always checked as well, because a compiled persona's frame is English whatever language the
persona speaks, and English hedge words are not words in the other languages. When the
language has no list the linter says so (rule ``hedge-language-unsupported``) rather than
passing the prompt silently.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache

from services.prompts.findings import Finding, make_finding
from services.prompts.shapes import QUOTE_RE, WORD_RE, clip

__all__ = [
    "HEDGE_LISTS",
    "Language",
    "detect_language",
    "hedge_findings",
    "hedge_patterns",
    "language_from_declared",
    "resolve_language",
    "rewrite_without_hedges",
]

_Replacement = str | Callable[[re.Match[str]], str]


def _rewrite_table(
    pairs: Sequence[tuple[str, _Replacement]],
) -> tuple[tuple[re.Pattern[str], _Replacement], ...]:
    return tuple(
        (re.compile(pattern, re.IGNORECASE), replacement) for pattern, replacement in pairs
    )


def _compile(pairs: Sequence[tuple[str, str]]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((name, re.compile(pattern, re.IGNORECASE)) for name, pattern in pairs)


HEDGE_LISTS: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    "en": _compile(
        (
            ("typically", r"\btypically\b"),
            ("usually", r"\busually\b"),
            ("generally", r"\bgenerally\b"),
            ("try to", r"\b(?:try|tries|trying|tried)\s+(?:to|and)\b"),
            ("if possible", r"\b(?:if|when|where|whenever|wherever)\s+possible\b"),
            ("as much as possible", r"\bas\s+(?:much|far)\s+as\s+possible\b"),
            ("might", r"\bmight\b"),
            ("ideally", r"\bideally\b"),
            ("perhaps", r"\bperhaps\b"),
            ("probably", r"\bprobably\b"),
            ("tend to", r"\btend(?:s|ed)?\s+to\b"),
        )
    ),
    "es": _compile(
        (
            ("normalmente", r"\b(?:normalmente|habitualmente|usualmente|t[ií]picamente)\b"),
            ("generalmente", r"\bgeneralmente\b|\bpor\s+lo\s+general\b|\ben\s+general\b"),
            (
                "intenta",
                r"\b(?:intent(?:a|as|an|e|en|o|ar|ad)|procur(?:a|as|an|e|en|o|ar|ad)"
                r"|trat(?:a|as|an|e|en|o|ar|ad)\s+de)\b",
            ),
            (
                "si es posible",
                r"\b(?:si|cuando|siempre\s+que)\s+(?:es|sea)\s+posible\b"
                r"|\ben\s+(?:lo|la\s+medida\s+de\s+lo)\s+posible\b",
            ),
            ("quizás", r"\bquiz[aá]s?\b|\btal\s+vez\b|\ba\s+lo\s+mejor\b"),
            ("probablemente", r"\bprobablemente\b"),
            ("idealmente", r"\bidealmente\b"),
            ("suele", r"\bsuel(?:e|es|en)\b"),
            ("podrías", r"\bpodr[ií](?:a|as|an)\b"),
        )
    ),
    "fr": _compile(
        (
            ("généralement", r"\bg[ée]n[ée]ralement\b|\ben\s+g[ée]n[ée]ral\b"),
            (
                "habituellement",
                r"\b(?:habituellement|normalement|typiquement)\b|\bd['\u2019]habitude\b"
                r"|\ben\s+principe\b",
            ),
            (
                "essayer de",
                r"\b(?:essa(?:i|ie|ies|ient|yez|yer|yons|ye|yes)|t[âa]ch(?:e|es|ez|er)"
                r"|tent(?:e|es|ez|er))\s+(?:de\s+|d['\u2019])",
            ),
            (
                "si possible",
                r"\bsi\s+possible\b|\bdans\s+la\s+mesure\s+du\s+possible\b"
                r"|\b(?:autant\s+que|le\s+plus)\s+possible\b|\bquand\s+c['\u2019]est\s+possible\b",
            ),
            ("peut-être", r"\bpeut[-\s]être\b"),
            ("probablement", r"\bprobablement\b"),
            ("idéalement", r"\bid[ée]alement\b"),
            ("pourrais", r"\bpourr(?:ais|ait|iez|aient)\b"),
        )
    ),
    "de": _compile(
        (
            (
                "normalerweise",
                r"\b(?:normalerweise|meistens|gew[öo]hnlich|typischerweise)\b"
                r"|\bin\s+der\s+regel\b",
            ),
            ("im Allgemeinen", r"\bim\s+allgemeinen\b|\bgenerell\b"),
            ("versuche", r"\bversuch(?:e|en|st|t)?\b"),
            (
                "wenn möglich",
                r"\b(?:wenn|falls|wo)\s+(?:es\s+)?m[öo]glich(?:\s+ist)?\b"
                r"|\bnach\s+m[öo]glichkeit\b",
            ),
            ("möglichst", r"\bm[öo]glichst\b"),
            ("vielleicht", r"\b(?:vielleicht|eventuell)\b"),
            ("wahrscheinlich", r"\bwahrscheinlich\b"),
            ("idealerweise", r"\bidealerweise\b"),
            ("könntest", r"\bk[öo]nntest\b|\bk[öo]nnten\s+sie\b"),
            ("tendenziell", r"\btendenziell\b"),
        )
    ),
}


def hedge_patterns() -> Iterator[re.Pattern[str]]:
    """Every hedge pattern in every list (tests check that rewrites leave none behind)."""
    for patterns in HEDGE_LISTS.values():
        for _, pattern in patterns:
            yield pattern


# ---------------------------------------------------------------------------------------------
# Which language


@dataclass(frozen=True, slots=True)
class Language:
    """The language the hedge lists are chosen by.

    ``code`` is an ISO 639-1 code, or None when the language could not be named (a script the
    profiles do not cover, or a declared name the linter does not know). ``source`` says how it
    was chosen: "declared" (the persona or the CLI said so), "detected" or "default".
    """

    code: str | None
    name: str
    source: str

    @property
    def supported(self) -> bool:
        return self.code in HEDGE_LISTS


_NAMES: dict[str, str] = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ca": "Catalan",
    "sv": "Swedish",
    "da": "Danish",
    "no": "Norwegian",
    "fi": "Finnish",
    "pl": "Polish",
    "cs": "Czech",
    "tr": "Turkish",
    "ru": "Russian",
    "uk": "Ukrainian",
    "el": "Greek",
    "ar": "Arabic",
    "he": "Hebrew",
    "hi": "Hindi",
    "ja": "Japanese",
    "zh": "Chinese",
    "ko": "Korean",
    "vi": "Vietnamese",
    "id": "Indonesian",
}

# Language names as people write them in a spec: English names, native names, and the Spanish,
# French and German names for the four languages with lists.
_ALIASES: dict[str, str] = {
    **{name.lower(): code for code, name in _NAMES.items()},
    "inglés": "en",
    "ingles": "en",
    "anglais": "en",
    "englisch": "en",
    "español": "es",
    "espanol": "es",
    "castellano": "es",
    "espagnol": "es",
    "spanisch": "es",
    "français": "fr",
    "francais": "fr",
    "francés": "fr",
    "frances": "fr",
    "französisch": "fr",
    "deutsch": "de",
    "alemán": "de",
    "aleman": "de",
    "allemand": "de",
    "italiano": "it",
    "português": "pt",
    "portugues": "pt",
    "nederlands": "nl",
    "català": "ca",
    "svenska": "sv",
    "dansk": "da",
    "norsk": "no",
    "suomi": "fi",
    "polski": "pl",
    "čeština": "cs",
    "türkçe": "tr",
    "русский": "ru",
    "українська": "uk",
    "ελληνικά": "el",
    "العربية": "ar",
    "עברית": "he",
    "हिन्दी": "hi",
    "日本語": "ja",
    "中文": "zh",
    "mandarin": "zh",
    "cantonese": "zh",
    "한국어": "ko",
}
_CODE = re.compile(r"^(?P<code>[a-z]{2})(?:[-_][a-z]{2,4})?$", re.IGNORECASE)


def language_from_declared(declared: str) -> Language:
    """The language a spec's ``language`` field names first ("Spanish, with short English
    explanations …" is Spanish), by name in several languages or by code ("es", "pt-BR")."""
    text = declared.strip()
    code_match = _CODE.match(text)
    if code_match and code_match.group("code").lower() in _NAMES:
        code = code_match.group("code").lower()
        return Language(code, _NAMES[code], "declared")
    for word in WORD_RE.findall(text.lower()):
        code = _ALIASES.get(word)
        if code is not None:
            return Language(code, _NAMES[code], "declared")
    for alias, code in _ALIASES.items():  # scripts written without spaces (日本語で話す)
        if not alias.isascii() and alias in text:
            return Language(code, _NAMES[code], "declared")
    return Language(None, clip(text, 40), "declared")


# Frequent short words that tell these languages apart in a few sentences. A profile only
# wins with a clear lead, so a text that mixes languages falls back to English.
_PROFILES: dict[str, frozenset[str]] = {
    "en": frozenset(
        [
            "the",
            "and",
            "you",
            "your",
            "is",
            "are",
            "to",
            "of",
            "that",
            "it",
            "when",
            "with",
            "for",
            "they",
            "this",
            "what",
            "if",
            "not",
            "be",
            "do",
        ]
    ),
    "es": frozenset(
        [
            "el",
            "los",
            "las",
            "que",
            "y",
            "es",
            "por",
            "para",
            "con",
            "cuando",
            "usuario",
            "una",
            "del",
            "lo",
            "al",
            "se",
            "su",
            "tú",
            "le",
            "no",
            "si",
            "como",
            "pero",
            "muy",
            "está",
        ]
    ),
    "fr": frozenset(
        [
            "le",
            "les",
            "des",
            "et",
            "est",
            "une",
            "qui",
            "vous",
            "tu",
            "pour",
            "dans",
            "avec",
            "quand",
            "pas",
            "ne",
            "du",
            "au",
            "ce",
            "il",
            "elle",
            "sur",
            "utilisateur",
        ]
    ),
    "de": frozenset(
        [
            "der",
            "die",
            "das",
            "und",
            "ist",
            "nicht",
            "du",
            "sie",
            "ein",
            "eine",
            "zu",
            "mit",
            "wenn",
            "den",
            "dem",
            "auf",
            "für",
            "ich",
            "es",
            "nutzer",
            "sich",
            "auch",
            "dich",
            "dir",
        ]
    ),
    "it": frozenset(
        [
            "il",
            "gli",
            "della",
            "che",
            "è",
            "non",
            "per",
            "con",
            "quando",
            "sono",
            "di",
            "le",
            "lo",
            "un",
            "una",
            "ma",
        ]
    ),
    "pt": frozenset(
        [
            "o",
            "os",
            "não",
            "que",
            "é",
            "uma",
            "para",
            "com",
            "quando",
            "você",
            "do",
            "da",
            "em",
            "ao",
            "um",
        ]
    ),
    "nl": frozenset(
        [
            "het",
            "een",
            "en",
            "niet",
            "je",
            "van",
            "dat",
            "op",
            "voor",
            "met",
            "wanneer",
            "als",
            "de",
            "zijn",
        ]
    ),
}
_MIN_SHARE = 0.08  # profile words among all words
_LEAD = 1.3  # over the runner-up


def detect_language(text: str) -> Language:
    """Guess a raw prompt's language; English when the text gives no clear answer.

    Text mostly in a non-Latin script has no profile here, so it comes back unnamed
    (``code=None``) and the linter reports that it could not check hedges.
    """
    words = [word.lower() for word in WORD_RE.findall(text)]
    if not words:
        return Language("en", "English", "default")
    latin = sum(1 for word in words if word[0] <= "\u024f")
    if latin < len(words) / 2:
        return Language(None, "a language in a script with no profile", "detected")
    frequency = Counter(words)
    counts = {code: sum(frequency[word] for word in profile) for code, profile in _PROFILES.items()}
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    (best, hits), (_, runner_up) = ranked[0], ranked[1]
    if hits >= _MIN_SHARE * len(words) and hits >= _LEAD * runner_up:
        return Language(best, _NAMES[best], "detected")
    return Language("en", "English", "default")


def resolve_language(declared: str | None, text: str) -> Language:
    """The declared language when there is one, else the detected one."""
    if declared is not None and declared.strip():
        return language_from_declared(declared)
    return detect_language(text)


# ---------------------------------------------------------------------------------------------
# English rewrites


def _third_person(verb: str) -> str:
    irregular = {"be": "is", "have": "has", "do": "does", "go": "goes", "can": "can"}
    lower = verb.lower()
    if lower in irregular:
        return irregular[lower]
    if re.search(r"[^aeiou]y$", lower):
        return verb[:-1] + "ies"
    if re.search(r"(?:s|sh|ch|x|z|o)$", lower):
        return verb + "es"
    return verb + "s"


def _gerund(verb: str) -> str:
    lower = verb.lower()
    if lower == "be":
        return "being"
    if lower.endswith("ie"):
        return verb[:-2] + "ying"
    if lower.endswith("e") and not lower.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    return verb + "ing"


def _past(verb: str) -> str:
    lower = verb.lower()
    if lower.endswith("e"):
        return verb + "d"
    if re.search(r"[^aeiou]y$", lower):
        return verb[:-1] + "ied"
    return verb + "ed"


def _plural_subject(word: str) -> bool:
    lower = word.lower()
    return lower in {"you", "they", "we", "i", "users", "people"} or (
        lower.endswith("s") and lower not in {"this", "its", "is", "was", "has", "his"}
    )


def _might(match: re.Match[str]) -> str:
    subject, negation, verb = match.group("subject"), match.group("not"), match.group("verb")
    if verb.lower() in {"want", "wish", "like"} and not negation and subject.lower() != "you":
        return f"{subject} {verb if _plural_subject(subject) else _third_person(verb)}"
    if subject.lower() == "you":
        return f"{subject} do not {verb}" if negation else f"{subject} {verb}"
    if negation:
        return f"{subject} can fail to {verb}"
    return f"{subject} can {verb}"


_EN_REWRITES: tuple[tuple[re.Pattern[str], _Replacement], ...] = _rewrite_table(
    (
        (r"\byou\s+(?:might|may)\s+(?:want|wish|like)\s+to\s+", ""),
        (r"\btries\s+(?:to|and)\s+(\w+)", lambda m: _third_person(m.group(1))),
        (r"\btrying\s+(?:to|and)\s+(\w+)", lambda m: _gerund(m.group(1))),
        (r"\btried\s+(?:to|and)\s+(\w+)", lambda m: _past(m.group(1))),
        (r"\btry\s+(?:to|and)\s+", ""),
        (r"\btends\s+to\s+(\w+)", lambda m: _third_person(m.group(1))),
        (r"\btended\s+to\s+(\w+)", lambda m: _past(m.group(1))),
        (r"\btend\s+to\s+", ""),
        (r",?(?<!\s)\s*+\b(?:if|when|where|whenever|wherever)\s+possible\b\s*,?", " "),
        (r",?(?<!\s)\s*+\bas\s+(?:much|far)\s+as\s+possible\b", ""),
        (r"\bgenerally\s+speaking\b,?\s*", ""),
        (r"\b(?:typically|usually|generally|ideally|perhaps|probably)\b,?\s*", ""),
        (r"(?P<subject>\b\w+)\s+might\s+(?P<not>not\s+)?(?P<verb>\w+)", _might),
        (r"\bmight\b", "can"),
    )
)


# ---------------------------------------------------------------------------------------------
# Spanish, French and German rewrites: the adverb or phrase goes; a "try to" verb becomes the
# firm modal in the same person, or, opening the sentence, gives way to the infinitive, which
# is how instructions are written in all three ("Hablar despacio.", "Parler lentement.",
# "Langsam sprechen.").


def _opens_sentence(match: re.Match[str]) -> bool:
    return not re.search(r"[^\W_]", match.string[: match.start()])


def _modal(forms: dict[str, str], default: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        if _opens_sentence(match):
            return ""
        verb = match.group("verb").lower()
        for ending, modal in forms.items():
            if verb.endswith(ending):
                return modal + " "
        return default + " "

    return replace


def _de_try(match: re.Match[str]) -> str:
    middle = match.group("mid").strip(" ,")
    verb = match.group("inf")
    if _opens_sentence(match):
        return f"{middle} {verb}".strip()
    form = match.group("verb").lower()
    modal = {"versuchst": "musst", "versucht": "muss", "versuchen": "müssen"}.get(form, "muss")
    return f"{modal} {middle} {verb}".replace("  ", " ")


_ES_ADVERBS = (
    r"normalmente|habitualmente|usualmente|t[ií]picamente|generalmente|probablemente"
    r"|idealmente|quiz[aá]s?|tal\s+vez|a\s+lo\s+mejor|por\s+lo\s+general|en\s+general"
    r"|(?:si|cuando|siempre\s+que)\s+(?:es|sea)\s+posible|en\s+(?:lo|la\s+medida\s+de\s+lo)"
    r"\s+posible"
)
_FR_ADVERBS = (
    r"g[ée]n[ée]ralement|en\s+g[ée]n[ée]ral|habituellement|normalement|typiquement"
    r"|d['\u2019]habitude|en\s+principe|si\s+possible|dans\s+la\s+mesure\s+du\s+possible"
    r"|autant\s+que\s+possible|le\s+plus\s+possible|quand\s+c['\u2019]est\s+possible"
    r"|peut[-\s]être|probablement|id[ée]alement"
)
_DE_ADVERBS = (
    r"normalerweise|meistens|gew[öo]hnlich|typischerweise|in\s+der\s+regel|im\s+allgemeinen"
    r"|generell|(?:wenn|falls|wo)\s+(?:es\s+)?m[öo]glich(?:\s+ist)?|nach\s+m[öo]glichkeit"
    r"|m[öo]glichst|vielleicht|eventuell|wahrscheinlich|idealerweise|tendenziell"
)
_DE_PRONOUN = r"(?:du|sie|er|es|wir|ihr|man)"


def _de_fronted(match: re.Match[str]) -> str:
    """German puts the verb second: "Normalerweise antwortest du kurz" → "Du antwortest kurz"."""
    return f"{match.group('subject')} {match.group('verb')}"


_FOREIGN_REWRITES: dict[str, tuple[tuple[re.Pattern[str], _Replacement], ...]] = {
    "es": _rewrite_table(
        (
            (
                r"\b(?P<verb>intent(?:a|as|an|e|en|o|ar|ad)|procur(?:a|as|an|e|en|o|ar|ad)"
                r"|trat(?:a|as|an|e|en|o|ar|ad)(?=\s+de)|suel(?:e|es|en)"
                r"|podr[ií](?:a|as|an))\b(?:\s+de)?\s+",
                _modal({"as": "debes", "es": "debes", "an": "deben", "en": "deben"}, "debe"),
            ),
            (rf",?(?<!\s)\s*+\b(?:{_ES_ADVERBS})\b\s*,?", " "),
        )
    ),
    "fr": _rewrite_table(
        (
            (
                r"\b(?P<verb>essa(?:i|ie|ies|ient|yez|yer|yons|ye|yes)|t[âa]ch(?:e|es|ez|er)"
                r"|tent(?:e|es|ez|er))\s+(?:de\s+|d['\u2019])",
                _modal(
                    {
                        "ez": "devez",
                        "es": "dois",
                        "ons": "devons",
                        "ent": "doivent",
                        "er": "devoir",
                    },
                    "doit",
                ),
            ),
            (
                r"\b(?P<verb>pourr(?:ais|ait|iez|aient))\b\s*",
                _modal({"ais": "dois", "iez": "devez", "aient": "doivent"}, "doit"),
            ),
            (rf",?(?<!\s)\s*+\b(?:{_FR_ADVERBS})\b\s*,?", " "),
        )
    ),
    "de": _rewrite_table(
        (
            (
                r"\b(?P<verb>versuch(?:e|en|st|t)?)\b(?:\s+sie)?\s*,?\s*(?P<mid>[^.;!?]*?)"
                r"\bzu\s+(?P<inf>\w+)",
                _de_try,
            ),
            (r"\bversuch(?:e|en|st|t)?\b\s*,?\s*", ""),
            (r"\bk[öo]nntest\b", "musst"),
            (r"\bk[öo]nnten(?=\s+sie\b)", "müssen"),
            (
                rf"^(?:{_DE_ADVERBS})\b\s*,?\s+(?P<verb>\w+)\s+(?P<subject>{_DE_PRONOUN})\b",
                _de_fronted,
            ),
            (rf",?(?<!\s)\s*+\b(?:{_DE_ADVERBS})\b\s*,?", " "),
        )
    ),
}


# A list marker, or a bracketed speaker tag ("[Coach] …") opening the sentence.
_LIST_MARKER = re.compile(r"^(?:(?:[-*+\u2022>]|\d{1,2}[.)])\s+|\[[^\]\n]{1,40}\]\s*)")


def rewrite_without_hedges(sentence: str, languages: Sequence[str] = ("en",)) -> str:
    """The same sentence with its hedges removed, worded as a firm rule."""
    text = _LIST_MARKER.sub("", sentence.strip())
    for code in languages:
        rewrites = _EN_REWRITES if code == "en" else _FOREIGN_REWRITES.get(code, ())
        for pattern, replacement in rewrites:
            text = pattern.sub(replacement, text).strip()
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r",\s*,", ",", text)
    text = re.sub(r"([,;:])(?=[.!?])", "", text)
    text = re.sub(r"^[,;:\s]+", "", text)
    text = re.sub(r"\s{2,}", " ", text).strip()
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    return text


# ---------------------------------------------------------------------------------------------
# Finding them

# A sentence ends at . ! or ?, before a capital (accented too), a digit or an opening ¿ ¡ « „.
_SENTENCE_SPLIT = re.compile(
    r"(?<=[.!?])[\"”\u2019»)]?\s+(?=[\"“\u2018(¿¡«„]?[A-Z0-9\u00c0-\u00de])"
)


def _mask_quotes(line: str) -> str:
    """Blank out quoted speech so a hedge the user might say is not read as an instruction."""
    return QUOTE_RE.sub(lambda m: " " * len(m.group(0)), line)


def _sentences(line: str) -> Iterator[tuple[int, str]]:
    start = 0
    for match in _SENTENCE_SPLIT.finditer(line):
        yield start, line[start : match.start()]
        start = match.end()
    yield start, line[start:]


def checked_languages(language: Language) -> tuple[str, ...]:
    """English (the compiled frame's language) plus the prompt's own, when it has a list."""
    if language.code in HEDGE_LISTS and language.code != "en":
        return ("en", language.code)
    return ("en",)


@cache
def _any_hedge(codes: tuple[str, ...]) -> re.Pattern[str]:
    """Every hedge of these languages in one pattern, to skip hedge-free lines quickly."""
    return re.compile(
        "|".join(f"(?:{pattern.pattern})" for code in codes for _, pattern in HEDGE_LISTS[code]),
        re.IGNORECASE,
    )


def hedge_findings(lines: Sequence[str], language: Language) -> list[Finding]:
    """One ``hedge`` finding per hedged sentence, and a note when the language has no list."""
    codes = checked_languages(language)
    patterns = [pair for code in codes for pair in HEDGE_LISTS[code]]
    any_hedge = _any_hedge(codes)
    findings: list[Finding] = []
    if not language.supported:
        findings.append(
            make_finding(
                "hedge-language-unsupported",
                line=1,
                excerpt="",
                detail=f"{language.name} ({language.source}); only English hedges were checked",
                rewrite=(
                    "State every rule as what you always do, with none of that language's "
                    'softeners ("usually", "try to", "if possible", "maybe"); or declare one of '
                    f"{', '.join(_NAMES[code] for code in HEDGE_LISTS)} if the prompt is "
                    "written in it."
                ),
            )
        )
    for index, line in enumerate(lines):
        if not any_hedge.search(line):
            continue  # most lines hold no hedge; one combined search rules them out
        masked = _mask_quotes(line)
        for offset, sentence in _sentences(line):
            masked_sentence = masked[offset : offset + len(sentence)]
            names = [name for name, pattern in patterns if pattern.search(masked_sentence)]
            if not names:
                continue
            listed = ", ".join(f'"{name}"' for name in names)
            findings.append(
                make_finding(
                    "hedge",
                    line=index + 1,
                    excerpt=sentence,
                    detail=listed,
                    rewrite=rewrite_without_hedges(sentence, codes),
                )
            )
    return findings
