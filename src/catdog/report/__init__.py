"""The report: every figure, and every block of HTML and Markdown catdog writes.

A report is a list of blocks (headings, paragraphs, tables, figures) rendered twice:
`report.md` links its figures beside it, `report.html` embeds them so that the one file can
be mailed or opened anywhere.

- `render.py`: the blocks, and writing them as Markdown and as self-contained HTML.
- `plots.py`: the figures: training curves, confusion matrix, misclassified images,
  reliability diagrams, explanations, runs compared.
- `previews.py`: looking at the data: sample images and the augmentation preview.
- `exercise.py`: the report of `catdog run`, from its summary.
- `audit.py`: the audit's section of that report.
- `trust.py`: its section on how far the chosen model's predictions can be trusted.
- `audit_page.py`: `audit.html`, what `catdog audit` found, with thumbnails.
"""

from catdog.report.render import (
    Block,
    Figure,
    FigureRow,
    Gallery,
    Heading,
    Paragraph,
    Table,
    Thumbnail,
    to_html,
    to_markdown,
    write_report,
)

__all__ = ["Block", "Figure", "FigureRow", "Gallery", "Heading", "Paragraph", "Table", "Thumbnail", "to_html",
           "to_markdown", "write_report"]
