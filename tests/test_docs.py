"""Every ```python block in README.md and docs/*.md runs, so no example can go stale.

Blocks of one file run in order in one namespace, inside a temporary working directory.
Blocks meant only to be read are fenced as ```text (or ```bash).
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path):
    return BLOCK.findall(path.read_text())


def test_docs_exist_and_have_examples():
    names = {p.name for p in FILES}
    assert {"README.md", "export.md", "porting.md"} <= names
    assert python_blocks(ROOT / "README.md")


@pytest.mark.slow
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_examples_run(path, tmp_path, monkeypatch):
    blocks = python_blocks(path)
    if not blocks:
        pytest.skip(f"{path.name} has no python examples")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{path.stem}"}
    for index, source in enumerate(blocks):
        code = compile(source, f"{path.name}[block {index}]", "exec")
        exec(code, namespace)  # noqa: S102 - running our own documentation
