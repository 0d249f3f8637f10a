"""Lint Realtime prompt text, compiled or raw, against the lessons in the field notes.

A Realtime session prompt is the whole personality for a live session with no turn to correct
it in, so the linter catches, before a session starts, the habits from chat prompting that
fail there. Errors are shapes that actively break a session (few-shot example dialogues,
which the model takes for real turns); warnings are habits that weaken it (hedges, memo
formatting, missing voice-first framing or tool-ordering rule, a briefing too short to carry
a session). Every finding names its line, says why it matters in Realtime, and suggests a
rewrite in the shape the notes recommend: "When the user …, you …".

Detection is deliberately shape-based: a plain briefing that merely uses words such as
"example", "user" or "assistant", or a lone "Q:" in prose, produces nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum

__all__ = [
    "BULLET_RUN_LIMIT",
    "MIN_BRIEFING_WORDS",
    "RULES",
    "Finding",
    "RuleInfo",
    "Severity",
    "lint_prompt",
    "rewrite_without_hedges",
]

# A briefing must at least cover who the persona is, tone, pacing, confusion, off-topic and a
# couple of "When the user …, you …" rules: about six essentials of one imperative sentence
# (~20 words) each. Below 120 words something on that list is missing, and in Realtime
# whatever the briefing leaves out the model improvises for the whole session.
MIN_BRIEFING_WORDS = 120

# Six short bullets can still be one spoken thought; seven or more in a row reads as a memo.
BULLET_RUN_LIMIT = 6


class Severity(StrEnum):
    """Errors reject a prompt; warnings are reported and recorded but let the session start."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """A lint rule's stable id, severity, and why it matters in a Realtime session."""

    id: str
    severity: Severity
    title: str
    why: str


_FEW_SHOT_WHY = (
    "Realtime takes example turns in the instructions for real conversation turns, so the "
    "model loses track of where the conversation actually started; a rule generalises where "
    "an example gets replayed."
)
_MEMO_WHY = (
    "The instructions are a briefing the model carries as a spoken personality, and a prompt "
    "that reads like a memo performs like one: it pulls the model toward structured text that "
    "sounds robotic aloud."
)

RULES: dict[str, RuleInfo] = {
    info.id: info
    for info in (
        RuleInfo(
            "few-shot-example-turn",
            Severity.ERROR,
            'labelled example turn ("Example user: …", "Example AI: …")',
            _FEW_SHOT_WHY,
        ),
        RuleInfo(
            "few-shot-dialogue",
            Severity.ERROR,
            'speaker-labelled transcript ("User: … / Assistant: …")',
            _FEW_SHOT_WHY,
        ),
        RuleInfo("few-shot-qa", Severity.ERROR, 'Q:/A: example pair ("Q: … A: …")', _FEW_SHOT_WHY),
        RuleInfo(
            "few-shot-says",
            Severity.ERROR,
            "scripted reply (\"user says … → you say …\", \"if the user says 'x', say 'y'\")",
            _FEW_SHOT_WHY,
        ),
        RuleInfo(
            "few-shot-quoted-exchange",
            Severity.ERROR,
            'quoted exchange ("…" — "…")',
            _FEW_SHOT_WHY,
        ),
        RuleInfo(
            "hedge",
            Severity.WARNING,
            "hedged instruction",
            "The model reads a hedge such as “typically” as a hint, not a rule, and ignores "
            "it about half the time over a long session.",
        ),
        RuleInfo(
            "no-voice-first",
            Severity.WARNING,
            "no voice-first framing",
            "Without voice-first framing the model falls back to its multi-paragraph text "
            "style, which sounds robotic aloud; the framing cuts verbosity by about half.",
        ),
        RuleInfo(
            "no-tool-ordering",
            Severity.WARNING,
            "tools configured but no rule to finish the sentence first",
            "A tool call made mid-sentence cuts the audio off and sounds like a glitch; a "
            "plain ordering rule removes about 80% of those cuts.",
        ),
        RuleInfo("memo-heading", Severity.WARNING, "markdown heading", _MEMO_WHY),
        RuleInfo("memo-table", Severity.WARNING, "markdown table", _MEMO_WHY),
        RuleInfo(
            "memo-bullets",
            Severity.WARNING,
            f"long bullet list (more than {BULLET_RUN_LIMIT} in a row)",
            _MEMO_WHY,
        ),
        RuleInfo(
            "tool-not-configured",
            Severity.WARNING,
            "the persona tells the model to call a tool the session does not configure",
            "A briefing is the model's whole plan for the session, so a tool it is told to "
            "call but cannot reach leaves it stuck mid-task with no way to correct course.",
        ),
        RuleInfo(
            "tool-not-described",
            Severity.WARNING,
            "the session configures a tool the instructions never mention",
            "Anything the briefing leaves out the model improvises for the whole session, "
            "including when to call a tool it was never told about.",
        ),
        RuleInfo(
            "too-short",
            Severity.WARNING,
            f"too short to be a full briefing (under {MIN_BRIEFING_WORDS} words)",
            "A live session has no turn to inject corrections into, so whatever the briefing "
            "leaves out the model improvises for the whole session; a denser spec outperforms "
            "a minimal one.",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One lint result, with enough context to fix the prompt without reading the notes."""

    severity: Severity
    rule: str
    line: int
    excerpt: str
    message: str
    why: str
    rewrite: str

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able form, for the CLI's --json and for gRPC error details."""
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


def _finding(rule: str, *, line: int, excerpt: str, rewrite: str, detail: str = "") -> Finding:
    info = RULES[rule]
    message = info.title + (f": {detail}" if detail else "")
    return Finding(
        severity=info.severity,
        rule=rule,
        line=line,
        excerpt=_clip(excerpt),
        message=message,
        why=info.why,
        rewrite=rewrite,
    )


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---------------------------------------------------------------------------------------------
# Shared patterns

# A quoted utterance in straight, curly or guillemet quotes; an apostrophe inside a word
# (I'm, don't) does not close a single-quoted one.
_QUOTE = (
    r"(?:\"[^\"\n]+\"|“[^”\n]+”|\u2018[^\u2019\n]+\u2019"
    r"|(?<![\w'])'(?:[^'\n]|'(?=\w))+'(?!\w)|«[^»\n]+»)"
)
_QUOTE_RE = re.compile(_QUOTE)

# Speaker labels seen in few-shot transcripts.
_SPEAKERS = (
    "user",
    "users",
    "assistant",
    "ai",
    "bot",
    "chatbot",
    "agent",
    "customer",
    "student",
    "tutor",
    "teacher",
    "human",
    "model",
    "caller",
    "learner",
    "coach",
    "client",
    "system",
    "you",
    "me",
    "rep",
    "representative",
    "support",
    "interviewer",
    "candidate",
    "patient",
    "doctor",
    "host",
    "guest",
    "operator",
    "persona",
)
_SPEAKER = r"(?:" + "|".join(_SPEAKERS) + r")"
_USER_SIDE = {
    "user",
    "users",
    "customer",
    "student",
    "human",
    "caller",
    "learner",
    "client",
    "me",
    "candidate",
    "patient",
    "guest",
}
_BULLET_PREFIX = r"(?:[-*•>]\s*|\d{1,2}[.)]\s+)*"
_LABEL_LINE = re.compile(
    rf"^\s*{_BULLET_PREFIX}(?:\*\*|__)?(?P<label>{_SPEAKER}|(?-i:[A-Z][a-z]+(?: [A-Z][a-z]+)?))"
    r"(?:\s*\d+)?(?:\s+(?:says|said|asks|asked|replies|replied|responds|answers|turn))?"
    r"(?:\*\*|__)?\s*[:\uff1a]\s*(?:\*\*|__)?\s*(?P<rest>\S.*)$",
    re.IGNORECASE,
)
# "You: a patient tutor. / User: a beginner." is a cast list, not a transcript.
_CAST_ENTRY = re.compile(r"^(?:a|an|the)\s+[a-z]")
_KNOWN_LABEL = re.compile(rf"^{_SPEAKER}$", re.IGNORECASE)
_TITLE_SPEAKER = "|".join(sorted({s.title() for s in _SPEAKERS} | {s.upper() for s in _SPEAKERS}))
_INLINE_DIALOGUE = re.compile(
    rf"(?:^|[\s\"“'(/|>\u2013—-])(?P<a>{_TITLE_SPEAKER})\s*:\s*\S.*?"
    rf"(?:[\s\"“”'(/|>\u2013—-])(?P<b>{_TITLE_SPEAKER})\s*:\s*\S"
)


def _rewrite_from_utterance(utterance: str | None) -> str:
    """A rule-shaped replacement for an example, anchored on what the example user said."""
    if utterance:
        said = _clip(utterance.strip().strip("\"“”\u2018\u2019'«»").strip(), 60)
        verb = "asks something like" if said.endswith("?") else "says something like"
        return (
            f'Replace the example with a rule: When the user {verb} "{said}", you … '
            "(describe what the reply does, not the words it uses)."
        )
    return (
        "Replace the example with a rule: When the user …, you … "
        "(describe what the reply does, not the words it uses)."
    )


# ---------------------------------------------------------------------------------------------
# Few-shot detectors. Each yields (first line index, finding); at most one few-shot finding is
# kept per line so one example is reported once.

_EXAMPLE_TURN = re.compile(
    r"(?:^|[/|]|\s[-\u2013—]\s)\s*" + _BULLET_PREFIX + r"(?:\*\*|__)?\s*"
    r"(?:(?:example|sample)\b|e\.g\.)[\s\d#.)\-\u2013—]*(?::\s*)?"
    rf"(?P<who>{_SPEAKER}|response|reply|answer|question|utterance|input|output)\b"
    r"(?:\s+(?:turn|message|reply|response|input|output|line|says|said|asks|question|answer))?"
    r"\s*\d*\s*(?:\*\*|__)?\s*[:\uff1a]\s*(?:\*\*|__)?\s*(?P<rest>\S.*)?$",
    re.IGNORECASE,
)


def _example_turns(lines: list[str]) -> Iterator[tuple[int, Finding]]:
    last_user: str | None = None
    for index, line in enumerate(lines):
        match = _EXAMPLE_TURN.search(line)
        if not match:
            continue
        who = match.group("who").lower()
        if who in _USER_SIDE or who == "question":
            rest = match.group("rest") or ""
            last_user = re.split(r"\s+/\s+|\s+(?=example\b)", rest, flags=re.IGNORECASE)[0]
        label = match.group(0).split(":")[0].strip("/|-\u2013—*_ \t")
        yield (
            index,
            _finding(
                "few-shot-example-turn",
                line=index + 1,
                excerpt=line,
                detail=f'"{label}:" label',
                rewrite=_rewrite_from_utterance(last_user),
            ),
        )


def _is_known(label: str) -> bool:
    return bool(_KNOWN_LABEL.match(label))


def _dialogues(lines: list[str]) -> Iterator[tuple[int, Finding]]:
    """Runs of speaker-labelled lines that alternate between speakers, and inline transcripts."""
    labelled: list[tuple[int, str, str]] = []
    shown: dict[str, str] = {}
    for index, line in enumerate(lines):
        match = _LABEL_LINE.match(line)
        if match:
            label = match.group("label")
            labelled.append((index, label.lower(), match.group("rest")))
            shown.setdefault(label.lower(), label)

    runs: list[list[tuple[int, str, str]]] = []
    for item in labelled:
        if runs and item[0] - runs[-1][-1][0] <= 2 and _only_blank(lines, runs[-1][-1][0], item[0]):
            runs[-1].append(item)
        else:
            runs.append([item])

    reported: set[int] = set()
    for run in runs:
        block = _dialogue_block(run)
        if block is None or all(_CAST_ENTRY.match(rest) for _, _, rest in block):
            continue
        first = block[0]
        user_turn = next((rest for _, label, rest in block if label in _USER_SIDE), None)
        speakers = []
        for _, label, _ in block:
            if label not in speakers:
                speakers.append(label)
        reported.update(index for index, _, _ in block)
        yield (
            first[0],
            _finding(
                "few-shot-dialogue",
                line=first[0] + 1,
                excerpt=" / ".join(lines[index].strip() for index, _, _ in block[:2]),
                detail="/".join(shown[s] + ":" for s in speakers[:3]) + " transcript",
                rewrite=_rewrite_from_utterance(user_turn),
            ),
        )

    for index, line in enumerate(lines):
        if index in reported:
            continue
        match = _INLINE_DIALOGUE.search(line)
        if match and match.group("a").lower() != match.group("b").lower():
            between = line[match.end("a") : match.start("b")].split(":", 1)[-1]
            user_turn = between if match.group("a").lower() in _USER_SIDE else None
            yield (
                index,
                _finding(
                    "few-shot-dialogue",
                    line=index + 1,
                    excerpt=line,
                    detail=f"{match.group('a')}:/{match.group('b')}: transcript on one line",
                    rewrite=_rewrite_from_utterance(user_turn),
                ),
            )


def _only_blank(lines: list[str], start: int, end: int) -> bool:
    return all(not lines[i].strip() for i in range(start + 1, end))


def _dialogue_block(run: list[tuple[int, str, str]]) -> list[tuple[int, str, str]] | None:
    """The part of a run of labelled lines that is a dialogue, if any.

    Two different known speaker labels next to each other are a dialogue ("User:" then
    "Assistant:"). A name that is not a known label ("Maya:") counts only when it alternates
    with a known label over at least three lines, so "Name: … / Role: …" settings are not.
    """
    for i in range(len(run) - 1):
        a, b = run[i][1], run[i + 1][1]
        if a != b and _is_known(a) and _is_known(b):
            return run
    for i in range(len(run) - 2):
        a, b, c = run[i][1], run[i + 1][1], run[i + 2][1]
        if a == c and a != b and (_is_known(a) or _is_known(b)):
            return run[i:]
    return None


_Q_LINE = re.compile(
    rf"^\s*{_BULLET_PREFIX}(?:\*\*|__)?(?:Q|Question)\s*\d*(?:\*\*|__)?\s*[:\uff1a]\s*(?P<rest>\S.*)$",
    re.IGNORECASE,
)
_A_LINE = re.compile(
    rf"^\s*{_BULLET_PREFIX}(?:\*\*|__)?(?:A|Answer)\s*\d*(?:\*\*|__)?\s*[:\uff1a]\s*\S",
    re.IGNORECASE,
)
_INLINE_QA = re.compile(
    r"(?:^|[\s(\"“])(?:Q|Question)\s*[:\uff1a]\s*(?P<q>\S.*?)\s+(?:A|Answer)\s*[:\uff1a]\s*\S"
)


def _inline_qa(line: str) -> re.Match[str] | None:
    """A Q:/A: pair on one line; "Q: and A: are labels…" is prose, a real pair asks."""
    match = _INLINE_QA.search(line)
    if match and (match.group("q").endswith("?") or len(match.group("q").split()) >= 3):
        return match
    return None


def _qa_pairs(lines: list[str]) -> Iterator[tuple[int, Finding]]:
    for index, line in enumerate(lines):
        question = _Q_LINE.match(line)
        if question and not _inline_qa(line):
            # The answer follows, after blank lines and at most one continuation line.
            nonblank = 0
            for follow in lines[index + 1 : index + 6]:
                if not follow.strip():
                    continue
                if _A_LINE.match(follow):
                    yield (
                        index,
                        _finding(
                            "few-shot-qa",
                            line=index + 1,
                            excerpt=f"{line.strip()} / {follow.strip()}",
                            rewrite=_rewrite_from_utterance(question.group("rest")),
                        ),
                    )
                    break
                nonblank += 1
                if nonblank > 1 or _Q_LINE.match(follow):
                    break
            continue
        inline = _inline_qa(line)
        if inline:
            yield (
                index,
                _finding(
                    "few-shot-qa",
                    line=index + 1,
                    excerpt=line,
                    detail="on one line",
                    rewrite=_rewrite_from_utterance(inline.group("q")),
                ),
            )


_ARROW = r"(?:→|->|=>|⇒|⟶|—>|-->|➔|➜)"
_USERISH = r"(?:user|users|customer|student|caller|learner|they|human|client|someone|guest)"
_SAY_VERB = r"(?:says?|said|asks?|asked|types?|typed|writes?|wrote|goes)"
_YOUISH = r"(?:you|assistant|the assistant|ai|bot|agent|tutor|coach|i|we)"
_REPLY_VERB = r"(?:say|says|said|reply|replies|replied|respond|responds|answer|answers|go|goes)"
_ARROW_LINE = re.compile(
    rf"(?P<left>\b{_USERISH}\s+{_SAY_VERB}\b.*?|{_QUOTE}[\s,:]*){_ARROW}"
    rf"\s*(?P<right>(?:\b{_YOUISH}\s+(?:\w+\s+)?{_REPLY_VERB}\b|{_QUOTE}).*)",
    re.IGNORECASE,
)
_SAYS_QUOTES = re.compile(
    rf"\b(?:(?:if|when|whenever|once)\s+)?(?:the\s+|a\s+)?{_USERISH}\s+{_SAY_VERB}"
    rf"(?:\s+(?:something\s+like|like|that|you))?[\s,:]*(?P<q>{_QUOTE})"
    rf"[^\"“\u2018'\n]{{0,40}}?\b(?:(?:then\s+)?(?:{_YOUISH}\s+)?(?:(?:should|must|will|can|then|"
    rf"always|just)\s+)?{_REPLY_VERB}(?:\s+(?:with|back|by\s+saying))?)[\s,:]*{_QUOTE}",
    re.IGNORECASE,
)


def _utterance_like(quote: str) -> bool:
    """A quoted string that reads as speech (not a menu item like "File")."""
    inner = quote.strip("\"“”\u2018\u2019'«» ")
    return inner[-1:] in ".?!…" or len(inner.split()) >= 4


def _says_lines(lines: list[str]) -> Iterator[tuple[int, Finding]]:
    for index, line in enumerate(lines):
        quoted = _SAYS_QUOTES.search(line)
        if quoted:
            yield (
                index,
                _finding(
                    "few-shot-says",
                    line=index + 1,
                    excerpt=line,
                    detail="a verbatim reply to a verbatim user line",
                    rewrite=_rewrite_from_utterance(quoted.group("q")),
                ),
            )
            continue
        arrow = _ARROW_LINE.search(line)
        if not arrow:
            continue
        left, right = arrow.group("left"), arrow.group("right")
        quotes = _QUOTE_RE.findall(left) + _QUOTE_RE.findall(right)
        speaker_words = re.search(rf"\b{_USERISH}\s+{_SAY_VERB}\b", left, re.IGNORECASE) or (
            re.match(rf"\s*\b{_YOUISH}\s+(?:\w+\s+)?{_REPLY_VERB}\b", right, re.IGNORECASE)
        )
        if speaker_words or any(_utterance_like(q) for q in quotes):
            first = _QUOTE_RE.search(left)
            said = re.search(rf"\b{_SAY_VERB}\s+(?P<what>.+?)\s*$", left, re.IGNORECASE)
            utterance = first.group(0) if first else said.group("what") if said else None
            yield (
                index,
                _finding(
                    "few-shot-says",
                    line=index + 1,
                    excerpt=line,
                    detail="an arrow from a user line to a reply",
                    rewrite=_rewrite_from_utterance(utterance),
                ),
            )


_DASH = r"(?:—|\u2013|--|-|/|\|)"
_QUOTED_PAIR_LINE = re.compile(
    rf"^\s*(?:[-*•>]\s+)?(?P<first>{_QUOTE})\s*{_DASH}\s*(?P<second>{_QUOTE})"
    rf"(?:\s*{_DASH}\s*{_QUOTE})*\s*[.,;]?\s*$"
)
_QUOTE_ONLY_LINE = re.compile(rf"^\s*(?:[—\u2013]\s*|>\s*)?(?P<q>{_QUOTE})\s*$")


def _quoted_exchanges(lines: list[str]) -> Iterator[tuple[int, Finding]]:
    for index, line in enumerate(lines):
        pair = _QUOTED_PAIR_LINE.match(line)
        if pair and (_utterance_like(pair.group("first")) or _utterance_like(pair.group("second"))):
            yield (
                index,
                _finding(
                    "few-shot-quoted-exchange",
                    line=index + 1,
                    excerpt=line,
                    rewrite=_rewrite_from_utterance(pair.group("first")),
                ),
            )
    # Back-and-forth on separate lines: consecutive lines that are nothing but a quote (a
    # hyphen bullet list of phrases is a list, not an exchange).
    index = 0
    while index < len(lines):
        if not _QUOTE_ONLY_LINE.match(lines[index]):
            index += 1
            continue
        block = [index]
        probe = index + 1
        while probe < len(lines):
            if _QUOTE_ONLY_LINE.match(lines[probe]):
                block.append(probe)
                probe += 1
            elif (
                not lines[probe].strip()
                and probe + 1 < len(lines)
                and (_QUOTE_ONLY_LINE.match(lines[probe + 1]))
            ):
                probe += 1
            else:
                break
        quotes = [_QUOTE_ONLY_LINE.match(lines[i]).group("q") for i in block]  # type: ignore[union-attr]
        asks = [q.strip("\"“”\u2018\u2019'«» ").endswith("?") for q in quotes]
        # Back and forth: a question answered by a line that is not one. A list of questions
        # users ask is not an exchange.
        if any(asks[i] and not asks[i + 1] for i in range(len(asks) - 1)):
            yield (
                index,
                _finding(
                    "few-shot-quoted-exchange",
                    line=index + 1,
                    excerpt=" / ".join(lines[i].strip() for i in block[:2]),
                    detail="quoted lines back and forth",
                    rewrite=_rewrite_from_utterance(quotes[0]),
                ),
            )
        index = probe


def _few_shot(lines: list[str]) -> list[Finding]:
    found: dict[int, Finding] = {}
    detectors = (_example_turns, _dialogues, _qa_pairs, _says_lines, _quoted_exchanges)
    for detector in detectors:
        for index, finding in detector(lines):
            found.setdefault(index, finding)
    return list(found.values())


# ---------------------------------------------------------------------------------------------
# Hedges

_HEDGES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
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
)

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"”\u2019)]?\s+(?=[\"“\u2018(]?[A-Z0-9])")


def _mask_quotes(line: str) -> str:
    """Blank out quoted speech so a hedge the user might say is not read as an instruction."""
    return _QUOTE_RE.sub(lambda m: " " * len(m.group(0)), line)


def _sentences(line: str) -> Iterator[tuple[int, str]]:
    start = 0
    for match in _SENTENCE_SPLIT.finditer(line):
        yield start, line[start : match.start()]
        start = match.end()
    yield start, line[start:]


def _hedges(lines: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    for index, line in enumerate(lines):
        masked = _mask_quotes(line)
        for offset, sentence in _sentences(line):
            masked_sentence = masked[offset : offset + len(sentence)]
            names = [name for name, pattern in _HEDGES if pattern.search(masked_sentence)]
            if not names:
                continue
            # "as much as possible" also contains no other hedge; report the phrase once.
            listed = ", ".join(f'"{name}"' for name in names)
            findings.append(
                _finding(
                    "hedge",
                    line=index + 1,
                    excerpt=sentence,
                    detail=listed,
                    rewrite=rewrite_without_hedges(sentence),
                )
            )
    return findings


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


_Replacement = str | Callable[[re.Match[str]], str]
_REWRITES: tuple[tuple[re.Pattern[str], _Replacement], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), replacement)
    for pattern, replacement in (
        (r"\byou\s+(?:might|may)\s+(?:want|wish|like)\s+to\s+", ""),
        (r"\btries\s+(?:to|and)\s+(\w+)", lambda m: _third_person(m.group(1))),
        (r"\btrying\s+(?:to|and)\s+(\w+)", lambda m: _gerund(m.group(1))),
        (r"\btried\s+(?:to|and)\s+(\w+)", lambda m: _past(m.group(1))),
        (r"\btry\s+(?:to|and)\s+", ""),
        (r"\btends\s+to\s+(\w+)", lambda m: _third_person(m.group(1))),
        (r"\btended\s+to\s+(\w+)", lambda m: _past(m.group(1))),
        (r"\btend\s+to\s+", ""),
        (r",?\s*\b(?:if|when|where|whenever|wherever)\s+possible\b\s*,?", " "),
        (r",?\s*\bas\s+(?:much|far)\s+as\s+possible\b", ""),
        (r"\bgenerally\s+speaking\b,?\s*", ""),
        (r"\b(?:typically|usually|generally|ideally|perhaps|probably)\b,?\s*", ""),
        (r"(?P<subject>\b\w+)\s+might\s+(?P<not>not\s+)?(?P<verb>\w+)", _might),
        (r"\bmight\b", "can"),
    )
)


_LIST_MARKER = re.compile(r"^(?:[-*+\u2022>]|\d{1,2}[.)])\s+")


def rewrite_without_hedges(sentence: str) -> str:
    """The same sentence with its hedges removed, worded as a firm rule."""
    text = _LIST_MARKER.sub("", sentence.strip())
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r",\s*,", ",", text)
    text = re.sub(r"([,;:])(?=[.!?])", "", text)
    text = re.sub(r"^[,;:\s]+", "", text)
    text = re.sub(r"\s{2,}", " ", text).strip()
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    return text


# ---------------------------------------------------------------------------------------------
# Memo formatting

_ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(?P<title>\S.*?)\s*#*\s*$")
_BOLD_HEADING = re.compile(r"^\s*(?:\*\*|__)(?P<title>[^*_\n]{1,60})(?:\*\*|__)\s*:?\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(?:={3,}|-{3,})\s*$")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+\S")


def _heading_rewrite(title: str) -> str:
    return (
        f'Drop the heading "{_clip(title, 40)}" and say that part as sentences about the '
        'person: "You …; when the user …, you …".'
    )


def _memo(lines: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    for index, line in enumerate(lines):
        heading = _ATX_HEADING.match(line) or _BOLD_HEADING.match(line)
        if heading:
            findings.append(
                _finding(
                    "memo-heading",
                    line=index + 1,
                    excerpt=line,
                    rewrite=_heading_rewrite(heading.group("title")),
                )
            )
        elif (
            _SETEXT_UNDERLINE.match(line)
            and index > 0
            and lines[index - 1].strip()
            and not _BULLET.match(lines[index - 1])
            and not _TABLE_ROW.match(lines[index - 1])
        ):
            findings.append(
                _finding(
                    "memo-heading",
                    line=index,
                    excerpt=lines[index - 1],
                    rewrite=_heading_rewrite(lines[index - 1].strip()),
                )
            )
    findings += _tables(lines)
    findings += _bullet_runs(lines)
    return findings


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def _rule_from_cells(situation: str, action: str) -> str:
    """ "Asks for steps" / "Give one at a time" → "When the user asks for steps, you give …"."""
    situation = re.sub(r"^(?:when|if)\s+", "", situation.strip().rstrip("."), flags=re.I)
    situation = situation[:1].lower() + situation[1:]
    if not re.match(r"^(?:the\s+|a\s+)?(?:user|users|they|customer|student|caller)\b", situation):
        situation = "the user " + situation
    action = re.sub(r"^you\s+", "", action.strip().rstrip("."), flags=re.I)
    return f"When {situation}, you {action[:1].lower() + action[1:]}."


def _tables(lines: list[str]) -> Iterator[Finding]:
    index = 0
    while index < len(lines):
        if not (_TABLE_ROW.match(lines[index]) or _TABLE_SEPARATOR.match(lines[index])):
            index += 1
            continue
        end = index
        while end < len(lines) and (
            _TABLE_ROW.match(lines[end]) or _TABLE_SEPARATOR.match(lines[end])
        ):
            end += 1
        rows = lines[index:end]
        has_separator = any(_TABLE_SEPARATOR.match(row) for row in rows)
        if len(rows) >= 2 or has_separator:
            data = [r for r in rows if not _TABLE_SEPARATOR.match(r)]
            body = data[1:] if has_separator else data
            example = next((_cells(r) for r in body if len(_cells(r)) >= 2), None)
            if example:
                rewrite = (
                    "Say each row as a rule instead, e.g. "
                    f'"{_rule_from_cells(example[0], example[1])}"'
                )
            else:
                rewrite = 'Say each row as a rule instead: "When the user …, you …."'
            yield _finding(
                "memo-table",
                line=index + 1,
                excerpt=rows[0],
                detail=f"{len(rows)} rows",
                rewrite=rewrite,
            )
        index = end


def _bullet_runs(lines: list[str]) -> Iterator[Finding]:
    start: int | None = None
    count = 0
    for index, line in enumerate([*lines, "end"]):
        if _BULLET.match(line):
            if start is None:
                start, count = index, 0
            count += 1
        elif start is not None and (not line.strip() or line.startswith(("  ", "\t"))):
            continue  # a loose list or a wrapped bullet continues the run
        else:
            if start is not None and count > BULLET_RUN_LIMIT:
                yield _finding(
                    "memo-bullets",
                    line=start + 1,
                    excerpt=lines[start],
                    detail=f"{count} bullets in a row",
                    rewrite=(
                        "Fold the list into a few sentences about how the person behaves, and "
                        'turn each situational bullet into a rule: "When the user …, you …".'
                    ),
                )
            start, count = None, 0


# ---------------------------------------------------------------------------------------------
# Whole-prompt checks

_VOICE_FIRST = re.compile(
    r"sitting\s+next\s+to"
    r"|\b(?:respond|reply|answer|speak|talk)\s+conversationally"
    r"|\b(?:1|one)\s*(?:-|\u2013|to|or)\s*(?:2|two|3|three)\s+(?:short\s+)?sentences\b"
    r"|\ba\s+sentence\s+or\s+two\b"
    r"|\b(?:at\s+most|no\s+more\s+than|under)\s+(?:one|two|three|1|2|3)\s+(?:short\s+)?sentences?\b"
    r"|\b(?:two|three|2|3)\s+sentences\s+or\s+(?:fewer|less)\b",
    re.IGNORECASE,
)

_TOOL_ORDER = re.compile(
    r"\bfinish\w*\s+(?:\w+\s+){0,3}(?:sentence|speaking|talking|saying|utterance|thought)"
    r"[^.\n]{0,80}?\b(?:before|then|and\s+only\s+then)\b[^.\n]{0,60}?\b(?:tools?|functions?)\b"
    r"|\bbefore\s+(?:you\s+)?(?:call|invoke|use|run|trigger)\w*\s+(?:a\s+|any\s+|the\s+)?"
    r"(?:tools?|functions?)\b[^.\n]{0,60}?\bfinish\w*\s+(?:\w+\s+){0,3}(?:sentence|speaking)"
    r"|\bnever\s+(?:call|invoke|use|run|trigger)\w*\s+(?:a\s+|any\s+|the\s+)?(?:tools?|functions?)"
    r"\s+(?:mid-sentence|mid-speech|in\s+the\s+middle\s+of|while\s+(?:you\s+are|you're|you\u2019re)"
    r"\s+(?:still\s+)?(?:speaking|talking))",
    re.IGNORECASE,
)

_WORD = re.compile(r"[A-Za-z0-9][\w'\u2019-]*")


def _whole_prompt(text: str, *, tools_configured: bool) -> list[Finding]:
    findings: list[Finding] = []
    if not _VOICE_FIRST.search(text):
        findings.append(
            _finding(
                "no-voice-first",
                line=1,
                excerpt="",
                rewrite=(
                    'Add: "You are talking out loud, not writing, so respond conversationally, '
                    "in 1-2 sentences, like you're sitting next to the user.\""
                ),
            )
        )
    if tools_configured and not _TOOL_ORDER.search(text):
        findings.append(
            _finding(
                "no-tool-ordering",
                line=1,
                excerpt="",
                rewrite=(
                    'Add: "Always finish your current sentence before you call a tool, and '
                    'never call a tool in the middle of speaking."'
                ),
            )
        )
    words = len(_WORD.findall(text))
    if words < MIN_BRIEFING_WORDS:
        findings.append(
            _finding(
                "too-short",
                line=1,
                excerpt="",
                detail=f"{words} words",
                rewrite=(
                    "Expand it into a full briefing: who you are in one sentence, your tone, "
                    'your pacing ("respond conversationally, in 1-2 sentences"), what you do '
                    "when the user is confused or goes off topic, and rules of the form "
                    '"When the user …, you …".'
                ),
            )
        )
    return findings


_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1}


def lint_prompt(text: str, *, tools_configured: bool) -> list[Finding]:
    """Lint prompt text; findings are sorted by line, errors first within a line."""
    lines = text.splitlines()
    findings: Iterable[Finding] = [
        *_few_shot(lines),
        *_hedges(lines),
        *_memo(lines),
        *_whole_prompt(text, tools_configured=tools_configured),
    ]
    return sorted(findings, key=lambda f: (f.line, _SEVERITY_ORDER[f.severity], f.rule))
