"""Property tests: dialogues built from random labels, languages and markups are all caught;
clean briefings full of label-like lines are never rejected.

The corpus pins shapes someone thought of; these generators recombine them (any voice names,
any of four languages, any of two dozen markups, anywhere in a briefing), so the detector is held
to the structure rather than to the corpus. Runs are derandomized with no example database, so
CI sees the same cases every time, and bounded to a few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.prompts import Severity, lint_prompt

EXAMPLES = 300
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ---------------------------------------------------------------------------------------------
# Material: what people say, per language. User turns ask or tell; replies answer.

ASKS = {
    "en": [
        "How do I export this file?",
        "I can't find the layers panel.",
        "Why did my order not arrive?",
        "Can I change my delivery date?",
        "I was charged twice this month.",
        "Oh, that worked, thanks!",
        "What does this red icon mean?",
    ],
    "es": [
        "¿Cómo exporto este archivo?",
        "No encuentro el panel de capas.",
        "¿Por qué no ha llegado mi pedido?",
        "Me han cobrado dos veces este mes.",
        "¡Ah, ya funciona, gracias!",
        "¿Qué significa este icono rojo?",
    ],
    "fr": [
        "Comment j'exporte ce fichier ?",
        "Je ne trouve pas le panneau des calques.",
        "Pourquoi ma commande n'est pas arrivée ?",
        "On m'a débité deux fois ce mois-ci.",
        "Ah, ça marche, merci !",
        "Que veut dire cette icône rouge ?",
    ],
    "de": [
        "Wie exportiere ich diese Datei?",
        "Ich finde das Ebenenfenster nicht.",
        "Warum ist meine Bestellung nicht angekommen?",
        "Mir wurde diesen Monat doppelt abgebucht.",
        "Oh, das hat geklappt, danke!",
        "Was bedeutet dieses rote Symbol?",
    ],
}
REPLIES = {
    "en": [
        "Click File, then Export.",
        "Sorry about that, I'll check your invoices now.",
        "It's on the left. Do you see it?",
        "Sure, pick a new date in your account.",
        "That means the file is not saved yet.",
        "Great! Want to try the next step?",
    ],
    "es": [
        "Haz clic en Archivo y luego en Exportar.",
        "Lo siento, reviso tus facturas ahora mismo.",
        "Está a la izquierda. ¿Lo ves?",
        "Claro, elige otra fecha en tu cuenta.",
        "¡Genial! ¿Pasamos al siguiente paso?",
    ],
    "fr": [
        "Clique sur Fichier, puis sur Exporter.",
        "Désolée, je vérifie tes factures tout de suite.",
        "Il est à gauche. Tu le vois ?",
        "Bien sûr, choisis une autre date dans ton compte.",
        "Parfait ! On passe à l'étape suivante ?",
    ],
    "de": [
        "Klick auf Datei und dann auf Exportieren.",
        "Das tut mir leid, ich prüfe gleich Ihre Rechnungen.",
        "Es ist links. Sehen Sie es?",
        "Klar, wählen Sie ein neues Datum im Konto.",
        "Super! Wollen wir den nächsten Schritt machen?",
    ],
}
SPEECH = {  # subject + speech verb for prose: (user says, you reply)
    "en": ("The {a} says", "and you reply"),
    "es": ("El {a} dice:", "y tú respondes:"),
    "fr": ("Le {a} dit :", "et tu réponds :"),
    "de": ("Der {a} sagt:", "und du antwortest:"),
}
QUOTES = {"en": ("“", "”"), "es": ("«", "»"), "fr": ("« ", " »"), "de": ("„", "“")}

NAMES = [
    "Maya",
    "Leo",
    "Sofía",
    "Tomás",
    "Inès",
    "Hugo",
    "Jürgen",
    "Aylin",
    "Priya",
    "Kenji",
    "Olu",
    "Marta",
]
ROLES = [
    "Customer",
    "Agent",
    "Kunde",
    "Berater",
    "Cliente",
    "Asesora",
    "Client",
    "Conseillère",
    "Caller",
    "Technician",
    "Guest",
    "Concierge",
    "Learner",
    "Coach",
]
PREAMBLE = [
    "You are Nora, a patient guide who sits beside people while they sort out their account. "
    "Above all, you are calm and kind, and you never make anyone feel slow.",
    "You are talking out loud, not writing, so respond conversationally, in 1-2 sentences, "
    "like you're sitting next to the user.",
    "Your tone is warm and plain. When the user is confused, you stop, ask which part lost "
    "them, and explain that part again in different words.",
    "When the user goes off topic, you answer in one sentence and steer back to the task.",
    "When the user asks for steps, you give them one at a time and wait for each one.",
    "A user message that begins with “Context update:” is the state of the user's screen; "
    "you never answer it, you use it silently.",
]

# Random labels: a pseudo-word made of letters, capitalised (a name nobody listed).
pseudo_word = st.text(alphabet="bcdfghklmnprstvz", min_size=2, max_size=4).flatmap(
    lambda consonants: st.text(
        alphabet="aeiou", min_size=len(consonants), max_size=len(consonants)
    ).map(lambda vowels: "".join(c + v for c, v in zip(consonants, vowels, strict=True)).title())
)
label = st.one_of(st.sampled_from(NAMES), st.sampled_from(ROLES), pseudo_word)


@dataclass(frozen=True)
class Turns:
    """Who speaks first and second, what they say (alternating), and in which language."""

    first: str
    second: str
    language: str
    said: tuple[str, ...]

    def pairs(self) -> list[tuple[str, str]]:
        return [(self.first if i % 2 == 0 else self.second, s) for i, s in enumerate(self.said)]


@st.composite
def turns(draw: st.DrawFn) -> Turns:
    first = draw(label)
    second = draw(label.filter(lambda other: other.lower() != first.lower()))
    language = draw(st.sampled_from(sorted(ASKS)))
    exchanges = draw(st.integers(min_value=2, max_value=3))
    said: list[str] = []
    for _ in range(exchanges):
        said.append(draw(st.sampled_from(ASKS[language])))
        said.append(draw(st.sampled_from(REPLIES[language])))
    return Turns(first, second, language, tuple(said))


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


MARKUPS: dict[str, Callable[[Turns], list[str]]] = {
    "labels": lambda t: [f"{who}: {s}" for who, s in t.pairs()],
    "bold labels": lambda t: [f"**{who}:** {s}" for who, s in t.pairs()],
    "bullets": lambda t: [f"- {who}: {s}" for who, s in t.pairs()],
    "brackets": lambda t: [f"[{who}] {s}" for who, s in t.pairs()],
    "dashes": lambda t: [f"{who} — {s}" for who, s in t.pairs()],
    "blank lines": lambda t: [line for who, s in t.pairs() for line in (f"{who}: {s}", "")],
    "one line": lambda t: [" ".join(f"{who}: {s}" for who, s in t.pairs())],
    "headings": lambda t: [line for who, s in t.pairs() for line in (f"### {who}", s, "")],
    "json roles": lambda t: [
        "[",
        *(
            "  " + json.dumps({"speaker": who, "line": s}, ensure_ascii=False) + ","
            for who, s in t.pairs()
        ),
        "]",
    ],
    "json keyed": lambda t: [
        json.dumps({t.first: a, t.second: b}, ensure_ascii=False)
        for a, b in zip(t.said[::2], t.said[1::2], strict=True)
    ],
    "yaml records": lambda t: [
        line
        for who, s in t.pairs()
        for line in (f"  - from: {who}", f"    text: {json.dumps(s, ensure_ascii=False)}")
    ],
    "xml tags": lambda t: [f"<{who}>{s}</{who}>" for who, s in t.pairs()],
    "xml attributes": lambda t: [f'<turn speaker="{who}">{s}</turn>' for who, s in t.pairs()],
    "html": lambda t: [f"<p><b>{who}:</b> {s}</p>" for who, s in t.pairs()],
    "table columns": lambda t: [
        f"| {t.first} | {t.second} |",
        "| --- | --- |",
        *(f"| {a} | {b} |" for a, b in zip(t.said[::2], t.said[1::2], strict=True)),
    ],
    "table speaker": lambda t: [
        "| Who | Says |",
        "| --- | --- |",
        *(f"| {who} | {s} |" for who, s in t.pairs()),
    ],
    "csv": lambda t: ["speaker,text", *(f"{who},{_csv_cell(s)}" for who, s in t.pairs())],
    "chatml": lambda t: [
        line for who, s in t.pairs() for line in (f"<|im_start|>{who}", f"{s}<|im_end|>")
    ],
    "prose": lambda t: [_prose(t)],
    "code fence": lambda t: ["```", *(f"{who}: {s}" for who, s in t.pairs()), "```"],
    "bold name lines": lambda t: [line for who, s in t.pairs() for line in (f"**{who}**", s)],
    "screenplay": lambda t: [line for who, s in t.pairs() for line in (who.upper(), s)],
    "gemma": lambda t: [
        line for who, s in t.pairs() for line in (f"<start_of_turn>{who}", f"{s}<end_of_turn>")
    ],
    "irc": lambda t: [f"<{who.lower().replace(' ', '_')}> {s}" for who, s in t.pairs()],
    "xml records": lambda t: [
        line
        for who, s in t.pairs()
        for line in ("<turn>", f"  <who>{who}</who>", f"  <said>{s}</said>", "</turn>")
    ],
    "arrows": lambda t: [
        f'- {t.first}: "{a}" \u2192 {t.second}: "{b}"'
        for a, b in zip(t.said[::2], t.said[1::2], strict=True)
    ],
    "dialogue dashes": lambda t: [f"\u2013 {s}" for _, s in t.pairs()],
}


def _prose(t: Turns) -> str:
    says, reply = SPEECH[t.language]
    opening, closing = QUOTES[t.language]
    sentences = [
        f"{says.format(a=t.first.lower())} {opening}{a}{closing} {reply} {opening}{b}{closing}"
        for a, b in zip(t.said[::2], t.said[1::2], strict=True)
    ]
    return " ".join(sentences)


def _embed(block: Sequence[str], before: int) -> tuple[str, int, int]:
    """The block inside a briefing after ``before`` preamble lines; its 1-based line span."""
    head = [*PREAMBLE[:before], ""]
    tail = ["", *PREAMBLE[before:]]
    lines = [*head, *block, *tail]
    return "\n".join(lines), len(head) + 1, len(head) + len(block)


@PROPERTY_SETTINGS
@given(
    dialogue=turns(),
    markup=st.sampled_from(sorted(MARKUPS)),
    before=st.integers(min_value=0, max_value=len(PREAMBLE)),
)
def test_every_generated_dialogue_is_caught(dialogue: Turns, markup: str, before: int) -> None:
    block = MARKUPS[markup](dialogue)
    prompt, start, end = _embed(block, before)
    findings = lint_prompt(prompt, tools_configured=False, language=dialogue.language)
    few_shot = [f for f in findings if f.rule.startswith("few-shot-")]
    assert few_shot, f"{markup} dialogue not caught:\n" + "\n".join(block)
    assert all(start <= f.line <= end for f in few_shot), (few_shot, start, end)
    assert all(
        f.rewrite.startswith("Replace the example with a rule: When the user ") for f in few_shot
    )


# ---------------------------------------------------------------------------------------------
# Clean briefings: label-like lines that are not dialogues.

CAST = {
    "en": [
        "can change limits",
        "can add expenses",
        "a beginner who learns on the bus",
        "sees reports only",
    ],
    "es": [
        "puede cambiar los límites",
        "una alumna que practica en el autobús",
        "solo ve los informes",
    ],
    "fr": [
        "peut modifier les plafonds",
        "une cliente qui appelle le soir",
        "voit seulement les relevés",
    ],
    "de": ["kann Limits ändern", "eine Kundin, die abends anruft", "sieht nur die Berichte"],
}
FIELDS = {
    "en": [
        ("Tone", "warm."),
        ("Pacing", "slow"),
        ("Level", "beginner"),
        ("Voice", "calm and low."),
    ],
    "es": [("Tono", "cálido."), ("Ritmo", "lento"), ("Nivel", "principiante")],
    "fr": [("Ton", "chaleureux."), ("Rythme", "lent"), ("Niveau", "débutant")],
    "de": [("Ton", "warm."), ("Tempo", "langsam"), ("Niveau", "Anfänger")],
}
INSTRUCTIONS = {
    "en": [
        "Keep every answer short.",
        "Read lists aloud.",
        "You ask one question at a time.",
        "Use the user's words for things on screen.",
        "you wait after each step.",
    ],
    "es": ["Responde en una frase.", "Lees listas en voz alta.", "Esperas después de cada paso."],
    "fr": [
        "Réponds en une phrase.",
        "Tu lis les listes à voix haute.",
        "Tu attends après chaque étape.",
    ],
    "de": ["Antworte in einem Satz.", "Du liest Listen vor.", "Du wartest nach jedem Schritt."],
}
DAYS = ["Monday", "Tuesday", "Lunes", "Martes", "Lundi", "Mardi", "Montag", "Dienstag"]
DEFINITIONS = {
    "en": [
        "a container that holds other layers.",
        "the fixed amount paid each month.",
        "shows what the meter reads now.",
    ],
    "es": ["la cantidad fija que se paga cada mes.", "muestra lo que marca el contador."],
    "fr": ["le montant fixe payé chaque mois.", "montre ce que le compteur indique."],
    "de": ["der feste Betrag, den man jeden Monat zahlt.", "zeigt, was der Zähler gerade anzeigt."],
}
RULES = {
    "en": "When the {a} says they want a refund, you say you are sorry and offer two options.",
    "es": "Cuando el {a} dice que quiere un reembolso, dices que lo sientes y ofreces opciones.",
    "fr": "Quand le {a} dit qu'il veut être remboursé, tu dis que tu es désolé et tu proposes.",
    "de": "Wenn der {a} sagt, dass er sein Geld zurück will, sagst du, dass es dir leid tut.",
}
QUESTION_RULES = {
    "en": "When the {a} asks {q}, you answer it in one sentence and point at the screen.",
    "es": "Cuando el {a} pregunta {q}, respondes en una frase y señalas la pantalla.",
    "fr": "Quand le {a} demande {q}, tu réponds en une phrase et tu montres l'écran.",
    "de": "Wenn der {a} fragt {q}, antwortest du in einem Satz und zeigst auf den Bildschirm.",
}


@st.composite
def clean_lines(draw: st.DrawFn) -> list[str]:
    language = draw(st.sampled_from(sorted(ASKS)))
    opening, closing = QUOTES[language]
    kind = draw(
        st.sampled_from(
            [
                "cast",
                "cast inline",
                "fields",
                "fields repeated",
                "do and don't",
                "schedule",
                "glossary",
                "rules",
                "questions",
                "yaml rules",
                "table",
            ]
        )
    )
    names = draw(st.lists(label, min_size=2, max_size=4, unique_by=str.lower))
    if kind == "cast":
        return [f"{n}: {draw(st.sampled_from(CAST[language]))}." for n in names]
    if kind == "cast inline":
        return [" ".join(f"{n}: {draw(st.sampled_from(CAST[language]))}." for n in names)]
    if kind == "fields":
        fields = draw(
            st.lists(st.sampled_from(FIELDS[language]), min_size=2, max_size=4, unique=True)
        )
        return [" ".join(f"{k}: {v}" for k, v in fields)] + [f"{k}: {v}" for k, v in fields]
    if kind == "fields repeated":  # Name/Role pairs for several people alternate like voices
        return [
            line
            for n in names
            for line in (
                f"Name: {n}",
                f"Role: {draw(st.sampled_from(['tutor', 'coach', 'owner', 'member']))}",
            )
        ]
    if kind == "do and don't":  # instructions alternating under two labels
        dos = draw(st.lists(st.sampled_from(INSTRUCTIONS[language]), min_size=4, max_size=6))
        pair = draw(st.sampled_from([("Do", "Don't"), ("Always", "Never"), ("Note", "Tip")]))
        return [f"{pair[i % 2]}: {text}" for i, text in enumerate(dos)]
    if kind == "schedule":  # labels that come back, with descriptions
        days = draw(st.lists(st.sampled_from(DAYS), min_size=3, max_size=5))
        return [f"{day}: {draw(st.sampled_from(CAST[language]))}." for day in days]
    if kind == "glossary":
        return [f"{n}: {draw(st.sampled_from(DEFINITIONS[language]))}" for n in names]
    if kind == "rules":
        return [RULES[language].format(a=n.lower()) for n in names]
    if kind == "questions":
        return [
            QUESTION_RULES[language].format(
                a=n.lower(), q=f"{opening}{draw(st.sampled_from(ASKS[language]))}{closing}"
            )
            for n in names
        ]
    if kind == "yaml rules":
        return [
            line
            for n in names
            for line in (
                f"- when: the {n.lower()} asks for steps",
                "  do: give them one at a time and wait",
            )
        ]
    return [
        "| Situation | Response |",
        "| --- | --- |",
        *(f"| {n} asks for steps | Give one at a time |" for n in names),
    ]


@PROPERTY_SETTINGS
@given(block=clean_lines(), before=st.integers(min_value=0, max_value=len(PREAMBLE)))
def test_no_generated_clean_briefing_is_rejected(block: list[str], before: int) -> None:
    prompt, _, _ = _embed(block, before)
    errors = [
        f for f in lint_prompt(prompt, tools_configured=False) if f.severity == Severity.ERROR
    ]
    assert not errors, (
        "\n".join(block) + "\n" + "\n".join(f"{f.line}: {f.rule}: {f.excerpt}" for f in errors)
    )
