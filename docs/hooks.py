"""MkDocs hooks: the command-line reference is generated from the commands at build time, and
the guides' pictures come from running the commands the guides show.

``FIGURE_COMMANDS`` are those commands at short settings (a CNN trained 1 epoch on 6000 images
instead of the demo's run). They run in this process before the build, into ``docs/figures/``
(ignored by git), and run again only when mapscope's source or the commands change, so a picture
cannot drift from the code that draws it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
from pathlib import Path

from mapscope.cli.reference import markdown

MARK = "<!-- the command reference is generated here -->"
DOCS = Path(__file__).parent
SOURCE = DOCS.parent / "src" / "mapscope"
FIGURES = DOCS / "figures"
RUN = DOCS.parent / ".cache" / "docs-run"  # the short run the pictures are drawn from
FIGURE_COMMANDS = [
    ["cnn", "train", "--max-train", "6000", "--max-test", "2000", "--epochs", "1", "--out", RUN],
    ["evaluate", "--model", RUN, "--gallery", "4", "--out", FIGURES / "evaluate"],
    [
        "activations",
        "--model",
        RUN,
        "--layer",
        "Conv2D_2",
        "--index",
        "1302",
        "--out",
        FIGURES / "conv2.png",
    ],
    [
        "compare",
        "--model",
        RUN,
        "--layer",
        "Conv2D_3",
        "--classes",
        "4,9",
        "--out",
        FIGURES / "4v9",
    ],
    ["oip", "--model", RUN, "--layer", "Conv2D_3", "--steps", "100", "--out", FIGURES / "oip"],
    ["attribute", "--model", RUN, "--index", "1302", "--index", "7", "--out", FIGURES / "why.png"],
]


def _key() -> str:
    digest = hashlib.sha256(repr(FIGURE_COMMANDS).encode())
    for path in sorted(SOURCE.rglob("*")):
        if path.suffix in (".py", ".html", ".js", ".css") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(SOURCE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def on_pre_build(config) -> None:
    from mapscope.cli.main import run

    key = _key()
    stamp = FIGURES / ".source-key"
    if stamp.is_file() and stamp.read_text() == key:
        return
    shutil.rmtree(FIGURES, ignore_errors=True)
    shutil.rmtree(RUN, ignore_errors=True)
    print("docs: drawing the guides' figures with the commands they show ...", flush=True)
    for command in FIGURE_COMMANDS:
        args = [str(part) for part in command]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            try:
                run(args)
                code = 0
            except SystemExit as stop:
                code = stop.code or 0
        if code:
            raise RuntimeError(f"mapscope {' '.join(args)} failed:\n{printed.getvalue()}")
    stamp.write_text(key)


def on_page_markdown(text, page, config, files):
    return text.replace(MARK, markdown()) if MARK in text else text
