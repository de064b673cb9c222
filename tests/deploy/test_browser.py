"""The page in a real headless Chromium (Debian's, driven by Playwright) against a real server."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from catdog.deploy.predict import Predictor
from catdog.deploy.serve import create_app

from conftest import live_server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if executable is None:
        message = "Debian's chromium is not installed (scripts/ensure-chromium installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tiny_run):
    with live_server(create_app(tiny_run)) as url:
        yield url


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(server + "/")
    yield page
    assert all(url.startswith(server) or url.startswith("blob:") for url in requests), "the page fetched from elsewhere"
    page.close()


@pytest.fixture
def cat_photo(seed_data) -> Path:
    return seed_data / "validation" / "cats" / "cat.2005.jpg"


def expect_card_shows(card, prediction) -> None:
    """The card shows the predicted class and one bar per class with its probability."""
    assert card.locator(".label").inner_text() == prediction["label"]
    rows = card.locator(".row")
    assert rows.count() == len(prediction["probabilities"])
    for i, (name, p) in enumerate(prediction["probabilities"].items()):
        row = rows.nth(i)
        assert row.get_attribute("data-class") == name
        assert row.locator(".pct").inner_text() == f"{100 * p:.1f} %"
        width = row.locator(".fill").evaluate("e => e.style.width")
        assert width == f"{100 * p:.1f}%"
    assert card.locator(".row.best").get_attribute("data-class") == prediction["label"]
    assert card.locator("img").evaluate("img => img.complete && img.naturalWidth") > 0


def test_picking_a_real_cat_photo_shows_its_prediction(page, tiny_run, cat_photo):
    expected = next(Predictor(tiny_run).predict_paths([cat_photo]))
    assert page.locator("#model").inner_text() == "Model tiny (tiny): cats, dogs at 64 px, test accuracy 50.0 %."

    page.set_input_files("#picker", str(cat_photo))

    card = page.locator(".card.done")
    card.wait_for(timeout=30_000)
    assert card.locator(".name").inner_text() == cat_photo.name
    expect_card_shows(card, expected)


def test_dropping_files_shows_a_card_for_each(page, tiny_run, cat_photo):
    expected = next(Predictor(tiny_run).predict_paths([cat_photo]))
    files = [
        {"name": cat_photo.name, "type": "image/jpeg", "data": base64.b64encode(cat_photo.read_bytes()).decode()},
        {"name": "notes.jpg", "type": "image/jpeg", "data": base64.b64encode(b"not a photo").decode()},
    ]
    transfer = page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: f.type }));
            }
            return transfer;
        }""",
        files,
    )

    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})

    page.locator(".card.done").wait_for(timeout=30_000)
    page.locator(".card.failed").wait_for(timeout=30_000)
    assert page.locator(".card").count() == 2
    expect_card_shows(page.locator(".card.done"), expected)
    assert page.locator(".card.failed .label").inner_text() == "notes.jpg: not an image"
