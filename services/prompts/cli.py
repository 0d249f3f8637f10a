"""`earpiece persona compile` and `earpiece prompt lint`.

Authors see, before any session runs, exactly what the model will be told and what is wrong
with it; CI can run the linter over prompt files (``--json``, exit status 1 on errors).
``services/cli.py`` owns the top-level parser and calls :func:`add_prompt_cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from services.prompts.compiler import CompiledPersona, compile_persona
from services.prompts.linter import Finding, Severity, lint_prompt
from services.prompts.spec import PersonaSpecError, load_persona

__all__ = ["add_prompt_cli", "cmd_persona_compile", "cmd_prompt_lint"]

PERSONA_SUFFIXES = (".yaml", ".yml")

# Exit statuses: 0 clean or warnings only, 1 errors in the prompt or spec, 2 unreadable input.
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def add_prompt_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `persona compile FILE` and `prompt lint FILE…` on a top-level parser."""
    persona = subparsers.add_parser("persona", help="persona specs")
    persona_sub = persona.add_subparsers(dest="persona_command", required=True)
    compile_ = persona_sub.add_parser(
        "compile",
        help="compile a persona spec into session instructions",
        description=(
            "Print the instructions compiled from a persona YAML file. The sha256 of the "
            "instructions goes to stderr (or alone to stdout with --hash)."
        ),
    )
    compile_.add_argument("file", help="persona YAML file, or - for stdin")
    output = compile_.add_mutually_exclusive_group()
    output.add_argument("--hash", action="store_true", help="print only the prompt hash")
    output.add_argument(
        "--json", action="store_true", help="print instructions, hash, voice and speed as JSON"
    )
    compile_.set_defaults(func=cmd_persona_compile)

    prompt = subparsers.add_parser("prompt", help="prompt text")
    prompt_sub = prompt.add_subparsers(dest="prompt_command", required=True)
    lint = prompt_sub.add_parser(
        "lint",
        help="lint prompt text or a persona spec",
        description=(
            "Lint prompt files for Realtime. A .yaml/.yml file is a persona spec: its "
            "compiled instructions are linted, and line numbers refer to them. "
            "Exit status 1 when any file has errors."
        ),
    )
    lint.add_argument("files", nargs="+", metavar="FILE", help="prompt text or persona YAML")
    lint.add_argument(
        "--tools",
        action="store_true",
        help="the session configures tools (require the finish-your-sentence rule)",
    )
    lint.add_argument(
        "--language",
        metavar="LANG",
        help=(
            "the language raw prompt text is written in (a name or code: Spanish, fr, Deutsch), "
            "for its hedge list; detected when omitted, and a persona's own field wins"
        ),
    )
    lint.add_argument("--json", action="store_true", help="machine-readable output")
    lint.set_defaults(func=cmd_prompt_lint)


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    return Path(name).read_text(encoding="utf-8")


def _is_persona(name: str) -> bool:
    return name.lower().endswith(PERSONA_SUFFIXES)


def _print_spec_error(name: str, error: PersonaSpecError, stream: TextIO) -> None:
    for problem in error.problems:
        print(f"{name}: error persona-spec: {problem}", file=stream)


def cmd_persona_compile(args: argparse.Namespace) -> int:
    """Print compiled instructions; the hash goes to stderr so stdout pipes cleanly."""
    try:
        compiled = compile_persona(load_persona(_read(args.file)))
    except OSError as exc:
        print(f"{args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except PersonaSpecError as exc:
        _print_spec_error(args.file, exc, sys.stderr)
        return EXIT_FINDINGS
    if args.hash:
        print(compiled.prompt_hash)
    elif args.json:
        print(json.dumps(_compiled_dict(compiled), indent=2, ensure_ascii=False))
    else:
        print(compiled.instructions)
        print(f"prompt_hash sha256:{compiled.prompt_hash}", file=sys.stderr)
    return EXIT_OK


def _compiled_dict(compiled: CompiledPersona) -> dict[str, Any]:
    return {
        "persona_name": compiled.persona_name,
        "voice": compiled.voice,
        "speed": compiled.speed,
        "tools": list(compiled.tools),
        "prompt_hash": compiled.prompt_hash,
        "instructions": compiled.instructions,
    }


def _lint_one(name: str, *, tools: bool, language: str | None = None) -> dict[str, Any]:
    """Lint one file into a JSON-able report (a spec error is reported, not raised)."""
    report: dict[str, Any] = {"file": name, "persona": None, "prompt_hash": None}
    try:
        text = _read(name)
    except OSError as exc:
        report.update(read_error=str(exc.strerror or exc), findings=[], errors=0, warnings=0)
        return report
    if _is_persona(name):
        try:
            compiled = compile_persona(load_persona(text))
        except PersonaSpecError as exc:
            report["spec_errors"] = [{"path": p.path, "message": p.message} for p in exc.problems]
            report["findings"] = []
            report["errors"] = len(exc.problems)
            report["warnings"] = 0
            return report
        text = compiled.instructions
        tools = tools or bool(compiled.tools)
        language = compiled.spec.language
        report["persona"] = compiled.persona_name
        report["prompt_hash"] = compiled.prompt_hash
    findings = lint_prompt(text, tools_configured=tools, language=language)
    report["findings"] = [f.to_dict() for f in findings]
    report["errors"] = sum(f.severity == Severity.ERROR for f in findings)
    report["warnings"] = sum(f.severity == Severity.WARNING for f in findings)
    report["_findings"] = findings
    return report


def _format_finding(name: str, finding: Finding) -> str:
    lines = [f"{name}:{finding.line}: {finding.severity.value} {finding.rule}: {finding.message}"]
    if finding.excerpt:
        lines.append(f"    | {finding.excerpt}")
    lines.append(f"    why: {finding.why}")
    lines.append(f"    rewrite: {finding.rewrite}")
    return "\n".join(lines)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def cmd_prompt_lint(args: argparse.Namespace) -> int:
    """Lint each file; exit 1 if any has errors, 2 if one cannot be read, else 0."""
    language = getattr(args, "language", None)
    reports = [_lint_one(name, tools=args.tools, language=language) for name in args.files]
    unreadable = any("read_error" in r for r in reports)
    errors = sum(r.get("errors", 0) for r in reports)
    warnings = sum(r.get("warnings", 0) for r in reports)
    if args.json:
        public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in reports]
        print(
            json.dumps(
                {"files": public, "errors": errors, "warnings": warnings},
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for report in reports:
            name = report["file"]
            if "read_error" in report:
                print(f"{name}: cannot read: {report['read_error']}", file=sys.stderr)
                continue
            for problem in report.get("spec_errors", []):
                print(f"{name}: error persona-spec: {problem['path']}: {problem['message']}")
            if report["persona"]:
                print(
                    f"{name}: note: persona {report['persona']}; lines refer to its compiled "
                    f"instructions (sha256:{report['prompt_hash']})"
                )
            for finding in report.get("_findings", []):
                print(_format_finding(name, finding))
            if report["errors"] or report["warnings"]:
                print(
                    f"{name}: {_plural(report['errors'], 'error')}, "
                    f"{_plural(report['warnings'], 'warning')}"
                )
            else:
                print(f"{name}: clean")
    if unreadable:
        return EXIT_USAGE
    return EXIT_FINDINGS if errors else EXIT_OK
