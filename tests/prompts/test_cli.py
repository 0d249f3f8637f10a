"""`persona compile` and `prompt lint`, driven through argparse like services/cli.py does."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from services.prompts import add_prompt_cli, compile_persona, load_persona
from tests.prompts.test_spec import EXAMPLES, dump, minimal

TUTOR = EXAMPLES / "screen_tutor.yaml"
CORPUS = Path(__file__).parent / "corpus"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="earpiece")
    add_prompt_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    assert isinstance(code, int)
    return code


def body_of(name: str, tmp_path: Path) -> Path:
    """A corpus prompt without its front matter, as a plain prompt file."""
    text = (CORPUS / f"{name}.txt").read_text(encoding="utf-8").split("\n---\n", 1)[1]
    path = tmp_path / f"{name}.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_compile_prints_instructions_and_hash(capsys: pytest.CaptureFixture[str]) -> None:
    compiled = compile_persona(load_persona(TUTOR.read_text(encoding="utf-8")))
    assert run("persona", "compile", str(TUTOR)) == 0
    out, err = capsys.readouterr()
    assert out == compiled.instructions + "\n"
    assert err == f"prompt_hash sha256:{compiled.prompt_hash}\n"


def test_compile_hash_flag(capsys: pytest.CaptureFixture[str]) -> None:
    compiled = compile_persona(load_persona(TUTOR.read_text(encoding="utf-8")))
    assert run("persona", "compile", "--hash", str(TUTOR)) == 0
    assert capsys.readouterr().out == compiled.prompt_hash + "\n"


def test_compile_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("persona", "compile", "--json", str(TUTOR)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["persona_name"] == "Maya"
    assert data["voice"] == "shimmer"
    assert data["tools"] == ["highlight_element", "mark_step_complete"]
    assert data["instructions"].startswith("You are Maya")


def test_compile_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(TUTOR.read_text(encoding="utf-8")))
    assert run("persona", "compile", "-") == 0
    assert capsys.readouterr().out.startswith("You are Maya")


def test_compile_invalid_spec_names_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = minimal()
    del data["identity"]["role"]
    path = tmp_path / "bad.yaml"
    path.write_text(dump(data), encoding="utf-8")
    assert run("persona", "compile", str(path)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}: error persona-spec: $.identity.role: required field is missing\n"


def test_compile_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run("persona", "compile", str(tmp_path / "nope.yaml")) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_lint_clean_text(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = body_of("clean_tutor_briefing", tmp_path)
    assert run("prompt", "lint", "--tools", str(path)) == 0
    assert capsys.readouterr().out == f"{path}: clean\n"


def test_lint_errors_exit_1_with_readable_findings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = body_of("dialogue_user_assistant", tmp_path)
    assert run("prompt", "lint", str(path)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:8: error few-shot-dialogue: ")
    excerpt = "User: How do I export my design? / Assistant: Click File in the top left, then"
    assert out[1] == f"    | {excerpt} choose Export."
    assert out[2].startswith("    why: Realtime takes example turns")
    assert out[3].startswith("    rewrite: Replace the example with a rule: When the user asks")
    assert out[-1] == f"{path}: 1 error, 0 warnings"


def test_lint_warnings_only_exit_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = body_of("hedges_each_listed", tmp_path)
    assert run("prompt", "lint", str(path)) == 0
    out = capsys.readouterr().out
    assert f"{path}:8: warning hedge: " in out
    assert "    rewrite: You give numbered steps." in out
    assert out.endswith(f"{path}: 0 errors, 7 warnings\n")


def test_lint_tools_flag_requires_the_ordering_rule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = body_of("no_tool_ordering", tmp_path)
    assert run("prompt", "lint", str(path)) == 0
    assert capsys.readouterr().out == f"{path}: clean\n"
    assert run("prompt", "lint", "--tools", str(path)) == 0
    assert f"{path}:1: warning no-tool-ordering: " in capsys.readouterr().out


def test_lint_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = body_of("chat_prompt_ported", tmp_path)
    good = body_of("clean_no_tools", tmp_path)
    assert run("prompt", "lint", "--json", str(bad), str(good)) == 1
    data = json.loads(capsys.readouterr().out)
    first, second = data["files"]
    assert first["file"] == str(bad)
    assert first["errors"] == 3
    assert {f["rule"] for f in first["findings"]} >= {"few-shot-dialogue", "hedge", "too-short"}
    assert "no-tool-ordering" not in {f["rule"] for f in first["findings"]}
    assert all(set(f) >= {"line", "why", "rewrite", "severity"} for f in first["findings"])
    assert second == {
        "file": str(good),
        "persona": None,
        "prompt_hash": None,
        "findings": [],
        "errors": 0,
        "warnings": 0,
    }
    assert data["errors"] == 3


def test_lint_persona_yaml_lints_its_compiled_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("prompt", "lint", *(str(p) for p in sorted(EXAMPLES.glob("*.yaml")))) == 0
    out = capsys.readouterr().out
    assert f"{TUTOR}: note: persona Maya; lines refer to its compiled instructions" in out
    assert f"{TUTOR}: clean" in out


def test_lint_persona_with_hedge_points_at_compiled_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = minimal()
    data["off_topic"] = "try to steer back to the task"
    path = tmp_path / "hedgy.yml"
    path.write_text(dump(data), encoding="utf-8")
    assert run("prompt", "lint", "--json", str(path)) == 0
    (report,) = json.loads(capsys.readouterr().out)["files"]
    assert report["persona"] == "Nora"
    (finding,) = report["findings"]
    assert finding["rule"] == "hedge"
    assert finding["line"] == 5
    assert finding["rewrite"] == "When the user goes off topic, you steer back to the task."


def test_lint_invalid_persona(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("identity: {name: X}\n", encoding="utf-8")
    assert run("prompt", "lint", str(path)) == 1
    out = capsys.readouterr().out
    assert f"{path}: error persona-spec: $.identity.role: required field is missing" in out


def test_lint_unreadable_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run("prompt", "lint", str(tmp_path / "missing.txt")) == 2
    assert "cannot read" in capsys.readouterr().err


def test_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        run("prompt")
    assert caught.value.code == 2


def test_lint_language_flag_picks_the_hedge_list(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = body_of("hedges_french_declared", tmp_path)
    assert run("prompt", "lint", "--language", "English", str(path)) == 0
    english = capsys.readouterr().out
    assert run("prompt", "lint", "--language", "fr", str(path)) == 0
    french = capsys.readouterr().out
    assert "warning hedge:" not in english
    assert french.count("warning hedge:") == 3
    assert run("prompt", "lint", "--language", "Italian", str(path)) == 0
    assert "warning hedge-language-unsupported" in capsys.readouterr().out
