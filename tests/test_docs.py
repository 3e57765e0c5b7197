"""The documentation, checked: every ```python block of README.md and docs/*.md runs (each in a fresh subprocess,
one torch thread, the repository on PYTHONPATH; a block whose first line is ``# not run: <reason>`` is skipped),
every relative link points to a file (and heading) that exists, every recipes/*.py or scripts/*.sh path named in
a bash block exists, nothing points outside the repository, and README.md stays under 150 lines."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SKIP = "# not run:"


def blocks(language: str) -> list[tuple[str, int, str]]:
    """(page, first line number, code) of every fenced block in that language."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text.count("\n", 0, match.start()) + 2
                found.append((page.relative_to(ROOT).as_posix(), line, match.group(2)))
    return found


PYTHON = blocks("python")


@pytest.mark.parametrize("page, line, code", PYTHON, ids=[f"{p}:{n}" for p, n, _ in PYTHON])
def test_python_block_runs(page, line, code, tmp_path):
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    if first.startswith(SKIP):
        pytest.skip(first[len(SKIP):].strip() or "marked not run")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    script = tmp_path / "block.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\ntorch.manual_seed(0)\n" + code)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"{page}:{line} failed:\n{out.stderr[-4000:]}"


def test_there_are_python_blocks_to_run():
    assert len(PYTHON) >= 5


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def links() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for match in LINK.finditer(FENCE.sub("", page.read_text())):
            found.append((page.relative_to(ROOT).as_posix(), match.group(1)))
    return found


@pytest.mark.parametrize("page, target", links())
def test_relative_links_point_to_existing_files(page, target):
    if re.match(r"^[a-z]+:", target):  # http(s), mailto: not checked here
        return
    path, _, anchor = target.partition("#")
    source = ROOT / page
    resolved = (source.parent / path).resolve() if path else source
    assert resolved.exists(), f"{page}: {target} does not exist"
    assert resolved.is_relative_to(ROOT), f"{page}: {target} points outside the repository"
    if anchor and resolved.suffix == ".md":
        assert anchor in anchors(resolved), f"{page}: no heading #{anchor} in {resolved.relative_to(ROOT)}"


def test_bash_blocks_name_only_existing_recipes_and_scripts():
    missing = []
    for page, line, code in blocks("bash"):
        for path in re.findall(r"(?<![\w/.-])((?:recipes|scripts)/[\w./-]+\.(?:py|sh))", code):
            if not (ROOT / path).exists():
                missing.append(f"{page}:{line}: {path}")
    assert not missing, missing


def test_nothing_points_outside_the_repository():
    bad = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in PAGES
           for m in re.finditer(r"\bshared/|/work/|\.\./\.\./", p.read_text())]
    assert not bad, bad


def test_readme_is_under_150_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) < 150


def test_every_file_the_code_cites_is_in_the_repository():
    """Docstrings and comments cite docs pages, tests and RESULTS.md by path: each must exist (none outside the repo)."""
    cited = re.compile(r"\b(?:docs/[\w./-]+\.md|tests/[\w./-]+\.py|benchmarks/RESULTS\.md)")
    missing = []
    for folder in ("dreamer_trl", "recipes", "benchmarks", "scripts"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".sh") and "__pycache__" not in path.parts:
                missing += [f"{path.relative_to(ROOT)}: {m}" for m in cited.findall(path.read_text())
                            if not (ROOT / m).exists()]
    assert not missing, "\n".join(missing)
