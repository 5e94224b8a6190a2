"""MkDocs hooks: the command-line reference is generated from the commands at build time."""

from mapscope.cli.reference import markdown

MARK = "<!-- the command reference is generated here -->"


def on_page_markdown(text, page, config, files):
    return text.replace(MARK, markdown()) if MARK in text else text
