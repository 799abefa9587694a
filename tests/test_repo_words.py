"""The repository speaks of the product (versions, formats, dates, commits), not of how its authors organised
their work: no numbered "session", "issue" or "stop" in any tracked text file. An onnxruntime session is fine."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROCESS_WORDS = re.compile(r"\b(sessions?|issues?|stops?)[\s-]+#?[0-9]", re.IGNORECASE)


def tracked_text_files() -> list[Path]:
    """Every file git tracks (or would add: untracked but not ignored) that decodes as text."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout
    files = []
    for name in sorted(set(filter(None, listed.decode().split("\0")))):
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        files.append(path)
    return files


def process_word_hits(paths: list[Path]) -> list[str]:
    """``file:line: text`` for each line naming a numbered session, issue or stop."""
    hits = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if PROCESS_WORDS.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:160]}")
    return hits


# the examples carry {n} where the number goes, so that this file does not trip its own check
@pytest.mark.parametrize("line, hit", [
    ("measured in session {n}", True),
    ("Sessions {n}-15 measured", True),
    ("the session-{n} demo bundle", True),
    ("Issue {n} asks for a saving", True),
    ("see issues {n} and 3", True),
    ("see issue #{n}", True),
    ("stop {n} of the plan", True),
    ("an onnxruntime session per bundle ({n} threads)", False),
    ("sessions are created once", False),
    ("exit status {n} when a budget is missed", False),
    ("the run stops with one line", False),
])
def test_the_pattern_tells_process_words_from_product_words(line: str, hit: bool) -> None:
    assert bool(PROCESS_WORDS.search(line.format(n=14))) is hit


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_no_tracked_file_names_a_numbered_session_issue_or_stop() -> None:
    files = tracked_text_files()
    assert any(p.name == "README.md" for p in files)  # the listing works
    hits = process_word_hits(files)
    assert not hits, "process words in the tree (name the version, date or commit instead):\n" + "\n".join(hits)
