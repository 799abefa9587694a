"""Module layering, read from the source (no imports run): export and runtime never reach into training, and
the runtime takes nothing from the training side at all."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> the package it installs as (pyproject's package-dir)
PACKAGES = {"export": "edgeadapt.export", "runtime": "edgeadapt.runtime"}
TRAINING = "edgeadapt.train"
RUNTIME_MAY_IMPORT = {"edgeadapt.errors"}  # from the training side's package, beside edgeadapt.runtime itself
TRAINING_ONLY = {"torch", "onnx", "onnxscript", "safetensors"}


def imported(path: Path, package: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports, relative imports resolved against ``package``, with ``from X import y``
    giving both ``X`` and ``X.y`` (``y`` may be a module): line number and absolute name."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def modules(folder: str) -> list[tuple[Path, str]]:
    """Every module under ``folder`` and the package its relative imports start from."""
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        inner = path.parent.relative_to(ROOT / folder).parts
        out.append((path, ".".join([PACKAGES[folder], *inner])))
    return out


def test_imported_resolves_every_spelling(tmp_path: Path) -> None:
    path = tmp_path / "spellings.py"
    path.write_text("from ..train import evaluate\nfrom .. import train\nimport edgeadapt.train as t\n"
                    "from edgeadapt.train import run_training\nfrom edgeadapt import train\n"
                    "def f():\n    from ..train import x\n")
    names = imported(path, "edgeadapt.export")
    hits = [line for line, name in names if name == TRAINING or name.startswith(TRAINING + ".")]
    assert sorted(set(hits)) == [1, 2, 3, 4, 5, 7]
    assert (1, "edgeadapt.evaluate") not in names and (1, "edgeadapt.train.evaluate") in names


@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_export_and_runtime_never_import_training(folder: str) -> None:
    found = modules(folder)
    assert len(found) >= 5, f"no modules under {ROOT / folder}"
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path, package in found
           for line, name in imported(path, package)
           if name == TRAINING or name.startswith(TRAINING + ".")]
    assert not bad, "\n".join(bad)


def test_runtime_takes_nothing_from_the_training_side() -> None:
    bad = []
    for path, package in modules("runtime"):
        for line, name in imported(path, package):
            top = name.split(".")[0]
            inside = name == "edgeadapt.runtime" or name.startswith("edgeadapt.runtime.")
            allowed = any(name == ok or name.startswith(ok + ".") for ok in RUNTIME_MAY_IMPORT)
            if top in TRAINING_ONLY or (top == "edgeadapt" and name != "edgeadapt" and not inside and not allowed):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)
