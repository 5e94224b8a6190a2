"""How results show themselves in Jupyter: a small HTML card (a title, a table of facts, a
picture), the way scikit-learn's estimators do.

A result class draws nothing itself. It gives ``html_card`` its facts and a function that draws
its figure. ``RichDisplay`` turns that into ``_repr_html_`` (the card, with the figure embedded
as a PNG) and ``_repr_png_`` (the figure alone). Outside a notebook nothing here runs:
``print(result.summary())`` stays the plain-text view.
"""

from __future__ import annotations

import base64
import html
import io
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


CARD_STYLE = (
    "border:1px solid #d8dee4;border-radius:6px;padding:.6rem .8rem;max-width:46rem;"
    "font:13px/1.45 system-ui,sans-serif;color:#1d232b;background:#fff"
)


def figure_png(fig: Figure, dpi: int = 80, close: bool = True) -> bytes:
    """PNG bytes of ``fig``; with ``close``, pyplot forgets it afterwards (a figure mapscope drew
    itself was never registered there, so closing costs nothing)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        if close and "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close(fig)
    return buffer.getvalue()


def html_card(
    title: str,
    facts: Sequence[tuple[str, object]],
    picture: bytes | None = None,
    table: tuple[Sequence[str], Sequence[Sequence[object]]] | None = None,
) -> str:
    """An HTML card: ``title``, a two-column table of ``facts``, an optional table (header,
    rows) and an optional PNG ``picture``. Everything is escaped."""
    parts = [f'<div class="mapscope-card" style="{CARD_STYLE}">']
    parts.append(f'<div style="font-weight:600;margin-bottom:.3rem">{html.escape(title)}</div>')
    if facts:
        parts.append('<table style="border-collapse:collapse;margin:.2rem 0;font-size:13px">')
        for name, value in facts:
            parts.append(
                f'<tr><th style="text-align:left;padding:1px 12px 1px 0;font-weight:500;'
                f'color:#5b6672">{html.escape(str(name))}</th>'
                f'<td style="padding:1px 0">{html.escape(str(value))}</td></tr>'
            )
        parts.append("</table>")
    if table is not None:
        header, rows = table
        parts.append('<table style="border-collapse:collapse;margin:.4rem 0;font-size:12px">')
        parts.append(
            "<tr>"
            + "".join(
                f'<th style="text-align:right;padding:1px 8px;border-bottom:1px solid #d8dee4">'
                f"{html.escape(str(h))}</th>"
                for h in header
            )
            + "</tr>"
        )
        for row in rows:
            parts.append(
                "<tr>"
                + "".join(
                    f'<td style="text-align:right;padding:1px 8px">{html.escape(str(v))}</td>'
                    for v in row
                )
                + "</tr>"
            )
        parts.append("</table>")
    if picture is not None:
        encoded = base64.b64encode(picture).decode("ascii")
        parts.append(
            f'<img alt="{html.escape(title)}" style="max-width:100%;margin-top:.3rem" '
            f'src="data:image/png;base64,{encoded}">'
        )
    parts.append("</div>")
    return "".join(parts)


class RichDisplay:
    """Mixin: a result that names its card (``_card``) shows itself in Jupyter.

    ``_card()`` returns (title, facts, draw, table): ``draw`` is None or a function returning a
    matplotlib Figure; ``table`` is None or (header, rows)."""

    def _card(
        self,
    ) -> tuple[
        str,
        list[tuple[str, object]],
        Callable[[], Figure] | None,
        tuple[Sequence[str], Sequence[Sequence[object]]] | None,
    ]:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        title, facts, draw, table = self._card()
        return html_card(title, facts, figure_png(draw()) if draw else None, table)

    def _repr_png_(self) -> bytes | None:
        draw = self._card()[2]
        return figure_png(draw()) if draw else None


def short(value: object) -> str:
    """A table cell: floats to 4 significant digits, None as '-', anything else as text."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
