"""A small document model for reports, rendered to Markdown, self-contained HTML and the terminal.

A :class:`Document` is a title and a list of blocks; a :class:`Section` is a titled list of
blocks and may hold sections itself (subsections). Blocks are typed values: paragraphs, notes
(the small print under a table that states its conventions), bullet lists, tables, figures
(PNG files) and code. Builders return blocks; renderers turn a document into text:

- :func:`render_markdown`: GitHub-flavoured Markdown; figures linked by relative path.
- :func:`render_html`: one HTML page with its own CSS, a table of contents of the top-level
  sections, figures embedded as base64 PNG data URIs; no scripts, no external resources.
- :func:`render_terminal`: printed with rich: tables as rich tables, text as plain text,
  figures as their caption and path (the commands' summaries).

Heading levels follow the nesting: the document title is level 1 (``#``, ``<h1>``), its
sections level 2, their subsections level 3, and so on.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence, Union

if TYPE_CHECKING:  # rich is imported when a document is printed
    from rich.console import Console
    from rich.table import Table as RichTable

#: A table cell: text, a number, or None (rendered as ``-``).
Cell = Union[str, int, float, None]


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Note:
    """Small print, e.g. the conventions under a table (italic in Markdown)."""

    text: str


@dataclass(frozen=True)
class BulletList:
    """An unordered list of plain-text items."""

    items: Sequence[str]


@dataclass(frozen=True)
class Row:
    """A table row.

    Attributes:
        cells: one value per column.
        reference: a row of reference numbers (e.g. published ones) rather than measured
            ones; the HTML greys it out.
    """

    cells: Sequence[Cell]
    reference: bool = False


#: Column alignments a :class:`Table` accepts.
ALIGNMENTS = ("left", "right")


@dataclass(frozen=True)
class Table:
    """A table with a header row and an optional caption.

    Attributes:
        columns: the header cells.
        rows: the rows.
        caption: a title shown above the table.
        align: one of :data:`ALIGNMENTS` per column, or None (no alignment stated: Markdown
            ``---``, the terminal left-aligns). Markdown marks ``right`` columns ``---:``; the
            terminal aligns them right. The HTML style aligns every column but the first right.
    """

    columns: Sequence[str]
    rows: Sequence[Row]
    caption: str | None = None
    align: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.align is not None:
            if len(self.align) != len(self.columns):
                raise ValueError(f"table {self.caption!r}: {len(self.align)} alignments for "
                                 f"{len(self.columns)} columns")
            bad = [a for a in self.align if a not in ALIGNMENTS]
            if bad:
                raise ValueError(f"table {self.caption!r}: unknown alignment {bad[0]!r}; "
                                 f"expected one of {', '.join(ALIGNMENTS)}")
        for i, row in enumerate(self.rows):
            if len(row.cells) != len(self.columns):
                raise ValueError(f"table {self.caption!r}: row {i} has {len(row.cells)} cells for "
                                 f"{len(self.columns)} columns")


@dataclass(frozen=True)
class Figure:
    """A PNG figure on disk and its caption."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Code:
    """A preformatted text block (``language`` labels the Markdown fence)."""

    text: str
    language: str = ""


@dataclass
class Section:
    """A titled part of a document; ``blocks`` may contain subsections."""

    title: str
    blocks: list["Block"] = field(default_factory=list)


Block = Union[Paragraph, Note, BulletList, Table, Figure, Code, Section]


@dataclass
class Document:
    """A titled list of blocks (text before the first section, then the sections)."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def walk(self) -> Iterator[tuple[int, Block]]:
        """Every block in reading order with its heading level (sections at level 2 are the
        document's own, 3 their subsections, ...); a section comes before its blocks."""
        yield from _walk(self.blocks, 2)

    @property
    def figures(self) -> list[Path]:
        """The figure files, in reading order."""
        return [b.path for _, b in self.walk() if isinstance(b, Figure)]


def _walk(blocks: Sequence[Block], level: int) -> Iterator[tuple[int, Block]]:
    for b in blocks:
        yield level, b
        if isinstance(b, Section):
            yield from _walk(b.blocks, level + 1)


def figure_if_present(path: str | os.PathLike | None, caption: str) -> list[Figure]:
    """``[Figure(path, caption)]`` when ``path`` is an existing file, else ``[]`` (a figure
    that could not be drawn leaves no broken link)."""
    if path is None or not Path(path).is_file():
        return []
    return [Figure(Path(path), caption)]


def cell_text(value: Cell) -> str:
    """The text of a cell: ``-`` for None, else ``str(value)``."""
    return "-" if value is None else str(value)


# ----------------------------------------------------------------------------------------------
# Markdown


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Document, base: str | os.PathLike) -> str:
    """The document as Markdown; figures linked relative to ``base`` (where the file will be)."""
    out: list[str] = [f"# {doc.title}", ""]
    for level, b in doc.walk():
        if isinstance(b, Section):
            out += ["#" * level + " " + b.title, ""]
        elif isinstance(b, Paragraph):
            out += [b.text, ""]
        elif isinstance(b, Note):
            out += [f"*{b.text}*", ""]
        elif isinstance(b, BulletList):
            out += [f"- {x}" for x in b.items] + [""]
        elif isinstance(b, Table):
            if b.caption:
                out += [f"**{b.caption}**", ""]
            out.append("| " + " | ".join(_md_escape(c) for c in b.columns) + " |")
            align = b.align or ["left"] * len(b.columns)
            out.append("| " + " | ".join("---:" if a == "right" else "---" for a in align)
                       + " |")
            for r in b.rows:
                out.append("| " + " | ".join(_md_escape(cell_text(v)) for v in r.cells) + " |")
            out.append("")
        elif isinstance(b, Figure):
            rel = os.path.relpath(b.path, base)
            out += [f"![{b.caption}]({rel})", "", f"*{b.caption}*", ""]
        elif isinstance(b, Code):
            out += [f"```{b.language}", b.text.rstrip("\n"), "```", ""]
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------
# HTML

#: The default page style (reference rows greyed and in italics).
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{border-bottom:2px solid #333;padding-bottom:.2em}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 .3em 0;font-size:.92em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right}th{background:#eee}
td:first-child,th:first-child{text-align:left}tr.reference td{color:#555;background:#fafafa;font-style:italic}
caption{caption-side:top;text-align:left;font-weight:600;padding:.2em 0}
p.note{font-size:.85em;color:#444;margin-top:.1em}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#444}pre{background:#f4f4f4;padding:.6em;overflow-x:auto;font-size:.85em}
nav ul{columns:2}
"""


def anchor(text: str) -> str:
    """The HTML id of a heading: lower-case letters and digits, other characters ``-``."""
    return "".join(c.lower() if c.isalnum() else "-" for c in text).strip("-")


def _html_table(t: Table) -> str:
    esc = html.escape
    parts = ["<table>"]
    if t.caption:
        parts.append(f"<caption>{esc(t.caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
    for r in t.rows:
        cls = ' class="reference"' if r.reference else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td>{esc(cell_text(v))}</td>" for v in r.cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def render_html(doc: Document, css: str = CSS) -> str:
    """The document as one self-contained HTML page (figures as base64 PNG; no scripts).

    Raises:
        OSError: a figure file cannot be read.
    """
    esc = html.escape
    toc = [b.title for level, b in doc.walk() if isinstance(b, Section) and level == 2]
    body: list[str] = [f"<h1>{esc(doc.title)}</h1>"]
    if toc:
        body.append("<nav><ul>" + "".join(f'<li><a href="#{anchor(t)}">{esc(t)}</a></li>'
                                          for t in toc) + "</ul></nav>")
    for level, b in doc.walk():
        if isinstance(b, Section):
            body.append(f'<h{level} id="{anchor(b.title)}">{esc(b.title)}</h{level}>')
        elif isinstance(b, Paragraph):
            body.append(f"<p>{esc(b.text)}</p>")
        elif isinstance(b, Note):
            body.append(f'<p class="note">{esc(b.text)}</p>')
        elif isinstance(b, BulletList):
            body.append("<ul>" + "".join(f"<li>{esc(x)}</li>" for x in b.items) + "</ul>")
        elif isinstance(b, Table):
            body.append(_html_table(b))
        elif isinstance(b, Figure):
            data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{esc(b.caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{esc(b.caption)}</figcaption></figure>")
        elif isinstance(b, Code):
            body.append(f"<pre>{esc(b.text)}</pre>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(doc.title)}</title><style>{css}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


# ----------------------------------------------------------------------------------------------
# Terminal


def terminal_console() -> Console:
    """A rich console on stdout; captured or piped output gets at least 120 columns (no need to
    squeeze tables into 80)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    return console


def _rich_table(t: Table) -> RichTable:
    from rich import box
    from rich.table import Table as RichTable

    table = RichTable(title=t.caption, box=box.SIMPLE_HEAD)
    for i, c in enumerate(t.columns):
        table.add_column(c, justify="right" if t.align and t.align[i] == "right" else "left")
    for r in t.rows:
        table.add_row(*(cell_text(v) for v in r.cells), style="dim italic" if r.reference else None)
    return table


def render_terminal(doc: Document, console: Console | None = None) -> None:
    """Print the document with rich.

    The title and section titles in bold (subsections indented by their level), paragraphs as
    plain text, notes dimmed, bullet lists as ``- item`` lines, tables as rich tables (caption
    as their title, reference rows dimmed), figures as ``caption: path`` and code verbatim. Text
    is never parsed as rich markup and is not wrapped by rich (long paths stay whole).

    Args:
        doc: the document.
        console: where to print (default: :func:`terminal_console`).
    """
    from rich.text import Text

    console = console or terminal_console()

    def line(text: str, style: str = "") -> None:
        console.print(Text(text, style=style), soft_wrap=True, highlight=False)

    line(doc.title, "bold")
    for level, b in doc.walk():
        if isinstance(b, Section):
            line("")
            line("  " * (level - 2) + b.title, "bold")
        elif isinstance(b, Paragraph):
            line(b.text)
        elif isinstance(b, Note):
            line(b.text, "dim")
        elif isinstance(b, BulletList):
            for x in b.items:
                line(f"- {x}")
        elif isinstance(b, Table):
            console.print(_rich_table(b))
        elif isinstance(b, Figure):
            line(f"{b.caption}: {b.path}")
        elif isinstance(b, Code):
            line(b.text.rstrip("\n"))
