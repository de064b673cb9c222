"""Report rendering: the same blocks as Markdown and as one self-contained HTML page."""

import base64

import numpy as np
from PIL import Image

from catdog.report import Figure, FigureRow, Heading, Paragraph, Table, to_html, to_markdown, write_report


def _png(path, color):
    Image.fromarray(np.full((4, 6, 3), color, dtype="uint8")).save(path)
    return path


def test_markdown_links_figures_relative_to_the_report(tmp_path):
    (tmp_path / "scratch").mkdir()
    figure = _png(tmp_path / "scratch" / "accuracy.png", 200)
    md = to_markdown(
        [Heading("Models", 2), Paragraph("Test **97.0 %**."), Table(["model", "test"], [["`scratch`", "61 %"]]),
         Figure(figure, "Accuracy by epoch.")],
        tmp_path,
    )
    assert "## Models" in md
    assert "| model | test |\n|---|---|\n| `scratch` | 61 % |" in md
    assert "![Accuracy by epoch.](scratch/accuracy.png)" in md


def test_html_embeds_figures_and_escapes_text(tmp_path):
    figure = _png(tmp_path / "f.png", 10)
    page = to_html([Paragraph("a <b> & `x < y` and **bold**"), Figure(figure, "caption")], title="t")
    assert "a &lt;b&gt; &amp; <code>x &lt; y</code> and <strong>bold</strong>" in page
    encoded = page.split('src="data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(encoded) == figure.read_bytes()
    assert "<img src=\"f.png\"" not in page  # nothing refers to files beside it


def test_write_report_writes_both_files(tmp_path):
    md, page = write_report([Heading("Title", 1)], tmp_path, title="Title")
    assert md.read_text().startswith("# Title")
    assert "<h1>Title</h1>" in page.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.md"]


def test_a_figure_row_is_side_by_side_in_html_and_sequential_in_markdown(tmp_path):
    a, b = _png(tmp_path / "a.png", 1), _png(tmp_path / "b.png", 2)
    row = FigureRow([Figure(a, "first"), Figure(b, "second")])
    assert to_markdown([row], tmp_path) == "![first](a.png)\n\n*first*\n\n![second](b.png)\n\n*second*\n"
    page = to_html([row], title="t")
    assert page.count('<div class="row"><figure>') == 1 and page.count("<figure>") == 2
