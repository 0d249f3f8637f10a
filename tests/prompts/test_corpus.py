"""Run the linter over the prompt corpus in ``corpus/``.

Each corpus file is a prompt with YAML front matter (between ``---`` lines) that says which
rules it must produce (``must``), must not produce (``must_not``), whether nothing else may
fire (``only``), optionally the exact set of lines per rule (``lines``), and the language a persona
would declare (``language``; without it the linter detects one). Line numbers count from the
first line after the front matter, as the linter sees the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.prompts import RULES, Severity, lint_prompt
from services.prompts.hedges import hedge_patterns

CORPUS = Path(__file__).parent / "corpus"

# Rules only prepare_prompt can raise (they compare the prompt with the session's tools).
SESSION_ONLY_RULES = {"tool-not-configured", "tool-not-described"}


@dataclass(frozen=True)
class Case:
    name: str
    body: str
    tools_configured: bool
    language: str | None
    must: frozenset[str]
    must_not: frozenset[str]
    only: bool
    lines: dict[str, list[int]]


def _load(path: Path) -> Case:
    raw = path.read_text(encoding="utf-8")
    assert raw.startswith("---\n"), f"{path.name}: no front matter"
    front, body = raw[4:].split("\n---\n", 1)
    meta: dict[str, Any] = yaml.safe_load(front)
    known = {"description", "tools_configured", "language", "must", "must_not", "only", "lines"}
    unknown = set(meta) - known
    assert not unknown, f"{path.name}: unknown front-matter keys {unknown}"
    for rule in [*meta.get("must", []), *meta.get("must_not", []), *meta.get("lines", {})]:
        assert rule in RULES, f"{path.name}: unknown rule {rule!r}"
    return Case(
        name=path.stem,
        body=body,
        tools_configured=bool(meta.get("tools_configured", False)),
        language=meta.get("language"),
        must=frozenset(meta.get("must", [])),
        must_not=frozenset(meta.get("must_not", [])),
        only=bool(meta.get("only", False)),
        lines={rule: list(lines) for rule, lines in (meta.get("lines") or {}).items()},
    )


CASES = [_load(path) for path in sorted(CORPUS.glob("*.txt"))]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case(case: Case) -> None:
    findings = lint_prompt(
        case.body, tools_configured=case.tools_configured, language=case.language
    )
    fired = {f.rule for f in findings}
    report = "\n".join(f"  {f.line}: {f.rule}: {f.excerpt}" for f in findings) or "  (none)"
    assert case.must <= fired, f"missing {sorted(case.must - fired)}; got:\n{report}"
    assert not (case.must_not & fired), f"unexpected {sorted(case.must_not & fired)}:\n{report}"
    if case.only:
        assert fired <= case.must, f"unexpected {sorted(fired - case.must)}:\n{report}"
    for rule, lines in case.lines.items():
        got = sorted({f.line for f in findings if f.rule == rule})
        assert got == sorted(lines), f"{rule} on lines {got}, expected {lines}:\n{report}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_finding_is_actionable(case: Case) -> None:
    """Each finding carries its line, why it matters, and a rule-shaped rewrite."""
    line_count = max(1, len(case.body.splitlines()))
    for finding in lint_prompt(
        case.body, tools_configured=case.tools_configured, language=case.language
    ):
        info = RULES[finding.rule]
        assert finding.severity == info.severity
        assert 1 <= finding.line <= line_count
        assert finding.why == info.why and finding.why.endswith(".")
        assert finding.message.startswith(info.title)
        assert finding.rewrite
        if finding.rule.startswith("few-shot-"):
            assert finding.severity == Severity.ERROR
            assert finding.excerpt
            assert finding.rewrite.startswith("Replace the example with a rule: When the user ")
            assert ", you " in finding.rewrite
        if finding.rule == "hedge":
            assert finding.excerpt
            rewrite = finding.rewrite
            assert not any(pattern.search(rewrite) for pattern in hedge_patterns()), rewrite
            assert rewrite[:1].isupper()


def test_corpus_covers_every_text_rule_in_several_phrasings() -> None:
    """Every rule the linter can raise appears in at least two cases that must produce it."""
    text_rules = set(RULES) - SESSION_ONLY_RULES
    counts = {rule: sum(rule in case.must for case in CASES) for rule in text_rules}
    thin = {rule: n for rule, n in counts.items() if n < 2}
    assert not thin, f"rules with fewer than two corpus cases: {thin}"
    clean = [case.name for case in CASES if not case.must and case.only]
    assert len(clean) >= 8, "keep a good stock of false-alarm guards"


def test_rule_ids_are_stable_kebab_case() -> None:
    """Rule ids are an API (gRPC error details, --json); renaming one is a breaking change."""
    assert sorted(RULES) == [
        "few-shot-dialogue",
        "few-shot-example-turn",
        "few-shot-qa",
        "few-shot-quoted-exchange",
        "few-shot-says",
        "hedge",
        "hedge-language-unsupported",
        "memo-bullets",
        "memo-heading",
        "memo-table",
        "no-tool-ordering",
        "no-voice-first",
        "too-short",
        "tool-not-configured",
        "tool-not-described",
    ]
    errors = {rule for rule, info in RULES.items() if info.severity == Severity.ERROR}
    assert errors == {rule for rule in RULES if rule.startswith("few-shot-")}
