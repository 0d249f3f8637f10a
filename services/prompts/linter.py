"""Lint Realtime prompt text, compiled or raw, against the lessons in the field notes.

A Realtime session prompt is the whole personality for a live session with no turn to correct
it in, so the linter catches, before a session starts, the habits from chat prompting that
fail there. Errors are shapes that actively break a session (few-shot example dialogues,
which the model takes for real turns); warnings are habits that weaken it (hedges, memo
formatting, missing voice-first framing or tool-ordering rule, a briefing too short to carry
a session). Every finding names its line, says why it matters in Realtime, and suggests a
rewrite in the shape the notes recommend: "When the user …, you …".

Detection is deliberately shape-based. Dialogues in any labels, language or markup are found
by their alternation (:mod:`services.prompts.dialogue`); the older checks here catch the
single-line shapes (Q:/A: pairs, "Example user:" turns, scripted "user says … → you say …"
replies, quoted exchanges). Hedges are matched in the prompt's language
(:mod:`services.prompts.hedges`). A plain briefing that merely uses words such as "example",
"user" or "assistant", or a lone "Q:" in prose, produces nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from services.prompts.dialogue import behaviour_rewrite, find_dialogues
from services.prompts.findings import (
    BULLET_RUN_LIMIT,
    MIN_BRIEFING_WORDS,
    RULES,
    Finding,
    RuleInfo,
    Severity,
    make_finding,
)
from services.prompts.hedges import hedge_findings, resolve_language, rewrite_without_hedges
from services.prompts.shapes import QUOTE, QUOTE_RE, WORD_RE, clip

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


# ---------------------------------------------------------------------------------------------
# Shared patterns

_QUOTE = QUOTE
_QUOTE_RE = QUOTE_RE

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
_BULLET_PREFIX = r"(?:[-*•>]\s*+|\d{1,2}[.)]\s++)*+"


def _rewrite_from_utterance(utterance: str | None) -> str:
    """A rule-shaped replacement for an example, anchored on what the example user said."""
    if utterance:
        said = clip(utterance.strip().strip("\"“”\u2018\u2019'«»").strip(), 60)
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
    r"(?:^|[/|]|\s[-\u2013—]\s)\s*+" + _BULLET_PREFIX + r"(?:\*\*|__)?\s*+"
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
            make_finding(
                "few-shot-example-turn",
                line=index + 1,
                excerpt=line,
                detail=f'"{label}:" label',
                rewrite=_rewrite_from_utterance(last_user),
            ),
        )


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
                        make_finding(
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
                make_finding(
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
    rf"(?P<left>\b{_USERISH}\s+{_SAY_VERB}\b.{{0,200}}?|{_QUOTE}[\s,:]*){_ARROW}"
    rf"\s*(?P<right>(?:\b{_YOUISH}\s+(?:\w+\s+)?{_REPLY_VERB}\b|{_QUOTE}).*)",
    re.IGNORECASE,
)
_SAYS_QUOTES = re.compile(
    rf"\b(?:(?:if|when|whenever|once)\s+)?(?:the\s+|a\s+)?{_USERISH}\s+{_SAY_VERB}"
    rf"(?:\s+(?:something\s+like|like|that|you))?[\s,:]*(?P<q>{_QUOTE})"
    rf"(?P<between>[^\"“\u2018'\n.!?]{{0,40}}?)\b(?:(?:then\s+)?(?:{_YOUISH}\s+)?(?:(?:should|must|"
    rf"will|can|then|always|just)\s+)?{_REPLY_VERB}(?:\s+(?:with|back|by\s+saying))?)[\s,:]*"
    rf"(?P<r>{_QUOTE})",
    re.IGNORECASE,
)


def _utterance_like(quote: str) -> bool:
    """A quoted string that reads as speech (not a menu item like "File")."""
    inner = quote.strip("\"“”\u2018\u2019'«» ")
    return inner[-1:] in ".?!…" or len(inner.split()) >= 4


_ARROW_RE = re.compile(_ARROW)


def _scripted(match: re.Match[str]) -> bool:
    """A reply, not the user again: it is set off ("…", say / …", you reply / then) and says
    something ("sure" alone is a cue, and 'says "x" or says "y"' is one speaker)."""
    set_off = re.search(rf"[,;:]|\b(?:then|{_YOUISH})\b", match.group("between"), re.IGNORECASE)
    return bool(set_off) and _utterance_like(match.group("r"))


def _says_lines(lines: list[str]) -> Iterator[tuple[int, Finding]]:
    for index, line in enumerate(lines):
        if not (QUOTE_RE.search(line) or _ARROW_RE.search(line)):
            continue  # both shapes need a quote or an arrow
        quoted = _SAYS_QUOTES.search(line)
        if quoted and not _scripted(quoted):
            quoted = None
        if quoted:
            yield (
                index,
                make_finding(
                    "few-shot-says",
                    line=index + 1,
                    excerpt=line,
                    detail="a verbatim reply to a verbatim user line",
                    rewrite=_rewrite_from_utterance(quoted.group("q")),
                ),
            )
            continue
        arrow = _ARROW_LINE.search(line) if _ARROW_RE.search(line) else None
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
                make_finding(
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
                make_finding(
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
                make_finding(
                    "few-shot-quoted-exchange",
                    line=index + 1,
                    excerpt=" / ".join(lines[i].strip() for i in block[:2]),
                    detail="quoted lines back and forth",
                    rewrite=_rewrite_from_utterance(quotes[0]),
                ),
            )
        index = probe


def _claimed_by_labels(lines: list[str]) -> set[int]:
    """Lines the Q:/A: and "Example user:" checks own, so the dialogue detector skips them."""
    claimed: set[int] = set()
    last_question = -10
    for index, line in enumerate(lines):
        if _Q_LINE.match(line):
            claimed.add(index)
            last_question = index
        elif _EXAMPLE_TURN.search(line) or (_A_LINE.match(line) and index - last_question <= 6):
            claimed.add(index)
    return claimed


def _few_shot(lines: list[str]) -> list[Finding]:
    found: dict[int, Finding] = {}
    detectors = (_example_turns, _qa_pairs, _says_lines, _quoted_exchanges)
    for detector in detectors:
        for index, finding in detector(lines):
            found.setdefault(index, finding)
    for dialogue in find_dialogues(lines, claimed=_claimed_by_labels(lines) | set(found)):
        labels = dialogue.labels()
        found.setdefault(
            dialogue.first_line,
            make_finding(
                "few-shot-dialogue",
                line=dialogue.first_line + 1,
                excerpt=" / ".join(f"{t.label}: {t.text}" for t in dialogue.turns[:2]),
                detail=(
                    f"{'/'.join(labels[:3])} taking turns ({len(dialogue.turns)} turns, "
                    f"{dialogue.shape})"
                ),
                rewrite=behaviour_rewrite(dialogue),
            ),
        )
    return list(found.values())


# ---------------------------------------------------------------------------------------------
# Memo formatting

_ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(?P<title>\S.*?)\s*#*\s*$")
_BOLD_HEADING = re.compile(r"^\s*(?:\*\*|__)(?P<title>[^*_\n]{1,60})(?:\*\*|__)\s*:?\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(?:={3,}|-{3,})\s*$")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_SEPARATOR = re.compile(r"^\s*+\|?\s*+:?-{3,}+:?\s*+(?:\|\s*+:?-{3,}+:?\s*+)+\|?\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+\S")


def _heading_rewrite(title: str) -> str:
    return (
        f'Drop the heading "{clip(title, 40)}" and say that part as sentences about the '
        'person: "You …; when the user …, you …".'
    )


def _memo(lines: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    for index, line in enumerate(lines):
        heading = _ATX_HEADING.match(line) or _BOLD_HEADING.match(line)
        if heading:
            findings.append(
                make_finding(
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
                make_finding(
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
            yield make_finding(
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
                yield make_finding(
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
    r"|\b(?:two|three|2|3)\s+sentences\s+or\s+(?:fewer|less)\b"
    # The same framing in Spanish, French and German: "en una o dos frases", "en une ou deux
    # phrases", "in ein bis zwei Sätzen".
    r"|\b(?:una|1)\s*(?:o|-|\u2013|a)\s*(?:dos|2)\s+frases\b"
    r"|\b(?:une|1)\s*(?:ou|-|\u2013|\u00e0)\s*(?:deux|2)\s+phrases\b"
    r"|\b(?:ein(?:em)?|1)\s*(?:bis|oder|-|\u2013)\s*(?:zwei|2)\s+s\u00e4tze?n?\b",
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


def _whole_prompt(text: str, *, tools_configured: bool) -> list[Finding]:
    findings: list[Finding] = []
    if not _VOICE_FIRST.search(text):
        findings.append(
            make_finding(
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
            make_finding(
                "no-tool-ordering",
                line=1,
                excerpt="",
                rewrite=(
                    'Add: "Always finish your current sentence before you call a tool, and '
                    'never call a tool in the middle of speaking."'
                ),
            )
        )
    words = len(WORD_RE.findall(text))
    if words < MIN_BRIEFING_WORDS:
        findings.append(
            make_finding(
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


def lint_prompt(text: str, *, tools_configured: bool, language: str | None = None) -> list[Finding]:
    """Lint prompt text; findings are sorted by line, errors first within a line.

    ``language`` is what a persona declares ("Spanish", "fr", "Deutsch mit Sie"); it picks the
    hedge list. Without it the language is detected from the text, English when unclear.
    """
    lines = text.splitlines()
    findings: Iterable[Finding] = [
        *_few_shot(lines),
        *hedge_findings(lines, resolve_language(language, text)),
        *_memo(lines),
        *_whole_prompt(text, tools_configured=tools_configured),
    ]
    return sorted(findings, key=lambda f: (f.line, _SEVERITY_ORDER[f.severity], f.rule))
