"""`earpiece prompt lint` on a 4,000-word prompt, next to a bare baseline measured in the same run.

The prompt is built from the linter's own corpus (tests/prompts/corpus: few-shot dialogues in
many markups and four languages, hedges, memo formatting, clean briefings), taken in turn until
it holds 4,000 words, so every check does real work. Measured in this process, ROUNDS times
after a warm-up:

- lint_prompt alone, as StartSession calls it through prepare_prompt;
- the `prompt lint` command as the CLI runs it: read the file, lint, print the report (to a
  buffer);
- the bare baseline: split the same text into lines and words, the least any line-based linter
  must do.

The command's process start-up (Python plus every CLI subcommand's imports) is paid once per
invocation whatever the prompt, so it is shown apart: the whole `earpiece prompt lint` process
on this prompt and on a one-line prompt. Goal (issue 12): linting 4,000 words under 50 ms.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import pct
from services.prompts import add_prompt_cli, lint_prompt
from services.prompts.shapes import WORD_RE

WORDS = 4_000
ROUNDS = 60
PROCESS_RUNS = 3
GOAL_MS = 50.0
CORPUS = Path(__file__).resolve().parent.parent / "tests" / "prompts" / "corpus"


def corpus_prompt(words: int = WORDS) -> str:
    """Corpus prompts (front matter dropped) in a fixed shuffled order, so shapes mix, until
    the text holds ``words`` words."""
    bodies = [
        path.read_text(encoding="utf-8").split("\n---\n", 1)[1]
        for path in sorted(CORPUS.glob("*.txt"))
    ]
    random.Random(12).shuffle(bodies)
    parts: list[str] = []
    count = 0
    while count < words:
        body = bodies[len(parts) % len(bodies)]
        parts.append(body)
        count += len(WORD_RE.findall(body))
    return "\n\n".join(parts)


def timed(runs: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, list[float]]:
    """Each run once per round, the order rotated every round, so a busy moment on a shared
    machine falls on all of them alike."""
    names = list(runs)
    for run in runs.values():
        run()  # warm-up: compiled patterns, caches
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = time.perf_counter()
            runs[name]()
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def command(path: Path) -> Callable[[], object]:
    """`prompt lint PATH`, parsed and run like services/cli.py does, output captured."""
    parser = argparse.ArgumentParser(prog="earpiece")
    add_prompt_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prompt", "lint", str(path)])

    def run() -> object:
        with contextlib.redirect_stdout(io.StringIO()):
            return args.func(args)

    return run


def process_ms(path: Path) -> float:
    """Median wall time of the whole `earpiece prompt lint PATH` process."""
    argv = [sys.executable, "-m", "services.cli", "prompt", "lint", str(path)]
    samples = []
    for _ in range(PROCESS_RUNS):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def main() -> None:
    text = corpus_prompt()
    words = len(WORD_RE.findall(text))
    with tempfile.TemporaryDirectory(prefix="earpiece-bench-lint-") as folder:
        prompt = Path(folder) / "prompt.txt"
        prompt.write_text(text, encoding="utf-8")
        tiny = Path(folder) / "tiny.txt"
        tiny.write_text("You are Nora.\n", encoding="utf-8")

        findings = lint_prompt(text, tools_configured=False)
        rows = timed(
            {
                "bare baseline (lines and words)": lambda: [
                    WORD_RE.findall(line) for line in text.splitlines()
                ],
                "lint_prompt": lambda: lint_prompt(text, tools_configured=False),
                "`prompt lint` command, in process": command(prompt),
            }
        )
        whole, startup = process_ms(prompt), process_ms(tiny)

    print(f"a {words}-word prompt from the lint corpus, {len(findings)} findings; ms")
    print(f"{'':40}{'p50':>9}{'p99':>9}")
    for name, samples in rows.items():
        print(f"{name:40}{pct(samples, 0.5):9.1f}{pct(samples, 0.99):9.1f}")
    lint50 = pct(rows["lint_prompt"], 0.5)
    base50 = pct(rows["bare baseline (lines and words)"], 0.5)
    print(
        f"lint at p50: {lint50:.1f} ms (goal < {GOAL_MS:.0f}), {lint50 / base50:.0f}x the bare pass"
    )
    print(
        f"whole `earpiece prompt lint` process: {whole:.0f} ms on this prompt, "
        f"{startup:.0f} ms on a one-line prompt (start-up and imports of every subcommand)"
    )
