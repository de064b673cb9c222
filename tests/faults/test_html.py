"""Faults: hostile names in everything that reaches HTML (issue 24, item 9): the audit page, the
report and the served page. A folder, file or class named like markup is shown as text."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from catdog.cli import main

from conftest import live_server, write_image, write_tiny_run

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_FILE = '"><img src=y onerror=alert(2)>.png'
HOSTILE_CLASS = "<b onmouseover=alert(3)>cats"


class Tags(HTMLParser):
    """Every tag of a page, with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def injected(page: str) -> list[str]:
    """The tags and attributes of `page` that a hostile name could have put there."""
    parser = Tags()
    parser.feed(page)
    found = [f"<{tag}>" for tag, _ in parser.tags if tag in ("script", "b", "iframe", "object")]
    found += [f"{tag} {name}" for tag, attrs in parser.tags for name in attrs if name.startswith("on")]
    found += [f"img src={attrs['src']}" for tag, attrs in parser.tags if tag == "img"
              and not (attrs.get("src") or "data:").startswith("data:")]
    return found


def test_the_audit_page_shows_hostile_folder_file_and_class_names_as_text(tmp_path, capsys, monkeypatch):
    import catdog.audit

    monkeypatch.setattr(catdog.audit, "backbone_features",
                        lambda files, **kwargs: np.random.default_rng(0).normal(size=(len(files), 8)))
    data = tmp_path / "data"
    for name, colour in ((HOSTILE_CLASS, (200, 30, 30)), ("dogs", (30, 30, 200))):
        for i in range(4):
            write_image(data / name / f"{i}.png", color=colour, seed=i)
    write_image(data / "dogs" / HOSTILE_FILE, color=(30, 30, 200), seed=9)
    against = tmp_path / HOSTILE
    write_image(against / HOSTILE_FILE, color=(30, 30, 200), seed=9)  # a copy: listed as a leak
    out = tmp_path / "audit"
    assert main(["audit", "--data", str(data), "--against", str(against), "--out", str(out)]) == 0
    page = (out / "audit.html").read_text()
    assert injected(page) == []
    assert "compared with " + str(against).replace("<", "&lt;").replace(">", "&gt;") in page
    assert HOSTILE_FILE.replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;") in page


def test_the_report_shows_hostile_names_as_text(tmp_path):
    from catdog.report.audit import audit_blocks
    from catdog.report.render import Heading, Paragraph, Table, to_html

    audit = {"duplicates": [{"kind": "exact", "paths": [HOSTILE, HOSTILE_FILE], "splits": ["train", "test"],
                             "leak": True}],
             "label_issues": [{"path": HOSTILE_FILE, "label": HOSTILE_CLASS, "suggested": "dogs", "score": 0.9}],
             "outliers": [{"path": f"`{HOSTILE}`", "score": 2.0}], "warnings": []}
    blocks = [Heading(f"Image classification: {HOSTILE_CLASS}, dogs", 1), Paragraph(f"Data: `{HOSTILE}`"),
              Table(["split", HOSTILE_CLASS], [["train", HOSTILE]]), *audit_blocks(audit, tmp_path)]
    page = to_html(blocks, title=HOSTILE)
    assert injected(page) == [] and HOSTILE not in page and HOSTILE_CLASS not in page


@pytest.mark.slow
def test_the_served_page_shows_hostile_class_and_file_names_as_text(browser, tmp_path):
    run = write_tiny_run(tmp_path / "<i onclick=alert(4)>run", class_names=(HOSTILE_CLASS, "dogs"))
    photo = write_image(tmp_path / "photo.png").read_bytes()
    from catdog.deploy.serve.app import create_app

    with live_server(create_app(run)) as url:
        page = browser.new_page()
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(url + "/")
        page.locator("#model").filter(has_text="dogs").wait_for(timeout=30_000)
        transfer = page.evaluate_handle(
            """([name, data]) => {
                const transfer = new DataTransfer();
                const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type: "image/png" }));
                return transfer;
            }""",
            [HOSTILE_FILE, base64.b64encode(photo).decode()],
        )
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        card = page.locator(".card.done")
        card.wait_for(timeout=30_000)
        assert card.locator(".name").inner_text() == HOSTILE_FILE
        assert HOSTILE_CLASS in page.locator("#model").inner_text()
        assert HOSTILE_CLASS in [row.get_attribute("data-class") for row in card.locator(".row").all()]
        for selector in ("img[src=x]", "img[src=y]", "b", "i[onclick]"):
            assert page.locator(selector).count() == 0, selector
        assert dialogs == []
        page.close()


def test_hostile_names_are_taken_as_they_are_by_the_data_commands(tmp_path, capsys):
    data = tmp_path / "data"
    for name in (HOSTILE_CLASS, "dogs"):
        for i in range(3):
            write_image(data / name / f"{i}.png", seed=i)
    assert main(["data", "info", "--data", str(data)]) == 0
    assert HOSTILE_CLASS in capsys.readouterr().out
    assert Path(data / HOSTILE_CLASS).is_dir()
