"""The review page in a real headless Chromium (Debian's, driven by Playwright, launched as
conftest.browser) against a real server: ten items decided with the keyboard, the server
restarted, the decisions still there, the labels exported with the page's button, and a model trained on them."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from catdog.cli import main
from catdog.data.splits import Manifest
from catdog.review import review_data
from catdog.review.app import create_app
from catdog.review.decisions import DECISIONS_FILE

from conftest import file_states, live_server, write_review_set

pytestmark = pytest.mark.slow

@contextlib.contextmanager
def review_page(browser, data: Path, audit: Path, out: Path):
    """A fresh server over the review folder `out` (a restart), and a page open on it, ready."""
    with review_data(data, audit=audit, out=out, who="tester") as review, live_server(create_app(review)) as url:
        page = browser.new_page()
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        yield page
        assert all(url_.startswith(url) for url_ in requests), "the page fetched from elsewhere"
        page.close()


def press(page, key: str, progress: str | None = None) -> None:
    """Press `key`; then wait until the page shows the progress `progress` (a decision landed)."""
    page.keyboard.press(key)
    if progress is not None:
        page.locator("#progress", has_text=progress).wait_for(timeout=10_000)


def on_item(page) -> str:
    return page.locator("#item").get_attribute("data-id")


def test_ten_items_decided_with_the_keyboard_survive_a_restart_export_and_train(browser, tmp_path):
    data, audit = write_review_set(tmp_path)
    out = tmp_path / "review"
    before = file_states(data)

    with review_page(browser, data, audit, out) as page:
        assert page.locator("#progress").inner_text() == "0 of 10 reviewed"
        assert on_item(page) == "label:cats/d-flip0.jpg"
        item = page.locator("#item")
        assert item.locator(".reason").inner_text().startswith("Labelled cats, but a model trained on the other")
        assert item.locator(".labels").inner_text() == "Label: cats · suggested: dogs"
        assert item.locator("input[name=class]:checked").get_attribute("value") == "dogs"  # pre-selected
        page.wait_for_function("() => document.querySelector('figure img').naturalWidth === 48")  # the file itself

        press(page, "c", "1 of 10")  # change to the suggested class, dogs
        assert on_item(page) == "label:dogs/c-flip0.jpg"  # on to the next
        press(page, "c", "2 of 10")
        assert on_item(page) == "label:cats/c5.jpg"
        press(page, "k", "3 of 10")  # keep
        assert on_item(page) == "duplicate:cats/c0.jpg"
        assert page.locator("#item.leak figure").count() == 2
        press(page, "1", "4 of 10")  # keep only the first file of the group
        assert on_item(page) == "label:cats/d-flip1.jpg"
        press(page, "2")  # choose dogs by its number...
        press(page, "c", "5 of 10")  # ...and change to it
        press(page, "k", "6 of 10")  # dogs/d3.jpg
        assert on_item(page) == "label:dogs/d4.jpg"
        press(page, "x", "7 of 10")  # exclude...
        assert on_item(page) == "label:cats/c6.jpg"
        press(page, "u", "6 of 10")  # ...undone: back on d4, undecided
        assert on_item(page) == "label:dogs/d4.jpg"
        assert page.locator("#item .decision").inner_text() == ""
        press(page, "k", "7 of 10")
        press(page, "k", "8 of 10")  # cats/c6.jpg
        assert on_item(page) == "outlier:dogs/d7.jpg"
        press(page, "x", "9 of 10")
        assert on_item(page) == "skipped:cats/notes.jpg"
        page.locator("#item figure.unshowable").wait_for(timeout=10_000)  # a text file: no picture
        press(page, "k", "10 of 10")
        page.locator("#done").wait_for(state="visible")

    records = [json.loads(line) for line in (out / DECISIONS_FILE).read_text().splitlines()]
    assert [r["action"] for r in records] == ["change", "change", "keep", "keep_one", "change", "keep", "exclude",
                                              "undo", "keep", "keep", "exclude", "keep"]
    assert all(r["who"] == "tester" and r["source"] == "page" for r in records)
    assert records[7]["undoes"] == records[6]["seq"]

    # A new server over the same folder: the same decisions, shown as they were made.
    with review_page(browser, data, audit, out) as page:
        assert page.locator("#progress").inner_text() == "10 of 10 reviewed"
        assert on_item(page) == "label:cats/d-flip0.jpg"
        assert page.locator("#item .decision").inner_text().startswith("Decided: changed to dogs (tester, ")
        press(page, "ArrowRight")
        press(page, "ArrowRight")
        press(page, "ArrowRight")
        assert page.locator("#item .decision").inner_text().startswith("Decided: kept cats/c0.jpg only")
        page.locator("#kind-filter").select_option("outlier")
        assert on_item(page) == "outlier:dogs/d7.jpg"
        assert page.locator("#item .decision").inner_text().startswith("Decided: excluded from training")

        page.locator("#export").click()
        page.locator("#exported", has_text="Wrote").wait_for(timeout=10_000)
        exported = out / "reviewed.csv"
        assert page.locator("#exported").inner_text().startswith(f"Wrote {exported}: 26 rows (13 cats, 13 dogs), "
                                                                 "2 excluded.")

    rows = dict(line.split(",") for line in exported.read_text().splitlines()[1:])
    assert rows["cats/d-flip0.jpg"] == rows["cats/d-flip1.jpg"] == "dogs" and rows["dogs/c-flip0.jpg"] == "cats"
    assert "cats/c0-copy.jpg" not in rows and "dogs/d7.jpg" not in rows and rows["dogs/d4.jpg"] == "dogs"
    assert file_states(data) == before  # no image moved or changed

    # The export is what `catdog train --labels` takes.
    run = tmp_path / "run"
    assert main(["train", "--model", "scratch", "--data", str(data), "--labels", str(exported), "--epochs", "1",
                 "--image-size", "32", "--batch-size", "8", "--out", str(run)]) == 0
    trained_on = {row.path: row.class_name for row in Manifest.read(run / "splits.csv", data).rows}
    assert trained_on == rows
