"""Find few-shot example dialogues by their structure, whatever their labels, language or markup.

Realtime takes example turns in the instructions for real turns, so a prompt that shows a
dialogue is rejected. A dialogue is recognised by its shape, not its vocabulary: two or more
voices taking turns. The detector first turns every shape a dialogue is written in into the
same thing, a sequence of turns (voice, text, line):

* labelled lines, in any words and any script ("Kunde: …", "**Maya** — …", "[Agent] …"),
  including headings and chat-template markers ("### User", ``<|im_start|>user``, ``[INST]``)
  and several labels on one line;
* records in JSON or YAML, either with a role field (``{"role": "user", "content": …}``, any
  key names) or keyed by voice (``{"user": …, "assistant": …}``);
* XML or HTML elements named after the voice (``<customer>…</customer>``) or carrying it in
  an attribute (``<turn speaker="Ana">``);
* markdown tables and CSV, with a speaker column or one column per voice;
* lines opened by dialogue dashes (an em or en dash, no name), one speaker after the other;
* prose that attributes verbatim quotes to speakers ('The customer says "…" and you reply
  "…"', "Der Kunde fragt: „…“").

Then one judge decides, and its decision rests on the alternation. Voices that come back after
another voice has spoken ("two exchanges") make a dialogue when the turns read like speech at
all; a single exchange needs more: both voices recognisable as conversation roles (the word
lists below are only that hint, in several languages), or turns that are unmistakably speech.
Turns that read like descriptions make a cast list ("Owner: can change limits."), a field list
("Tone: warm.") or a table of rules, never a dialogue, and a behavioural rule quotes at most
one side, so it is not an exchange.
"""

from __future__ import annotations

import csv
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

from services.prompts.shapes import QUOTE_RE, WORD_RE, clip, unquote

__all__ = ["Dialogue", "Turn", "behaviour_rewrite", "find_dialogues"]


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


@dataclass(frozen=True, slots=True)
class Turn:
    """One voice's turn: ``line`` is 0-based, ``voice`` normalised, ``label`` as written."""

    line: int
    voice: str
    label: str
    text: str


@dataclass(frozen=True, slots=True)
class Dialogue:
    """Turns the judge accepted as a dialogue, consecutive turns of one voice merged."""

    shape: str
    turns: tuple[Turn, ...]

    @property
    def first_line(self) -> int:
        return min(turn.line for turn in self.turns)

    @property
    def lines(self) -> frozenset[int]:
        return frozenset(turn.line for turn in self.turns)

    def labels(self) -> list[str]:
        """Each voice's label as first written, in order of appearance."""
        seen: dict[str, str] = {}
        for turn in self.turns:
            seen.setdefault(turn.voice, turn.label)
        return list(seen.values())


# ---------------------------------------------------------------------------------------------
# Hints: conversation roles and speech words in English, Spanish, French, German (and a few
# more roles). They lower how much alternation a dialogue needs; they never decide alone.

_USER_VOICES = _wordset(
    "user users human customer client student learner caller guest patient candidate me "
    "visitor buyer shopper kid child parent member usuario usuaria cliente alumno alumna "
    "estudiante paciente llamante humano utilisateur utilisatrice élève étudiant étudiante "
    "appelant humain nutzer nutzerin benutzer benutzerin kunde kundin schüler schülerin "
    "anrufer mensch teilnehmer utente studente usuário aluno gebruiker klant"
)
_ASSISTANT_VOICES = _wordset(
    "assistant ai bot chatbot agent tutor teacher coach model you rep representative support "
    "advisor adviser operator host doctor nurse interviewer guide persona helper asistente "
    "agente profesor profesora entrenador asesor asesora soporte modelo vendedor ia tú usted "
    "conseiller conseillère professeur prof entraîneur vendeur vendeuse modèle vous toi "
    "assistent assistentin berater beraterin lehrer lehrerin trainer verkäufer du ki modell "
    "gpt claude gemini llm doctora médico médica enfermera enfermero médecin infirmière "
    "infirmier arzt ärztin pfleger pflegerin"
)
_OTHER_VOICES = _wordset("system narrator developer sistema système")
_ROLE_WORDS = _USER_VOICES | _ASSISTANT_VOICES | _OTHER_VOICES

# Record keys that hold the speaker, and keys that hold what was said.
_ROLE_KEYS = _wordset(
    "role speaker from author who sender name persona by party voice character rol rôle rolle "
    "sprecher locuteur auteur interlocutor hablante"
)
_TEXT_KEYS = _wordset(
    "content text message utterance says said line body msg value reply response contenido "
    "texto mensaje contenu texte inhalt nachricht"
)

_FIRST_PERSON = _wordset(
    "i i'm i'll i've i'd i\u2019m me my mine we we're let's us our yo mi mis estoy puedo tengo "
    "quiero necesito nos je j' j\u2019 moi mon ma mes nous suis peux veux ich mich mir mein meine "
    "wir uns bin kann"
)
_SECOND_PERSON = _wordset(
    "you your you're you\u2019re yours tú te tu usted su vous votre ton ta tes toi du dich dir "
    "dein deine ihnen"
)
_INTERJECTIONS = _wordset(
    "hi hello hey thanks thank oh ok okay sure yes yeah yep no nope sorry great hmm well "
    "right cool wow please hola gracias sí claro vale perfecto bueno buenas genial perdón "
    "bonjour salut merci oui non parfait bien pardon désolé désolée hallo danke ja nein genau "
    "klar gut super prima toll entschuldigung ciao grazie olá obrigado"
)
_ARTICLES = _wordset("a an the el la los las un una le les une der die das ein eine den des")
# A lower-case modal or copula opening a turn describes a role: "can change limits".
_DESCRIPTIVE_OPENERS = _wordset(
    "can may must should will is are has have handles owns manages puede debe es tiene peut "
    "doit est kann muss ist hat darf"
)
_APOLOGY = re.compile(
    r"\b(?:sorry|apologi[sz]e|lo\s+siento|perd[oó]n|disculp\w*|d[ée]sol[ée]e?|excuse[sz]?"
    r"|tut\s+mir\s+leid|entschuldig\w*)\b",
    re.IGNORECASE,
)
# Words that chain actions into steps ("Click File, then Export").
_STEP_WORDS = re.compile(
    r"\b(?:then|step|luego|despu[ée]s|paso|puis|ensuite|[ée]tape|dann|danach|schritt)\b",
    re.IGNORECASE,
)

# Words that carry no voice in a label or an attribution ("The customer says" → customer).
_LABEL_NOISE = _wordset(
    "the a an el la los las le les l' l\u2019 der die das den example sample ejemplo exemple "
    "beispiel says said asks asked replies replied responds answers answer turn dice pregunta "
    "responde dit demande répond sagt fragt antwortet"
)


# ---------------------------------------------------------------------------------------------
# Markup normalisation: chat templates and formatting tags become plain labelled lines, so one
# label-line reader serves all of them.

_CHAT_TEMPLATE: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), replacement)
    for pattern, replacement in (
        (r"<\|start_header_id\|>\s*(\w+)\s*<\|end_header_id\|>", r" \1: "),
        (r"<\|im_start\|>\s*(\w+)", r" \1: "),
        (r"<start_of_turn>\s*(\w+)", r" \1: "),
        (r"<\|(?:im_end|end|eot_id|endoftext|im_sep)\|>|<end_of_turn>|</?s>", " "),
        (r"<\|(\w+)\|>", r" \1: "),
        (r"\[INST\]", " user: "),
        (r"\[/INST\]", " assistant: "),
        (r"<<SYS>>", " system: "),
        (r"<</SYS>>", " "),
        (r"</dt>\s*<dd[^>]*>", ": "),
        (r"<t[dh]\b[^>]*>", " | "),
        (r"</tr\s*>", " |"),
        (
            r"</?(?:b|strong|i|em|u|span|p|div|li|ul|ol|br|code|pre|small|font|mark|blockquote"
            r"|dt|dd|td|th|tr|table|tbody|thead|h[1-6]|section|article|hr)\b[^>]*>",
            " ",
        ),
        (r"\*\*|__|`", ""),
    )
)
_HEADING_LABEL = re.compile(
    r"^\s{0,3}#{1,6}\s+(?P<label>[^\W\d_][\w'\u2019 -]{0,30}?)\s*:?\s*#*\s*$"
)


# A speaker alone on its line: bold ("**Caller**") or, as in a screenplay, in capitals.
_BOLD_LABEL = re.compile(
    r"^\s*(?:\*\*|__)(?P<label>[^\W\d_][\w'\u2019 -]{0,30}?)(?:\*\*|__)\s*:?\s*$"
)
_CAPS_LABEL = re.compile(r"^\s*(?P<label>[^\W\d_a-z]{2,20}(?: [^\W\d_a-z]{2,20}){0,2})\s*:?\s*$")


# IRC and chat logs: "<maya> anyone know …", a name in angle brackets with no closing tag.
_IRC_LABEL = re.compile(r"^\s*<(?P<label>[^\W\d_][\w.-]{0,30})>\s+(?=\S)(?!.*</(?P=label)>)")


def _clean(line: str) -> str:
    """One line as plain "Label: text": chat templates, tags, emphasis and headings undone."""
    marker = _HEADING_LABEL.match(line) or _BOLD_LABEL.match(line)
    if marker:
        return marker.group("label") + ":"
    if "<" in line or "[" in line or "*" in line or "_" in line or "`" in line:
        for pattern, replacement in _CHAT_TEMPLATE:
            line = pattern.sub(replacement, line)
    irc = _IRC_LABEL.match(line)
    if irc:
        return f"{irc.group('label')}: {line[irc.end() :]}"
    caps = _CAPS_LABEL.match(line)
    if caps and caps.group("label").isupper():
        return caps.group("label") + ":"
    return line


# A line of structure only: braces, brackets, fences, rules, lone tags, "messages: [".
_MARKUP_ONLY = re.compile(
    r"^\s*(?:[\[\]{}(),;|`~=*#>-]+|<[^<>]{1,60}>|[\"']?[\w-]{1,20}[\"']?\s*:\s*[\[{|>]?|-{3,}"
    r"|\.{3})\s*$"
)


# ---------------------------------------------------------------------------------------------
# Voices


def _voice(label: str) -> str:
    """A label without markup, articles, "example" or a speech verb, lower-cased."""
    words = [w for w in re.split(r"[\s_]+", label.strip(" \t*_[]()<>:.-").lower()) if w]
    kept = [w for w in words if w not in _LABEL_NOISE]
    return " ".join(kept or words)


def _is_role(voice: str) -> bool:
    return voice in _ROLE_WORDS or voice.rstrip("0123456789 ") in _ROLE_WORDS


def _without_digits(voice: str) -> str:
    return voice.rstrip("0123456789 ").strip() or voice


# ---------------------------------------------------------------------------------------------
# Reading turns: every shape becomes fields (line, key, value, record); records with a role
# field become one turn each, other fields are turns keyed by their key.


@dataclass(slots=True)
class _Field:
    line: int
    key: str
    value: str
    record: int | None


_LABEL_LINE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<item>(?:[-*+•>]\s*|\d{1,2}[.)]\s+)?)"
    r"(?:\[(?P<bracket>[^\]\n]{1,40})\]\s*[:\uff1a]?"
    r"|(?P<symbol>[\u2600-\u27bf\U0001f300-\U0001faff]{1,3})\ufe0f?\s*[:\uff1a]"
    r"|(?P<label>[^\W\d_][\w'\u2019.&-]*(?:[ \t]+[\w'\u2019.&-]+){0,3}?)"
    r"\s*(?:\([^)\n]{1,30}\))?\s*"
    r"(?:[:\uff1a]|\s[—\u2013>](?=\s)))"
    r"\s*+(?P<text>.*)$"
)
_INLINE_LABEL = re.compile(
    r"(?:(?<=[.!?…\"”»)])|(?<=^)|\s[/|—\u2013-]|\s(?:→|->|=>))\s*"
    r"(?P<label>[^\W\d_][\w'\u2019-]*(?:\s[\w'\u2019-]+)?)\s*[:\uff1a]\s+"
)
_MAX_CONTINUATION = 3
_MAX_MARKER_BODY = 12


def _label_ok(label: str) -> bool:
    return len(label) <= 40 and not label.lower().startswith(("http", "www"))


def _inline(text: str) -> list[tuple[str | None, str]]:
    """Split "Hi. Maya: hello. Leo: hey" at labels that open a sentence or follow a slash.

    Only capitalised labels or conversation roles split, so "the rule is simple: wait" stays
    whole. The text before the first label keeps the line's own label (None here).
    """
    parts: list[tuple[str | None, str]] = []
    last_end, last_label = 0, None
    for match in _INLINE_LABEL.finditer(text):
        label = match.group("label")
        if not (label[0].isupper() or _is_role(_voice(label))):
            continue
        parts.append((last_label, text[last_end : match.start()].strip(" /|—\u2013-")))
        last_end, last_label = match.end(), label
    parts.append((last_label, text[last_end:].strip()))
    return parts


def _line_fields(lines: Sequence[str], claimed: frozenset[int]) -> Iterator[list[_Field]]:
    """Runs of labelled lines (with YAML list items as records), broken by prose."""
    block: list[_Field] = []
    blanks = continued = 0
    item_indent: int | None = None
    record: int | None = None
    marker_open = False

    def flush() -> list[_Field]:
        nonlocal block, item_indent, record, marker_open
        done, block, item_indent, record, marker_open = block, [], None, None, False
        return done

    for index, raw in enumerate(lines):
        if index in claimed:
            if len(done := flush()) >= 2:
                yield done
            continue
        line = _clean(raw)
        if not line.strip():
            blanks += 1
            if blanks > 2 and len(done := flush()) >= 2:
                yield done
            continue
        if _MARKUP_ONLY.match(line) and not _LABEL_LINE.match(line):
            continue
        match = _LABEL_LINE.match(line)
        label = match and (match.group("bracket") or match.group("symbol") or match.group("label"))
        text = match.group("text").strip() if match else ""
        if match and label and _label_ok(label) and not text.startswith("//"):
            indent = len(match.group("indent").expandtabs(4))
            if match.group("item").strip().startswith("-") or match.group("item").strip() == "*":
                item_indent, record = indent, index
            elif item_indent is None or indent <= item_indent:
                item_indent, record = None, None
            segments = _inline(text)
            first_text = segments[0][1]
            block.append(_Field(index, label, first_text, record))
            for seg_label, seg_text in segments[1:]:
                block.append(_Field(index, seg_label or label, seg_text, None))
            marker_open = not text
            blanks = continued = 0
            continue
        if (
            block
            and blanks == 0
            and continued < (_MAX_MARKER_BODY if marker_open else _MAX_CONTINUATION)
        ):
            last = block[-1]
            last.value = f"{last.value} {line.strip()}".strip()
            continued += 1
            blanks = 0
            continue
        if len(done := flush()) >= 2:
            yield done
        segments = _inline(line)
        if len(segments) >= 3:
            yield [_Field(index, lab, txt, None) for lab, txt in segments[1:] if lab]
        blanks = continued = 0
    if len(done := flush()) >= 2:
        yield done


def _words(text: str) -> int:
    return len(WORD_RE.findall(text))


def _short_label(value: str) -> bool:
    value = value.strip()
    return 0 < _words(value) <= 3 and len(value) <= 30 and value[-1:] not in ".?!…"


def _to_turns(fields: Sequence[_Field]) -> list[Turn]:
    """Records with a role field become one turn each; any other field is a turn of its own."""
    records: dict[int, list[_Field]] = {}
    for field in fields:
        if field.record is not None:
            records.setdefault(field.record, []).append(field)
    role_keys = _ROLE_KEYS | _speaker_keys([g for g in records.values() if len(g) >= 2])
    done: set[int] = set()
    turns: list[Turn] = []
    for field in fields:
        group = records.get(field.record) if field.record is not None else None
        if group is not None and len(group) >= 2:
            if field.record in done:
                continue
            done.add(field.record)  # type: ignore[arg-type]
            turn = _record_turn(group, role_keys)
            if turn is not None:
                turns.append(turn)
                continue
            turns += [_field_turn(f) for f in group if f.value]
            continue
        if field.value:
            turns.append(_field_turn(field))
    return turns


def _field_turn(field: _Field) -> Turn:
    return Turn(field.line, _voice(field.key), field.key.strip(), field.value)


def _speaker_keys(groups: Sequence[Sequence[_Field]]) -> set[str]:
    """Keys that hold a speaker, whatever they are called ("quien", "by", "von").

    Such a key is in every record, always holds a short label, takes at least two values, and
    sits beside a longer field in each record.
    """
    if len(groups) < 2:
        return set()
    keys = set.intersection(*({_voice(f.key) for f in group} for group in groups))
    found: set[str] = set()
    for key in keys:
        values = [next(f.value for f in g if _voice(f.key) == key) for g in groups]
        if len({_voice(v) for v in values}) < 2 or not all(_short_label(v) for v in values):
            continue
        if all(
            any(len(f.value) > len(value) for f in group if _voice(f.key) != key)
            for group, value in zip(groups, values, strict=True)
        ):
            found.add(key)
    return found


def _record_turn(group: Sequence[_Field], role_keys: frozenset[str] | set[str]) -> Turn | None:
    """{"role": "user", "content": "…"} (any key names) as one turn, or None.

    A record of more than four fields is a container (an <example> holding the turns), not a
    message.
    """
    if len(group) > 4:
        return None
    role = next((f for f in group if _voice(f.key) in role_keys and _short_label(f.value)), None)
    if role is None:
        return None
    others = [f for f in group if f is not role and f.value]
    if not others:
        return None
    text = next((f for f in others if _voice(f.key) in _TEXT_KEYS), None) or max(
        others, key=lambda f: len(f.value)
    )
    return Turn(min(f.line for f in group), _voice(role.value), role.value.strip(), text.value)


# JSON (or a Python dict): "key": "value" pairs, grouped into records by their braces.
_JSON_PAIR = re.compile(
    r"(?P<q>[\"'])(?P<key>[^\"'\n\\]{1,40})(?P=q)\s*:\s*"
    r"(?:\"(?P<dv>(?:[^\"\\\n]|\\.)*)\"|'(?P<sv>(?:[^'\\\n]|\\.)*)')"
)
_JSON_TOKEN = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|[{}]")


def _json_fields(text: str, line_starts: Sequence[int]) -> Iterator[list[_Field]]:
    if '":' not in text and '" :' not in text and "':" not in text:
        return
    braces: list[tuple[int, str]] = [
        (m.start(), m.group(0)) for m in _JSON_TOKEN.finditer(text) if m.group(0) in "{}"
    ]
    stack: list[int] = []
    brace_index = 0
    block: list[_Field] = []
    for match in _JSON_PAIR.finditer(text):
        while brace_index < len(braces) and braces[brace_index][0] < match.start():
            position, char = braces[brace_index]
            if char == "{":
                stack.append(position)
            elif stack:
                stack.pop()
            brace_index += 1
        value = match.group("dv") if match.group("dv") is not None else match.group("sv")
        value = value.replace('\\"', '"').replace("\\n", " ")
        line = bisect_right(line_starts, match.start()) - 1
        if block and line - block[-1].line > 6:
            if len(block) >= 2:
                yield block
            block = []
        block.append(_Field(line, match.group("key"), value, stack[-1] if stack else None))
    if len(block) >= 2:
        yield block


# XML or HTML elements: <customer>…</customer>, <turn speaker="Ana">…</turn>.
_ELEMENT = re.compile(
    r"<(?P<tag>[A-Za-z][\w:.-]{0,30})(?P<attrs>(?:\s+[\w:.-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)"
    r"\s*>(?P<body>[^<>]{1,3000}?)</(?P=tag)\s*>"
)
_ATTRIBUTE = re.compile(r"(?<![\w:.-])(?P<key>[\w:.-]++)\s*+=\s*+[\"'](?P<value>[^\"']*+)[\"']")


_TAG = re.compile(r"<(?P<close>/?)(?P<name>[A-Za-z][\w:.-]{0,30})\b[^<>]*?(?P<empty>/?)>")


def _xml_fields(text: str, line_starts: Sequence[int]) -> Iterator[list[_Field]]:
    """Leaf elements as fields, grouped into records by their parent element.

    An element with a speaker attribute is a turn of its own; ``<turn><who>Ana</who><said>…
    </said></turn>`` is a record whose speaker key is found like a JSON one.
    """
    if "</" not in text:
        return
    tags = list(_TAG.finditer(text))
    stack: list[tuple[str, int]] = []
    tag_index = 0
    block: list[_Field] = []
    last_end = 0
    for match in _ELEMENT.finditer(text):
        while tag_index < len(tags) and tags[tag_index].start() < match.start():
            tag = tags[tag_index]
            tag_index += 1
            if tag.group("empty"):
                continue
            if not tag.group("close"):
                stack.append((tag.group("name"), tag.start()))
            elif any(name == tag.group("name") for name, _ in stack):
                while stack and stack.pop()[0] != tag.group("name"):
                    pass
        gap = re.sub(r"<[^<>]*>", " ", text[last_end : match.start()])
        if block and (_words(gap) > 3 or gap.count("\n") > 3):
            if len(block) >= 2:
                yield block
            block = []
        last_end = match.end()
        label, record = match.group("tag"), stack[-1][1] if stack else None
        for attribute in _ATTRIBUTE.finditer(match.group("attrs")):
            key = attribute.group("key").lower().removeprefix("data-")
            if key in _ROLE_KEYS and attribute.group("value").strip():
                label, record = attribute.group("value"), None
                break
        body = " ".join(match.group("body").split())
        if body:
            line = bisect_right(line_starts, match.start("body")) - 1
            block.append(_Field(line, label, body, record))
    if len(block) >= 2:
        yield block


# Tables and CSV: a speaker column, or one column per voice under a header.
_TABLE_ROW = re.compile(r"^[^|\n]*+\|[^\n]*$")
_TABLE_SEPARATOR = re.compile(r"^\s*+\|?\s*+:?-{2,}+:?\s*+(?:\|\s*+:?-{2,}+:?\s*+)*\|?\s*$")


def _grid_turns(rows: Sequence[tuple[int, list[str]]], header: list[str] | None) -> list[Turn]:
    rows = rows[:_JUDGED_TURNS]
    width = min(len(cells) for _, cells in rows)
    if width < 2 or len(rows) < (1 if header else 2):
        return []
    for column in range(width):
        values = [cells[column].strip() for _, cells in rows]
        voices = [_voice(v) for v in values]
        distinct = set(voices)
        if (
            all(_short_label(v) for v in values)
            and len(distinct) >= 2
            and (len(distinct) < len(voices) or any(_is_role(v) for v in distinct))
        ):
            others = [c for c in range(width) if c != column]
            turns = []
            for (line, cells), value in zip(rows, values, strict=True):
                text = max((cells[c] for c in others), key=len).strip()
                if text:
                    turns.append(Turn(line, _voice(value), value, text))
            return turns
    if header is None or not all(_short_label(h) for h in header[:width]):
        return []
    return [
        Turn(line, _voice(header[c]), header[c].strip(), cells[c].strip())
        for line, cells in rows
        for c in range(width)
        if cells[c].strip()
    ]


def _table_turns(cleaned: Sequence[str]) -> Iterator[list[Turn]]:
    index = 0
    while index < len(cleaned):
        if "|" not in cleaned[index] or not _TABLE_ROW.match(cleaned[index]):
            index += 1
            continue
        end = index
        while end < len(cleaned) and "|" in cleaned[end] and _TABLE_ROW.match(cleaned[end]):
            end += 1
        rows: list[tuple[int, list[str]]] = []
        header: list[str] | None = None
        for line in range(index, end):
            if _TABLE_SEPARATOR.match(cleaned[line]):
                if len(rows) == 1 and header is None:
                    header = rows.pop()[1]
                continue
            cells = [c.strip() for c in cleaned[line].strip().strip("|").split("|")]
            rows.append((line, cells))
        if rows:
            yield _grid_turns(rows, header)
        index = end


_DELIMITERS = (",", ";", "\t")


def _csv_shaped(block: Sequence[str], delimiter: str) -> bool:
    """A header of short names, or a short first field on every row (prose fails both)."""
    header = block[0].split(delimiter)
    if all(_short_label(cell.strip(' "')) for cell in header):
        return True
    return all(_short_label(line.split(delimiter, 1)[0].strip(' "')) for line in block)


def _csv_turns(lines: Sequence[str]) -> Iterator[list[Turn]]:
    for delimiter in _DELIMITERS:
        index = 0
        while index < len(lines):
            if delimiter not in lines[index] or "|" in lines[index]:
                index += 1
                continue
            end = index
            while end < len(lines) and delimiter in lines[end] and lines[end].strip():
                end += 1
            if end - index >= 2 and _csv_shaped(lines[index:end], delimiter):
                parsed = list(csv.reader(lines[index:end], delimiter=delimiter))
                width = len(parsed[0])
                if all(len(row) == width for row in parsed) and width >= 2:
                    header = parsed[0] if all(_short_label(h) for h in parsed[0]) else None
                    body = parsed[1:] if header else parsed
                    rows = [(index + (1 if header else 0) + i, r) for i, r in enumerate(body)]
                    if rows:
                        yield _grid_turns(rows, header)
            index = end


# Prose: verbatim quotes attributed to speakers by a speech verb, before or after the quote.
_SPEECH_VERBS = (
    r"say|says|said|saying|ask|asks|asked|reply|replies|replied|respond|responds|responded"
    r"|answer|answers|answered|tell|tells|told|write|writes|wrote|type|types|typed|go|goes"
    r"|add|adds|continue|continues|dice|dices|dicen|dijo|decir|pregunta|preguntas|preguntan"
    r"|preguntó|responde|respondes|responden|respondió|contesta|contestas|contestan|contestó"
    r"|escribe|escribes|añade|dit|dis|disent|dites|dire|demande|demandes|demandez|demandent"
    r"|répond|réponds|répondez|répondent|répondre|écrit|écris|ajoute|sagt|sagst|sagen|sage"
    r"|fragt|fragst|fragen|antwortet|antwortest|antworten|antworte|schreibt|schreibst"
    r"|erwidert|meint|ruft"
)
_REPLY_VERBS = _wordset(
    "reply replies replied respond responds responded answer answers answered responde "
    "respondes responden respondió contesta contestas contestan contestó répond réponds "
    "répondez répondent répondre antwortet antwortest antworten antworte erwidert"
)
_FILLER = (
    r"something\s+like|like|that|back|with|by\s+saying|algo\s+como|como|con|que"
    r"|quelque\s+chose\s+comme|comme|par|que|etwas\s+wie|so\s+etwas\s+wie|mit"
)
_ATTRIBUTION_BEFORE = re.compile(
    rf"(?:^|[\s,;:(])(?P<subj>(?:[^\W\d_][\w'\u2019-]*\s+){{0,3}}?)(?P<verb>{_SPEECH_VERBS})"
    rf"(?:\s+(?:{_FILLER}))?\s*[:,]?\s*$",
    re.IGNORECASE,
)
_ATTRIBUTION_AFTER = re.compile(
    rf"^\s*+(?:[,—\u2013-]\s*+)?(?P<verb>{_SPEECH_VERBS})\s+(?P<subj>(?:(?:the|el|la|le|l['\u2019]|der|die"
    r"|das)\s*)?[^\W\d_][\w'\u2019-]*)",
    re.IGNORECASE,
)
_SUBJECT_NOISE = (
    _wordset(
        "when if then and so once whenever should must will can always just would may then cuando "
        "si y entonces debe siempre quand et puis alors doit toujours wenn falls und dann soll "
        "muss immer or but also o pero también ou mais aussi oder aber auch"
    )
    | _ARTICLES
)
_NEGATION = _wordset(
    "never not don't dont no nunca jamás jamas jamais ne pas nie niemals nicht kein keine instead"
)
_YOU = _wordset("you tú tu usted ustedes vous toi du")
_THEY = _wordset("they he she ils elles il elle ellos ellas él er sie")


def _attributed_voice(
    subject: str, verb: str, previous: str | None, other: str | None
) -> str | None:
    """The speaker of a quote from its subject and verb; ``other`` is the last voice that was
    not "you". A verb with no subject replies ("contestas", "reply with") as you, or after
    your turn asks or says as the other side again ("Si dice …")."""
    words = [w.lower() for w in subject.split()]
    if any(w in _NEGATION for w in words):
        return None
    kept = [w for w in words if w not in _SUBJECT_NOISE]
    if not kept:
        if verb.lower() in _REPLY_VERBS and previous != "you":
            return "you"
        if previous == "you" and verb.lower() not in _REPLY_VERBS and other is not None:
            return other
        return previous or ("you" if verb.lower() in {"say", "di", "dis", "dites"} else None)
    word = kept[-1]
    if word in _YOU:
        return "you"
    if word in _THEY:
        return previous if previous not in (None, "you") else "they"
    return _voice(word)


def _utterance_like(quote: str) -> bool:
    """Two words or a sentence end: "quiero cancelar" is said, "File" is a menu item."""
    inner = unquote(quote)
    return inner[-1:] in ".?!…" or _words(inner) >= 2


_OPENING_QUOTES = "\"\u201c\u201e\u00ab\u2018'"


def _prose_turns(lines: Sequence[str], claimed: frozenset[int]) -> Iterator[list[Turn]]:
    for index, line in enumerate(lines):
        if index in claimed or sum(line.count(c) for c in _OPENING_QUOTES) < 2:
            continue
        turns: list[Turn] = []
        previous: str | None = None
        other: str | None = None
        last_end = 0
        for match in QUOTE_RE.finditer(line):
            before = line[max(last_end, match.start() - 80) : match.start()]
            after = line[match.end() : match.end() + 40]
            last_end = match.end()
            if not _utterance_like(match.group(0)):
                continue
            found = _ATTRIBUTION_BEFORE.search(before)
            if found:
                voice = _attributed_voice(found.group("subj"), found.group("verb"), previous, other)
            elif (late := _ATTRIBUTION_AFTER.match(after)) is not None:
                voice = _attributed_voice(late.group("subj"), late.group("verb"), previous, other)
            elif previous is not None and _words(before) <= 2:
                voice = previous  # "… says "x" or "y"": the same voice again
            else:
                voice = None
            if voice is None:
                continue
            turns.append(Turn(index, voice, voice, match.group(0)))
            previous = voice
            other = voice if voice != "you" else other
        if len(turns) >= 2:
            yield turns


# Dialogue dashes: in Spanish, French, German (and novels everywhere) each line that opens with
# an em or en dash is the next speaker, with no name at all.
_DASH_LINE = re.compile(r"^\s*[\u2014\u2013]\s*(?P<text>\S.*?)\s*$")


def _dash_turns(lines: Sequence[str], claimed: frozenset[int]) -> Iterator[list[Turn]]:
    run: list[tuple[int, str]] = []
    for index, line in enumerate([*lines, ""]):
        match = _DASH_LINE.match(line) if index not in claimed else None
        if match:
            run.append((index, match.group("text")))
            continue
        if (
            not line.strip()
            and run
            and index + 1 < len(lines)
            and _DASH_LINE.match(lines[index + 1])
        ):
            continue  # a blank line between two turns
        asks = [unquote(text).endswith("?") for _, text in run]
        if len(run) >= 3 and any(a and not b for a, b in pairwise(asks)):
            yield [
                Turn(line_no, f"speaker {1 + i % 2}", f"speaker {1 + i % 2}", text)
                for i, (line_no, text) in enumerate(run)
            ]
        run = []


# ---------------------------------------------------------------------------------------------
# The judge


_UNSPACED = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]")


@dataclass(frozen=True, slots=True)
class _Speech:
    """How much a turn reads like something said aloud rather than a description.

    ``strong`` marks what instructions and descriptions almost never have: a wholly quoted
    turn, a question, an exclamation, the first person, or an interjection. "You …" and a
    full sentence count a little; a noun phrase, a modal opener ("can change limits") or a
    bare value ("warm.") count against.
    """

    score: float
    strong: bool


def _speech(text: str, *, answers: bool = False) -> _Speech:
    stripped = text.strip()
    strong = 0.0
    inner = stripped
    if QUOTE_RE.fullmatch(stripped.rstrip(".,;")):
        strong += 1.5
        inner = unquote(stripped.rstrip(".,;"))
    words = [w.lower() for w in WORD_RE.findall(inner)]
    if not words:
        return _Speech(-2.0, strong=False)
    count = len(words)
    end = inner.rstrip(" \"\u201d\u00bb\u201c'\u300d")[-1:]
    if _UNSPACED.search(inner):
        # Chinese, Japanese and Korean run words together: count characters, not words, and
        # take the full-width stop, exclamation and question marks for sentence ends.
        count = len(inner) // 2
        end = {"\u3002": ".", "\uff01": "!", "\uff1f": "?"}.get(end, end)
    if end in "?\uff1f" or inner.startswith("\u00bf"):
        strong += 1
    if end in "!\uff01" or inner.startswith("\u00a1"):
        strong += 1
    if any(w in _FIRST_PERSON for w in words):
        strong += 1
    interjection = words[0] in _INTERJECTIONS
    if interjection:
        strong += 1
    weak = 0.0
    if any(w in _SECOND_PERSON for w in words):
        weak += 0.5
    if inner[:1].isupper() and end in ".!?\u2026" and count >= 3:
        weak += 0.5
    if words[0] in _ARTICLES and len(words) > 1 and inner.split()[1][:1].islower() and not answers:
        weak -= 1
    if inner[:1].islower() and words[0] in _DESCRIPTIVE_OPENERS:
        weak -= 1
    if count <= 2 and end not in "?!" and not interjection and not answers:
        weak -= 1
    return _Speech(strong + weak, strong=strong > 0)


def _merge(turns: Sequence[Turn]) -> list[Turn]:
    merged: list[Turn] = []
    for turn in turns:
        if merged and merged[-1].voice == turn.voice:
            last = merged[-1]
            merged[-1] = Turn(last.line, last.voice, last.label, f"{last.text} {turn.text}")
        else:
            merged.append(turn)
    return merged


def _normalise_digits(turns: Sequence[Turn]) -> list[Turn]:
    """ "Q1/A1/Q2/A2" are two voices, "Speaker 1/Speaker 2" two as well."""
    stripped = [Turn(t.line, _without_digits(t.voice), t.label, t.text) for t in turns]
    return stripped if len({t.voice for t in stripped}) >= 2 else list(turns)


def _core(merged: list[Turn]) -> list[Turn]:
    """Drop a heading or a note before or after the exchange ("Note: …", then User/Agent).

    A voice heard only once at either end goes when it is no conversation role, or when the
    rest still has a voice that speaks twice.
    """

    def removable(turn: Turn, rest: list[Turn]) -> bool:
        once = sum(t.voice == turn.voice for t in merged) == 1
        rest_voices = {t.voice for t in rest}
        returns = len(rest) > len(rest_voices)
        return once and len(rest_voices) >= 2 and (returns or not _is_role(turn.voice))

    while len(merged) > 2 and removable(merged[0], merged[1:]):
        merged = merged[1:]
    while len(merged) > 2 and removable(merged[-1], merged[:-1]):
        merged = merged[:-1]
    return merged


# The judge reads a block's first turns only: a few dozen decide as well as ten thousand, and
# a 64 KB prompt of "a,b,c" rows stays cheap.
_JUDGED_TURNS = 40


def _judge(turns: Sequence[Turn], shape: str) -> Dialogue | None:
    turns = [t for t in turns[: _JUDGED_TURNS * 4] if t.text.strip()]
    merged = _core(_merge(_normalise_digits(turns))[:_JUDGED_TURNS])
    voices = {turn.voice for turn in merged}
    if len(merged) < 2 or len(voices) < 2:
        return None
    dialogue = Dialogue(shape, tuple(merged))
    if shape == "prose":  # verbatim quotes, attributed to different speakers
        return dialogue
    # A short turn right after a question is an answer ("Lima."), not a bare field value.
    speech = [
        _speech(turn.text, answers=i > 0 and unquote(merged[i - 1].text).endswith("?"))
        for i, turn in enumerate(merged)
    ]
    scores = [s.score for s in speech]
    if all(score < 0 for score in scores):
        return None  # a cast or field list: every turn describes rather than speaks
    mean = sum(scores) / len(scores)
    # Instructions ("Do: keep it short. / Don't: read lists aloud.") alternate too; speech
    # shows itself in at least a quarter of the turns (questions, "I", "thanks", quotes).
    spoken = sum(s.strong for s in speech) * 4 >= len(speech)
    returns = len(merged) > len(voices)  # a voice speaks again: two exchanges or more
    roles = sum(_is_role(voice) for voice in voices)
    if returns and mean >= 0.5 and spoken:
        return dialogue
    if roles >= 2 and mean >= 0.25:
        return dialogue
    if roles >= 1 and min(scores) >= 0.5 and any(s.strong for s in speech):
        return dialogue
    if min(scores) >= 1 and unquote(merged[0].text).endswith("?"):
        return dialogue
    return None


def _candidates(lines: Sequence[str], claimed: frozenset[int]) -> Iterator[tuple[str, list[Turn]]]:
    text = "\n".join(lines)
    line_starts = [0]
    for line in lines:
        line_starts.append(line_starts[-1] + len(line) + 1)
    for fields in _json_fields(text, line_starts):
        yield "JSON records", _to_turns(fields)
    cleaned = [_clean(line) for line in lines]
    for fields in _xml_fields("\n".join(cleaned), line_starts):
        yield "XML elements", _to_turns(fields)
    for turns in _table_turns(cleaned):
        yield "table", turns
    for fields in _line_fields(lines, claimed):
        yield "labelled lines", _to_turns(fields)
    for turns in _csv_turns(lines):
        yield "CSV", turns
    for turns in _prose_turns(lines, claimed):
        yield "prose", turns
    for turns in _dash_turns(lines, claimed):
        yield "dash-led lines", turns


def find_dialogues(lines: Sequence[str], claimed: Iterable[int] = ()) -> list[Dialogue]:
    """Every dialogue in the prompt, each reported once, in order of its first line.

    ``claimed`` are line indexes another check already reports (Q:/A: pairs, "Example user:"
    turns); they are not read again, so one example gives one finding.
    """
    taken = frozenset(claimed)
    found: list[Dialogue] = []
    covered: set[int] = set()
    for shape, turns in _candidates(lines, taken):
        dialogue = _judge(turns, shape)
        if dialogue is None or dialogue.lines & covered or dialogue.lines & taken:
            continue
        covered |= dialogue.lines
        found.append(dialogue)
    return sorted(found, key=lambda d: d.first_line)


# ---------------------------------------------------------------------------------------------
# The rewrite: the behaviour the example was meant to show, as a rule.

_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)")


def _assistant_voice(turns: Sequence[Turn]) -> str:
    voices = list(dict.fromkeys(turn.voice for turn in turns))
    for voice in voices:
        if voice in _ASSISTANT_VOICES:
            return voice
    for voice in voices:
        if voice not in _USER_VOICES | _OTHER_VOICES and voices.index(voice) > 0:
            return voice
    return voices[1] if len(voices) > 1 else voices[0]


def behaviour_rewrite(dialogue: Dialogue) -> str:
    """'When the user says something like "…", you …', derived from the example's replies.

    Short replies become "answer in one sentence, then wait"; a reply that asks back becomes
    "ask one question at a time"; an apology becomes "acknowledge the problem in a few words";
    replies that sequence steps become "give one step at a time".
    """
    assistant = _assistant_voice(dialogue.turns)
    replies = [unquote(t.text) for t in dialogue.turns if t.voice == assistant]
    prompts = [
        unquote(t.text)
        for t in dialogue.turns
        if t.voice != assistant and t.voice not in _OTHER_VOICES
    ]
    parts: list[str] = []
    if any(_APOLOGY.search(reply) for reply in replies):
        parts.append("acknowledge the problem in a few words")
    sentences = max((len(_SENTENCE_END.findall(r)) or 1 for r in replies), default=1)
    words = max((_words(r) for r in replies), default=0)
    if sentences <= 1 and words <= 20:
        parts.append("answer in one sentence")
    elif sentences <= 2:
        parts.append("answer in one or two sentences")
    else:
        parts.append("answer in at most two sentences, however much the example says")
    if any(_STEP_WORDS.search(reply) for reply in replies):
        parts.append("give one step at a time")
    asks_back = any(reply.rstrip().endswith("?") for reply in replies)
    behaviour = ", ".join(parts) + (
        ", and ask one question at a time" if asks_back else ", then wait"
    )
    if prompts:
        said = clip(prompts[0], 60)
        verb = "asks something like" if said.endswith("?") else "says something like"
        situation = f'When the user {verb} "{said}"'
    else:
        situation = "When the user speaks"
    return (
        f"Replace the example with a rule: {situation}, you {behaviour} "
        "(say what the reply does, not the words it uses)."
    )
