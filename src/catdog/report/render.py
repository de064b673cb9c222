"""Rendering a report: its blocks (headings, paragraphs, tables, figures, galleries of
thumbnails) as Markdown, whose figures are files beside it, and as one self-contained HTML
page, whose figures and thumbnails are embedded. Tables scroll sideways on a narrow screen
rather than widen the page; figures take the page's width."""

from __future__ import annotations

import base64
import html
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from catdog import files


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


@dataclass(frozen=True)
class FigureRow:
    """Figures shown side by side (one after the other in Markdown)."""

    figures: list[Figure]


@dataclass(frozen=True)
class Thumbnail:
    """An image file shown small, with its caption under it (`name`: a short name for it)."""

    path: str
    name: str
    caption: str


@dataclass(frozen=True)
class Gallery:
    """Thumbnails side by side, each captioned in the page's text (a list in Markdown)."""

    thumbnails: list[Thumbnail]


Block = Heading | Paragraph | Table | Figure | FigureRow | Gallery

# The side of a thumbnail, in pixels: large enough to tell a cat from a dog at 100 % zoom.
THUMBNAIL = 160


def to_markdown(blocks: list[Block], root: Path) -> str:
    """Markdown, with figure paths relative to `root` (the folder the report is written to)."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(block.headers) + " |", "|" + "---|" * len(block.headers)]
            lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        elif isinstance(block, Figure):
            parts.append(f"![{block.caption}]({block.path.relative_to(root).as_posix()})\n\n*{block.caption}*")
        elif isinstance(block, FigureRow):
            parts.append(to_markdown(block.figures, root).rstrip("\n"))
        elif isinstance(block, Gallery):
            parts.append("\n".join(f"- `{t.name}`: {t.caption}" for t in block.thumbnails))
    return "\n\n".join(parts) + "\n"


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1d232a; line-height: 1.5; overflow-wrap: break-word; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #e5e9ee; padding-bottom: .2rem; }
.scroll { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .35rem .7rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f5f7; }
td.pass { color: #1a7f37; font-weight: 600; }
td.miss { color: #cf222e; font-weight: 600; }
figure { margin: 1.5rem 0; }
.row { display: flex; flex-wrap: wrap; gap: 1rem; }
.row figure { flex: 1 1 20rem; margin: .5rem 0; min-width: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e9ee; }
figcaption { color: #57606a; font-size: .9rem; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(10rem, 1fr)); gap: .75rem;
           margin: 1rem 0; }
.gallery figure { margin: 0; }
.gallery img { width: 100%; max-width: 160px; aspect-ratio: 1; object-fit: cover; display: block; }
.gallery figcaption { font-size: .85rem; line-height: 1.3; color: #1d232a; }
.gallery figcaption code { font-size: .8rem; overflow-wrap: anywhere; }
code { background: #f3f5f7; padding: 0 .25rem; border-radius: 3px; }
p code { overflow-wrap: anywhere; }
@media (max-width: 30rem) { body { padding: 0 .6rem; } th, td { padding: .3rem .4rem; } }
"""


def _inline(text: str) -> str:
    """Escape text for HTML, turning Markdown's `code` and **bold** spans into tags."""
    out, code, bold = [], False, False
    for i, chunk in enumerate(html.escape(text).replace("**", "\0").split("`")):
        if i:
            code = not code
        if code:
            out.append(f"<code>{chunk.replace(chr(0), '**')}</code>")
            continue
        pieces = chunk.split("\0")
        for j, piece in enumerate(pieces):
            if j:
                bold = not bold
                out.append("<strong>" if bold else "</strong>")
            out.append(piece)
    return "".join(out)


def to_html(blocks: list[Block], title: str) -> str:
    """A self-contained HTML page: figures are embedded as data URIs."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.headers)
            rows = "".join(
                "<tr>" + "".join(f"<td{_verdict_class(cell)}>{_inline(cell)}</td>" for cell in row) + "</tr>"
                for row in block.rows
            )
            body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>')
        elif isinstance(block, Figure):
            body.append(_figure_html(block))
        elif isinstance(block, FigureRow):
            body.append('<div class="row">' + "".join(map(_figure_html, block.figures)) + "</div>")
        elif isinstance(block, Gallery):
            body.append(_gallery_html(block))
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _figure_html(figure: Figure) -> str:
    data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(figure.caption)}">'
        f"<figcaption>{_inline(figure.caption)}</figcaption></figure>"
    )


def _verdict_class(cell: str) -> str:
    """A cell that is a verdict ("pass" or "miss") is coloured as one."""
    return f' class="{cell}"' if cell in ("pass", "miss") else ""


def _gallery_html(gallery: Gallery) -> str:
    with ThreadPoolExecutor() as pool:
        sources = list(pool.map(thumbnail, [t.path for t in gallery.thumbnails]))
    return '<div class="gallery">' + "".join(
        f'<figure><img src="{source}" alt="{html.escape(t.name)}"><figcaption><code>{html.escape(t.name)}</code>'
        f"<br>{_inline(t.caption)}</figcaption></figure>"
        for t, source in zip(gallery.thumbnails, sources, strict=True)) + "</div>"


def thumbnail(path: str, size: int = THUMBNAIL) -> str:
    """An image file as a square JPEG thumbnail's data URI (as the models see it: decoded by
    `catdog.data.images.decode`, squeezed square); "" if it can no longer be read."""
    from PIL import Image

    from catdog.data.images import decode
    from catdog.errors import BadImageError

    try:
        pixels = decode(path, size)
    except (BadImageError, OSError):
        return ""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def write_report(blocks: list[Block], folder: Path, title: str) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into `folder`, atomically; return both paths."""
    folder = Path(folder)
    md = files.write_text(folder / "report.md", to_markdown(blocks, folder))
    page = files.write_text(folder / "report.html", to_html(blocks, title))
    return md, page
