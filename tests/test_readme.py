"""The Python snippets of the README and of the documentation (``docs/``) run as they are, in a
fresh folder, as a script (not in Jupyter: ``live_plot`` must not need IPython there), at short
settings: the training lengths a snippet marks as "a quick look" are shortened further here,
nothing else is changed. Each snippet must
print what its comments promise and leave the files it says it writes."""

from __future__ import annotations

import ast
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# every python block of the README and of the documentation site, named page:number
BLOCKS = {
    f"{page.relative_to(ROOT)}:{k}": code
    for page in PAGES
    for k, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text("utf-8"), re.S))
}
# what the test shortens: the quick-look settings and the number of generated images
SHORTER = [
    (
        r'quick = \{"epochs": 1, "max_train": \d+, "max_test": \d+\}',
        'quick = {"epochs": 1, "max_train": 1500, "max_test": 500}',
    ),
    (r"\bn=1000\b", "n=200"),
]
# per snippet: what it must print (regular expressions) and the files it must leave
PROMISES = {
    "docs/guide/your-own-model.md:0": ([r"\['0', '1', '2', '3', '4'\]"], []),
    "docs/guide/python.md:0": (
        [
            r"Conv2D_3: units separating 4 from 9 best \(Cohen's d\):",
            r"unit\s+\d+: d = [+-]\d+\.\d\d",
            r"\bnormal\b.*\d",  # a row of the generation table per sampler
            r"^http://127\.0\.0\.1:\d+/$",  # the live app's address
        ],
        ["runs/cnn/config.json", "runs/cnn/epoch.json", "runs/ae/config.json"],
    ),
    "docs/guide/python.md:1": ([r"\[(\s*[01]\.\d*){5}\s*\]", r"^[01]\.\d*$"], []),
}


def shortened(code: str) -> str:
    for pattern, short in SHORTER:
        code = re.sub(pattern, short, code)
    return code


def test_the_readme_has_python_snippets_and_a_promise_for_each():
    assert sorted(BLOCKS) == sorted(PROMISES)
    for code in BLOCKS.values():
        ast.parse(code)  # each is a whole script


def test_the_quick_settings_are_shortened_and_nothing_else():
    block = BLOCKS["docs/guide/python.md:0"]
    short = shortened(block)
    assert '"max_train": 1500, "max_test": 500' in short and "n=200" in short
    assert [
        line for line in block.splitlines() if "quick =" not in line and "n=1000" not in line
    ] == [line for line in short.splitlines() if "quick =" not in line and "n=200" not in line]


@pytest.mark.parametrize("index", sorted(BLOCKS))
def test_readme_snippet_runs_as_a_script(index, tmp_path, real_data, monkeypatch, capsys):
    """Run as ``python snippet.py`` would run it (``__main__``, in a fresh folder), in this
    interpreter: a new one would spend most of the test importing torch again."""
    script = tmp_path / "snippet.py"
    script.write_text(shortened(BLOCKS[index]), encoding="utf-8")
    monkeypatch.setenv("MAPSCOPE_DATA", str(real_data))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    patterns, files = PROMISES[index]
    for pattern in patterns:
        assert re.search(pattern, printed, re.M), f"{pattern!r} not in:\n{printed}"
    for name in files:
        assert (tmp_path / name).is_file(), name
