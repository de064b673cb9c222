"""`audit.html`: what an audit found, to look at: the images of each duplicate group side by
side, each suspected label error with its label and the suggested one, and the outliers.

One self-contained page (thumbnails embedded as JPEG data), like `report.html`. Thumbnails
are decoded as the models see the images (`catdog.data.images.decode`, squeezed square).
The page names its generator, by which catdog knows it may replace it (see `HTML_KIND`).
"""

from __future__ import annotations

import html
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from catdog import files
from catdog.audit.result import AuditResult
from catdog.report.render import thumbnail

GENERATOR = '<meta name="generator" content="catdog audit">'
THUMBNAIL = 128
# At most this many of each list are drawn (audit.json has them all).
SHOWN = 200


def _is_audit_page(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return GENERATOR in f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False


HTML_KIND = files.Kind("an audit page written by catdog", _is_audit_page)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1d232a; }
h2 { margin-top: 2rem; border-bottom: 1px solid #e5e9ee; }
.row { display: flex; flex-wrap: wrap; gap: .75rem; margin: .75rem 0; padding: .5rem; border: 1px solid #e5e9ee; }
.leak { border-color: #d1242f; background: #fff5f5; }
figure { margin: 0; width: 10rem; font-size: .75rem; overflow-wrap: anywhere; }
figure img { width: 128px; height: 128px; display: block; }
.note { color: #57606a; }
"""


def write_html(result: AuditResult, path: str | Path) -> Path:
    """Write the page for `result` (atomically, over nothing but an earlier audit page)."""
    shown = [p for g in result.duplicates[:SHOWN] for p in g.paths]
    shown += [s.path for s in result.label_issues[:SHOWN]] + [o.path for o in result.outliers[:SHOWN]]
    with ThreadPoolExecutor() as pool:
        thumbnails = dict(zip(shown, pool.map(lambda path: thumbnail(path, THUMBNAIL), shown), strict=True))

    def figure(path: str, caption: str) -> str:
        return (f'<figure><img src="{thumbnails[path]}" alt=""><figcaption>{html.escape(caption)}'
                f"<br>{html.escape(path)}</figcaption></figure>")

    parts = [f"<h1>Audit of {html.escape(result.data)}</h1>",
             f'<p class="note">{result.images} images, {len(result.classes)} classes, {html.escape(result.layout)} '
             f"layout, split with seed {result.seed}; {_compared(result)}</p>",
             f"<h2>Duplicates: {len(result.duplicates)} groups, {len(result.leaks)} across splits or folders</h2>"]
    for group in result.duplicates[:SHOWN]:
        figures = "".join(figure(p, f"{group.kind}, {s}") for p, s in zip(group.paths, group.splits, strict=True))
        parts.append(f'<div class="row{" leak" * group.leak}">{figures}</div>')
    parts.append(f"<h2>Suspected label errors: {len(result.label_issues)}</h2>")
    parts.append('<div class="row">' + "".join(
        figure(s.path, s.describe())
        for s in result.label_issues[:SHOWN]) + "</div>")
    parts.append(f"<h2>Outliers: {len(result.outliers)}</h2>")
    parts.append('<div class="row">' + "".join(
        figure(o.path, f"{o.score:.2f}x the usual distance to its neighbours")
        for o in result.outliers[:SHOWN]) + "</div>")
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">{GENERATOR}'
            f"<title>catdog audit: {html.escape(result.data)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    return files.write_text(path, page, HTML_KIND)


def _compared(result: AuditResult) -> str:
    """The folders compared with the data set, as HTML."""
    if not result.against:
        return "no other folder compared"
    return "compared with " + ", ".join(f"{html.escape(a['folder'])} ({a['images']} images)" for a in result.against)

